"""``qwen-meter report``: cost reports from usage logs."""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..base.errors import QwenMeterError
from .common import REGIONS

GROUPS = ("model, day, week, month, tag, user, region, status, served_model, endpoint")


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _top(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {text!r}")
    return value


def write_out(text: str, out: str) -> None:
    """Writes ``text`` to ``out``, creating missing folders; a clear error if it cannot."""
    path = Path(out)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise QwenMeterError(f"cannot write {out}: {exc.strerror or exc}") from None


def _run(args: argparse.Namespace) -> int:
    try:
        from ..report import build_report, load_usage, render
    except ImportError as exc:
        raise QwenMeterError('reports need `pip install ".[reports]"` '
                             f"(missing: {exc.name})") from None
    if args.sql:
        return _print_sql(args)
    by = [k.strip() for k in args.by.split(",") if k.strip()]
    if args.plot:  # refuse a format the charts cannot be written in before reading any log
        from ..report.charts import plot_format

        plot_format(args.plot)
    with tempfile.TemporaryDirectory(prefix="qwen-meter-report-") as spool:
        logs = [_stdin(spool) if log == "-" else log for log in args.logs]
        data = load_usage(logs or None, since=args.since, until=args.until, tz=args.tz,
                          default_model=args.default_model, region=args.region,
                          progress=sys.stderr.isatty() and not args.quiet)
        report = build_report(data, by=by, reprice_as=args.reprice_as,
                              reprice_region=args.reprice_region,
                              reprice_batch=args.reprice_batch, budget=args.budget or None,
                              top=args.top)
        width = shutil.get_terminal_size((100, 24)).columns if sys.stdout.isatty() else 100
        # rendered while a spooled stdin still exists: the HTML report reads the usage again
        text = render(report, args.format, width=width)
    if args.out:
        write_out(text, args.out)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()
    if args.plot:
        from ..report.charts import save_charts

        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        save_charts(report, args.plot)
    return 0


def _stdin(folder: str) -> str:
    """``-``: stdin, spooled to a file in ``folder``, because a report reads its inputs by
    path (DuckDB, SQLite, a second pass); named ``stdin`` so skipped lines say where."""
    path = Path(folder) / "stdin"
    with path.open("wb") as out:
        shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
    return str(path)


def _print_sql(args: argparse.Namespace) -> int:
    from ..report.export import report_sql
    from ..report.ledger_source import is_ledger_url

    if args.logs and is_ledger_url(args.logs[0]):
        raise QwenMeterError("--sql prints the report over a Parquet folder: write the ledger "
                             "as one first (qwen-meter log compact LEDGER_URL --out DIR), "
                             "then pass DIR")
    by = [k.strip() for k in args.by.split(",") if k.strip()]
    sys.stdout.write(report_sql(args.logs[0] if args.logs else "usage_parquet", by=by,
                                tz=args.tz or "UTC", reprice_as=args.reprice_as,
                                reprice_region=args.reprice_region,
                                reprice_batch=args.reprice_batch) + "\n")
    return 0


def register(sub: Any) -> None:
    """Adds ``report`` to the CLI's subparsers."""
    report = sub.add_parser(
        "report", help="cost report from usage logs, a ledger or saved responses",
        description="A cost report from qwen_meter usage logs (JSONL, SQLite, or the Parquet "
                    "folder of `qwen-meter log compact`), ledgers (postgresql://user@host/db, "
                    "sqlite:///ledger.db) or JSONL files of raw responses, in any mix. "
                    "With no LOG, the meter's default log.")
    report.add_argument("logs", nargs="*", metavar="LOG",
                        help="usage logs (.jsonl, .db, .parquet or a compacted folder), "
                             "ledger URLs (postgresql://…, sqlite:///…), or JSONL files of "
                             "raw responses; '-' reads stdin (default: the meter's default "
                             "log)")
    report.add_argument("--by", default="model",
                        help=f"group by: {GROUPS} (comma-separated; default model)")
    report.add_argument("--since", type=_date, help="first day (YYYY-MM-DD, in --tz)")
    report.add_argument("--until", type=_date, help="day after the last (YYYY-MM-DD, in --tz)")
    report.add_argument("--tz", help="time zone of days, weeks and months, e.g. Asia/Shanghai "
                                     "(default: the system's)")
    report.add_argument("--format", choices=("table", "csv", "md", "json", "html"),
                        default="table", help="output format (default: a terminal table)")
    report.add_argument("--out", help="write the report to this file (folders are created)")
    report.add_argument("--plot", metavar="FILE.png",
                        help="also draw the charts to an image, in the format its extension "
                             "names (.png, .jpg, .svg, .pdf, .webp ...)")
    report.add_argument("--top", type=_top, default=10,
                        help="how many tags to list by cost and by calls (default 10)")
    report.add_argument("--reprice-as", metavar="MODEL",
                        help="compare with the cost on another model")
    report.add_argument("--reprice-region", choices=REGIONS,
                        help="compare with the cost in another region")
    report.add_argument("--reprice-batch", action="store_true",
                        help="compare with the cost as batch calls")
    report.add_argument("--budget", help="add a burn-down against a budget, e.g. '50 CNY' "
                                         "(also '50 RMB', '50 元', '¥50', '$5', '5 USD')")
    report.add_argument("--default-model",
                        help="model for raw native responses that do not name one")
    report.add_argument("--region", choices=REGIONS,
                        help="region to price raw responses in (default cn)")
    report.add_argument("--sql", action="store_true",
                        help="print the report's SQL (DuckDB) over LOG, a Parquet folder of "
                             "`log compact`, instead of running it")
    report.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    report.set_defaults(run=_run)
