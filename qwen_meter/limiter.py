"""A client-side RPM + TPM limiter per (account, model), shared through a store.

DashScope limits requests and tokens (input + output) per minute, per root account and model,
and also rejects bursts within a second. :class:`RateLimiter` keeps callers inside both:
``acquire`` reserves one request and the expected tokens in a sliding 60-second window (and,
with ``smooth``, within the current second); ``reconcile`` corrects the tokens to the real
``total_tokens``; ``release`` gives a failed call's reservation back. Callers wait (sleep or
await, first come first served within a process, up to a timeout) or fail fast with
:class:`~qwen_meter.errors.RateLimited` and its ``retry_after``.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
import warnings
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from .catalogue import Catalogue, default_catalogue
from .errors import NotOffered, RateLimited
from .store import Store, StoreUnavailable, WindowCheck, open_store

if TYPE_CHECKING:
    import asyncio

log = logging.getLogger("qwen_meter.limiter")

FAIL_POLICIES = ("closed", "open")


@dataclass(frozen=True)
class RateLimit:
    """Requests and tokens per minute (None: not limited)."""

    rpm: int | None
    tpm: int | None
    #: published per-second limits (embeddings): enforced per second even without smoothing
    rps: int | None = None
    tps: int | None = None

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm", "rps", "tps"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ValueError(f"{name} must be a positive whole number or None, got {value!r}")


class Permit(NamedTuple):
    """One admitted call: what it holds in the window until reconciled or released."""

    id: int
    account: str
    model: str
    bucket: int
    tokens: int
    degraded: bool = False


_permit_ids = itertools.count(1)


class _FifoGate:
    """Lets waiters try in arrival order (threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[threading.Event] = deque()

    @property
    def idle(self) -> bool:
        return not self._queue

    def enter(self) -> threading.Event:
        event = threading.Event()
        with self._lock:
            self._queue.append(event)
            if self._queue[0] is event:
                event.set()
        return event

    def leave(self, event: threading.Event) -> None:
        with self._lock:
            head = self._queue[0] is event
            self._queue.remove(event)
            if head and self._queue:
                self._queue[0].set()


class _AsyncFifoGate:
    """Lets waiters try in arrival order (asyncio tasks of one loop)."""

    def __init__(self) -> None:
        self._queue: deque[asyncio.Future[None]] = deque()

    def enter(self) -> asyncio.Future[None]:
        import asyncio

        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(future)
        if self._queue[0] is future:
            future.set_result(None)
        return future

    def leave(self, future: asyncio.Future[None]) -> None:
        head = self._queue[0] is future
        self._queue.remove(future)
        if head and self._queue and not self._queue[0].done():
            self._queue[0].set_result(None)


class RateLimiter:
    """RPM + TPM limits for one account, enforced through a :class:`~qwen_meter.store.Store`.

    ``limits`` maps model names to :class:`RateLimit` (or ``(rpm, tpm)``) and overrides the
    catalogue's figures for ``region``; ``default`` applies to models with neither.
    ``on_store_error`` is ``"closed"`` (raise :class:`~qwen_meter.store.StoreUnavailable`) or
    ``"open"`` (admit, warn and mark the permit ``degraded``).
    """

    def __init__(self, store: Store | str | None = None, *, account: str = "default",
                 region: str | None = None,
                 limits: Mapping[str, RateLimit | tuple[int | None, int | None]] | None = None,
                 default: RateLimit | None = None, smooth: bool = True,
                 on_store_error: str = "closed", catalogue: Catalogue | None = None,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep,
                 async_sleep: Callable[[float], Awaitable[None]] | None = None) -> None:
        if on_store_error not in FAIL_POLICIES:
            raise ValueError(f"on_store_error must be 'closed' or 'open', not {on_store_error!r}")
        self.store = store if isinstance(store, Store) else open_store(store)
        self.account = account
        self.region = region
        self.overrides = {name: v if isinstance(v, RateLimit) else RateLimit(*v)
                          for name, v in (limits or {}).items()}
        self.default = default
        self.smooth = smooth
        self.on_store_error = on_store_error
        self.catalogue = catalogue
        self.clock = clock
        self.sleep = sleep
        self.async_sleep = async_sleep  # None: asyncio.sleep, imported when first needed
        self._gates: dict[str, _FifoGate] = {}
        self._async_gates: dict[str, _AsyncFifoGate] = {}
        self._cache: dict[str, RateLimit] = {}
        self._plans: dict[str, tuple[WindowCheck | None, WindowCheck | None, int | None]] = {}

    # --- limits ---------------------------------------------------------------------------

    def limits_for(self, model: str) -> RateLimit:
        """The limits that apply to ``model``: override, catalogue, then ``default``."""
        cached = self._cache.get(model)
        if cached is not None:
            return cached
        limit = self.overrides.get(model)
        if limit is None:
            spec = (self.catalogue or default_catalogue()).resolve(model)
            limit = self.overrides.get(spec.name)
            if limit is None:
                try:
                    known = spec.offer(self.region).rate_limits
                except NotOffered:
                    known = None
                limit = RateLimit(known.rpm, known.tpm, known.rps, known.tps) if known else \
                    (self.default or RateLimit(None, None))
        self._cache[model] = limit
        return limit

    def _keys(self, model: str) -> tuple[str, str]:
        base = f"rl:{self.account}:{model}"
        return f"{base}:req", f"{base}:tok"

    def _plan(self, model: str) -> tuple[WindowCheck | None, WindowCheck | None, int | None]:
        """(request check, token check template, tpm) for a model, computed once."""
        plan = self._plans.get(model)
        if plan is None:
            limit = self.limits_for(model)
            req_key, tok_key = self._keys(model)
            per_second = self.smooth
            requests = None if limit.rpm is None else WindowCheck(
                req_key, limit.rpm, 1, limit.rps or (math.ceil(limit.rpm / 60) if per_second
                                                     else None))
            tokens = None if limit.tpm is None else WindowCheck(
                tok_key, limit.tpm, 0, limit.tps or (math.ceil(limit.tpm / 60) if per_second
                                                     else None))
            plan = self._plans[model] = (requests, tokens, limit.tpm)
        return plan

    def _checks(self, model: str, tokens: int) -> list[WindowCheck]:
        requests, template, tpm = self._plan(model)
        if tpm is not None and tokens > tpm:
            raise RateLimited(f"{tokens} tokens can never fit {model}'s limit of {tpm} "
                              "tokens per minute", retry_after=math.inf)
        checks = [requests] if requests is not None else []
        if template is not None and tokens > 0:
            checks.append(WindowCheck(template.key, template.limit, tokens, template.per_second))
        return checks

    # --- one attempt --------------------------------------------------------------------------

    def _attempt(self, model: str, tokens: int) -> Permit | float:
        """A permit, or the seconds to wait before trying again."""
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
            raise ValueError(f"tokens must be a whole number >= 0, got {tokens!r}")
        checks = self._checks(model, tokens)
        now = self.clock()
        bucket = math.floor(now)
        if not checks:
            return Permit(next(_permit_ids), self.account, model, bucket, tokens)
        try:
            result = self.store.window_acquire(checks, bucket)
        except StoreUnavailable as exc:
            if self.on_store_error == "closed":
                raise
            warnings.warn(f"rate limiter store unavailable, admitting anyway: {exc}",
                          RuntimeWarning, stacklevel=3)
            log.warning("admitted %s (%d tokens) without the store: %s", model, tokens, exc)
            return Permit(next(_permit_ids), self.account, model, bucket, tokens, degraded=True)
        if result.ok:
            used = result.bucket if result.bucket is not None else bucket
            return Permit(next(_permit_ids), self.account, model, used, tokens)
        return max(result.retry_buckets - (now - bucket), 0.001)

    def try_acquire(self, model: str, tokens: int = 0) -> Permit:
        """Admit now or raise :class:`~qwen_meter.errors.RateLimited` (no waiting)."""
        outcome = self._attempt(model, tokens)
        if isinstance(outcome, Permit):
            return outcome
        raise self._refused(model, outcome)

    @staticmethod
    def _refused(model: str, retry_after: float, why: str = "") -> RateLimited:
        return RateLimited(f"{model}: rate limit reached; retry in {retry_after:.3f} s{why}",
                           retry_after=retry_after)

    def acquire(self, model: str, tokens: int = 0, *, timeout: float | None = None,
                wait: bool = True) -> Permit:
        """Reserve one request and ``tokens`` (prompt + the output allowed), waiting if needed.

        Waiters of one process are served in arrival order; ``timeout`` (seconds) bounds
        the wait, after which :class:`~qwen_meter.errors.RateLimited` is raised.
        """
        gate = self._gates.get(model)
        if gate is None:
            gate = self._gates.setdefault(model, _FifoGate())
        if not wait:
            return self.try_acquire(model, tokens)
        if gate.idle:  # nobody queued: no turn to wait for
            outcome = self._attempt(model, tokens)
            if isinstance(outcome, Permit):
                return outcome
        deadline = math.inf if timeout is None else self.clock() + timeout
        event = gate.enter()
        try:
            while not event.wait(0.05):
                if self.clock() >= deadline:
                    raise RateLimited(f"{model}: waited {timeout} s in the queue", retry_after=0)
            while True:
                outcome = self._attempt(model, tokens)
                if isinstance(outcome, Permit):
                    return outcome
                if self.clock() + outcome > deadline:
                    raise self._refused(model, outcome, f" (beyond the {timeout} s timeout)")
                self.sleep(outcome)
        finally:
            gate.leave(event)

    async def acquire_async(self, model: str, tokens: int = 0, *, timeout: float | None = None,
                            wait: bool = True) -> Permit:
        """:meth:`acquire` for asyncio: awaits instead of sleeping."""
        import asyncio

        if not wait:
            return self.try_acquire(model, tokens)
        deadline = math.inf if timeout is None else self.clock() + timeout
        gate = self._async_gates.setdefault(model, _AsyncFifoGate())
        turn = gate.enter()
        try:
            remaining = None if timeout is None else max(deadline - self.clock(), 0)
            try:
                await asyncio.wait_for(asyncio.shield(turn), remaining)
            except asyncio.TimeoutError:
                raise RateLimited(f"{model}: waited {timeout} s in the queue",
                                  retry_after=0) from None
            while True:
                outcome = self._attempt(model, tokens)
                if isinstance(outcome, Permit):
                    return outcome
                if self.clock() + outcome > deadline:
                    raise self._refused(model, outcome, f" (beyond the {timeout} s timeout)")
                await (self.async_sleep or asyncio.sleep)(outcome)
        finally:
            gate.leave(turn)

    # --- after the call -------------------------------------------------------------------

    def reconcile(self, permit: Permit, total_tokens: int) -> Permit:
        """Correct the permit's tokens to what the call really used (input + output)."""
        if isinstance(total_tokens, bool) or not isinstance(total_tokens, int) \
                or total_tokens < 0:
            raise ValueError(f"total_tokens must be a whole number >= 0, got {total_tokens!r}")
        delta = total_tokens - permit.tokens
        limit = self.limits_for(permit.model)
        if delta and limit.tpm is not None and not permit.degraded:
            self._adjust(self._keys(permit.model)[1], permit.bucket, delta)
        return Permit(permit.id, permit.account, permit.model, permit.bucket, total_tokens,
                      permit.degraded)

    def release(self, permit: Permit) -> None:
        """Give back a call that never reached the server (its request and tokens)."""
        if permit.degraded:
            return
        limit = self.limits_for(permit.model)
        req_key, tok_key = self._keys(permit.model)
        if limit.rpm is not None:
            self._adjust(req_key, permit.bucket, -1)
        if limit.tpm is not None and permit.tokens:
            self._adjust(tok_key, permit.bucket, -permit.tokens)

    def _adjust(self, key: str, bucket: int, delta: int) -> None:
        try:
            self.store.window_adjust(key, bucket, delta)
        except StoreUnavailable as exc:
            if self.on_store_error == "closed":
                raise
            log.warning("could not adjust %s by %d: %s", key, delta, exc)

    def usage(self, model: str) -> tuple[int, int]:
        """(requests, tokens) counted in the current window for ``model``."""
        bucket = math.floor(self.clock())
        req_key, tok_key = self._keys(model)
        return self.store.window_sum(req_key, bucket), self.store.window_sum(tok_key, bucket)
