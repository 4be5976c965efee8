"""One metered call, from :meth:`Meter.begin <qwen_meter.meter.pipeline.Meter.begin>` to its
settlement.

A :class:`MeteredCall` carries what begin decided and took (the estimate, the budget
reservations, the limiter permit); :meth:`MeteredCall.retry` takes a new limiter slot between
attempts, and :meth:`MeteredCall.finish` / :meth:`MeteredCall.fail` settle it: commit or
release each hold exactly once and produce the one usage record. Each has an ``_async`` twin
running the same step code (:mod:`qwen_meter.meter.steps`).

Settlement never raises: once DashScope has answered, the caller gets the answer whatever
fails afterwards (unparseable usage, a cost the catalogue cannot compute, a store down, the log
unwritable). What failed goes into the record's ``warnings``; each hold is committed or released
exactly once; a record is always produced (and, if the log cannot take it, logged at ERROR level
with its JSON so it is not lost).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..base.errors import QwenMeterError
from ..billing.chat_counting import count_completion
from ..billing.model_setup import TokenCount
from ..billing.pricing import Cost, CostEstimate
from ..billing.unlisted import Resolved, price
from ..billing.usage import Usage
from ..catalogue.records import ModelSpec
from ..limits.budget import Budget, Reservation
from ..limits.budget.values import new_reservation_id
from ..limits.limiter import Permit, RateLimiter
from . import steps
from .log import SCHEMA_VERSION, UsageRecord, redact
from .observers import notify
from .outcomes import Flag, Outcomes, held_note, permit_note, settled_shielded
from .server_errors import DashScopeError

if TYPE_CHECKING:
    from .pipeline import Meter


@dataclass
class MeteredCall(Outcomes):
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
    #: for observers: the request's sampling parameters and the server it goes to
    request_params: dict[str, Any] = field(default_factory=dict)
    #: for observers: the answer's finish reasons (set by the client when it finishes)
    finish_reasons: tuple[str, ...] = ()
    #: the call's id: its journal intent's and its record's (32 hex digits: a random prefix
    #: for this process and a counter, as reservation ids; no os.urandom call per call)
    id: str = field(default_factory=new_reservation_id)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    #: set once the settlement's record exists (or the call was abandoned without one)
    recorded: Flag = field(default_factory=lambda: Flag(), repr=False)
    _estimated_costs: tuple[str | None, str | None] | None = field(default=None, repr=False)

    @property
    def estimated_prompt_tokens(self) -> int | None:
        return None if self.prompt is None else max(0, self.prompt.tokens + self.calibration)

    @property
    def estimated_costs(self) -> tuple[str | None, str | None]:
        """The estimate's low and high ends as the journal's intent and the record write them
        (formatted once per call; a plain attribute, as ``functools.cached_property`` takes a
        lock on every read in Python 3.11)."""
        costs = self._estimated_costs
        if costs is None:
            estimate_ = self.estimate
            costs = (None, None) if estimate_ is None else (_money(estimate_.low.amount),
                                                             _money(estimate_.high.amount))
            self._estimated_costs = costs
        return costs

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
            self.permit = yield steps.wait(limiter, "acquire", self.model_key,
                                           self.tokens_reserved, timeout=self.meter.timeout,
                                           wait=self.meter.wait)
        except BaseException as exc:
            # Refused, or the caller gave up waiting: the attempts so far were error answers
            # (not billed), so the holds are released.
            status = "refused" if isinstance(exc, QwenMeterError) else "error"
            yield from self._fail_steps(exc, http_status=None, request_id=None, status=status)
            raise

    @property
    def model_key(self) -> str:
        """The name the limiter counts this call under."""
        return self.spec.name if self.listed else self.model

    # --- settlement -------------------------------------------------------------------------

    def finish(self, usage: Usage | Mapping[str, Any] | Any | None, *,
               served_model: str | None = None, request_id: str | None = None,
               reply: Any = None, http_status: int | None = 200,
               status: str = "ok", finish_reasons: Sequence[str] = (),
               error: str | None = None) -> UsageRecord:
        """Settle a call that returned: reconcile, commit, log. Never raises.

        Without ``usage`` (or with usage that does not parse) the reply (text or message) is
        counted locally and the record is marked estimated. ``status`` says how a stream
        ended: ``ok``, ``incomplete`` (no usage, or no final ``finish_reason``), ``closed``
        (the caller stopped early), ``dropped`` (the connection failed) or ``unknown`` (an
        answer that says nothing of what was billed; ``error`` says why): with neither usage
        nor reply, an ``unknown`` call is charged at the pre-call estimate (prompt plus the
        output it allowed), since the server may have billed it."""
        self.finish_reasons = tuple(finish_reasons) or self.finish_reasons
        return steps.run(self._finish_steps(usage, served_model, request_id, reply,
                                            http_status, status, error))

    async def finish_async(self, usage: Usage | Mapping[str, Any] | Any | None, *,
                           served_model: str | None = None, request_id: str | None = None,
                           reply: Any = None, http_status: int | None = 200,
                           status: str = "ok", finish_reasons: Sequence[str] = (),
                           error: str | None = None) -> UsageRecord:
        """:meth:`finish` for asyncio: store and log I/O run off the event loop. Shielded:
        a caller cancelled meanwhile does not stop the settlement half-way."""
        self.finish_reasons = tuple(finish_reasons) or self.finish_reasons
        return await settled_shielded(self._finish_steps(usage, served_model, request_id, reply,
                                                         http_status, status, error))

    def fail(self, error: BaseException | DashScopeError, *, http_status: int | None = None,
             request_id: str | None = None, status: str = "error") -> UsageRecord:
        """Settle a call that finally failed: release everything, log the error."""
        return steps.run(self._fail_steps(error, http_status=http_status,
                                          request_id=request_id, status=status))

    async def fail_async(self, error: BaseException | DashScopeError, *,
                         http_status: int | None = None, request_id: str | None = None,
                         status: str = "error") -> UsageRecord:
        """:meth:`fail` for asyncio (shielded like :meth:`finish_async`)."""
        return await settled_shielded(self._fail_steps(error, http_status=http_status,
                                                request_id=request_id, status=status))

    def _claim(self) -> bool:
        """True for the one settlement that may run; any later one returns the first record."""
        with self._lock:
            if self.settled:
                return False
            self.settled = True
            return True

    def _finish_steps(self, usage: Any, served_model: str | None, request_id: str | None,
                      reply: Any, http_status: int | None, status: str,
                      error: str | tuple[str, str] | None = None) -> steps.Step[UsageRecord]:
        if not self._claim():
            return (yield from self._settled_steps())
        notes = self.warnings
        if isinstance(error, str):  # a reason from an adapter; no error class to name
            error = (error, status)
        if status == "unknown" and usage is None and reply is None:
            # Nothing of the answer seen: charge what the request allowed (prompt plus its
            # output limit), since the server may have billed all of it.
            allowed = self.estimate.max_output_tokens if self.estimate is not None else None
            parsed, estimated = Usage(prompt_tokens=self.estimated_prompt_tokens or 0,
                                      completion_tokens=allowed or 0), True
        else:
            parsed, estimated = self._usage(usage, reply, notes)
        estimated = estimated or error is not None  # usage so far is not the final usage
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
                try:
                    self.meter.calibration.observe(self.shape, diff)
                except Exception as exc:  # a CalibrationWarning made an error (-W error)
                    notes.append(f"calibration: {redact(str(exc))}")  # must not cost the record
        degraded = False
        for budget, reservation in self.reservations:
            try:
                # Unpriced: keep the reserved amount as spend rather than count it free.
                state = yield steps.op(budget, "commit", reservation,
                                       priced if priced.amount is not None else None)
                degraded = held_note(budget, reservation, state, notes,
                                     priced.amount) or degraded
            except Exception as exc:
                degraded = True
                notes.append(f"budget {budget.name!r} commit failed: {redact(str(exc))}")
        if self.permit is not None and self.limiter is not None:
            try:
                yield steps.op(self.limiter, "reconcile", self.permit, parsed.total_tokens)
                degraded = permit_note(self.permit, notes) or degraded
            except Exception as exc:
                degraded = True
                notes.append(f"limiter reconcile failed: {redact(str(exc))}")
        record = self._record(status=status, usage=parsed, estimated=estimated, cost_=priced,
                              served_model=served_model, request_id=request_id, diff=diff,
                              http_status=http_status, degraded=degraded,
                              error=redact(error[0]) if error else None,
                              error_kind=error[1] if error else None)
        return (yield from self.meter._write_steps(record, self))

    def _fail_steps(self, error: BaseException, *, http_status: int | None,
                    request_id: str | None, status: str) -> steps.Step[UsageRecord]:
        if not self._claim():
            return (yield from self._settled_steps())
        degraded = False
        for budget, reservation in self.reservations:
            try:
                state = yield steps.op(budget, "release", reservation)
                degraded = held_note(budget, reservation, state, self.warnings) or degraded
            except Exception as exc:
                degraded = True
                self.warnings.append(f"budget {budget.name!r} release failed: "
                                     f"{redact(str(exc))}")
        if self.permit is not None and self.limiter is not None:
            try:
                yield steps.op(self.limiter, "release", self.permit)
                degraded = permit_note(self.permit, self.warnings) or degraded
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

    def _settled_steps(self) -> steps.Step[UsageRecord]:
        # A second settlement (a stream closed after it ended ...) changes nothing. If the
        # first is still running (another thread, or suspended on this event loop: a stream
        # collected while its close settles), wait for its record.
        if self.record is None:
            yield steps.op(self.recorded, "wait", 60.0)
        if self.record is None:
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
        low, high = self.estimated_costs
        prompt = self.prompt
        # Every field, in UsageRecord's order (see UsageRecord._of_fields).
        return UsageRecord._of_fields({
            "model": self.model, "id": self.id,
            "time": dt.datetime.now(dt.timezone.utc).isoformat(), "version": SCHEMA_VERSION,
            "request_id": request_id, "served_model": served_model, "region": self.region,
            "endpoint": self.endpoint, "stream": self.stream, "status": status,
            "error": error, "error_kind": error_kind, "http_status": http_status,
            "attempts": self.attempts,
            "prompt_tokens": usage.prompt_tokens if usage else 0,
            "completion_tokens": usage.completion_tokens if usage else 0,
            "total_tokens": usage.total_tokens if usage else 0,
            "cached_tokens": usage.cached_tokens if usage else 0,
            "reasoning_tokens": usage.reasoning_tokens if usage else 0,
            "image_tokens": usage.image_tokens if usage else 0,
            "audio_tokens": usage.audio_tokens if usage else 0,
            "usage_estimated": estimated,
            "estimated_prompt_tokens": None if prompt is None
            else max(0, prompt.tokens + self.calibration),
            "estimate_exact": None if prompt is None else prompt.exact,
            "calibration": self.calibration, "prompt_diff": diff,
            "estimated_cost_low": low, "estimated_cost_high": high,
            "cost": _money(cost_.amount) if cost_ else None,
            "currency": cost_.currency if cost_ else (estimate_.currency if estimate_
                                                      else None),
            "unpriced": (cost_.unpriced or None) if cost_ else None,
            "latency_ms": round((time.perf_counter() - self.started) * 1000, 3),
            "tags": self.tags, "user": self.user, "metadata": self.metadata,
            "warnings": tuple(self.warnings), "degraded": degraded})


def _money(amount: Decimal | None) -> str | None:
    return None if amount is None else f"{amount.normalize():f}"
