"""``qwen-meter price``: a model's limits, rate limits and price tiers in each region."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .common import REGIONS, _tokens


def _price(args: argparse.Namespace) -> int:
    from ..catalogue.core import resolve

    spec = resolve(args.model)
    regions = [args.region] if args.region else list(spec.regions)
    if args.region and args.region not in spec.offers:
        from ..base.errors import NotOffered

        raise NotOffered(spec.name, args.region, spec.regions)
    report: list[dict[str, Any]] = []
    for region in regions:
        offer = spec.offers[region][0]
        report.append({
            "region": region, "currency": offer.currency, "as_of": offer.as_of.isoformat(),
            "effective": offer.effective_date.isoformat(), "source_kind": offer.source.kind,
            "source": offer.source.url, "note": offer.note,
            "limits": {k: v for k, v in offer.limits.__dict__.items() if v is not None},
            "batch": None if offer.batch is None else str(offer.batch),
            "batch_chat": None if offer.batch_chat is None else str(offer.batch_chat),
            "tool_fees": {k: str(v.per_call) for k, v in offer.tool_fees.items()},
            "rate_limits": None if offer.rate_limits is None else
            {"rpm": offer.rate_limits.rpm, "tpm": offer.rate_limits.tpm,
             "rps": offer.rate_limits.rps, "tps": offer.rate_limits.tps,
             "source": offer.rate_limits.source.url},
            "free_quota": None if offer.free_quota is None else
            {"tokens": offer.free_quota.tokens, "days": offer.free_quota.days},
            "tiers": [{k: (str(v) if v is not None and k not in ("above", "upto") else v)
                       for k, v in tier.__dict__.items() if v is not None}
                      for tier in offer.tiers]})
    if args.json:
        print(json.dumps({"model": spec.name, "family": spec.family, "template": spec.template,
                          "thinking": spec.thinking, "regions": report}, ensure_ascii=False))
        return 0
    print(f"{spec.name}  (family {spec.family}, template {spec.template}, "
          f"thinking {spec.thinking}, {spec.status})")
    if not report:
        print("  no region data in the catalogue")
    for r in report:
        print(f"\n[{r['region']}] {r['currency']}, effective {r['effective']} (read {r['as_of']}) "
              f"— {r['source_kind']}: {r['source']}")
        if r["note"]:
            print(f"  note: {r['note']}")
        limits = ", ".join(f"{k} {v:,}" for k, v in r["limits"].items())
        print(f"  limits: {limits or 'unknown'}")
        if r["rate_limits"]:
            rl = r["rate_limits"]
            requests = f"{_tokens(rl['rps'])} RPS" if rl["rps"] else f"{_tokens(rl['rpm'])} RPM"
            tokens = f"{_tokens(rl['tps'])} TPS" if rl["tps"] else f"{_tokens(rl['tpm'])} TPM"
            print(f"  rate limits: {requests}, {tokens}")
        if r["free_quota"]:
            print(f"  free quota: {r['free_quota']['tokens']:,} tokens for "
                  f"{r['free_quota']['days']} days")
        if r["batch"]:
            print(f"  batch: x{r['batch']}")
        if r["batch_chat"]:
            print(f"  Batch Chat API: x{r['batch_chat']}")
        for tool, fee in r["tool_fees"].items():
            print(f"  {tool}: {fee} {r['currency']} per call")
        if not r["tiers"]:
            print("  price: unknown")
        for tier in r["tiers"]:
            upto = "∞" if tier.get("upto") is None else f"{tier['upto']:,}"
            prices = ", ".join(f"{k} {v}" for k, v in tier.items() if k not in ("above", "upto"))
            print(f"  input ({tier['above']:,}, {upto}]: {prices} per 1M")
    return 0


def register(subparsers: Any) -> None:
    """Add the ``price`` command to the CLI's subparsers."""
    price = subparsers.add_parser("price", help="a model's limits and price tiers per region")
    price.add_argument("model", help="model name, e.g. qwen-plus")
    price.add_argument("--region", choices=REGIONS, help="only this region")
    price.add_argument("--json", action="store_true", help="print JSON")
    price.set_defaults(run=_price)
