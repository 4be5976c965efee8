"""What changes between two catalogues: models added or removed, and per model and region the
prices, limits, rate limits, batch factors, fees and dates of the current offer."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from .core import Catalogue
from .records import Limits, Offer, PriceTier

_PRICE_KEYS = tuple(f.name for f in fields(PriceTier))
_LIMIT_KEYS = tuple(f.name for f in fields(Limits))


def _flat(offer: Offer) -> dict[str, Any]:
    """The comparable figures of one offer, by a readable key."""
    out: dict[str, Any] = {"currency": offer.currency, "source": offer.source.id,
                           "source kind": offer.source.kind,
                           "effective": offer.effective_date.isoformat(),
                           "batch": offer.batch, "batch_chat": offer.batch_chat,
                           "tiers": len(offer.tiers)}
    for key in _LIMIT_KEYS:
        out[f"limits.{key}"] = getattr(offer.limits, key)
    for i, tier in enumerate(offer.tiers):
        for key in _PRICE_KEYS:
            out[f"tiers[{i}].{key}"] = getattr(tier, key)
    rl = offer.rate_limits
    for key in ("rpm", "tpm", "rps", "tps"):
        out[f"rate_limits.{key}"] = getattr(rl, key) if rl else None
    for tool, fee in offer.tool_fees.items():
        out[f"tool_fees.{tool}"] = fee.per_call
    return out


def _show(value: Any) -> str:
    return "-" if value is None else f"{value:f}" if hasattr(value, "is_finite") else str(value)


def diff_catalogues(old: Catalogue, new: Catalogue) -> list[str]:
    """Readable change lines (``+`` added, ``-`` removed, ``~`` changed); empty if equal."""
    lines: list[str] = []
    old_names, new_names = set(old.models), set(new.models)
    lines += [f"+ model {name}" for name in sorted(new_names - old_names)]
    lines += [f"- model {name}" for name in sorted(old_names - new_names)]
    for name in sorted(old_names & new_names):
        a, b = old.models[name], new.models[name]
        for attr in ("family", "template", "thinking", "status", "snapshot"):
            if getattr(a, attr) != getattr(b, attr):
                lines.append(f"~ {name} {attr}: {getattr(a, attr)} -> {getattr(b, attr)}")
        for region in sorted(set(a.offers) | set(b.offers)):
            if region not in b.offers:
                lines.append(f"- {name} [{region}]")
                continue
            if region not in a.offers:
                lines.append(f"+ {name} [{region}]")
                continue
            before, after = _flat(a.offers[region][0]), _flat(b.offers[region][0])
            for key in sorted(set(before) | set(after)):
                x, y = before.get(key), after.get(key)
                if x != y:
                    lines.append(f"~ {name} [{region}] {key}: {_show(x)} -> {_show(y)}")
    return lines
