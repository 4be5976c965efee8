"""Money: what a call cost (:func:`cost`) and what a request may cost (:func:`estimate_cost`).

Model Studio's rules, as the catalogue encodes them:

* request-size tiers — the whole request is priced by the tier its input tokens fall in;
* cached input at the tier's printed cache price, else 20 % of input (implicit cache);
  explicit cache hits at 10 %, explicit cache creation at 125 %;
* in thinking mode the whole output (reasoning + answer) is priced at the thinking price; a
  thinking call that produced no reasoning is billed at the non-thinking price (ML26:
  "开启思考模式时如果没有输出思考过程，按非思考模式价格进行收费"), even when the caller says
  ``thinking=True``; where the two prices are equal the media-input output price applies;
* explicit cache at the tier's printed explicit prices (3.7 / 3.8), else 10 % / 125 %;
* built-in tools (web search) at their per-call fee;
* audio / image input at their own prices where a model has them (Omni); audio output at its
  price, with the text part of that reply free;
* batch calls at the batch factor (half price), with no cache discount; calls through the
  synchronous Batch Chat API endpoint at that endpoint's factor, where the model has one.

Money is ``Decimal`` with its currency; prices are per 1M tokens. A price the catalogue does
not have makes the cost *unpriced* (``amount is None`` with the reason), never zero.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..base import checks as check
from ..base.errors import InvalidMessages, UsageParseError
from ..catalogue.core import Catalogue, default_catalogue
from ..catalogue.records import ModelSpec, Offer, PriceTier
from ..tokens.templates import get_profile
from .checks import pricing_args
from .request import Request
from .usage import Usage

MILLION = Decimal(1_000_000)
_ONE = Decimal(1)
CURRENCY_SYMBOLS = {"CNY": "¥", "USD": "$"}


@dataclass(frozen=True)
class Cost:
    """The cost of one call; ``amount`` is None when the catalogue lacks a price it needs."""

    amount: Decimal | None
    currency: str
    model: str
    region: str
    tier: int | None = None
    thinking: bool = False
    batch: bool = False
    parts: Mapping[str, Decimal] = field(default_factory=dict)
    unpriced: str = ""
    as_of: dt.date | None = None
    #: when the prices used took effect, and the kind of their source (official, catalogue,
    #: third-party) — a third-party-only figure says so
    effective: dt.date | None = None
    source_kind: str = ""

    @property
    def priced(self) -> bool:
        return self.amount is not None

    def __str__(self) -> str:
        if self.amount is None:
            return f"unpriced ({self.unpriced})"
        symbol = CURRENCY_SYMBOLS.get(self.currency, "")
        return f"{symbol}{self.amount.normalize():f} {self.currency}"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (amounts as strings, so nothing is lost)."""
        return {"amount": None if self.amount is None else f"{self.amount.normalize():f}",
                "currency": self.currency, "model": self.model, "region": self.region,
                "tier": self.tier, "thinking": self.thinking, "batch": self.batch,
                "parts": {k: f"{v.normalize():f}" for k, v in self.parts.items()},
                "unpriced": self.unpriced,
                "as_of": None if self.as_of is None else self.as_of.isoformat(),
                "effective": None if self.effective is None else self.effective.isoformat(),
                "source_kind": self.source_kind}


@dataclass(frozen=True)
class CostEstimate:
    """What a request may cost: ``low`` (input only) .. ``high`` (the full output allowance at
    the highest price that can apply)."""

    low: Cost
    high: Cost
    prompt_tokens: int
    max_output_tokens: int | None
    exact_prompt: bool = True

    @property
    def currency(self) -> str:
        return self.low.currency

    def as_dict(self) -> dict[str, Any]:
        return {"low": self.low.as_dict(), "high": self.high.as_dict(),
                "prompt_tokens": self.prompt_tokens, "max_output_tokens": self.max_output_tokens,
                "exact_prompt": self.exact_prompt}


class _Unpriced(Exception):
    pass


def _need(price: Decimal | None, what: str, tokens: int) -> Decimal:
    if price is None:
        if tokens == 0:
            return Decimal(0)
        raise _Unpriced(what)
    return price


def _input_parts(usage: Usage, tier: PriceTier, offer: Offer, batch: bool
                 ) -> tuple[dict[str, Decimal], int]:
    """The input side's parts (per 1M tokens, before any batch factor) and the media tokens
    in the prompt. They depend on the prompt side of ``usage`` only, so an estimate's low and
    high ends share them."""
    input_price = _need(tier.input, "no input price", usage.prompt_tokens)
    parts: dict[str, Decimal] = {}
    media = 0
    if tier.input_audio is not None and usage.audio_tokens:
        parts["input_audio"] = usage.audio_tokens * tier.input_audio
        media += usage.audio_tokens
    visual = usage.image_tokens + usage.video_tokens
    if tier.input_image is not None and visual:
        parts["input_image"] = visual * tier.input_image
        media += visual
    cached, created = usage.cached_tokens, usage.cache_creation_tokens
    text_in = usage.prompt_tokens - media - cached - created
    if batch:  # no cache discount on batch calls
        parts["input"] = (text_in + cached + created) * input_price
    else:
        parts["input"] = text_in * input_price
        if cached:
            rules = offer.cache
            if usage.cache_type == "explicit":
                hit = tier.cache_explicit_hit if tier.cache_explicit_hit is not None \
                    else input_price * rules.explicit_hit
            else:
                hit = tier.cache_hit if tier.cache_hit is not None \
                    else input_price * rules.implicit_hit
            parts["cache_hit"] = cached * hit
        if created:
            parts["cache_creation"] = created * (
                tier.cache_creation if tier.cache_creation is not None
                else input_price * offer.cache.explicit_create)
    return parts, media


def _output_part(usage: Usage, tier: PriceTier, thinking: bool, media: int,
                 parts: dict[str, Decimal]) -> None:
    """Add the output side's part to ``parts`` (per 1M tokens, before any batch factor)."""
    text_out = usage.completion_tokens - usage.output_audio_tokens
    # "Thinking output = non-thinking" models: the thinking price is no price of its own, so
    # the media-input output price (Omni) still applies in thinking mode.
    same_price = tier.output_thinking is not None and tier.output_thinking == tier.output
    if usage.output_audio_tokens:
        # Omni: with audio output, the reply's text part is not billed.
        parts["output_audio"] = usage.output_audio_tokens * _need(
            tier.output_audio, "no audio output price", usage.output_audio_tokens)
    elif thinking and not (same_price and media and tier.output_media_input is not None):
        parts["output"] = text_out * _need(tier.output_thinking, "no thinking-mode output price",
                                           text_out)
    elif media and tier.output_media_input is not None:
        parts["output"] = text_out * tier.output_media_input
    else:
        parts["output"] = text_out * _need(tier.output, "no output price", text_out)


def _context(model: str | ModelSpec, region: str | None, at: dt.date | None,
             catalogue: Catalogue | None) -> tuple[ModelSpec, Offer]:
    spec = model if isinstance(model, ModelSpec) else \
        (catalogue or default_catalogue()).resolve(model)
    return spec, spec.offer(region, at)


def cost(usage: Usage | Mapping[str, Any] | Any, model: str | ModelSpec, *,
         region: str | None = None, batch: bool = False, thinking: bool | None = None,
         at: dt.date | dt.datetime | str | None = None, catalogue: Catalogue | None = None,
         searches: int | None = None, batch_chat: bool = False) -> Cost:
    """The cost of a call from its billed ``usage`` (a :class:`Usage` or the API's object).

    ``thinking`` says whether the call ran in thinking mode; by default it is inferred from
    ``reasoning_tokens`` (and is always on for thinking-only models). A thinking call with no
    reasoning tokens is billed at the non-thinking price, as DashScope bills it. ``at`` prices
    the call at the offer in effect on that date (a date, a datetime or an ISO date string).
    ``searches`` is the number of web searches billed (default: ``usage.search_count``);
    ``batch_chat`` prices a call made through the Batch Chat API endpoint (see
    :meth:`Catalogue.is_batch_chat_url`).
    """
    at = pricing_args("cost", model=model, region=region, at=at, catalogue=catalogue)
    check.flag(batch, "cost(batch=)")
    check.flag(batch_chat, "cost(batch_chat=)")
    check.optional_flag(thinking, "cost(thinking=)")
    usage = Usage.parse(usage)
    spec, offer = _context(model, region, at, catalogue)
    if searches is not None and (isinstance(searches, bool) or not isinstance(searches, int)
                                 or searches < 0):
        raise UsageParseError(f"searches must be a whole number >= 0, got {searches!r}")
    return price_offer(usage, spec, offer, thinking, batch=batch, batch_chat=batch_chat,
                       searches=searches)


def price_offer(usage: Usage, spec: ModelSpec, offer: Offer, thinking: bool | None, *,
                batch: bool = False, batch_chat: bool = False,
                searches: int | None = None) -> Cost:
    """:func:`cost` past its argument checks: a parsed ``usage``, the offer already found.

    The meter prices every call through here, its inputs checked once where they came in.
    """
    return _price_with(usage, spec, offer, thinking, batch, batch_chat, searches, None)[0]


#: What pricing one usage found that another usage with the same prompt side (same offer,
#: same batch flags) can reuse: (tier, its index, the input parts, media tokens).
_Shared = tuple[PriceTier | None, int | None, dict[str, Decimal] | None, int]


def _price_with(usage: Usage, spec: ModelSpec, offer: Offer, thinking: bool | None,
                batch: bool, batch_chat: bool, searches: int | None,
                shared: _Shared | None) -> tuple[Cost, _Shared | None]:
    """:func:`price_offer`, optionally reusing ``shared`` (see :data:`_Shared`): an estimate
    prices its low and high ends with one tier lookup and one pass over the input side.
    Returns the cost and what a usage with the same prompt side may reuse."""
    if thinking is None or spec.thinking != "only":
        thinking = usage.reasoning_tokens > 0 if thinking is None \
            else thinking and usage.reasoning_tokens > 0
    thinking = thinking or spec.thinking == "only"
    searches = usage.search_count if searches is None else searches
    discounted = batch or batch_chat
    amount: Decimal | None = None
    parts: dict[str, Decimal] = {}
    unpriced = ""
    if shared is None:
        tier = offer.tier_for(usage.prompt_tokens)
        index = None if tier is None else offer.tiers.index(tier)
        inputs: dict[str, Decimal] | None = None
        media = 0
    else:
        tier, index, inputs, media = shared
    factor = offer.batch if batch else offer.batch_chat if batch_chat else _ONE
    if tier is None:
        unpriced = f"no price for {spec.name} in {offer.region}"
    elif factor is None:
        what = "batch" if batch else "Batch Chat API"
        unpriced = f"no {what} price for {spec.name} in {offer.region}"
    else:
        try:
            if inputs is None:
                inputs, media = _input_parts(usage, tier, offer, discounted)
            parts = dict(inputs)
            _output_part(usage, tier, thinking, media, parts)
            fee = offer.tool_fees.get("search")
            if searches and fee is None:
                raise _Unpriced(f"no web-search fee for {spec.name} in {offer.region}")
        except _Unpriced as exc:
            parts, unpriced = {}, str(exc)
        else:
            parts = {k: v * factor / MILLION for k, v in parts.items()}
            if searches and fee is not None:  # per call, not discounted by batch
                parts["search"] = searches * fee.per_call
            amount = sum(parts.values(), Decimal(0))
    # Built once, with every field (a dataclass replace per outcome cost more than pricing),
    # in Cost's field order, without the frozen __init__'s twelve object.__setattr__ calls:
    # three Costs are made per metered call (tests/test_pricing_once.py compares them with
    # Costs built through __init__).
    cost = object.__new__(Cost)
    object.__setattr__(cost, "__dict__", {
        "amount": amount, "currency": offer.currency, "model": spec.name,
        "region": offer.region, "tier": index, "thinking": thinking, "batch": discounted,
        "parts": parts, "unpriced": unpriced, "as_of": offer.as_of,
        "effective": offer.effective_date, "source_kind": offer.source_kind})
    return cost, (tier, index, inputs, media)


def thinking_applies(spec: ModelSpec, enable_thinking: bool | None) -> bool:
    """Whether a request may run in thinking mode (and be priced as such)."""
    if spec.thinking == "only":
        return True
    if spec.thinking == "none":
        return False
    if enable_thinking is not None:
        return enable_thinking
    if spec.thinking_default is not None:
        return spec.thinking_default
    return get_profile(spec.template).thinking_default


def prompt_usage(subject: Any, spec: ModelSpec, *, tools: Any = None,
                 enable_thinking: bool | None = None, high_resolution: bool = False
                 ) -> tuple[Usage, bool]:
    """(input-only usage, exact?) of a token count, a text, or a list of messages."""
    from .chat_counting import count_messages
    from .counting import count_tokens

    if isinstance(subject, bool):
        raise InvalidMessages("expected tokens, text or messages, not a bool")
    if isinstance(subject, int):
        if subject < 0:
            raise InvalidMessages("a token count cannot be negative")
        return Usage(prompt_tokens=subject), True
    if isinstance(subject, str):
        counted = count_tokens(subject, spec.name)
    else:
        counted = count_messages(subject, spec.name, tools=tools,
                                 enable_thinking=enable_thinking,
                                 high_resolution=high_resolution)
    return Usage(prompt_tokens=counted.tokens, image_tokens=counted.image_tokens,
                 audio_tokens=counted.audio_tokens,
                 video_tokens=counted.video_tokens), counted.exact


def estimate_cost(request: Any, model: str | ModelSpec | None = None, *,
                  max_tokens: int | None = None,
                  region: str | None = None, tools: Any = None,
                  enable_thinking: bool | None = None, batch: bool = False,
                  at: dt.date | dt.datetime | str | None = None,
                  catalogue: Catalogue | None = None,
                  n: int = 1, thinking_budget: int | None = None, search: bool = False,
                  batch_chat: bool = False) -> CostEstimate:
    """The cost range of a request before sending it.

    ``request`` is a prompt token count, a text, a list of messages, or a request object
    (OpenAI-compatible or native DashScope body: ``messages``, ``tools``, ``max_tokens``,
    ``n``, ``enable_thinking``, ``thinking_budget``, ``enable_search``, ``modalities``). The
    low end is the input alone; the high end adds the full output allowance (``max_tokens``,
    else the model's output limit, plus the reasoning allowance when thinking can apply:
    ``thinking_budget`` capped by the model's maximum) for each of the ``n`` choices, at the
    highest output price that can apply (audio output when ``modalities`` asks for audio).
    ``model`` may be left out when the request body names one.
    With web search the prompt is not exact (results are added server-side) and one search
    fee is included; ``batch_chat`` prices a call through the Batch Chat API endpoint.
    """
    if model is None and isinstance(request, Mapping):
        named = request.get("model")
        model = named if isinstance(named, str) else None
    at = pricing_args("estimate_cost", model=model, region=region, at=at,
                            catalogue=catalogue)
    assert model is not None  # pricing_args refused None
    check.optional_flag(enable_thinking, "estimate_cost(enable_thinking=)")
    check.flag(batch, "estimate_cost(batch=)")
    check.flag(batch_chat, "estimate_cost(batch_chat=)")
    req = Request.of(request, tools=tools, max_tokens=max_tokens,
                     enable_thinking=enable_thinking, n=n if n != 1 else None,
                     thinking_budget=thinking_budget, search=search or None)
    spec, offer = _context(model, region, at, catalogue)
    thinking = thinking_applies(spec, req.enable_thinking)
    # A whole request body is counted as one, so its search / translation / reasoning
    # options reach the count.
    subject = request if isinstance(request, Mapping) else req.subject
    prompt, exact = prompt_usage(subject, spec, tools=req.tools,
                                 enable_thinking=req.enable_thinking,
                                 high_resolution=req.high_resolution)
    return estimate_offer(prompt, spec, offer, thinking, max_tokens=req.max_tokens,
                          exact=exact and not req.server_additions, n=req.n,
                          thinking_budget=req.thinking_budget, search=req.search,
                          audio_output=req.audio_output, batch=batch, batch_chat=batch_chat)


def estimate_offer(prompt: Usage, spec: ModelSpec, offer: Offer, thinking: bool, *,
                   max_tokens: int | None, exact: bool = True, n: int = 1,
                   thinking_budget: int | None = None, search: bool = False,
                   audio_output: bool = False, batch: bool = False,
                   batch_chat: bool = False) -> CostEstimate:
    """:func:`estimate_cost` past its argument checks: the prompt counted, the offer found
    and whether thinking can apply decided (the meter has all three already)."""
    allowance = max_tokens if max_tokens is not None else offer.limits.output_limit(thinking)
    reasoning = 0
    if thinking:
        budget = offer.limits.max_reasoning
        asked = thinking_budget
        reasoning = min(asked, budget) if asked and budget else asked or budget or 0
    if allowance is not None:
        allowance = (allowance + reasoning) * n  # every choice is output; the prompt once
    low, shared = _price_with(prompt, spec, offer, False, batch, batch_chat, None, None)
    if allowance is None:
        high = Cost(None, offer.currency, spec.name, offer.region, unpriced="output limit unknown",
                    as_of=offer.as_of, effective=offer.effective_date,
                    source_kind=offer.source_kind)
    else:
        # Reasoning tokens must be there, or the call would be priced as non-thinking; with no
        # reasoning budget known, the worst case is that the whole output is reasoning.
        # The same prompt side as ``prompt`` (so the low end's tier and input parts apply),
        # built field by field: ``dataclasses.replace`` costs as much as the pricing.
        worst = Usage(prompt.prompt_tokens, allowance, prompt.cached_tokens,
                      prompt.cache_creation_tokens, prompt.cache_type,
                      (reasoning * n or allowance) if thinking else 0, prompt.image_tokens,
                      prompt.audio_tokens, prompt.video_tokens,
                      allowance if audio_output else 0, prompt.search_count)
        high = _price_with(worst, spec, offer, thinking, batch, batch_chat, int(bool(search)),
                           shared)[0]
    return CostEstimate(low, high, prompt.prompt_tokens, allowance, exact)
