"""The meter: the pipeline every metered call runs through.

    resolve model → count prompt → pre-flight → cost estimate → budget reservation →
    limiter acquire → (the client's call) → parse usage → cost → commit / reconcile → log

:meth:`Meter.begin` runs everything before the call and returns a :class:`MeteredCall`;
:meth:`MeteredCall.finish` (or :meth:`MeteredCall.fail`) settles it. The adapters in
``qwen_meter.clients`` call these around the real client; :meth:`Meter.wrap` picks one.

Every step has an ``_async`` twin (:meth:`Meter.begin_async`, :meth:`MeteredCall.finish_async`,
:meth:`MeteredCall.fail_async`, :meth:`MeteredCall.retry_async`). Both run the same step code
(:mod:`qwen_meter.steps`): decisions are plain code, and each budget, limiter or log operation
is handed to a driver that either runs it here or awaits it off the event loop.

Settlement never raises: once DashScope has answered, the caller gets the answer whatever
fails afterwards (unparseable usage, a cost the catalogue cannot compute, a store down, the log
unwritable). What failed goes into the record's ``warnings``; each hold is committed or released
exactly once; a record is always produced (and, if the log cannot take it, logged at ERROR level
with its JSON so it is not lost).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from collections import defaultdict, deque
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from ..base.errors import InvalidMessages, QwenMeterError, UnpricedCall
from ..billing.chat_counting import count_completion, count_messages
from ..billing.counting import count_tokens
from ..billing.model_setup import TokenCount
from ..billing.preflight import check_prompt
from ..billing.pricing import Cost, CostEstimate, thinking_applies
from ..billing.request import Request
from ..billing.unlisted import FallbackPrice, Resolved, estimate, price, resolve
from ..billing.usage import Usage
from ..catalogue.core import REGION_ENV, Catalogue, ModelSpec
from ..catalogue.regions import region_for_url
from ..limits.budget import Budget, Reservation
from ..limits.limiter import Permit, RateLimiter
from . import steps
from .adapters import client_adapters
from .attribution import current_attribution
from .log import UsageLog, UsageRecord, open_log, redact
from .observers import Observer, notify
from .server_errors import DashScopeError, RetryPolicy

log = logging.getLogger("qwen_meter.meter")

UNPRICED_POLICIES = ("refuse", "allow")


class UnsupportedClient(QwenMeterError, TypeError):
    """An object :meth:`Meter.wrap` does not know how to meter."""


class Calibration:
    """Learns a constant gap between local prompt counts and the server's, per request shape.

    The shape is (model, system message present, thinking, tools): a server template that adds
    a default system message only when there is none, or an empty think block only in thinking
    mode, gives different gaps for different shapes. A gap seen ``window`` times in a row for
    one shape is applied to later estimates of that shape; any other gap resets it. An applied
    offset never takes an estimate below zero.
    """

    def __init__(self, window: int = 5) -> None:
        self.window = window
        self._seen: dict[Hashable, deque[int]] = defaultdict(lambda: deque(maxlen=window))
        self._offsets: dict[Hashable, int] = {}
        self._warned: set[Hashable] = set()
        self._lock = threading.Lock()

    def offset(self, shape: Hashable) -> int:
        return self._offsets.get(shape, 0)

    def observe(self, shape: Hashable, diff: int) -> None:
        with self._lock:
            seen = self._seen[shape]
            seen.append(diff)
            if diff and shape not in self._warned:
                self._warned.add(shape)
                name = shape[0] if isinstance(shape, tuple) else shape
                warnings.warn(f"{name}: the server counted {diff:+d} prompt tokens against "
                              "qwen_meter's count (stale catalogue template or tokenizer?)",
                              RuntimeWarning, stacklevel=4)
            if len(seen) == self.window and len(set(seen)) == 1:
                self._offsets[shape] = seen[0]


def request_shape(model: str, request: Mapping[str, Any], thinking: bool) -> tuple[Any, ...]:
    """(model, system message present, thinking, tools present): what calibration keys on."""
    messages = request.get("messages")
    first = messages[0] if isinstance(messages, list) and messages else None
    role = first.get("role") if isinstance(first, Mapping) else getattr(first, "role", None)
    return model, role == "system", thinking, bool(request.get("tools"))


@dataclass
class _Plan:
    """Everything :meth:`Meter.begin` decided before touching a store."""

    resolved: Resolved
    model: str
    endpoint: str
    stream: bool
    enable_thinking: bool | None
    prompt: TokenCount
    calibration: int
    shape: tuple[Any, ...]
    region: str
    estimate: CostEstimate | None
    tokens: int
    limiter: RateLimiter | None
    tags: tuple[str, ...]
    user: str | None
    metadata: dict[str, str]
    holds: list[tuple[Budget, Any, str | None]]
    warnings: list[str]
    started: float
    max_tokens: int | None = None


@dataclass
class MeteredCall:
    """One call between :meth:`Meter.begin` and its settlement."""

    meter: Meter
    spec: ModelSpec
    model: str
    endpoint: str
    stream: bool
    enable_thinking: bool | None
    prompt: TokenCount | None
    calibration: int
    estimate: CostEstimate | None
    reservations: list[tuple[Budget, Reservation]]
    permit: Permit | None
    tokens_reserved: int
    started: float
    tags: tuple[str, ...]
    user: str | None
    metadata: dict[str, str]
    region: str = "cn"
    shape: tuple[Any, ...] = ()
    limiter: RateLimiter | None = None
    resolved: Resolved | None = None
    warnings: list[str] = field(default_factory=list)
    attempts: int = 1
    settled: bool = False
    record: UsageRecord | None = None
    max_tokens: int | None = None  # the request's, for observers (gen_ai.request.max_tokens)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def estimated_prompt_tokens(self) -> int | None:
        return None if self.prompt is None else max(0, self.prompt.tokens + self.calibration)

    @property
    def listed(self) -> bool:
        return self.resolved is None or self.resolved.listed

    # --- retries ----------------------------------------------------------------------------

    def next_attempt(self, error: DashScopeError, *, http_status: int | None = None,
                     request_id: str | None = None) -> float | None:
        """After an attempt DashScope refused: the seconds to wait before trying again, or
        None when the call has failed for good (it is then settled, its holds released)."""
        delay = self._retry_delay(error)
        if delay is None:
            self.fail(error, http_status=http_status, request_id=request_id)
        return delay

    async def next_attempt_async(self, error: DashScopeError, *, http_status: int | None = None,
                                 request_id: str | None = None) -> float | None:
        """:meth:`next_attempt` for asyncio."""
        delay = self._retry_delay(error)
        if delay is None:
            await self.fail_async(error, http_status=http_status, request_id=request_id)
        return delay

    def _retry_delay(self, error: DashScopeError) -> float | None:
        policy = self.meter.retry
        if not policy.should_retry(self.attempts, error):
            return None
        delay = policy.delay(self.attempts, error)
        notify(self.meter.observers, "on_retry", self, error, delay)
        return delay

    def retry(self) -> None:
        """Before trying again: a new limiter slot (the failed attempt keeps its request).
        If the limiter refuses, the call is settled (``refused``) and the refusal raised."""
        steps.run(self._retry_steps())

    async def retry_async(self) -> None:
        """:meth:`retry` for asyncio: the limiter wait is awaited."""
        await steps.run_async(self._retry_steps())

    def _retry_steps(self) -> steps.Step[None]:
        self.attempts += 1
        limiter = self.limiter
        if self.permit is None or limiter is None:
            return
        try:
            yield steps.op(limiter, "reconcile", self.permit, 0)
        except Exception as exc:  # the failed attempt's tokens stay counted: too high, not lost
            self.warnings.append(f"limiter reconcile failed: {exc}")
        self.permit = None
        try:
            self.permit = yield steps.op(limiter, "acquire", self.model_key, self.tokens_reserved,
                                         timeout=self.meter.timeout, wait=self.meter.wait)
        except BaseException as exc:
            yield from self._fail_steps(exc, http_status=None, request_id=None, status="refused")
            raise

    @property
    def model_key(self) -> str:
        """The name the limiter counts this call under."""
        return self.spec.name if self.listed else self.model

    # --- settlement -------------------------------------------------------------------------

    def finish(self, usage: Usage | Mapping[str, Any] | Any | None, *,
               served_model: str | None = None, request_id: str | None = None,
               reply: Any = None, http_status: int | None = 200,
               status: str = "ok") -> UsageRecord:
        """Settle a call that returned: reconcile, commit, log. Never raises.

        Without ``usage`` (or with usage that does not parse) the reply (text or message) is
        counted locally and the record is marked estimated. ``status`` says how a stream
        ended: ``ok``, ``incomplete`` (no usage, or no final ``finish_reason``), ``closed``
        (the caller stopped early) or ``dropped`` (the connection failed)."""
        return steps.run(self._finish_steps(usage, served_model, request_id, reply,
                                            http_status, status))

    async def finish_async(self, usage: Usage | Mapping[str, Any] | Any | None, *,
                           served_model: str | None = None, request_id: str | None = None,
                           reply: Any = None, http_status: int | None = 200,
                           status: str = "ok") -> UsageRecord:
        """:meth:`finish` for asyncio: store and log I/O run off the event loop. Shielded:
        a caller cancelled meanwhile does not stop the settlement half-way."""
        return await _shielded(self._finish_steps(usage, served_model, request_id, reply,
                                                  http_status, status))

    def fail(self, error: BaseException | DashScopeError, *, http_status: int | None = None,
             request_id: str | None = None, status: str = "error") -> UsageRecord:
        """Settle a call that finally failed: release everything, log the error."""
        return steps.run(self._fail_steps(error, http_status=http_status,
                                          request_id=request_id, status=status))

    async def fail_async(self, error: BaseException | DashScopeError, *,
                         http_status: int | None = None, request_id: str | None = None,
                         status: str = "error") -> UsageRecord:
        """:meth:`fail` for asyncio (shielded like :meth:`finish_async`)."""
        return await _shielded(self._fail_steps(error, http_status=http_status,
                                                request_id=request_id, status=status))

    def _claim(self) -> bool:
        """True for the one settlement that may run; any later one returns the first record."""
        with self._lock:
            if self.settled:
                return False
            self.settled = True
            return True

    def _finish_steps(self, usage: Any, served_model: str | None, request_id: str | None,
                      reply: Any, http_status: int | None, status: str
                      ) -> steps.Step[UsageRecord]:
        if not self._claim():
            return self._settled_record()
        notes = self.warnings
        parsed, estimated = self._usage(usage, reply, notes)
        thinking = None
        if estimated and self.enable_thinking is not None:
            thinking = bool(self.enable_thinking and parsed.reasoning_tokens)
        priced, note = price(parsed, self.spec, self.region, thinking=thinking,
                             fallback=self.meter.fallback_price)
        if note:
            notes.append(note)
        diff = None
        if not estimated and self.prompt is not None and self.prompt.exact \
                and self.endpoint in ("chat", "responses"):
            diff = parsed.prompt_tokens - self.prompt.tokens
            if self.meter.calibration is not None:
                self.meter.calibration.observe(self.shape, diff)
        degraded = False
        for budget, reservation in self.reservations:
            try:
                # Unpriced: keep the reserved amount as spend rather than count it free.
                yield steps.op(budget, "commit", reservation,
                               priced if priced.amount is not None else None)
            except Exception as exc:
                degraded = True
                notes.append(f"budget {budget.name!r} commit failed: {redact(str(exc))}")
        if self.permit is not None and self.limiter is not None:
            try:
                yield steps.op(self.limiter, "reconcile", self.permit, parsed.total_tokens)
            except Exception as exc:
                degraded = True
                notes.append(f"limiter reconcile failed: {redact(str(exc))}")
        record = self._record(status=status, usage=parsed, estimated=estimated, cost_=priced,
                              served_model=served_model, request_id=request_id, diff=diff,
                              http_status=http_status, degraded=degraded)
        return (yield from self.meter._write_steps(record, self))

    def _fail_steps(self, error: BaseException, *, http_status: int | None,
                    request_id: str | None, status: str) -> steps.Step[UsageRecord]:
        if not self._claim():
            return self._settled_record()
        degraded = False
        for budget, reservation in self.reservations:
            try:
                yield steps.op(budget, "release", reservation)
            except Exception as exc:
                degraded = True
                self.warnings.append(f"budget {budget.name!r} release failed: "
                                     f"{redact(str(exc))}")
        if self.permit is not None and self.limiter is not None:
            try:
                yield steps.op(self.limiter, "release", self.permit)
            except Exception as exc:
                degraded = True
                self.warnings.append(f"limiter release failed: {redact(str(exc))}")
        kind = getattr(error, "kind", type(error).__name__)
        record = self._record(status=status, usage=None, estimated=False, cost_=None,
                              served_model=None, request_id=request_id, diff=None,
                              http_status=http_status if http_status is not None
                              else getattr(error, "status", None),
                              error=redact(str(error) or type(error).__name__),
                              error_kind=kind, degraded=degraded)
        return (yield from self.meter._write_steps(record, self))

    def _settled_record(self) -> UsageRecord:
        # A second settlement (a stream closed after it ended ...) changes nothing.
        if self.record is None:  # the first is still running in another thread
            raise RuntimeError("call is being settled")
        return self.record

    def _usage(self, usage: Any, reply: Any, notes: list[str]) -> tuple[Usage, bool]:
        if usage is not None:
            try:
                return Usage.parse(usage), False
            except QwenMeterError as exc:  # odd usage: count it ourselves, say so
                notes.append(f"usage not parsed ({exc}); counted locally")
        prompt = self.estimated_prompt_tokens or 0
        completion = 0
        reasoning = 0
        if reply is not None and self.endpoint != "embeddings":
            resolved = self.resolved
            name = resolved.count_as if resolved else self.spec.name
            backend = resolved.backend if resolved else None
            try:
                counted = count_completion(reply, name, enable_thinking=self.enable_thinking,
                                           backend=backend)
                completion = counted.tokens
                text = reply.get("reasoning_content") if isinstance(reply, Mapping) else None
                if text:
                    reasoning = count_completion({"reasoning_content": text}, name,
                                                 backend=backend).tokens
            except QwenMeterError as exc:
                notes.append(f"reply not counted: {exc}")
        return Usage(prompt_tokens=prompt, completion_tokens=completion,
                     reasoning_tokens=min(reasoning, completion)), True

    def _record(self, *, status: str, usage: Usage | None, estimated: bool, cost_: Cost | None,
                served_model: str | None, request_id: str | None, diff: int | None,
                http_status: int | None, error: str | None = None,
                error_kind: str | None = None, degraded: bool = False) -> UsageRecord:
        estimate_ = self.estimate
        return UsageRecord(
            model=self.model, request_id=request_id, served_model=served_model,
            region=self.region, endpoint=self.endpoint, stream=self.stream,
            status=status, error=error, error_kind=error_kind, http_status=http_status,
            attempts=self.attempts,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            total_tokens=usage.total_tokens if usage else 0,
            cached_tokens=usage.cached_tokens if usage else 0,
            reasoning_tokens=usage.reasoning_tokens if usage else 0,
            image_tokens=usage.image_tokens if usage else 0,
            audio_tokens=usage.audio_tokens if usage else 0,
            usage_estimated=estimated,
            estimated_prompt_tokens=self.estimated_prompt_tokens,
            estimate_exact=None if self.prompt is None else self.prompt.exact,
            calibration=self.calibration, prompt_diff=diff,
            estimated_cost_low=_money(estimate_.low.amount) if estimate_ else None,
            estimated_cost_high=_money(estimate_.high.amount) if estimate_ else None,
            cost=_money(cost_.amount) if cost_ else None,
            currency=cost_.currency if cost_ else (estimate_.currency if estimate_ else None),
            unpriced=(cost_.unpriced or None) if cost_ else None,
            latency_ms=round((time.perf_counter() - self.started) * 1000, 3),
            tags=self.tags, user=self.user, metadata=self.metadata,
            warnings=tuple(self.warnings), degraded=degraded)


async def _shielded(step: steps.Step[UsageRecord]) -> UsageRecord:
    import asyncio

    return await asyncio.shield(steps.run_async(step))


class _DefaultLog:
    """The meter's ``log`` when not given: see :func:`default_log_path`."""


DEFAULT_LOG = _DefaultLog()


def default_log_path() -> Path:
    """Where a meter logs when not told: $QWEN_METER_LOG, else the user's data folder
    (platformdirs: ``$XDG_DATA_HOME/qwen_meter`` or ``~/.local/share/qwen_meter`` on Linux,
    ``~/Library/Application Support/qwen_meter`` on macOS, ``%LOCALAPPDATA%\\qwen_meter`` on
    Windows)."""
    if os.environ.get("QWEN_METER_LOG"):
        return Path(os.environ["QWEN_METER_LOG"])
    from platformdirs import user_data_path  # imported here: only a default log needs it

    return user_data_path("qwen_meter", appauthor=False) / "usage.jsonl"


def _money(amount: Decimal | None) -> str | None:
    return None if amount is None else f"{amount.normalize():f}"


def _check_meter_args(*, region: Any, catalogue: Any, limiter: Any, budget: Any, log: Any,
                      flags: Mapping[str, Any], timeout: Any, retry: Any, tags: Any, user: Any,
                      observers: Any, unpriced: Any, fallback_price: Any) -> None:
    """Types and values of Meter()'s arguments, each error naming the argument."""
    from ..base import checks as check
    from ..catalogue.checks import catalogue_object
    from ..limits.store.base import check_seconds

    check.optional_text(region, "Meter(region=)")
    catalogue_object(catalogue, "Meter(catalogue=)")
    check.optional_instance(limiter, RateLimiter, "Meter(limiter=)", "a RateLimiter")
    if budget is not None and not isinstance(budget, Budget):
        check.sequence(budget, "Meter(budget=)")
        for n, item in enumerate(budget):
            check.instance(item, Budget, f"Meter(budget[{n}]=)", "a Budget")
    if log is not None and not isinstance(log, (str, os.PathLike, UsageLog, _DefaultLog)):
        raise check.type_error("Meter(log=)", "a path, a UsageLog or None", log)
    for name, value in flags.items():
        check.flag(value, f"Meter({name}=)")
    check_seconds(timeout, "Meter(timeout=)", allow_none=True)
    check.optional_instance(retry, RetryPolicy, "Meter(retry=)", "a RetryPolicy")
    check.sequence(tags, "Meter(tags=)")
    for n, tag in enumerate(tags):
        check.text(tag, f"Meter(tags[{n}]=)")
    check.optional_text(user, "Meter(user=)")
    check.sequence(observers, "Meter(observers=)")
    for n, observer in enumerate(observers):
        check.instance(observer, Observer, f"Meter(observers[{n}]=)", "an Observer")
    if unpriced not in UNPRICED_POLICIES:
        from ..base.errors import ConfigurationError

        raise ConfigurationError(f"Meter(unpriced=): must be 'refuse' or 'allow', not "
                                 f"{unpriced!r}")
    check.optional_instance(fallback_price, FallbackPrice, "Meter(fallback_price=)",
                            "a FallbackPrice")


class Meter:
    """Checks, limits, prices and logs every call of the clients it wraps.

    ``limiter`` and ``budget`` are optional (a budget or a list of them); ``log`` is a path
    (``.jsonl``, or ``.db`` for SQLite), a :class:`~qwen_meter.log.UsageLog`, or None; by
    default ``$QWEN_METER_LOG``, else ``usage.jsonl`` in the user's data folder
    (see :func:`default_log_path`: the platform's user data folder) — never the working folder.
    Every argument is checked here, each bad one named (``Meter(tags=)``).
    ``preflight`` checks limits before sending; ``wait`` lets the limiter wait for a slot
    (else it raises at once); ``calibrate`` learns systematic prompt-count gaps.

    ``region``: when given, every call is priced and limited there; otherwise each call's
    region comes from the client's endpoint (``dashscope-intl.aliyuncs.com`` → ``intl``), then
    ``$QWEN_METER_REGION``, then ``cn``.

    ``unpriced``: what to do, under a hard budget, with a call the catalogue cannot price (an
    unknown model, a model not offered in the region): ``"refuse"`` (default — raise
    :class:`UnpricedCall` before sending, naming the fixes) or ``"allow"`` (send it, hold
    nothing, record it unpriced). ``fallback_price`` (:class:`~qwen_meter.unlisted.FallbackPrice`)
    prices such calls instead. Without a hard budget they always go through.

    ``record_refused``: calls refused before sending (budget, rate limit, pre-flight, unpriced)
    are recorded with status ``refused`` and the reason; False turns that off.

    Attribution of a call: ``user`` is the ``user=`` argument of :meth:`begin`, else the
    request's own ``user`` field, else the innermost :func:`~qwen_meter.attribute` block's,
    else this meter's ``user``. Tags add up (meter, blocks, call); metadata merges (meter
    blocks, then the request's ``metadata`` field, later wins).
    """

    def __init__(self, *, region: str | None = None, catalogue: Catalogue | None = None,
                 limiter: RateLimiter | None = None,
                 budget: Budget | Sequence[Budget] | None = None,
                 log: str | os.PathLike[str] | UsageLog | _DefaultLog | None = DEFAULT_LOG,
                 preflight: bool = True, wait: bool = True, timeout: float | None = None,
                 retry: RetryPolicy | None = None, calibrate: bool = True,
                 tags: Sequence[str] = (), user: str | None = None,
                 observers: Sequence[Observer] = (), unpriced: str = "refuse",
                 fallback_price: FallbackPrice | None = None,
                 record_refused: bool = True) -> None:
        _check_meter_args(region=region, catalogue=catalogue, limiter=limiter, budget=budget,
                          log=log, flags={"preflight": preflight, "wait": wait,
                                          "calibrate": calibrate,
                                          "record_refused": record_refused},
                          timeout=timeout, retry=retry, tags=tags, user=user,
                          observers=observers, unpriced=unpriced,
                          fallback_price=fallback_price)
        self.region = region
        self.catalogue = catalogue
        self.limiter = limiter
        self.budgets = [] if budget is None else [budget] if isinstance(budget, Budget) \
            else list(budget)
        self.log = open_log(default_log_path() if isinstance(log, _DefaultLog) else log)
        self.preflight = preflight
        self.wait = wait
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.calibration = Calibration() if calibrate else None
        self.tags = tuple(tags)
        self.user = user
        self.observers: list[Observer] = list(observers)
        self.unpriced = unpriced
        self.fallback_price = fallback_price
        self.record_refused = record_refused
        self._limiters: dict[str, RateLimiter] = {}

    def add_observer(self, observer: Observer) -> None:
        """See every call from now on (OpenTelemetry, Prometheus, logging integrations)."""
        self.observers.append(observer)

    # --- the pipeline -----------------------------------------------------------------------

    def resolve(self, model: Any) -> ModelSpec:
        """The spec the meter uses for ``model`` (a stand-in for names the catalogue lacks)."""
        return self._resolve(model).spec

    def _resolve(self, model: Any) -> Resolved:
        if not isinstance(model, str) or not model.strip():
            raise InvalidMessages(f"the request names no model ({model!r})")
        return resolve(model, self.catalogue)

    def region_of(self, url: Any = None, region: str | None = None) -> str:
        """The region a call is priced and limited in (see the class docs)."""
        return (region or self.region or region_for_url(url, self.catalogue)
                or os.environ.get(REGION_ENV) or "cn")

    def limiter_for(self, region: str) -> RateLimiter | None:
        """The limiter for calls in ``region``: the configured one, or — for a region other
        than the one it was set up for — a sibling on the same store with that region's
        catalogue limits, counted under its own account (``<account>@<region>``), since each
        region has its own quota."""
        limiter = self.limiter
        if limiter is None:
            return None
        home = limiter.region or os.environ.get(REGION_ENV) or "cn"
        if region == home:
            return limiter
        sibling = self._limiters.get(region)
        if sibling is None:
            sibling = RateLimiter(limiter.store, account=f"{limiter.account}@{region}",
                                  region=region, limits=limiter.overrides,
                                  default=limiter.default, smooth=limiter.smooth,
                                  on_store_error=limiter.on_store_error,
                                  catalogue=limiter.catalogue, clock=limiter.clock,
                                  sleep=limiter.sleep, async_sleep=limiter.async_sleep)
            sibling = self._limiters.setdefault(region, sibling)
        return sibling

    def begin(self, request: Mapping[str, Any], *, endpoint: str = "chat",
              tags: Sequence[str] = (), user: str | None = None, region: str | None = None,
              url: Any = None) -> MeteredCall:
        """Everything before the call: raises before anything is sent if it may not go.

        ``url`` is the endpoint the client sends to (its region is used unless the meter or
        ``region=`` names one). A refusal is recorded (status ``refused``) and raised."""
        plan = self._plan_or_refusal(request, endpoint, tags, user, region, url)
        if not isinstance(plan, _Plan):
            steps.run(self._write_refusal(plan, request, endpoint, region, url))
            raise plan
        return steps.run(self._begin_steps(plan))

    async def begin_async(self, request: Mapping[str, Any], *, endpoint: str = "chat",
                          tags: Sequence[str] = (), user: str | None = None,
                          region: str | None = None, url: Any = None) -> MeteredCall:
        """:meth:`begin` for asyncio: the limiter wait is awaited, store I/O runs off the
        loop. Counting stays on the loop (pure CPU, cached; in a worker thread it would only
        fight the loop for the GIL); the first call of a model loads its tokenizer, so warm
        it at startup (``qm.count_tokens("", model)``) where that first stall matters."""
        plan = self._plan_or_refusal(request, endpoint, tags, user, region, url)
        if not isinstance(plan, _Plan):
            await steps.run_async(self._write_refusal(plan, request, endpoint, region, url))
            raise plan
        return await steps.run_async(self._begin_steps(plan))

    def _plan_or_refusal(self, request: Mapping[str, Any], endpoint: str,
                         tags: Sequence[str], user: str | None, region: str | None,
                         url: Any) -> _Plan | QwenMeterError:
        try:
            return self._plan(request, endpoint, tags, user, region, url)
        except QwenMeterError as exc:
            return exc

    def _write_refusal(self, exc: QwenMeterError, request: Any, endpoint: str,
                       region: str | None, url: Any) -> steps.Step[None]:
        """Record a call refused while planning (before any hold was taken)."""
        if self.record_refused:
            model = request.get("model") if isinstance(request, Mapping) else None
            record = self._refused_record(exc, model=str(model) if model else "",
                                          endpoint=endpoint, region=self.region_of(url, region),
                                          plan=None)
            yield from self._write_steps(record, None)

    def _plan(self, request: Mapping[str, Any], endpoint: str, tags: Sequence[str],
              user: str | None, region: str | None, url: Any) -> _Plan:
        """The pure part of begin: what to count, check, hold and where (no store touched)."""
        started = time.perf_counter()
        if not isinstance(request, Mapping):
            raise InvalidMessages(f"a request must be a mapping, not {type(request).__name__}")
        model = request.get("model")
        resolved = self._resolve(model)
        spec = resolved.spec
        notes = [resolved.note] if resolved.note else []
        where = self.region_of(url, region)
        enable_thinking = request.get("enable_thinking")
        chat_like = endpoint in ("chat", "responses")
        if chat_like and "messages" not in request:
            raise InvalidMessages("the request has no messages")
        max_tokens = None if endpoint == "embeddings" else Request.of(  # validated
            {**request, "messages": request.get("messages", [])}).max_tokens
        context = current_attribution()
        own_user = request.get("user") if isinstance(request.get("user"), str) else None
        user = user or own_user or context.user or self.user
        own_metadata = request.get("metadata")
        metadata = {**context.metadata, **({str(k): str(v) for k, v in own_metadata.items()}
                                           if isinstance(own_metadata, Mapping) else {})}
        prompt = self._count(request, resolved, endpoint, enable_thinking)
        thinking = thinking_applies(spec, enable_thinking) if resolved.listed else \
            bool(enable_thinking)
        shape = request_shape(spec.name, request, thinking)
        calibration = self.calibration.offset(shape) if self.calibration else 0
        if self.preflight and endpoint != "embeddings" and where in spec.offers:
            check_prompt(prompt, spec, max_tokens=max_tokens, enable_thinking=enable_thinking,
                         region=where)
        reserve_tokens = max(0, prompt.tokens + calibration)
        found, unpriced = estimate(reserve_tokens, spec, where, endpoint=endpoint,
                                   max_tokens=max_tokens, enable_thinking=enable_thinking,
                                   fallback=self.fallback_price)
        all_tags = (*self.tags, *context.tags, *tags)
        holds: list[tuple[Budget, Any, str | None]] = []
        for budget in self.budgets:
            key = None if budget.scope == "global" else (
                user if budget.scope == "user" else
                next((t for t in all_tags if t.startswith(f"{budget.scope}=")), None))
            if found is None and budget.mode == "hard" and self.unpriced == "refuse":
                raise UnpricedCall(
                    f"{model}: cannot be priced in region {where!r} ({unpriced}), and "
                    f"budget {budget.name!r} is hard. Fix: add the model's price in a "
                    "catalogue override file ($QWEN_METER_CATALOGUE), or pass "
                    "Meter(fallback_price=FallbackPrice(input, output, currency)) with "
                    "max_tokens on the request, or Meter(unpriced='allow') to let "
                    "unpriced calls through uncounted")
            if found is None:
                notes.append(f"budget {budget.name!r}: unpriced call not counted ({unpriced})")
            holds.append((budget, found if found is not None else Decimal(0), key))
        # The limiter holds prompt + the output allowed (the request's max_tokens when the
        # catalogue cannot say), corrected to the real total at settlement.
        output = (found.max_output_tokens if found else None) or max_tokens or 0
        tokens = reserve_tokens + (output if endpoint != "embeddings" else 0)
        limiter = self.limiter_for(where)
        if limiter is not None and not resolved.listed and str(model) not in limiter.overrides \
                and not (limiter.default is not None and resolved.backend is None):
            # No limits known for it: nothing to check or count against. (A name-rule match
            # resolves in the limiter, so its ``default`` limits apply; a name nothing matches
            # is limited only by ``limits={name: ...}``.)
            limiter = None
        return _Plan(resolved, str(model), endpoint, bool(request.get("stream")),
                     enable_thinking, prompt, calibration, shape, where, found, tokens, limiter,
                     all_tags, user, metadata, holds, notes, started, max_tokens)

    def _begin_steps(self, plan: _Plan) -> steps.Step[MeteredCall]:
        reservations: list[tuple[Budget, Reservation]] = []
        permit = None
        try:
            for budget, amount, key in plan.holds:
                reservations.append((budget, (yield steps.op(budget, "reserve", amount,
                                                             key=key))))
            if plan.limiter is not None:
                name = plan.resolved.spec.name if plan.resolved.listed else plan.model
                permit = yield steps.op(plan.limiter, "acquire", name, plan.tokens,
                                        timeout=self.timeout, wait=self.wait)
        except BaseException as exc:
            for budget, reservation in reservations:
                try:
                    yield steps.op(budget, "release", reservation)
                except Exception as inner:  # the hold expires with its lease
                    log.warning("could not release %s: %s", budget.name, inner)
            if isinstance(exc, QwenMeterError):
                yield from self._refused_steps(exc, plan)
            raise
        call = MeteredCall(self, plan.resolved.spec, plan.model, plan.endpoint, plan.stream,
                           plan.enable_thinking, plan.prompt, plan.calibration, plan.estimate,
                           reservations, permit, plan.tokens, plan.started, plan.tags, plan.user,
                           plan.metadata, region=plan.region, shape=plan.shape,
                           limiter=plan.limiter, resolved=plan.resolved,
                           warnings=list(plan.warnings), max_tokens=plan.max_tokens)
        notify(self.observers, "on_begin", call)
        return call

    def _refused_record(self, exc: BaseException, *, model: str, endpoint: str, region: str,
                        plan: _Plan | None) -> UsageRecord:
        context = current_attribution()
        return UsageRecord(
            model=model, region=region, endpoint=endpoint,
            stream=plan.stream if plan else False, status="refused",
            error=redact(str(exc) or type(exc).__name__), error_kind=type(exc).__name__,
            attempts=0,
            estimated_prompt_tokens=max(0, plan.prompt.tokens + plan.calibration)
            if plan else None,
            estimate_exact=plan.prompt.exact if plan else None,
            estimated_cost_low=_money(plan.estimate.low.amount) if plan and plan.estimate
            else None,
            estimated_cost_high=_money(plan.estimate.high.amount) if plan and plan.estimate
            else None,
            currency=plan.estimate.currency if plan and plan.estimate else None,
            tags=plan.tags if plan else (*self.tags, *context.tags),
            user=plan.user if plan else (context.user or self.user),
            metadata=plan.metadata if plan else dict(context.metadata),
            warnings=tuple(plan.warnings) if plan else ())

    def _refused_steps(self, exc: BaseException, plan: _Plan) -> steps.Step[None]:
        if self.record_refused:
            record = self._refused_record(exc, model=plan.model, endpoint=plan.endpoint,
                                          region=plan.region, plan=plan)
            yield from self._write_steps(record, None)

    def _write_steps(self, record: UsageRecord, call: MeteredCall | None
                     ) -> steps.Step[UsageRecord]:
        """Write a record; a log that fails loses nothing (ERROR log line with the JSON)."""
        if self.log is not None:
            try:
                yield steps.op(self.log, "append", record)
            except Exception as exc:
                record = replace(record, warnings=(*record.warnings,
                                                   f"usage log write failed: {exc}"))
                log.error("usage record not written to the log (%s): %s", exc,
                          record.to_json())
        if call is not None:
            call.record = record
        notify(self.observers, "on_record", record, call)
        return record

    def _count(self, request: Mapping[str, Any], resolved: Resolved, endpoint: str,
               enable_thinking: bool | None) -> TokenCount:
        name, backend = resolved.count_as, resolved.backend
        if endpoint not in ("chat", "responses"):  # embeddings, /completions prompts
            texts = request.get("input", request.get("prompt"))
            texts = [texts] if isinstance(texts, str) else texts
            if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                raise InvalidMessages(f"{endpoint} input must be a string or a list of strings")
            counts = [count_tokens(t, name, backend=backend) for t in texts]
            extra = 1 if endpoint == "embeddings" else 0  # each text + <|endoftext|>
            counted = TokenCount(sum(c.tokens + extra for c in counts),
                                 all(c.exact for c in counts),
                                 counts[0].backend if counts else "tiktoken",
                                 resolved.spec.family)
        else:
            counted = count_messages(request["messages"], name, tools=request.get("tools"),
                                     enable_thinking=enable_thinking, backend=backend,
                                     high_resolution=bool(
                                         request.get("vl_high_resolution_images")))
        if not resolved.listed and counted.exact:  # a name rule's guess is not exact
            counted = replace(counted, exact=False,
                              notes=(*counted.notes, "model not in the catalogue"))
        return counted

    # --- adapters ------------------------------------------------------------------------

    def wrap(self, client: Any) -> Any:
        """The same client, metered: ``openai.OpenAI`` / ``AsyncOpenAI``, ``dashscope.Generation``
        / ``AioGeneration`` / ``MultiModalConversation`` / ``AioMultiModalConversation`` /
        ``TextEmbedding``, or an ``httpx.Client`` / ``AsyncClient`` (httpx or httpx2)."""
        return client_adapters().wrap(self, client)

    def httpx_client(self, **kwargs: Any) -> Any:
        """A metered ``httpx.Client`` (for LangChain's ``http_client=`` and other SDKs)."""
        return client_adapters().metered_client(self, **kwargs)

    def httpx_async_client(self, **kwargs: Any) -> Any:
        """A metered ``httpx.AsyncClient``."""
        return client_adapters().metered_async_client(self, **kwargs)

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
