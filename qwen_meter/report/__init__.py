"""Cost reports from usage logs (needs the ``reports`` extra: pandas, pyarrow, matplotlib).

    data = load_usage(["usage.jsonl", "responses.jsonl"], since=date(2026, 11, 1))
    report = build_report(data, by=["model", "day"], reprice_as="qwen-flash")
    print(render(report, "table"))
"""

from __future__ import annotations

from .build import GROUPINGS, Report, build_report
from .prices import reprice
from .read import ReportInputError, Skipped, UsageData, load_usage
from .render import FORMATS, render

__all__ = ["FORMATS", "GROUPINGS", "Report", "ReportInputError", "Skipped", "UsageData",
           "build_report", "load_usage", "render", "reprice"]
