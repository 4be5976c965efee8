"""Planning a call: the pure part of :meth:`Meter.begin <qwen_meter.meter.pipeline.Meter.begin>`.

Resolve the model, count the prompt, check it (pre-flight), estimate its cost and decide what
to hold — which budgets for how much, which limiter for how many tokens — all into a
:class:`_Plan`, touching no store. The meter then takes the holds (its begin step) and hands
back a :class:`~qwen_meter.meter.call.MeteredCall`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ..base.errors import InvalidMessages, UnpricedCall
from ..billing.chat_counting import count_messages
from ..billing.counting import count_tokens
from ..billing.model_setup import TokenCount
from ..billing.preflight import check_prompt
from ..billing.pricing import CostEstimate, thinking_applies
from ..billing.request import max_tokens_of
from ..billing.unlisted import Resolved, estimate
from ..limits.budget import Budget
from ..limits.limiter import RateLimiter
from .attribution import current_attribution
from .calibration import request_shape
from .call import _money
from .records import UsageRecord
from .redaction import redact

if TYPE_CHECKING:
    from .pipeline import Meter


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
    request_params: dict[str, Any] | None = None


#: Sampling parameters observers report (OpenTelemetry's ``gen_ai.request.*``).
OBSERVED_PARAMS = ("temperature", "top_p", "top_k", "seed", "presence_penalty",
                   "frequency_penalty")


def request_params(request: Mapping[str, Any], url: Any) -> dict[str, Any]:
    """The request's sampling parameters (top level, or a native request's ``parameters``)
    and the server it is sent to (``server.address`` / ``server.port``), for observers."""
    nested = request.get("parameters")
    sources = [request, nested] if isinstance(nested, Mapping) else [request]
    found: dict[str, Any] = {}
    for name in OBSERVED_PARAMS:
        for source in sources:
            value = source.get(name)
            # bool is an int: a stray True is not a temperature
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                found[name] = value
                break
    if url is not None:
        server = _server_of(url if isinstance(url, str) else str(url))
        if server is not None:
            found["server.address"], found["server.port"] = server
    return found


@lru_cache(maxsize=256)
def _server_of(url: str) -> tuple[str, int] | None:
    """(host, port) of an endpoint URL; a client sends every call to the same few, so each
    is split once."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def make_plan(meter: Meter, request: Mapping[str, Any], endpoint: str, tags: Sequence[str],
              user: str | None, region: str | None, url: Any) -> _Plan:
    """The pure part of begin: what to count, check, hold and where (no store touched)."""
    started = time.perf_counter()
    if not isinstance(request, Mapping):
        raise InvalidMessages(f"a request must be a mapping, not {type(request).__name__}")
    model = request.get("model")
    resolved = meter._resolve(model)
    spec = resolved.spec
    notes = [resolved.note] if resolved.note else []
    if url is not None and not isinstance(url, str):
        url = str(url)  # once: the region and the observers' server fields both read it
    where, env_region = meter._regions(url, region)
    enable_thinking = request.get("enable_thinking")
    chat_like = endpoint in ("chat", "responses")
    if chat_like and "messages" not in request:
        raise InvalidMessages("the request has no messages")
    # Validated as Request.of would (an option DashScope refuses raises here), without
    # building a whole Request for the usual body that only needs max_tokens read.
    max_tokens = None if endpoint == "embeddings" else max_tokens_of(
        request if "messages" in request else {**request, "messages": []})
    context = current_attribution()
    own_user = request.get("user") if isinstance(request.get("user"), str) else None
    user = user or own_user or context.user or meter.user
    own_metadata = request.get("metadata")
    metadata = {**context.metadata, **({str(k): str(v) for k, v in own_metadata.items()}
                                       if isinstance(own_metadata, Mapping) else {})}
    prompt = count_prompt(request, resolved, endpoint, enable_thinking)
    applies = thinking_applies(spec, enable_thinking)  # once: the estimate needs it too
    thinking = applies if resolved.listed else bool(enable_thinking)
    shape = request_shape(spec.name, request, thinking)
    calibration = meter.calibration.offset(shape) if meter.calibration else 0
    if meter.preflight and endpoint != "embeddings" and where in spec.offers:
        check_prompt(prompt, spec, max_tokens=max_tokens, enable_thinking=enable_thinking,
                     region=where)
    reserve_tokens = max(0, prompt.tokens + calibration)
    found, unpriced = estimate(reserve_tokens, spec, where, endpoint=endpoint,
                               max_tokens=max_tokens, enable_thinking=enable_thinking,
                               fallback=meter.fallback_price, thinking=applies)
    all_tags = (*meter.tags, *context.tags, *tags)
    holds: list[tuple[Budget, Any, str | None]] = []
    for budget in meter.budgets:
        key = None if budget.scope == "global" else (
            user if budget.scope == "user" else
            next((t for t in all_tags if t.startswith(f"{budget.scope}=")), None))
        if found is None and budget.mode == "hard" and meter.unpriced == "refuse":
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
    limiter = meter._limiter_in(where, env_region)
    if limiter is not None and not resolved.listed and str(model) not in limiter.overrides \
            and not (limiter.default is not None and resolved.backend is None):
        # No limits known for it: nothing to check or count against. (A name-rule match
        # resolves in the limiter, so its ``default`` limits apply; a name nothing matches
        # is limited only by ``limits={name: ...}``.)
        limiter = None
    return _Plan(resolved, str(model), endpoint, bool(request.get("stream")),
                 enable_thinking, prompt, calibration, shape, where, found, tokens, limiter,
                 all_tags, user, metadata, holds, notes, started, max_tokens,
                 request_params(request, url))


def count_prompt(request: Mapping[str, Any], resolved: Resolved, endpoint: str,
                 enable_thinking: bool | None) -> TokenCount:
    """The prompt's count: the messages (chat, responses), else each input text."""
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


def refused_record(exc: BaseException, meter: Meter, *, model: str, endpoint: str,
               region: str, plan: _Plan | None) -> UsageRecord:
    """The record of a call refused before it was sent (budget, rate limit, pre-flight,
    unpriced): nothing was billed; what was estimated is kept for the report."""
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
        tags=plan.tags if plan else (*meter.tags, *context.tags),
        user=plan.user if plan else (context.user or meter.user),
        metadata=plan.metadata if plan else dict(context.metadata),
        warnings=tuple(plan.warnings) if plan else ())
