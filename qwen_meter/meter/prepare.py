"""What a meter loads before its first call, so that the call stalls no event loop.

A fresh process pays a few hundred ms of CPU before it can count its first prompt: parsing
the catalogue (``models.yaml``), reading the tokenizer's rank file and building its encoder,
the template tables. Done on an event loop, that is a stall every other task waits through;
done in a worker thread, it is still one wherever it holds the GIL — and building tiktoken's
encoder holds it throughout (100-200 ms for Qwen's 151,643 ranks on a loaded 2-core machine).

So a :class:`~qwen_meter.meter.pipeline.Meter` prepares when it is created: it loads the
catalogue and counts a one-word prompt for the models it expects (the default model,
``qwen-plus``, and every model its limiter names), which leaves their tokenizers and templates
in the process-wide caches.

* Created where no event loop runs (module level, before ``asyncio.run``, sync code): the
  loads run right there, before any loop can be stalled by them.
* Created inside a running loop: a daemon thread loads (:class:`Preparation`), started once
  the creating loop step is over; creating the meter stays cheap, and the first call awaits
  the thread without blocking the loop.

The first call of any other model, and a call that finds a new catalogue to parse
(:func:`catalogue_due`), is planned in a worker thread (:meth:`Meter.begin_async`); the rank
file is parsed in short steps there (:func:`~qwen_meter.tokens.backends._load_ranks`), so only
the encoder's build still holds the GIL. What was prepared once is not prepared again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Hashable, Mapping, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from ..base.errors import QwenMeterError
from ..billing.model_setup import DEFAULT_MODEL  # counted when none is named: prepared always
from ..catalogue.core import default_catalogue_loaded

if TYPE_CHECKING:
    from ..catalogue.core import Catalogue
    from .pipeline import Meter
    from .plan import _Plan

log = logging.getLogger("qwen_meter.meter")


# One preparation runs at a time: meters created together share the work instead of
# building the same encoder twice, and a fork waits for it (a child forked while another
# thread held a loader's lock, or half-built a cache, could hang on it).
_lock = threading.Lock()
#: what is prepared already, by (catalogue, model): later meters skip it
_done: set[Hashable] = set()


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(before=lambda: _lock.acquire(), after_in_parent=lambda: _lock.release(),
                        after_in_child=_after_fork_in_child)


class Preparation:
    """The loads one meter begins when it is created inside a running event loop, in a
    thread of their own; :meth:`wait` / :meth:`wait_async` for them to end (they never
    raise: a load that fails fails again, reported, on the call).

    The thread starts once the loop step that created the meter is over (``call_soon``):
    started at once, it would hold the GIL half the time while that step — the imports
    behind ``Meter`` and ``wrap``, the SDK's first request — still runs, and stretch it."""

    def __init__(self, work: list[tuple[Hashable, str]], catalogue: Catalogue | None,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.future: Future[None] = Future()
        self.work = work
        self.catalogue = catalogue
        self.thread = threading.Thread(target=self._run, name="qwen-meter-prepare",
                                       daemon=True)
        self._started = threading.Lock()
        loop.call_soon(self.begin)

    def begin(self) -> None:
        """Start the thread (once; also from :meth:`wait`, should the loop stop first)."""
        if self._started.acquire(blocking=False):
            self.thread.start()

    def _run(self) -> None:
        try:
            with _lock:
                prepare_models(self.work, self.catalogue)
        finally:
            self.future.set_result(None)

    @property
    def done(self) -> bool:
        return self.future.done()

    def wait(self) -> None:
        """Block until the loads have ended (a sync call)."""
        self.begin()
        self.future.result()

    async def wait_async(self) -> None:
        """Wait for the loads without blocking the event loop."""
        self.begin()
        if not self.future.done():
            await asyncio.wrap_future(self.future)


def prepare_models(work: list[tuple[Hashable, str]], catalogue: Catalogue | None) -> None:
    """Load the catalogue, then count a one-word chat for each model as the meter would
    (its tokenizer, template and their tables stay loaded)."""
    from ..billing.unlisted import resolve
    from ..catalogue.core import default_catalogue
    from .plan import count_prompt  # plan imports billing's counting: loaded here

    started = time.perf_counter()
    # Best effort: whatever fails here fails again on the call, which reports it where the
    # caller sees it (a broken override file, a missing tokenizer package) — never Meter().
    try:
        cat = catalogue or default_catalogue()
    except Exception as exc:
        log.debug("meter preparation: catalogue not loaded: %s", exc)
        return
    request = {"messages": [{"role": "user", "content": "hi"}]}
    for key, model in work:
        try:
            count_prompt(request, resolve(model, cat), "chat", None)
        except Exception as exc:
            log.debug("meter preparation: %s not prepared: %s", model, exc)
        _done.add(key)
    log.debug("meter preparation: %d model(s) in %.0f ms", len(work),
              (time.perf_counter() - started) * 1000)


def start(meter: Meter) -> Preparation | None:
    """Start preparing ``meter`` (None when everything it needs is loaded already)."""
    named = getattr(meter.limiter, "overrides", None) or ()  # the limiter's own models
    names = [DEFAULT_MODEL, *(name for name in named if isinstance(name, str) and name.strip())]
    # Keyed by the catalogue object when the meter has its own; the default catalogue may
    # change later (a new install), and then the first call after the change parses it in
    # a worker thread anyway (catalogue_due).
    owner = id(meter.catalogue) if meter.catalogue is not None else "default"
    work: list[tuple[Hashable, str]] = [((owner, name), name) for name in dict.fromkeys(names)]
    work = [item for item in work if item[0] not in _done]
    if not work:
        return None
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        # No event loop runs in this thread, so loading here stalls none. A thread would
        # not spare a loop started soon after: building a tokenizer's encoder holds the
        # GIL throughout (tiktoken, 100-200 ms), and every thread waits for it.
        with _lock:
            prepare_models(work, meter.catalogue)
        return None
    return Preparation(work, meter.catalogue, loop)


def wait(meter: Meter) -> None:
    """Block until ``meter``'s preparation has ended (its sync first call)."""
    if meter._preparing is not None:
        meter._preparing.wait()
        meter._preparing = None


async def wait_async(meter: Meter) -> None:
    """Await ``meter``'s preparation without blocking the event loop."""
    if meter._preparing is not None:
        await meter._preparing.wait_async()
        meter._preparing = None


#: Model names remembered per meter as planned once (their tokenizer and template loaded).
PLANNED_LIMIT = 1024


async def first_plan(meter: Meter, model: Any, request: Mapping[str, Any], endpoint: str,
                     tags: Sequence[str], user: str | None, region: str | None,
                     url: Any) -> _Plan | QwenMeterError:
    """Plan a call in a worker thread — the first of its model name, or the first to find a
    new catalogue — after the meter's own preparation, awaited: the loop runs meanwhile."""
    await wait_async(meter)
    plan = await asyncio.to_thread(meter._plan_or_refusal, request, endpoint, tags, user,
                                   region, url)
    if isinstance(model, str):
        if len(meter._planned) >= PLANNED_LIMIT:
            meter._planned.clear()
        meter._planned.add(model)
    return plan


def catalogue_due(meter: Meter, recheck: float) -> bool:
    """Whether planning a call now would parse a catalogue (a meter on the default
    catalogue, its re-check every ``recheck`` seconds due, and a new install or a changed
    $QWEN_METER_CATALOGUE found): such a call is planned in a worker thread."""
    if meter.catalogue is not None or (meter._catalogue_in_use is not None and
                                       time.monotonic() - meter._catalogue_checked < recheck):
        return False  # the common case: two attribute reads and a clock read
    return not default_catalogue_loaded()
