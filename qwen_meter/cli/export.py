"""``qwen-meter catalogue export litellm``: the catalogue in other tools' price formats.

:func:`add_export_parser` adds ``export`` to the ``catalogue`` command's sub-commands;
:func:`register` does that on the top-level parser, creating a bare ``catalogue`` command
first if no other module has (the catalogue command proper lives in ``cli_catalogue``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def _litellm(args: argparse.Namespace) -> int:
    from ..base.errors import QwenMeterError
    from ..integrations.litellm import LIMITATIONS, dumps, price_map

    prices = price_map(region=args.region, usd_per_cny=args.usd_per_cny, aliases=args.aliases)
    text = dumps(prices)
    if args.out:
        try:
            Path(args.out).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise QwenMeterError(f"cannot write {args.out}: {exc.strerror}") from exc
        print(f"wrote {len(prices)} DashScope models ({args.region}) to {args.out}",
              file=sys.stderr)
    else:
        sys.stdout.write(text)
    if not args.quiet:
        print("not expressible in LiteLLM's format:", file=sys.stderr)
        for line in LIMITATIONS:
            print(f"  - {line}", file=sys.stderr)
    return 0


def add_export_parser(catalogue_subparsers: Any) -> argparse.ArgumentParser:
    """Add ``export`` (with ``litellm``) to the ``catalogue`` command's sub-parsers."""
    export: argparse.ArgumentParser = catalogue_subparsers.add_parser(
        "export", help="write the catalogue's prices in another tool's format")
    formats = export.add_subparsers(dest="export_format", required=True)
    litellm = formats.add_parser(
        "litellm", help="LiteLLM's model_prices_and_context_window.json format",
        description="DashScope models as LiteLLM price-map entries (dashscope/<model>): tiers "
                    "with exact bounds, cache prices, limits. Load with "
                    "litellm.register_model(json.load(open(FILE))).")
    litellm.add_argument("--region", choices=("cn", "intl"), default="intl",
                         help="which region's offers (default intl, priced in USD)")
    litellm.add_argument("--usd-per-cny", metavar="RATE",
                         help="convert cn prices to USD at this rate (LiteLLM assumes USD)")
    litellm.add_argument("--aliases", action="store_true", help="an entry per alias too")
    litellm.add_argument("--out", "-o", metavar="FILE", help="write here (default stdout)")
    litellm.add_argument("--quiet", "-q", action="store_true",
                         help="do not list what the format cannot express")
    litellm.set_defaults(run=_litellm)
    return export


def register(subparsers: Any) -> None:
    """Hook ``catalogue export`` into the top-level sub-parsers."""
    catalogue = subparsers.choices.get("catalogue")
    if catalogue is None:
        catalogue = subparsers.add_parser("catalogue", help="the model catalogue's data")
    inner = next((a for a in catalogue._actions
                  if isinstance(a, argparse._SubParsersAction)), None)
    if inner is None:
        inner = catalogue.add_subparsers(dest="catalogue_command", required=True)
    add_export_parser(inner)
