"""The meter: the pipeline every metered call runs through.

    resolve model → count prompt → pre-flight → cost estimate → budget reservation →
    limiter acquire → (the client's call) → parse usage → cost → commit / reconcile → log

:meth:`Meter.begin` runs everything before the call and returns a :class:`MeteredCall`;
:meth:`MeteredCall.finish` (or :meth:`MeteredCall.fail`) settles it. The adapters in
``qwen_meter.clients`` call these around the real client; :meth:`Meter.wrap` picks one.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from collections import defaultdict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from .budget import Budget, Reservation
from .catalogue import Catalogue, ModelSpec, default_catalogue
from .counting import TokenCount, count_completion, count_messages
from .errors import InvalidMessages, QwenMeterError
from .limiter import Permit, RateLimiter
from .log import UsageLog, UsageRecord, open_log, redact
from .preflight import check_prompt
from .pricing import Cost, CostEstimate, cost, estimate_cost
from .request import Request
from .server_errors import DashScopeError, RetryPolicy
from .usage import Usage

log = logging.getLogger("qwen_meter.meter")


class UnsupportedClient(QwenMeterError, TypeError):
    """An object :meth:`Meter.wrap` does not know how to meter."""


class Calibration:
    """Learns a constant gap between local prompt counts and the server's, per model.

    A gap seen ``window`` times in a row (the server's template added a default system
    message, an empty think block ...) is applied to later estimates; any other gap resets it.
    """

    def __init__(self, window: int = 5) -> None:
        self.window = window
        self._seen: dict[str, deque[int]] = defaultdict(lambda: deque(maxlen=window))
        self._offsets: dict[str, int] = {}
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def offset(self, model: str) -> int:
        return self._offsets.get(model, 0)

    def observe(self, model: str, diff: int) -> None:
        with self._lock:
            seen = self._seen[model]
            seen.append(diff)
            if diff and model not in self._warned:
                self._warned.add(model)
                warnings.warn(f"{model}: the server counted {diff:+d} prompt tokens against "
                              "qwen_meter's count (stale catalogue template or tokenizer?)",
                              RuntimeWarning, stacklevel=4)
            if len(seen) == self.window and len(set(seen)) == 1:
                self._offsets[model] = seen[0]


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
    attempts: int = 1
    settled: bool = False

    @property
    def estimated_prompt_tokens(self) -> int | None:
        return None if self.prompt is None else self.prompt.tokens + self.calibration

    def next_attempt(self, error: DashScopeError, *, http_status: int | None = None,
                     request_id: str | None = None) -> float | None:
        """After an attempt DashScope refused: the seconds to wait before trying again, or
        None when the call has failed for good (it is then settled, its holds released)."""
        policy = self.meter.retry
        if policy.should_retry(self.attempts, error):
            return policy.delay(self.attempts, error)
        self.fail(error, http_status=http_status, request_id=request_id)
        return None

    def retry(self) -> None:
        """Before trying again: a new limiter slot (the failed attempt keeps its request)."""
        self.attempts += 1
        if self.permit is not None:
            self.meter.limiter.reconcile(self.permit, 0)  # type: ignore[union-attr]
            self.permit = self.meter._acquire(self.model, self.tokens_reserved)

    def finish(self, usage: Usage | Mapping[str, Any] | Any | None, *,
               served_model: str | None = None, request_id: str | None = None,
               reply: Any = None, http_status: int | None = 200,
               status: str = "ok") -> UsageRecord:
        """Settle a call that returned: reconcile, commit, log. Without ``usage`` the reply
        (text or message) is counted locally and the record is marked estimated. ``status``
        says how a stream ended: ``ok``, ``incomplete`` (no usage), ``closed`` (the caller
        stopped early) or ``dropped`` (the connection failed)."""
        parsed, estimated = self._usage(usage, reply)
        thinking = None
        if estimated and self.enable_thinking is not None:
            thinking = bool(self.enable_thinking and parsed.reasoning_tokens)
        priced = cost(parsed, self.spec, region=self.meter.region, thinking=thinking)
        diff = None
        if not estimated and self.prompt is not None and self.prompt.exact \
                and self.endpoint == "chat":
            diff = parsed.prompt_tokens - self.prompt.tokens
            if self.meter.calibration is not None:
                self.meter.calibration.observe(self.spec.name, diff)
        self._settle_budgets(priced)
        if self.permit is not None:
            self.meter.limiter.reconcile(self.permit, parsed.total_tokens)  # type: ignore[union-attr]
        return self._record(status=status, usage=parsed, estimated=estimated, cost_=priced,
                            served_model=served_model, request_id=request_id, diff=diff,
                            http_status=http_status)

    def fail(self, error: BaseException | DashScopeError, *, http_status: int | None = None,
             request_id: str | None = None, status: str = "error") -> UsageRecord:
        """Settle a call that finally failed: release everything, log the error."""
        for budget, reservation in self.reservations:
            budget.release(reservation)
        if self.permit is not None:
            self.meter.limiter.release(self.permit)  # type: ignore[union-attr]
        kind = getattr(error, "kind", type(error).__name__)
        return self._record(status=status, usage=None, estimated=False, cost_=None,
                            served_model=None, request_id=request_id, diff=None,
                            http_status=http_status if http_status is not None
                            else getattr(error, "status", None),
                            error=redact(str(error) or type(error).__name__), error_kind=kind)

    def _usage(self, usage: Any, reply: Any) -> tuple[Usage, bool]:
        if usage is not None:
            return Usage.parse(usage), False
        prompt = self.estimated_prompt_tokens or 0
        completion = 0
        reasoning = 0
        if reply is not None and self.endpoint == "chat":
            counted = count_completion(reply, self.spec.name, enable_thinking=self.enable_thinking)
            completion = counted.tokens
            text = reply.get("reasoning_content") if isinstance(reply, Mapping) else None
            if text:
                reasoning = count_completion({"reasoning_content": text}, self.spec.name).tokens
        return Usage(prompt_tokens=prompt, completion_tokens=completion,
                     reasoning_tokens=min(reasoning, completion)), True

    def _settle_budgets(self, priced: Cost) -> None:
        for budget, reservation in self.reservations:
            if priced.amount is None:
                # Unpriced: keep the reserved worst case as spend rather than count it free.
                budget.commit(reservation)
            else:
                budget.commit(reservation, priced)

    def _record(self, *, status: str, usage: Usage | None, estimated: bool, cost_: Cost | None,
                served_model: str | None, request_id: str | None, diff: int | None,
                http_status: int | None, error: str | None = None,
                error_kind: str | None = None) -> UsageRecord:
        self.settled = True
        estimate = self.estimate
        record = UsageRecord(
            model=self.model, request_id=request_id, served_model=served_model,
            region=self.meter.region or "cn", endpoint=self.endpoint, stream=self.stream,
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
            estimated_cost_low=_money(estimate.low.amount) if estimate else None,
            estimated_cost_high=_money(estimate.high.amount) if estimate else None,
            cost=_money(cost_.amount) if cost_ else None,
            currency=cost_.currency if cost_ else (estimate.currency if estimate else None),
            unpriced=(cost_.unpriced or None) if cost_ else None,
            latency_ms=round((time.perf_counter() - self.started) * 1000, 3),
            tags=self.tags, user=self.user)
        if self.meter.log is not None:
            self.meter.log.append(record)
        return record


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


class Meter:
    """Checks, limits, prices and logs every call of the clients it wraps.

    ``limiter`` and ``budget`` are optional (a budget or a list of them); ``log`` is a path
    (``.jsonl``, or ``.db`` for SQLite), a :class:`~qwen_meter.log.UsageLog`, or None; by
    default ``$QWEN_METER_LOG``, else ``usage.jsonl`` in the user's data folder
    (``$XDG_DATA_HOME/qwen_meter``, ``~/.local/share/qwen_meter``) — never the working folder.
    ``preflight`` checks limits before sending; ``wait`` lets the limiter wait for a slot
    (else it raises at once); ``calibrate`` learns systematic prompt-count gaps.
    """

    def __init__(self, *, region: str | None = None, catalogue: Catalogue | None = None,
                 limiter: RateLimiter | None = None,
                 budget: Budget | Sequence[Budget] | None = None,
                 log: str | os.PathLike[str] | UsageLog | _DefaultLog | None = DEFAULT_LOG,
                 preflight: bool = True, wait: bool = True, timeout: float | None = None,
                 retry: RetryPolicy | None = None, calibrate: bool = True,
                 tags: Sequence[str] = (), user: str | None = None) -> None:
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

    # --- the pipeline -----------------------------------------------------------------------

    def resolve(self, model: Any) -> ModelSpec:
        if not isinstance(model, str) or not model:
            raise InvalidMessages(f"the request names no model ({model!r})")
        return (self.catalogue or default_catalogue()).resolve(model)

    def _acquire(self, model: str, tokens: int) -> Permit | None:
        if self.limiter is None:
            return None
        return self.limiter.acquire(model, tokens, timeout=self.timeout, wait=self.wait)

    def begin(self, request: Mapping[str, Any], *, endpoint: str = "chat",
              tags: Sequence[str] = (), user: str | None = None) -> MeteredCall:
        """Everything before the call: raises before anything is sent if it may not go."""
        started = time.perf_counter()
        model = request.get("model")
        spec = self.resolve(model)
        enable_thinking = request.get("enable_thinking")
        max_tokens = None
        if endpoint == "chat":
            if "messages" not in request:
                raise InvalidMessages("the request has no messages")
            max_tokens = Request.of(request).max_tokens  # validated
        user = user or self.user or (request.get("user") if isinstance(request.get("user"), str)
                                     else None)
        prompt = self._count(request, spec, endpoint, enable_thinking)
        calibration = self.calibration.offset(spec.name) if self.calibration else 0
        if self.preflight and endpoint == "chat":
            check_prompt(prompt, spec, max_tokens=max_tokens, enable_thinking=enable_thinking,
                         region=self.region)
        estimate = None
        reserve_tokens = prompt.tokens + calibration
        try:
            if endpoint == "chat":
                estimate = estimate_cost(reserve_tokens, spec, region=self.region,
                                         max_tokens=max_tokens, enable_thinking=enable_thinking)
            else:  # embeddings: input only
                low = cost(Usage(prompt_tokens=reserve_tokens), spec, region=self.region)
                estimate = CostEstimate(low, low, reserve_tokens, 0, prompt.exact)
        except QwenMeterError as exc:  # e.g. not offered in the region: meter what we can
            log.debug("no estimate for %s: %s", spec.name, exc)
        output = estimate.max_output_tokens if estimate and estimate.max_output_tokens else 0
        tokens = reserve_tokens + (output if endpoint == "chat" else 0)
        reservations: list[tuple[Budget, Reservation]] = []
        all_tags = (*self.tags, *tags)
        try:
            for budget in self.budgets:
                key = None if budget.scope == "global" else (
                    user if budget.scope == "user" else
                    next((t for t in all_tags if t.startswith(f"{budget.scope}=")), None))
                amount = estimate if estimate is not None else Decimal(0)
                reservations.append((budget, budget.reserve(amount, key=key)))
            permit = self._acquire(spec.name, tokens)
        except BaseException:
            for budget, reservation in reservations:
                budget.release(reservation)
            raise
        return MeteredCall(self, spec, str(model), endpoint, bool(request.get("stream")),
                           enable_thinking, prompt, calibration, estimate, reservations, permit,
                           tokens, started, all_tags, user)

    def _count(self, request: Mapping[str, Any], spec: ModelSpec, endpoint: str,
               enable_thinking: bool | None) -> TokenCount:
        if endpoint == "embeddings":
            texts = request.get("input")
            texts = [texts] if isinstance(texts, str) else texts
            if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                raise InvalidMessages("embeddings input must be a string or a list of strings")
            from .counting import count_tokens

            counts = [count_tokens(t, spec.name) for t in texts]
            # Embeddings bill each text's tokens + 1 (<|endoftext|>).
            return TokenCount(sum(c.tokens + 1 for c in counts), all(c.exact for c in counts),
                              counts[0].backend if counts else "tiktoken", spec.family)
        return count_messages(request["messages"], spec.name, tools=request.get("tools"),
                              enable_thinking=enable_thinking,
                              high_resolution=bool(request.get("vl_high_resolution_images")))

    # --- adapters ------------------------------------------------------------------------

    def wrap(self, client: Any) -> Any:
        """The same client, metered: ``openai.OpenAI`` / ``AsyncOpenAI``, ``dashscope.Generation``
        / ``AioGeneration``, or an ``httpx.Client`` / ``AsyncClient``."""
        from .clients import wrap

        return wrap(self, client)

    def httpx_client(self, **kwargs: Any) -> Any:
        """A metered ``httpx.Client`` (for LangChain's ``http_client=`` and other SDKs)."""
        from .clients.httpx import metered_client

        return metered_client(self, **kwargs)

    def httpx_async_client(self, **kwargs: Any) -> Any:
        """A metered ``httpx.AsyncClient``."""
        from .clients.httpx import metered_async_client

        return metered_async_client(self, **kwargs)

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
