"""Cost reports from usage logs (needs the ``reports`` extra: duckdb, pyarrow, pandas,
matplotlib, rich).

    data = load_usage(["usage.jsonl", "usage.db"], since=date(2026, 11, 1), tz="Asia/Shanghai")
    report = build_report(data, by=["model", "day"], reprice_as="qwen-flash")
    print(render(report, "table"))
"""

from __future__ import annotations

from .build import GROUPINGS, Report, Summary, build_report
from .prices import reprice
from .read import ReportInputError, Skipped, UsageData, load_usage
from .render import FORMATS, render

__all__ = ["FORMATS", "GROUPINGS", "Report", "ReportInputError", "Skipped", "Summary",
           "UsageData", "build_report", "load_usage", "render", "reprice"]
