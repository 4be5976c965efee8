"""A client-side RPM + TPM limiter per (account, model), shared through a store.

DashScope limits requests and tokens (input + output) per minute, per root account and model,
and also rejects bursts within a second. :class:`RateLimiter` keeps callers inside both:
``acquire`` reserves one request and the expected tokens in a sliding 60-second window (and,
with ``smooth``, within the current second); ``reconcile`` corrects the tokens to the real
``total_tokens``; ``release`` gives a failed call's reservation back. Callers wait (sleep or
await, first come first served within a process, up to a timeout) or fail fast with
:class:`~qwen_meter.errors.RateLimited` and its ``retry_after``.

The limiter hands its *clock* to the store, which reads it as part of its atomic step and
clamps the second to the newest one it has used (see :mod:`qwen_meter.store.base`): so no thread,
process or clock step can push a window past RPM or TPM. The sync and async methods share one
decision core (``_checks``, ``_decide``, ``_reconcile_plan``, ``_release_plan``) and differ only
in how they call the store.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ...base import checks as check
from ...base.errors import RateLimited, StoreUnavailableWarning
from ...catalogue.core import Catalogue
from ..store import Store, StoreUnavailable, WindowCheck, open_store
from ..store.base import AcquireResult, check_seconds
from .checks import FAIL_POLICIES, check_call, check_limiter_args
from .gates import AsyncFifoGate, FifoGate
from .plans import Plan, resolve_limit, window_keys, window_plan
from .values import Permit, RateLimit, permit_ids

log = logging.getLogger("qwen_meter.limiter")


class RateLimiter:
    """RPM + TPM limits for one account, enforced through a :class:`~qwen_meter.store.Store`.

    ``limits`` maps model names to :class:`RateLimit` (or ``(rpm, tpm)``) and overrides the
    catalogue's figures for ``region``; ``default`` applies to models with neither.
    ``on_store_error`` is ``"closed"`` (raise :class:`~qwen_meter.store.StoreUnavailable`) or
    ``"open"`` (admit, warn, log and mark the permit ``degraded``); the store's circuit breaker
    makes either answer immediate while the store is known to be failing. ``store`` is a
    :class:`~qwen_meter.store.Store`, a URL for :func:`~qwen_meter.store.open_store`, or a
    ready ``redis.Redis`` / ``redis.cluster.RedisCluster`` client.
    """

    def __init__(self, store: Store | str | Any = None, *, account: str = "default",
                 region: str | None = None,
                 limits: Mapping[str, RateLimit | tuple[int | None, int | None]] | None = None,
                 default: RateLimit | None = None, smooth: bool = True,
                 on_store_error: str = "closed", catalogue: Catalogue | None = None,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep,
                 async_sleep: Callable[[float], Awaitable[None]] | None = None) -> None:
        check.choice(on_store_error, FAIL_POLICIES, "RateLimiter(on_store_error=)")
        limits = check_limiter_args(store=store, account=account, region=region, limits=limits,
                                    default=default, smooth=smooth, catalogue=catalogue,
                                    clocks=(("clock", clock), ("sleep", sleep)),
                                    async_sleep=async_sleep)
        self.store = open_store(store)
        self.account = account
        self.region = region
        self.overrides = limits
        self.default = default
        self.smooth = smooth
        self.on_store_error = on_store_error
        self.catalogue = catalogue
        self.clock = clock
        self.sleep = sleep
        self.async_sleep = async_sleep  # None: asyncio.sleep, imported when first needed
        self._gates: dict[str, FifoGate] = {}
        self._async_gates: dict[str, AsyncFifoGate] = {}
        self._cache: dict[str, RateLimit] = {}
        self._key_names: dict[str, tuple[str, str]] = {}
        self._plans: dict[str, Plan] = {}
        self._token_keys: dict[str, str | None] = {}

    # --- limits ---------------------------------------------------------------------------

    def limits_for(self, model: str) -> RateLimit:
        """The limits that apply to ``model``: override, catalogue, then ``default``."""
        check.text(model, "RateLimiter.limits_for(model=)")
        cached = self._cache.get(model)
        if cached is not None:
            return cached
        limit = self._cache[model] = resolve_limit(model, self.overrides, self.catalogue,
                                                   self.region, self.default)
        return limit

    def _keys(self, model: str) -> tuple[str, str]:
        keys = self._key_names.get(model)
        if keys is None:
            keys = self._key_names[model] = window_keys(self.account, model)
        return keys

    def _plan(self, model: str) -> Plan:
        """(request check, token check template, tpm) for a model, computed once."""
        plan = self._plans.get(model)
        if plan is None:
            plan = self._plans[model] = window_plan(self.limits_for(model), *self._keys(model),
                                                    self.smooth)
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

    # --- one attempt: a sync and an async driver around one decision ----------------------

    def _decide(self, model: str, tokens: int, result: AcquireResult | StoreUnavailable
                ) -> Permit | float:
        """A permit, or the seconds to wait before trying again."""
        if isinstance(result, StoreUnavailable):
            if self.on_store_error == "closed":
                raise result
            warnings.warn(f"rate limiter store unavailable, admitting anyway: {result}",
                          StoreUnavailableWarning, stacklevel=4)
            log.warning("admitted %s (%d tokens) without the store: %s", model, tokens, result)
            return Permit(next(permit_ids), self.account, model, math.floor(self.clock()),
                          tokens, degraded=True)
        bucket = result.bucket if result.bucket is not None else math.floor(self.clock())
        if result.ok:
            return Permit(next(permit_ids), self.account, model, bucket, tokens)
        now = result.now if result.now is not None else self.clock()
        # The store may have clamped the second ahead of this clock: wait for that too.
        return max(result.retry_buckets - (now - bucket), 0.001)

    def _attempt(self, model: str, tokens: int) -> Permit | float:
        checks = self._checks(model, tokens)
        if not checks:
            return Permit(next(permit_ids), self.account, model, math.floor(self.clock()),
                          tokens)
        try:
            # The clock itself goes to the store, which reads it inside its atomic step.
            result: AcquireResult | StoreUnavailable = self.store.window_acquire(checks,
                                                                                 self.clock)
        except StoreUnavailable as exc:
            result = exc
        return self._decide(model, tokens, result)

    async def _attempt_async(self, model: str, tokens: int) -> Permit | float:
        checks = self._checks(model, tokens)
        if not checks:
            return Permit(next(permit_ids), self.account, model, math.floor(self.clock()),
                          tokens)
        try:
            result: AcquireResult | StoreUnavailable = await self.store.awindow_acquire(
                checks, self.clock)
        except StoreUnavailable as exc:
            result = exc
        return self._decide(model, tokens, result)

    def try_acquire(self, model: str, tokens: int = 0) -> Permit:
        """Admit now or raise :class:`~qwen_meter.errors.RateLimited` (no waiting)."""
        check_call(model, tokens, True, "try_acquire")
        outcome = self._attempt(model, tokens)
        if isinstance(outcome, Permit):
            return outcome
        raise self._refused(model, outcome)

    @staticmethod
    def _refused(model: str, retry_after: float, why: str = "") -> RateLimited:
        return RateLimited(f"{model}: rate limit reached; retry in {retry_after:.3f} s{why}",
                           retry_after=retry_after)

    def _deadline(self, timeout: float | None) -> float:
        if timeout is None:  # the common call: no check to make
            return math.inf
        seconds = check_seconds(timeout, "timeout", allow_none=True)
        return math.inf if seconds is None else self.clock() + seconds

    def _pause(self, model: str, wait: float, deadline: float, timeout: float | None) -> float:
        """How long to sleep before the next attempt, or RateLimited past the deadline."""
        if self.clock() + wait > deadline:
            raise self._refused(model, wait, f" (beyond the {timeout} s timeout)")
        return wait

    def acquire(self, model: str, tokens: int = 0, *, timeout: float | None = None,
                wait: bool = True) -> Permit:
        """Reserve one request and ``tokens`` (prompt + the output allowed), waiting if needed.

        Waiters of one process are served in arrival order; ``timeout`` (seconds, finite and
        >= 0; None waits without bound) bounds the wait, after which
        :class:`~qwen_meter.errors.RateLimited` is raised. A bad ``timeout`` (NaN, negative,
        infinite, not a number) raises :class:`~qwen_meter.errors.InvalidTimeout`.
        """
        check_call(model, tokens, wait, "acquire")
        deadline = self._deadline(timeout)
        if not wait:
            return self.try_acquire(model, tokens)
        gate = self._gates.get(model)
        if gate is None:
            gate = self._gates.setdefault(model, FifoGate())
        if gate.idle:  # nobody queued: no turn to wait for
            outcome = self._attempt(model, tokens)
            if isinstance(outcome, Permit):
                return outcome
        event = gate.enter()
        try:
            while not event.wait(0.05):
                if self.clock() >= deadline:
                    raise RateLimited(f"{model}: waited {timeout} s in the queue", retry_after=0)
            while True:
                outcome = self._attempt(model, tokens)
                if isinstance(outcome, Permit):
                    return outcome
                self.sleep(self._pause(model, outcome, deadline, timeout))
        finally:
            gate.leave(event)

    async def acquire_async(self, model: str, tokens: int = 0, *, timeout: float | None = None,
                            wait: bool = True) -> Permit:
        """:meth:`acquire` for asyncio: awaits the store and the wait, never blocking the loop."""
        import asyncio

        check_call(model, tokens, wait, "acquire_async")
        deadline = self._deadline(timeout)
        if not wait:
            outcome = await self._attempt_async(model, tokens)
            if isinstance(outcome, Permit):
                return outcome
            raise self._refused(model, outcome)
        gate = self._async_gates.setdefault(model, AsyncFifoGate())
        turn = gate.enter()
        try:
            remaining = None if deadline == math.inf else max(deadline - self.clock(), 0)
            try:
                await asyncio.wait_for(asyncio.shield(turn), remaining)
            except asyncio.TimeoutError:
                raise RateLimited(f"{model}: waited {timeout} s in the queue",
                                  retry_after=0) from None
            while True:
                outcome = await self._attempt_async(model, tokens)
                if isinstance(outcome, Permit):
                    return outcome
                await (self.async_sleep or asyncio.sleep)(
                    self._pause(model, outcome, deadline, timeout))
        finally:
            gate.leave(turn)

    # --- after the call -------------------------------------------------------------------

    def _reconcile_plan(self, permit: Permit, total_tokens: int
                        ) -> tuple[Permit, list[tuple[str, int, int]]]:
        """The reconciled permit and the (key, bucket, delta) adjustments it takes."""
        if type(permit) is not Permit or type(total_tokens) is not int or total_tokens < 0:
            check.instance(permit, Permit, "RateLimiter.reconcile(permit=)",
                           "a Permit from acquire()")
            check.whole(total_tokens, "RateLimiter.reconcile(total_tokens=)")
        delta = total_tokens - permit.tokens
        adjust = []
        if delta and not permit.degraded:
            key = self._token_keys.get(permit.model, "")
            if key == "":  # once per model: its token window key, None if TPM is unlimited
                key = self._token_keys[permit.model] = \
                    self._keys(permit.model)[1] if self._plan(permit.model)[2] is not None \
                    else None
            if key is not None:
                adjust.append((key, permit.bucket, delta))
        return Permit(permit.id, permit.account, permit.model, permit.bucket, total_tokens,
                      permit.degraded), adjust

    def _release_plan(self, permit: Permit) -> list[tuple[str, int, int]]:
        check.instance(permit, Permit, "RateLimiter.release(permit=)", "a Permit from acquire()")
        if permit.degraded:
            return []
        limit = self.limits_for(permit.model)
        req_key, tok_key = self._keys(permit.model)
        adjust = []
        if limit.rpm is not None:
            adjust.append((req_key, permit.bucket, -1))
        if limit.tpm is not None and permit.tokens:
            adjust.append((tok_key, permit.bucket, -permit.tokens))
        return adjust

    def reconcile(self, permit: Permit, total_tokens: int) -> Permit:
        """Correct the permit's tokens to what the call really used (input + output)."""
        reconciled, adjust = self._reconcile_plan(permit, total_tokens)
        self._adjust(adjust)
        return reconciled

    async def reconcile_async(self, permit: Permit, total_tokens: int) -> Permit:
        """:meth:`reconcile` for asyncio."""
        reconciled, adjust = self._reconcile_plan(permit, total_tokens)
        await self._adjust_async(adjust)
        return reconciled

    def release(self, permit: Permit) -> None:
        """Give back a call that never reached the server (its request and tokens)."""
        self._adjust(self._release_plan(permit))

    async def release_async(self, permit: Permit) -> None:
        """:meth:`release` for asyncio."""
        await self._adjust_async(self._release_plan(permit))

    def settle_journaled(self, permit: Mapping[str, Any], total_tokens: int) -> None:
        """Reconcile a permit named by a usage log's journal (an intent's ``permit``: the call
        of a process that died) to ``total_tokens``. Recovery charges a lost call the tokens
        its permit held, so the window needs no change and nothing is adjusted twice when two
        processes recover at once; a different count is applied as a reconcile."""
        held = Permit(int(permit["id"]), str(permit["account"]), str(permit["model"]),
                      int(permit["bucket"]), int(permit["tokens"]), bool(permit.get("degraded")))
        self.reconcile(held, total_tokens)

    def _adjust_failed(self, key: str, delta: int, exc: StoreUnavailable) -> None:
        if self.on_store_error == "closed":
            raise exc
        log.warning("could not adjust %s by %d: %s", key, delta, exc)

    def _adjust(self, adjust: list[tuple[str, int, int]]) -> None:
        for key, bucket, delta in adjust:
            try:
                self.store.window_settle(key, bucket, delta)
            except StoreUnavailable as exc:
                self._adjust_failed(key, delta, exc)

    async def _adjust_async(self, adjust: list[tuple[str, int, int]]) -> None:
        for key, bucket, delta in adjust:
            try:
                await self.store.awindow_settle(key, bucket, delta)
            except StoreUnavailable as exc:
                self._adjust_failed(key, delta, exc)

    @property
    def degraded(self) -> bool:
        """True while the store's circuit breaker is skipping it (admissions are degraded)."""
        return self.store.degraded

    def usage(self, model: str) -> tuple[int, int]:
        """(requests, tokens) counted in the current window for ``model``."""
        check.text(model, "RateLimiter.usage(model=)")
        bucket = math.floor(self.clock())
        req_key, tok_key = self._keys(model)
        return self.store.window_sum(req_key, bucket), self.store.window_sum(tok_key, bucket)
