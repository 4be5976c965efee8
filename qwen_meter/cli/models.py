"""``qwen-meter models``: the model catalogue as a table (or JSON), one row per region."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .common import REGIONS, _money, _table, _tokens


def _models(args: argparse.Namespace) -> int:
    from ..catalogue.core import default_catalogue

    if args.family:
        from ..tokens.families import get_family

        get_family(args.family)  # an unknown family is an error naming the known ones
    out: list[dict[str, Any]] = []
    for spec in default_catalogue():
        if args.family and spec.family != args.family:
            continue
        regions: list[str | None] = [args.region] if args.region else [*spec.regions] or [None]
        for region in regions:
            offers = spec.offers.get(region) if region else None
            offer = offers[0] if offers else None
            if args.region and offer is None:
                continue
            tier = offer.tiers[0] if offer and offer.tiers else None
            out.append({
                "model": spec.name, "family": spec.family, "template": spec.template,
                "thinking": spec.thinking, "status": spec.status, "region": region,
                "currency": offer.currency if offer else None,
                "context": offer.limits.context if offer else None,
                "max_input": offer.limits.max_input if offer else None,
                "max_output": offer.limits.max_output if offer else None,
                "input": tier.input if tier else None, "output": tier.output if tier else None,
                "output_thinking": tier.output_thinking if tier else None,
                "tiers": len(offer.tiers) if offer else 0,
                "rpm": offer.rate_limits.rpm if offer and offer.rate_limits else None,
                "tpm": offer.rate_limits.tpm if offer and offer.rate_limits else None,
                "as_of": offer.as_of.isoformat() if offer else None,
                "effective": offer.effective_date.isoformat() if offer else None,
                "source_kind": offer.source.kind if offer else None,
                "source": offer.source.url if offer else None})
    if args.json:
        print(json.dumps(out, ensure_ascii=False, default=str))
        return 0
    rows = [[r["model"], r["family"], r["region"] or "-", _tokens(r["context"]),
             _tokens(r["max_output"]),
             f"{_money(r['input'])}/{_money(r['output'])}" + (
                 f" (think {_money(r['output_thinking'])})" if r["output_thinking"] is not None
                 else "") + (f" +{r['tiers'] - 1} tiers" if r["tiers"] > 1 else ""),
             r["currency"] or "-", _tokens(r["rpm"]), _tokens(r["tpm"]), r["effective"] or "-",
             r["source_kind"] or "-"]
            for r in out]
    print(_table(rows, ["model", "family", "region", "context", "max out",
                        "price in/out per 1M", "cur", "rpm", "tpm", "effective", "source"]))
    print(f"\n{len(out)} rows; prices are the first (smallest-input) tier. "
          "`qwen-meter price MODEL` shows all tiers.")
    return 0


def register(subparsers: Any) -> None:
    """Add the ``models`` command to the CLI's subparsers."""
    models = subparsers.add_parser("models", help="list the model catalogue")
    models.add_argument("--family", help="only this tokenizer family (qwen2.5, qwen3, qwen3.5)")
    models.add_argument("--region", choices=REGIONS,
                        help="only this region")
    models.add_argument("--json", action="store_true", help="print JSON")
    models.set_defaults(run=_models)
