"""``qwen-meter log compact``: usage logs as date-partitioned Parquet."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..base.errors import QwenMeterError
from ..base.words import plural


def _compact(args: argparse.Namespace) -> int:
    try:
        from ..report.export import compact, print_skipped
    except ImportError as exc:
        raise QwenMeterError('log compact needs `pip install ".[reports]"` '
                             f"(missing: {exc.name})") from None
    written, skipped, listed = compact(args.logs, args.out,
                                       progress=sys.stderr.isatty() and not args.quiet)
    print_skipped(skipped, listed)
    print(f"{plural(written, 'record')} written to {args.out} (date=YYYY-MM-DD/part-*.parquet)"
          + (f"; {plural(skipped, 'line')} skipped" if skipped else ""))
    return 0


def register(sub: Any) -> None:
    """Adds ``log`` (with ``compact``) to the CLI's subparsers."""
    log = sub.add_parser("log", help="usage log tools")
    commands = log.add_subparsers(dest="log_command", required=True)
    compact = commands.add_parser(
        "compact", help="write JSONL / SQLite logs or a ledger as date-partitioned Parquet",
        description="Writes the records of usage logs or ledgers (postgresql://…, "
                    "sqlite:///…) that pass the report's checks as Parquet "
                    "files under OUT/date=YYYY-MM-DD/ (UTC dates, hive layout) that DuckDB, "
                    "Spark or Trino read as one table; `qwen-meter report OUT` reads them. "
                    "Running it again adds new files beside the old ones.")
    compact.add_argument("logs", nargs="+", metavar="LOG",
                         help="JSONL or SQLite usage logs, or ledger URLs")
    compact.add_argument("--out", required=True, help="the folder to write into")
    compact.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    compact.set_defaults(run=_compact)
