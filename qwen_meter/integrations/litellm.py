"""LiteLLM: qwen_meter's prices in LiteLLM's price-map format, and a LiteLLM logger.

:func:`price_map` (and ``qwen-meter catalogue export litellm``) writes the DashScope models of
the catalogue as entries of LiteLLM's ``model_prices_and_context_window.json``
(``"dashscope/qwen-plus": {...}``), to load with ``litellm.register_model(...)`` or
``LITELLM_MODEL_COST_MAP_URL``. What the format can express is written exactly:

* request-size tiers as ``tiered_pricing`` with qwen_meter's integer bounds (``range`` is
  ``(above, upto]`` in LiteLLM too), so a 32,500-token qwen3-max prompt stays in the first
  tier (its bound is 32K = 32,768, not 32,000) — a one-tier list for flat prices too, so that
  ``litellm.register_model``, which merges into LiteLLM's own entry, drops LiteLLM's tiers;
* the cache-hit price — the printed one, else the implicit-cache rate (20 % of input) —
  as ``cache_read_input_token_cost``; explicit-cache hits (10 %) and creation (125 %) as
  ``explicit_cache_read_input_token_cost`` / ``cache_creation_input_token_cost``;
* the thinking-mode output price as ``output_cost_per_reasoning_token``;
* token limits (``max_input_tokens``, ``max_output_tokens``, ``max_tokens``);
* the batch factor as ``input_cost_per_token_batches`` / ``output_cost_per_token_batches``.

What it cannot express (listed in :data:`LIMITATIONS`, printed by the CLI):

* currency: LiteLLM's costs are USD. ``region="intl"`` (USD) is exact; ``region="cn"`` (CNY)
  is refused unless ``usd_per_cny`` converts it at a rate you give, since LiteLLM would read
  CNY amounts as USD (each entry's ``metadata`` records the currency and the rate);
* thinking mode bills the whole output (answer too) at the thinking price; LiteLLM prices
  only the reasoning tokens at ``output_cost_per_reasoning_token`` and the answer at the
  normal output price, so thinking calls come out low;
* batch prices are the first tier's only, and LiteLLM does not know batch calls get no
  cache discount;
* audio / image input, audio output and the output price after media input of Omni and VL
  models (single-tier entries get ``input_cost_per_audio_token`` /
  ``output_cost_per_audio_token``; the rest is not expressible);
* free quotas, price history and the date of each price (``metadata.as_of`` records it);
* a dated snapshot's own price: LiteLLM files ``qwen-max-2024-09-19`` under ``qwen-max``,
  so such snapshots are left out when their base model is exported.

:class:`QwenMeterLogger` (imported lazily: it needs ``litellm``) is a ``CustomLogger`` that
prices LiteLLM's calls to DashScope models with qwen_meter and writes qwen_meter usage
records — see :mod:`qwen_meter.integrations.litellm_logger`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..base.errors import ConfigurationError, NotOffered
from ..catalogue.core import Catalogue, default_catalogue
from ..catalogue.records import ModelSpec, Offer, PriceTier

if TYPE_CHECKING:
    from .litellm_logger import QwenMeterLogger as QwenMeterLogger

PROVIDER = "dashscope"
_DATED = re.compile(r"(.+)-\d{4}-\d{2}-\d{2}")
MILLION = Decimal(1_000_000)
LIMITATIONS = (
    "costs are USD in LiteLLM: cn prices (CNY) are exported only converted at a rate you give "
    "(--usd-per-cny)",
    "thinking mode: LiteLLM prices only reasoning tokens at the thinking price, the answer at "
    "the normal output price (Model Studio bills the whole output at the thinking price)",
    "batch: only the first tier's batch prices; no 'no cache discount on batch' rule",
    "media: image input, output after media input and multi-tier audio prices are not "
    "expressible",
    "free quotas and price history are not expressible",
    "dated snapshots (qwen-max-2024-09-19): LiteLLM files them under the base name, so they "
    "are left out where the base model is exported",
    "'-latest' names (qwen-max-latest): LiteLLM prices them with figures of its own whatever "
    "the map says, so they are left out",
)


def _per_token(price: Decimal | None, rate: Decimal) -> float | None:
    return None if price is None else float(price * rate / MILLION)


def _tier_prices(tier: PriceTier, offer: Offer, rate: Decimal, thinking_only: bool
                 ) -> dict[str, float]:
    # A thinking-only model bills every output token at the thinking price: LiteLLM's plain
    # output price can say that exactly.
    output = tier.output_thinking if thinking_only and tier.output_thinking is not None \
        else tier.output
    prices: dict[str, float | None] = {
        "input_cost_per_token": _per_token(tier.input, rate),
        "output_cost_per_token": _per_token(output, rate),
        "output_cost_per_reasoning_token": _per_token(tier.output_thinking, rate),
    }
    if tier.input is not None:
        cache = offer.cache
        hit = tier.cache_hit if tier.cache_hit is not None else tier.input * cache.implicit_hit
        prices["cache_read_input_token_cost"] = _per_token(hit, rate)
        prices["explicit_cache_read_input_token_cost"] = _per_token(
            tier.input * cache.explicit_hit, rate)
        prices["cache_creation_input_token_cost"] = _per_token(
            tier.input * cache.explicit_create, rate)
    return {k: v for k, v in prices.items() if v is not None}


def entry(spec: ModelSpec, offer: Offer, *, usd_per_cny: Decimal | None = None
          ) -> dict[str, Any]:
    """The LiteLLM price-map entry of one model's offer."""
    rate = Decimal(1)
    currency = offer.currency
    if currency == "CNY" and usd_per_cny is not None:
        rate, currency = usd_per_cny, "USD"
    if currency != "USD":
        # LiteLLM reads every cost field as USD: a CNY figure written there would be billed
        # about 7x too high, with nothing in LiteLLM to say so.
        raise ConfigurationError(
            f"LiteLLM's costs are USD and {spec.name} in {offer.region} is priced in "
            f"{currency}: give usd_per_cny (--usd-per-cny RATE) to convert at a rate you choose")
    limits = offer.limits
    max_input = limits.max_input or limits.context
    out: dict[str, Any] = {"litellm_provider": PROVIDER,
                           "mode": "embedding" if spec.kind == "embedding" else "chat"}
    if max_input is not None:
        out["max_input_tokens"] = max_input
    if limits.max_output is not None:
        out["max_output_tokens"] = out["max_tokens"] = limits.max_output
    first = offer.tiers[0]
    thinking_only = spec.thinking == "only"
    out.update(_tier_prices(first, offer, rate, thinking_only))
    # Always a tier list, even of one: litellm.register_model merges into LiteLLM's own
    # entry, and an entry without tiers would keep LiteLLM's (wrong) tier table.
    out["tiered_pricing"] = [
        {"range": [tier.above, tier.upto if tier.upto is not None
                   else max(max_input or 0, tier.above + 1)],
         **_tier_prices(tier, offer, rate, thinking_only)} for tier in offer.tiers]
    if len(offer.tiers) == 1 and (first.input_audio is not None
                                  or first.output_audio is not None):
        audio = {"input_cost_per_audio_token": _per_token(first.input_audio, rate),
                 "output_cost_per_audio_token": _per_token(first.output_audio, rate)}
        out.update({k: v for k, v in audio.items() if v is not None})
    if offer.batch is not None:
        for key, price in (("input_cost_per_token", first.input),
                           ("output_cost_per_token", first.output)):
            if price is not None:
                out[f"{key}_batches"] = _per_token(price * offer.batch, rate)
    if spec.thinking != "none":
        out["supports_reasoning"] = True
    if "image" in spec.modalities:
        out["supports_vision"] = True
    if "audio" in spec.modalities:
        out["supports_audio_input"] = True
    if out["mode"] == "chat":
        out["supports_function_calling"] = out["supports_tool_choice"] = True
        out["supports_prompt_caching"] = True
    out["source"] = offer.source.url
    out["metadata"] = {"currency": currency, "region": offer.region,
                       "as_of": offer.as_of.isoformat(), "generated_by": "qwen-meter",
                       **({"usd_per_cny": str(usd_per_cny)} if rate != 1 else {})}
    return out


def _complete(spec: ModelSpec, offer: Offer) -> bool:
    """Whether every tier has the prices LiteLLM needs (a missing one would bill as zero)."""
    if not offer.priced:
        return False
    for tier in offer.tiers:
        output = tier.output_thinking if spec.thinking == "only" else tier.output
        if tier.input is None or (spec.kind != "embedding" and output is None):
            return False
    return True


def price_map(catalogue: Catalogue | None = None, *, region: str = "intl",
              usd_per_cny: Decimal | str | None = None, aliases: bool = False
              ) -> dict[str, dict[str, Any]]:
    """``{"dashscope/<model>": entry}`` for every model offered and fully priced in ``region``
    (a model missing an input or output price is left out: LiteLLM would bill it as zero).

    ``usd_per_cny`` converts CNY prices to USD; a CNY region without it raises
    :class:`~qwen_meter.errors.ConfigurationError`, since LiteLLM reads every price as USD.
    ``aliases`` adds an entry per alias too.
    """
    if region not in ("cn", "intl"):
        raise ConfigurationError(f"region must be cn or intl, not {region!r}")
    rate = None
    if usd_per_cny is not None:
        try:
            rate = Decimal(str(usd_per_cny))
        except ArithmeticError:
            rate = None
        if rate is None or not rate.is_finite() or rate <= 0:
            raise ConfigurationError(f"usd_per_cny must be a positive number, "
                                     f"got {usd_per_cny!r}")
    cat = catalogue or default_catalogue()
    currency = cat.regions.get(region, {}).get("currency", "USD")
    if currency != "USD" and rate is None:
        raise ConfigurationError(
            f"LiteLLM's costs are USD and {region} prices are {currency}: give usd_per_cny "
            f"(--usd-per-cny RATE) to convert them at a rate you choose")
    out: dict[str, dict[str, Any]] = {}
    for spec in sorted(cat, key=lambda s: s.name):
        try:
            offer = spec.offer(region)
        except NotOffered:
            continue
        if not _complete(spec, offer):
            continue
        value = entry(spec, offer, usd_per_cny=rate)
        for name in (spec.name, *(spec.aliases if aliases else ())):
            out[f"{PROVIDER}/{name}"] = value
    # LiteLLM files a dated snapshot ("qwen-max-2024-09-19") under its base name, so the
    # snapshot's entry would overwrite the base model's prices: leave it out. A "-latest"
    # name is priced by LiteLLM with figures of its own whatever the map registers (seen
    # with qwen-max-latest: ¥12 / ¥36 per 1M against the registered ¥2.4 / ¥9.6), so an
    # entry for it would only look right: leave those out too.
    return {key: value for key, value in out.items()
            if not ((m := _DATED.fullmatch(key)) and m.group(1) in out)
            and not key.endswith("-latest")}


def dumps(prices: Mapping[str, Any]) -> str:
    """The map as LiteLLM's JSON file writes it (indented, keys in order)."""
    return json.dumps(prices, indent=4, ensure_ascii=False) + "\n"


def __getattr__(name: str) -> Any:
    # The logger subclasses litellm's CustomLogger: import litellm only when it is asked for,
    # so exporting the price map never loads LiteLLM.
    if name == "QwenMeterLogger":
        from .litellm_logger import QwenMeterLogger

        return QwenMeterLogger
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
