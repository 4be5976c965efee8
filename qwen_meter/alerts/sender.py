"""The sender: a bounded queue of work drained in the background, so that a slow or dead
webhook never holds up a metered call — nor another webhook's alerts.

A call's only cost is :meth:`AlertSender.submit` — an append under a lock, or a drop (logged
and counted) when the queue is full. One thread evaluates the rule behind each job (reading
the budget store, the limiter's window) and claims each alert's mark (:mod:`.claims`); each
channel has its own delivery thread (a "lane"), which posts, retrying network errors, 5xx, 429
and the robots' "too fast" codes with exponential backoff and jitter. Retries wait on the
lane's timer heap, not in a sleep; a receiver that hangs holds up only its own lane. After
``tries`` attempts it gives up with an :class:`~.events.AlertDeliveryWarning` and a log line.

Why threads and not an asyncio task, also in the gateway: the work behind an alert is
blocking by nature — :meth:`Budget.status <qwen_meter.limits.budget.Budget.status>` and
:meth:`Ledger.claim_alert <qwen_meter.ledger.Ledger.claim_alert>` are synchronous calls to
Redis, SQLite or PostgreSQL — and on the event loop they would stall every open request. A
thread keeps all of it off the loop and serves library users (no loop at all) the same way.
Why httpx: its synchronous client fits that thread (aiohttp has no synchronous API), it is
already a test and openai dependency, and its async client has the same API should a
loop-bound driver ever be needed.
"""

from __future__ import annotations

import atexit
import contextlib
import heapq
import itertools
import logging
import threading
import time
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..base.errors import ConfigurationError
from .claims import CachedClaims, claims_for
from .delivery import Channel, Verdict, backoff, judge
from .events import Alert, AlertDeliveryWarning

log = logging.getLogger("qwen_meter.alerts")

Job = Callable[[], Iterable[Alert]]


@dataclass(frozen=True)
class Outcome:
    """What became of one alert at one channel (kept in :attr:`AlertSender.history`)."""

    result: str  # delivered | retrying | gave_up | dropped
    channel: str
    mark: str
    attempt: int
    reason: str = ""


class AlertSender:
    """Sends alerts to ``channels`` from a background thread; see the module docs."""

    def __init__(self, channels: Sequence[Channel], *, claims: Any = None,
                 queue_size: int = 1000, tries: int = 5, backoff: float = 1.0,
                 max_backoff: float = 60.0, timeout: float = 10.0,
                 client: Callable[[], Any] | None = None) -> None:
        self.channels = tuple(channels)
        names = [c.name for c in self.channels]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"alert channels need distinct names, got {names}")
        self.claims: CachedClaims = claims_for(claims)
        self.queue_size = queue_size
        self.tries = tries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.timeout = timeout
        self._client_factory = client
        self.history: deque[Outcome] = deque(maxlen=1000)
        self.stats = {"submitted": 0, "dropped": 0, "claimed": 0, "delivered": 0,
                      "retried": 0, "gave_up": 0}
        self._jobs: deque[tuple[Hashable | None, Job]] = deque()
        self._pending: set[Hashable] = set()
        #: keyed jobs waiting for their ``every`` (due, order, key, job); when each key last ran
        self._later: list[tuple[float, int, Hashable | None, Job]] = []
        self._ran: dict[Hashable, float] = {}
        #: each channel's deliveries due (time, order, alert, attempt), on its own thread
        self._timers: dict[str, list[tuple[float, int, Alert, int]]] = {
            c.name: [] for c in self.channels}
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._busy: set[str] = set()  # "" (the rules thread) and channels mid-attempt
        self._closing = False
        self._threads: list[threading.Thread] = []
        ref = weakref.ref(self)

        def at_exit() -> None:  # a script's last alerts still go out (a few seconds at most)
            sender = ref()
            if sender is not None:
                sender.close(timeout=5.0)

        self._exit_hook = at_exit
        atexit.register(at_exit)

    # --- the caller's side (any thread, never blocks on I/O) ---------------------------------

    def submit(self, job: Job, key: Hashable | None = None, every: float = 0.0) -> bool:
        """Queue ``job`` (run on the sender's thread; returns the alerts to send). A job with
        the ``key`` of one still queued is the same work: it is not queued twice; and it runs
        at most once per ``every`` seconds (a later one waits, absorbing the calls meanwhile).
        False when the queue is full (the job is dropped) or the sender is closed."""
        with self._cond:
            if self._closing:
                return False
            if key is not None and key in self._pending:
                return True
            if len(self._jobs) + len(self._later) >= self.queue_size:
                self._count("dropped")
                if self.stats["dropped"] in (1, 10, 100) or self.stats["dropped"] % 1000 == 0:
                    log.warning("alert queue full (%d): %d jobs dropped so far",
                                self.queue_size, self.stats["dropped"])
                return False
            if key is not None:
                self._pending.add(key)
            due = self._ran.get(key, -every) + every if key is not None else 0.0
            if due > time.monotonic():
                heapq.heappush(self._later, (due, next(self._seq), key, job))
            else:
                self._jobs.append((key, job))
            self._count("submitted")
            if not self._threads:
                self._start()
            self._cond.notify_all()
        return True

    def send(self, alerts: Iterable[Alert]) -> bool:
        """Queue ready alerts (still claimed once each)."""
        ready = list(alerts)
        return self.submit(lambda: ready)

    def _count(self, what: str) -> None:
        with self._cond:
            self.stats[what] += 1

    def _start(self) -> None:
        self._threads = [threading.Thread(target=self._run_jobs, name="qwen-meter-alerts",
                                          daemon=True)]
        self._threads += [threading.Thread(target=self._run_lane, args=(channel,), daemon=True,
                                           name=f"qwen-meter-alerts-{channel.name}")
                          for channel in self.channels]
        for thread in self._threads:
            thread.start()

    def _working(self) -> bool:
        return bool(self._jobs or self._later or self._busy or any(self._timers.values()))

    def idle(self) -> bool:
        with self._cond:
            return not self._working()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued job ran and every delivery ended (delivered or given up);
        False if ``timeout`` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._working():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop taking work, finish what is queued for up to ``timeout`` seconds, then stop
        (deliveries still waiting to be retried are abandoned, and logged)."""
        atexit.unregister(self._exit_hook)
        with self._cond:
            self._closing = True
            threads = self._threads
        if not threads:
            return
        if not self.flush(timeout):
            with self._cond:
                left = (len(self._jobs) + len(self._later)
                        + sum(map(len, self._timers.values())))
            log.warning("alert sender closed with %d alerts or jobs not done", left)
        with self._cond:
            self._jobs.clear()
            self._later.clear()
            for timers in self._timers.values():
                timers.clear()
            self._threads = []
            self._cond.notify_all()
        for thread in threads:
            thread.join(self.timeout + 1)

    # --- the sender's thread ---------------------------------------------------------------

    def _stopped(self) -> bool:
        return threading.current_thread() not in self._threads

    def _run_jobs(self) -> None:
        """The rules thread: evaluate each job, claim, hand alerts to the channels' lanes."""
        while True:
            with self._cond:
                while True:
                    if self._stopped():
                        return
                    now = time.monotonic()
                    if self._later and self._later[0][0] <= now:
                        _, _, key, job = heapq.heappop(self._later)
                        break
                    if self._jobs:
                        key, job = self._jobs.popleft()
                        break
                    self._cond.wait(self._later[0][0] - now if self._later else None)
                self._pending.discard(key)
                if key is not None:
                    if len(self._ran) > 10_000:
                        self._ran.clear()
                    self._ran[key] = now
                self._busy.add("")
            try:
                self._dispatch(job)
            except Exception:  # a rule's bug must not stop the sender
                log.exception("alert check failed")
            finally:
                with self._cond:
                    self._busy.discard("")
                    self._cond.notify_all()

    def _run_lane(self, channel: Channel) -> None:
        """One channel's deliveries: a receiver that hangs holds up only its own alerts."""
        client = self._client_factory() if self._client_factory else self._default_client()
        timers = self._timers[channel.name]
        try:
            while True:
                with self._cond:
                    while True:
                        if self._stopped():
                            return
                        now = time.monotonic()
                        if timers and timers[0][0] <= now:
                            _, _, alert, attempt = heapq.heappop(timers)
                            break
                        self._cond.wait(timers[0][0] - now if timers else None)
                    self._busy.add(channel.name)
                try:
                    self._attempt(client, channel, alert, attempt)
                except Exception:  # a format's bug must not stop the lane
                    log.exception("alert delivery to %s failed", channel.name)
                finally:
                    with self._cond:
                        self._busy.discard(channel.name)
                        self._cond.notify_all()
        finally:
            client.close()

    def _default_client(self) -> Any:
        import httpx

        return httpx.Client(timeout=self.timeout, follow_redirects=False)

    def _dispatch(self, job: Job) -> None:
        alerts = list(job())
        # Budget alerts arrive highest threshold first: a channel gets the highest one it
        # wants (spend that jumps from 40 % to 85 % says "80 %", not "50 %" and "80 %").
        first: dict[str, Alert] = {}
        for alert in alerts:
            for channel in self.channels:
                if alert.kind == "budget" and channel.wants(alert):
                    first.setdefault(channel.name, alert)
        for alert in alerts:
            wanted = [c for c in self.channels if c.wants(alert)
                      and (alert.kind != "budget" or first.get(c.name) is alert)]
            if not any(c.wants(alert) for c in self.channels):
                continue
            if not self.claims.claim(alert.mark):
                continue
            self._count("claimed")
            for channel in wanted:
                self._attempt_later(channel, alert, 1, 0.0)

    def _attempt_later(self, channel: Channel, alert: Alert, attempt: int, delay: float) -> None:
        with self._cond:
            heapq.heappush(self._timers[channel.name],
                           (time.monotonic() + delay, next(self._seq), alert, attempt))
            self._cond.notify_all()

    def _attempt(self, client: Any, channel: Channel, alert: Alert, attempt: int) -> None:
        import httpx

        out = channel.request(alert)
        try:
            response = client.post(out.url, content=out.body, headers=dict(out.headers))
            verdict = judge(channel.format, response.status_code, response.content,
                            {k.lower(): v for k, v in response.headers.items()})
        except httpx.HTTPError as exc:
            verdict = Verdict(False, True, f"{type(exc).__name__}: {exc}"[:200])
        if verdict.ok:
            self._count("delivered")
            self.history.append(Outcome("delivered", channel.name, alert.mark, attempt))
            log.info("alert %s delivered to %s", alert.mark, channel.name)
            return
        if verdict.retry and attempt < self.tries:
            self._count("retried")
            self.history.append(Outcome("retrying", channel.name, alert.mark, attempt,
                                        verdict.reason))
            self._attempt_later(channel, alert, attempt + 1,
                                backoff(attempt, self.backoff, self.max_backoff,
                                        verdict.retry_after))
            return
        self._count("gave_up")
        self.history.append(Outcome("gave_up", channel.name, alert.mark, attempt,
                                    verdict.reason))
        message = (f"alert {alert.mark} not delivered to {channel.name} after {attempt} "
                   f"{'try' if attempt == 1 else 'tries'}: {verdict.reason}")
        log.warning("%s", message)
        # Warnings turned into errors must not stop the thread: the log line says it anyway.
        with contextlib.suppress(Warning):
            warnings.warn(message, AlertDeliveryWarning, stacklevel=2)
