"""The catalogue's records: frozen, typed values for what ``data/models.yaml`` says, and the
constants that bound them (currencies, statuses, kinds, price fields, environment variables).

A :class:`ModelSpec` holds, per region, a chain of :class:`Offer` records (limits, request-size
price tiers, batch factor, rate limits, free quota, tool fees, source and dates), newest first.
Reading and validating the file into these records is in the ``parse_*`` modules; the
:class:`~qwen_meter.catalogue.core.Catalogue` that holds them is in ``core``.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from ..base.errors import NotOffered
from ..tokens.media import VisionRule

#: Environment variable naming user override files (separated by os.pathsep).
OVERRIDE_ENV = "QWEN_METER_CATALOGUE"
#: Environment variable naming the default region.
REGION_ENV = "QWEN_METER_REGION"
CURRENCIES = ("CNY", "USD")
THINKING_KINDS = ("none", "hybrid", "only")
STATUSES = ("current", "legacy", "retiring")
MODEL_KINDS = ("chat", "embedding")
#: official: an Alibaba Cloud page; catalogue: a registry or catalogue citing one;
#: third-party: anything else (resellers, blogs) — such figures are flagged in the output.
SOURCE_KINDS = ("official", "catalogue", "third-party")


@dataclass(frozen=True)
class Source:
    """Where a figure comes from: ``as_of`` is when it was read, ``effective`` (if the source
    says) when its prices took effect."""

    id: str
    url: str
    as_of: dt.date
    kind: str = "official"
    note: str = ""
    effective: dt.date | None = None


@dataclass(frozen=True)
class Limits:
    """Token limits of one model in one region (None: not known)."""

    context: int | None = None
    context_thinking: int | None = None
    max_input: int | None = None
    max_input_thinking: int | None = None
    max_output: int | None = None
    max_output_thinking: int | None = None
    max_reasoning: int | None = None

    def input_limit(self, thinking: bool) -> int | None:
        return (self.max_input_thinking if thinking else None) or self.max_input

    def context_limit(self, thinking: bool) -> int | None:
        return (self.context_thinking if thinking else None) or self.context

    def output_limit(self, thinking: bool) -> int | None:
        return (self.max_output_thinking if thinking else None) or self.max_output


PRICE_FIELDS = ("input", "output", "output_thinking", "cache_hit", "cache_explicit_hit",
                "cache_creation", "input_audio", "input_image", "output_audio",
                "output_media_input")


@dataclass(frozen=True)
class PriceTier:
    """Prices per 1M tokens for requests whose input is in ``(above, upto]``."""

    above: int
    upto: int | None
    input: Decimal | None = None
    output: Decimal | None = None
    output_thinking: Decimal | None = None
    cache_hit: Decimal | None = None
    #: printed explicit-cache prices (3.7 / 3.8); otherwise the defaults' fractions apply
    cache_explicit_hit: Decimal | None = None
    cache_creation: Decimal | None = None
    input_audio: Decimal | None = None
    input_image: Decimal | None = None
    output_audio: Decimal | None = None
    output_media_input: Decimal | None = None

    def contains(self, input_tokens: int) -> bool:
        return input_tokens > self.above and (self.upto is None or input_tokens <= self.upto)


@dataclass(frozen=True)
class CacheRules:
    """Cache prices as fractions of the input price (used where no cache price is printed)."""

    implicit_hit: Decimal = Decimal("0.2")
    explicit_create: Decimal = Decimal("1.25")
    explicit_hit: Decimal = Decimal("0.1")


@dataclass(frozen=True)
class RateLimits:
    """Requests and tokens (input + output) per root account and model.

    DashScope publishes most limits per minute (``rpm``/``tpm``) and some per second
    (``rps``/``tps``, e.g. embeddings: 30 requests/s). A per-second limit is kept as such; its
    per-minute view is derived (``rps * 60``) and flagged by :attr:`per_second`, because
    DashScope enforces it in every second — a burst of ``rpm`` requests would be refused.
    """

    rpm: int | None
    tpm: int | None
    source: Source
    rps: int | None = None
    tps: int | None = None

    @property
    def per_second(self) -> bool:
        """Whether the published limit is per second (the per-minute figures are derived)."""
        return self.rps is not None or self.tps is not None


@dataclass(frozen=True)
class ToolFee:
    """A per-call fee for a built-in tool (web search ...), in the offer's currency."""

    per_call: Decimal
    source: Source
    note: str = ""


@dataclass(frozen=True)
class FreeQuota:
    """New-user free tokens for one model in one region."""

    tokens: int
    days: int
    source: Source


@dataclass(frozen=True)
class Offer:
    """One model in one region as of one date."""

    region: str
    currency: str
    as_of: dt.date
    source: Source
    limits: Limits
    tiers: tuple[PriceTier, ...] = ()
    batch: Decimal | None = None
    cache: CacheRules = field(default_factory=CacheRules)
    rate_limits: RateLimits | None = None
    free_quota: FreeQuota | None = None
    note: str = ""
    #: when these prices took effect (``as_of`` is when the source was read)
    effective: dt.date | None = None
    #: factor of the synchronous Batch Chat API endpoint, where the model is offered there
    batch_chat: Decimal | None = None
    tool_fees: Mapping[str, ToolFee] = field(default_factory=dict)

    @property
    def priced(self) -> bool:
        return bool(self.tiers)

    @property
    def effective_date(self) -> dt.date:
        """The date the offer took effect (its source's date when the source gives none)."""
        return self.effective or self.as_of

    @property
    def source_kind(self) -> str:
        return self.source.kind

    def tier_for(self, input_tokens: int) -> PriceTier | None:
        """The request-size tier that prices a request with ``input_tokens`` of input."""
        for tier in self.tiers:
            if tier.contains(max(input_tokens, 1)):
                return tier
        return self.tiers[-1] if self.tiers else None


@dataclass(frozen=True, eq=False)
class ModelSpec:
    """What qwen_meter knows about one model name."""

    name: str
    family: str
    template: str
    thinking: str = "none"
    thinking_default: bool | None = None
    vision: VisionRule | None = None
    aliases: tuple[str, ...] = ()
    snapshot: str | None = None
    modalities: tuple[str, ...] = ("text",)
    status: str = "current"
    kind: str = "chat"
    note: str = ""
    offers: Mapping[str, tuple[Offer, ...]] = field(default_factory=dict)
    matched_rule: str | None = None

    @property
    def regions(self) -> tuple[str, ...]:
        return tuple(self.offers)

    def offer(self, region: str | None = None, at: dt.date | None = None) -> Offer:
        """The offer in ``region`` (default: $QWEN_METER_REGION or ``cn``), current or as of ``at``.

        Raises :class:`~qwen_meter.errors.NotOffered` if the model has no entry there.
        """
        region = region or os.environ.get(REGION_ENV) or "cn"
        offers = self.offers.get(region)
        if not offers:
            raise NotOffered(self.name, region, self.regions)
        if at is None:
            return offers[0]
        for offer in offers:  # newest effective date first
            if offer.effective_date <= at:
                return offer
        return offers[-1]

