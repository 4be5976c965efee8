"""``qwen-meter estimate batch.jsonl``: estimate a Batch API input file."""

from __future__ import annotations

import argparse
import json
import sys
from decimal import Decimal
from typing import TextIO

from ..base.words import plural
from ..billing.pricing import CURRENCY_SYMBOLS

BATCH_SUFFIXES = (".jsonl", ".ndjson")


def is_batch_file(path: str) -> bool:
    """Whether ``estimate`` should read ``path`` as a Batch input file (JSON Lines)."""
    return path.lower().endswith(BATCH_SUFFIXES)


class ProgressBar:
    """A one-line progress bar on a terminal (nothing when the stream is not one)."""

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.enabled = stream.isatty()
        self._last = -1

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        filled = self.width * done // total
        if filled == self._last and done != total:
            return  # redraw only when the bar moves
        self._last = filled
        bar = "#" * filled + "." * (self.width - filled)
        end = "\n" if done >= total else ""
        self.stream.write(f"\r[{bar}] {done}/{total} lines{end}")
        self.stream.flush()


def _money(value: Decimal | None, currency: str) -> str:
    """As a single estimate prints its amounts (``Cost``): ``¥0.0012 CNY``."""
    if value is None:
        return "-"
    return f"{CURRENCY_SYMBOLS.get(currency, '')}{value.normalize():f} {currency}"


def run(args: argparse.Namespace) -> int:
    """Estimate the batch file ``args.request``; exit status 1 when some line was bad."""
    from ..billing.batch import estimate_batch

    result = estimate_batch(args.request, model=args.model, region=args.region,
                            progress=ProgressBar(sys.stderr))
    if args.json:
        print(json.dumps(result.as_dict(), ensure_ascii=False))
    else:
        print(f"{plural(result.requests, 'request')} in {plural(result.lines, 'line')}, "
              "at batch prices")
        for row in result.models.values():
            exact = "" if row.exact_prompt else " (estimated)"
            cost = f"{_money(row.low, row.currency)} .. {_money(row.high, row.currency)}"
            if row.low is None or row.high is None:
                cost += f" (unpriced: {row.unpriced})"
            print(f"  {row.model} [{row.region}]: {plural(row.requests, 'request')}, "
                  f"{row.prompt_tokens:,} prompt tokens{exact}, up to "
                  f"{row.max_output_tokens:,} output tokens → {cost}")
        for error in result.errors:
            where = f"line {error.line}" + (f" ({error.custom_id})" if error.custom_id else "")
            print(f"  {where}: {error.error}", file=sys.stderr)
    return 1 if result.errors else 0
