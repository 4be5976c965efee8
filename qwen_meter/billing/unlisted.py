"""Models the catalogue does not know (yet): how the meter counts and prices them.

The catalogue is always behind DashScope: a new generation (Qwen3.8), a new size
(qwen3.7-flash), a dated snapshot, or a third-party model DashScope serves (deepseek-*, kimi-*,
glm-*). The meter meters such calls instead of refusing them:

* **Counting.** A name the catalogue's name rules match is counted with that rule's tokenizer
  and template; any other name with the heuristic estimate. Either way the count is marked
  inexact (the rule's template may be off for a model nobody has checked).
* **Limits.** Unknown, so pre-flight skips them and the limiter only applies limits configured
  for that name (``RateLimiter(limits={"deepseek-v3.2": (rpm, tpm)})``).
* **Cost.** Unpriced, with the reason — unless a :class:`FallbackPrice` is configured, which
  prices every otherwise-unpriced call (marked in the record's ``warnings``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ..base.errors import ConfigurationError, NotOffered, QwenMeterError, UnknownModel
from ..catalogue.core import Catalogue, default_catalogue
from ..catalogue.records import ModelSpec
from .pricing import MILLION, Cost, CostEstimate, estimate_offer, price_offer, thinking_applies
from .usage import Usage

#: The model whose counting rules stand in for a name no rule matches (heuristic backend).
STAND_IN = "qwen-plus"


@dataclass(frozen=True)
class Resolved:
    """A model name as the meter uses it."""

    spec: ModelSpec
    #: False when the catalogue has no entry for the name (rule match or nothing at all).
    listed: bool
    #: the name counting functions are called with, and the backend forced (None: default)
    count_as: str
    backend: str | None = None
    #: why the catalogue could not help, for the record's warnings
    note: str | None = None


def resolve(model: str, catalogue: Catalogue | None) -> Resolved:
    """Resolve ``model`` for metering: never raises for a well-formed name."""
    cat = catalogue or default_catalogue()
    try:
        spec = cat.resolve(model)
    except UnknownModel:
        stand_in = cat.resolve(STAND_IN)
        spec = ModelSpec(name=model, family=stand_in.family, template=stand_in.template,
                         note="not in the catalogue")
        return Resolved(spec, False, STAND_IN, "heuristic",
                        f"{model} is not in the catalogue: counted by the heuristic estimate, "
                        "limits unchecked, unpriced")
    if spec.matched_rule is not None and not spec.offers:
        why = spec.note if spec.matched_rule.startswith("newer snapshot of ") \
            else f"{model} is not listed (matched name rule {spec.matched_rule!r})"
        return Resolved(spec, False, spec.name, None, f"{why}: limits unchecked, unpriced")
    return Resolved(spec, True, spec.name)


@dataclass(frozen=True)
class FallbackPrice:
    """Prices (per 1M tokens) for calls the catalogue cannot price: unknown models, models not
    offered in the region, missing price fields. ``Meter(fallback_price=FallbackPrice("4",
    "12", "CNY"))`` lets such calls run under a hard budget, reserved and charged at this rate.
    """

    input: Decimal
    output: Decimal
    currency: str

    def __init__(self, input: Any, output: Any, currency: str) -> None:
        try:
            values = (Decimal(str(input)), Decimal(str(output)))
        except ArithmeticError:
            raise ConfigurationError(f"fallback prices must be numbers, got {input!r}, "
                                     f"{output!r}") from None
        if any(v < 0 or not v.is_finite() for v in values):
            raise ConfigurationError("fallback prices cannot be negative")
        if currency not in ("CNY", "USD"):
            raise ConfigurationError(f"fallback currency must be CNY or USD, not {currency!r}")
        object.__setattr__(self, "input", values[0])
        object.__setattr__(self, "output", values[1])
        object.__setattr__(self, "currency", currency)

    def price(self, usage: Usage, model: str, region: str) -> Cost:
        amount = (usage.prompt_tokens * self.input
                  + usage.completion_tokens * self.output) / MILLION
        return Cost(amount, self.currency, model, region,
                    parts={"input": usage.prompt_tokens * self.input / MILLION,
                           "output": usage.completion_tokens * self.output / MILLION})


def price(usage: Usage, spec: ModelSpec, region: str, *, thinking: bool | None,
          fallback: FallbackPrice | None) -> tuple[Cost, str | None]:
    """The call's cost, never raising: (cost, warning). Unpriced costs carry their reason."""
    try:
        # ``usage`` is parsed and ``spec`` resolved already: price them, no second check.
        priced = price_offer(usage, spec, spec.offer(region), thinking)
    except QwenMeterError as exc:  # NotOffered, a broken override ...
        priced = Cost(None, fallback.currency if fallback else _currency(region), spec.name,
                      region, unpriced=str(exc))
    if priced.amount is None and fallback is not None:
        return fallback.price(usage, spec.name, region), \
            f"priced at the fallback price ({priced.unpriced})"
    return priced, None


def estimate(prompt_tokens: int, spec: ModelSpec, region: str, *, endpoint: str,
             max_tokens: int | None, enable_thinking: bool | None,
             fallback: FallbackPrice | None, thinking: bool | None = None
             ) -> tuple[CostEstimate | None, str | None]:
    """The cost range before sending, or None with the reason it cannot be priced.

    The meter's arguments were checked where they came in (the request, the model), so this
    goes straight to the offer: no second parse of the request, no second price check.
    ``thinking``: :func:`thinking_applies` for ``spec`` and ``enable_thinking``, when the
    caller has it already."""
    reason: str | None
    try:
        offer = spec.offer(region)
        prompt = Usage(prompt_tokens=prompt_tokens)
        if endpoint != "embeddings":  # chat, /completions, /responses: output allowance too
            if thinking is None:
                thinking = thinking_applies(spec, enable_thinking)
            found = estimate_offer(prompt, spec, offer, thinking, max_tokens=max_tokens)
        else:  # embeddings and other input-only endpoints
            low = price_offer(prompt, spec, offer, None)
            found = CostEstimate(low, low, prompt_tokens, 0)
        if found.high.amount is not None:
            return found, None
        reason = found.high.unpriced or found.low.unpriced
    except NotOffered as exc:
        reason = str(exc)
    except QwenMeterError as exc:
        reason = str(exc)
    if fallback is None:
        return None, reason
    output = (max_tokens or 0) if endpoint != "embeddings" else 0
    low = fallback.price(Usage(prompt_tokens=prompt_tokens), spec.name, region)
    high = fallback.price(Usage(prompt_tokens=prompt_tokens, completion_tokens=output),
                          spec.name, region)
    if endpoint != "embeddings" and max_tokens is None:
        return None, f"{reason}; the fallback price needs max_tokens to bound the output"
    return CostEstimate(low, high, prompt_tokens, output, False), None


def _currency(region: str) -> str:
    return "USD" if region == "intl" else "CNY"
