"""A report as a terminal table, CSV, Markdown, JSON or one self-contained HTML page.

Every format starts with the summary. Money is shown with its symbol and a readable precision
in the table, Markdown and HTML; CSV and JSON carry the exact decimals. Every name from a log
goes through :mod:`.safe` for its format.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
from decimal import Decimal
from typing import Any

from ..base.words import plural
from . import safe
from .build import Report

FORMATS = ("table", "csv", "md", "json", "html")
_MONEY = ("cost", "cache_saved", "cost_repriced", "difference", "spent", "cumulative",
          "remaining")
#: The columns the terminal shows (the rest are in the other formats).
_TERMINAL = ("calls", "prompt_tokens", "completion_tokens", "cached_tokens", "cost",
             "cache_saved", "unpriced_calls", "cost_repriced", "difference", "spent",
             "cumulative", "remaining", "used_share")
_SHORT = {"prompt_tokens": "prompt", "completion_tokens": "completion",
          "cached_tokens": "cached", "reasoning_tokens": "reasoning",
          "unpriced_calls": "unpriced", "cache_saved": "cache saved",
          "cost_repriced": "re-priced", "repriced_currency": "re-priced in",
          "repriced_unpriced_calls": "re-priced unpriced", "used_share": "used",
          "thinking_share": "thinking", "prompt_estimate_error": "estimate error",
          "estimated_calls": "estimated", "failed_calls": "failed"}


#: Columns that name a group (shown as text, left-aligned).
_KEYS = ("model", "day", "week", "month", "tag", "user", "region", "status", "served_model",
         "endpoint", "currency", "repriced_currency")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _exact(value: Any) -> Any:
    """A cell as a plain JSON / CSV value: exact decimals as strings, numbers as numbers."""
    if _missing(value):
        return None
    if isinstance(value, Decimal):
        return f"{value.normalize():f}" if value else "0"
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, float):
        return round(value, 6)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _shown(column: str, value: Any, row: dict[str, Any]) -> str:
    """A cell for people: money with its symbol, counts with separators, shares in %."""
    if _missing(value):
        return "-" if column in _MONEY else ""
    if column in _MONEY:
        currency = row.get("repriced_currency") if column == "cost_repriced" else \
            row.get("currency")
        return safe.money(value, currency)
    if column in ("used_share", "thinking_share", "prompt_estimate_error"):
        return f"{float(value):.1%}"
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _count(value: Any) -> str:
    """A token count for the terminal: 12,345 / 1.23M / 10.0B (exact ones are in CSV, JSON)."""
    number = int(value)
    for size, unit in ((10**9, "B"), (10**6, "M")):
        if abs(number) >= size * 0.9995:  # 999,800,000 is 1.00B, not 1,000M
            scaled = number / size
            digits = 2 if round(abs(scaled), 2) < 10 else 1 if round(abs(scaled), 1) < 100 else 0
            return f"{scaled:,.{digits}f}{unit}"
    return f"{number:,}"


def _records(frame: Any) -> list[dict[str, Any]]:
    columns = [str(c) for c in frame.columns]
    return [dict(zip(columns, row, strict=True))
            for row in frame.itertuples(index=False, name=None)]


# --- sections ---------------------------------------------------------------------------------

def _sections(report: Report) -> list[tuple[str, Any]]:
    sections = [("Totals (per currency)", report.totals),
                (f"By {', '.join(report.by)} ({report.tz} days)" if set(report.by) & {
                    "day", "week", "month"} else f"By {', '.join(report.by)}",
                 report.breakdown)]
    if report.repricing is not None:
        sections.append((f"Re-priced: {report.reprice_label} (beside the original, per "
                         "currency)", report.repricing))
    if report.burn_down is not None:
        limit = report.burn_down.attrs.get("limit")
        currency = report.burn_down.attrs.get("currency")
        sections.append((f"Budget burn-down ({safe.money(limit, currency)} {currency})",
                         report.burn_down))
    if len(report.top_tags):
        sections.append((f"Top tags by cost (top {report.top} per currency)", report.top_tags))
    if report.top_tags_by_calls is not None and len(report.top_tags_by_calls):
        sections.append((f"Top tags by calls (top {report.top})", report.top_tags_by_calls))
    return sections


def summary_lines(report: Report) -> list[str]:
    """The summary, as lines of text (names already made plain)."""
    summary = report.summary
    if summary is None:
        return []
    spend = ", ".join(f"{safe.money(v, c)} {c}" for c, v in sorted(summary.spend.items())) \
        or "nothing priced"
    lines = [f"Total spend: {spend}"]
    if summary.cache_saved:
        lines.append("Saved by cache hits: " + ", ".join(
            f"{safe.money(v, c)} {c}" for c, v in sorted(summary.cache_saved.items())))
    if summary.first is not None:
        lines.append(f"Dates: {summary.first:%Y-%m-%d %H:%M} .. {summary.last:%Y-%m-%d %H:%M} "
                     f"({summary.tz})")
    lines.append(f"Calls: {summary.calls:,}" + (
        f" ({summary.unpriced_calls:,} without a price)" if summary.unpriced_calls else ""))
    for currency, models in sorted(summary.top_models.items()):
        if models:
            lines.append(f"Top models ({currency}): " + ", ".join(
                f"{safe.plain(m)} {safe.money(c, currency)} ({plural(n, 'call')})"
                for m, c, n in models))
    return lines


def _tag_note(report: Report) -> str | None:
    shown = set(report.top_tags["tag"]) if len(report.top_tags) else set()
    if report.top_tags_by_calls is not None:
        shown |= set(report.top_tags_by_calls["tag"])
    hidden = report.tags_count - len(shown)
    if hidden > 0:
        return (f"{hidden} more tags not listed (of {report.tags_count}); --top N lists more, "
                "--by tag lists them all")
    return None


def _notes(report: Report) -> list[str]:
    notes = [plural(report.records, "record")]
    tag_note = _tag_note(report)
    if tag_note:
        notes.append(tag_note)
    if report.skipped_count:
        listed = "; ".join(f"{s.source}:{s.line} {s.reason}" for s in report.skipped[:20])
        more = " …" if report.skipped_count > 20 else ""
        notes.append(f"{plural(report.skipped_count, 'line')} skipped: {listed}{more}")
    if report.unpriced_count:
        listed = "; ".join(f"{s.source}{'' if s.line is None else f':{s.line}'} ({s.reason})"
                           for s in report.unpriced[:20])
        more = " …" if report.unpriced_count > 20 else ""
        notes.append(f"{plural(report.unpriced_count, 'record')} could not be priced: "
                     f"{listed}{more}")
    return [safe.plain(n) for n in notes]


# --- terminal ---------------------------------------------------------------------------------

def _fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` terminal cells (CJK characters take two), with an ellipsis."""
    from rich.cells import cell_len, set_cell_size

    return text if cell_len(text) <= width else set_cell_size(text, width - 1) + "…"


def _terminal_table(frame: Any, width: int) -> list[str]:
    """A table that fits ``width`` cells: names cut at 24 cells, the least needed numeric
    columns left out (and said so) when it would not fit. Aligned in cells, so Chinese text
    keeps the columns straight."""
    from rich.cells import cell_len

    keys = [c for c in frame.columns if c in _KEYS]
    numbers = [c for c in _TERMINAL if c in frame.columns]
    rows = [{c: safe.plain(_count(row[c]) if c.endswith("_tokens") and not _missing(row[c])
                           else _shown(c, row.get(c), row)) for c in (*keys, *numbers)}
            for row in _records(frame)]
    for row in rows:
        for key in keys:
            row[key] = _fit(row[key], 24)

    def widths(columns: list[str]) -> dict[str, int]:
        return {c: max([cell_len(_SHORT.get(c, c)), *(cell_len(r[c]) for r in rows)])
                for c in columns}

    columns = [*keys, *numbers]
    dropped: list[str] = []
    sizes = widths(columns)
    while sum(sizes.values()) + 2 * (len(columns) - 1) > width and len(columns) > len(keys) + 1:
        dropped.insert(0, columns.pop())
        sizes.pop(dropped[0])

    def line(cells: dict[str, str]) -> str:
        parts = []
        for c in columns:
            pad = " " * (sizes[c] - cell_len(cells[c]))
            parts.append(cells[c] + pad if c in keys else pad + cells[c])
        return "  ".join(parts).rstrip()

    out = [line({c: _SHORT.get(c, c) for c in columns}),
           "  ".join("-" * sizes[c] for c in columns)]
    out += [line(row) for row in rows]
    if dropped:
        out.append(f"(not shown at this width: {', '.join(_SHORT.get(c, c) for c in dropped)};"
                   " --format csv/md/html/json has every column)")
    return out


def to_text(report: Report, *, width: int | None = None) -> str:
    """The report for a terminal: tables that fit ``width`` cells (default 100), CJK-aware."""
    width = width or 100
    lines = list(summary_lines(report))
    for title, frame in _sections(report):
        lines += ["", title, *_terminal_table(frame, width)]
    lines += ["", *_notes(report)]
    return "\n".join(safe.plain(line) for line in lines)


# --- files ------------------------------------------------------------------------------------

def to_csv(report: Report) -> str:
    """The breakdown table, every column, numbers as plain numbers (exact decimals)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    frame = report.breakdown
    writer.writerow([str(c) for c in frame.columns])
    for row in _records(frame):
        cells = []
        for value in row.values():
            exact = _exact(value)
            cells.append("" if exact is None else
                         exact if isinstance(value, Decimal) else
                         safe.csv_text(exact) if isinstance(exact, str) else exact)
        writer.writerow(cells)
    return buffer.getvalue()


def _markdown_table(frame: Any) -> str:
    columns = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(safe.markdown_text(_SHORT.get(c, c)) for c in columns) + " |",
             "|" + "|".join("---:" if c in _TERMINAL or c in _MONEY else "---"
                            for c in columns) + "|"]
    for row in _records(frame):
        lines.append("| " + " | ".join(safe.markdown_text(_shown(c, row[c], row))
                                       for c in columns) + " |")
    return "\n".join(lines)


def to_markdown(report: Report) -> str:
    parts = ["# Qwen usage report", ""]
    parts += [f"- {safe.markdown_text(line)}" for line in summary_lines(report)] + [""]
    for title, frame in _sections(report):
        parts += [f"## {safe.markdown_text(title)}", "", _markdown_table(frame), ""]
    parts += [f"- {safe.markdown_text(note)}" for note in _notes(report)]
    return "\n".join(parts) + "\n"


def to_json(report: Report) -> str:
    summary = report.summary
    data: dict[str, Any] = {
        "by": list(report.by), "tz": report.tz, "records": report.records,
        "summary": None if summary is None else {
            "spend": {c: _exact(v) for c, v in summary.spend.items()},
            "cache_saved": {c: _exact(v) for c, v in summary.cache_saved.items()},
            "calls": summary.calls, "first": _exact(summary.first),
            "last": _exact(summary.last),
            "top_models": {c: [{"model": m, "cost": _exact(v), "calls": n} for m, v, n in ms]
                           for c, ms in summary.top_models.items()}},
        "sections": {title: [{k: _exact(v) for k, v in row.items()}
                             for row in _records(frame)]
                     for title, frame in _sections(report)},
        "tokens_by_kind": report.tokens_by_kind, "tags": report.tags_count,
        "skipped_count": report.skipped_count,
        "skipped": [s.__dict__ for s in report.skipped],
        "unpriced_count": report.unpriced_count,
        "unpriced": [s.__dict__ for s in report.unpriced]}
    return json.dumps(data, ensure_ascii=False, indent=2)


_STYLE = """
:root{color-scheme:light}
body{font-family:system-ui,-apple-system,"Segoe UI","Noto Sans CJK SC","Noto Sans SC",
"PingFang SC","Microsoft YaHei","Source Han Sans SC",sans-serif;margin:0 auto;padding:1rem;
max-width:80rem;color:#222;line-height:1.4}
h1{font-size:1.6rem} h2{font-size:1.15rem;margin-top:2rem}
.summary{display:grid;grid-template-columns:repeat(auto-fit,minmax(16rem,1fr));gap:.6rem;
padding:0;list-style:none}
.summary li{background:#f5f7fa;border-radius:.4rem;padding:.6rem .8rem;overflow-wrap:anywhere}
.scroll{overflow-x:auto;max-width:100%;margin:0 0 1rem}
table{border-collapse:collapse;font-size:.85rem;font-variant-numeric:tabular-nums}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:right;white-space:nowrap}
th{background:#f4f4f4;position:sticky;top:0}
td.key,th.key{text-align:left;white-space:normal;overflow-wrap:anywhere;min-width:6rem}
img{max-width:100%;height:auto;border:1px solid #eee;margin:.5rem 0 1rem}
.note{color:#555;font-size:.85rem;overflow-wrap:anywhere}
"""


def _html_table(frame: Any) -> str:
    columns = [str(c) for c in frame.columns]
    keys = {c for c in columns if c in _KEYS}
    head = "".join(f"<th class='{'key' if c in keys else 'num'}'>"
                   f"{safe.html_text(_SHORT.get(c, c))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td class='{'key' if c in keys else 'num'}'>"
                         f"{safe.html_text(_shown(c, row[c], row))}</td>" for c in columns)
        + "</tr>" for row in _records(frame))
    return (f"<div class='scroll'><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table></div>")


def to_html(report: Report, *, charts: bool = True) -> str:
    """The dashboard's page with the report's usage inlined (:mod:`.snapshot`): one
    self-contained file. A report not built from usage sources (made by hand) gets a static
    page of its tables instead."""
    if report.usage is not None:
        from .snapshot import snapshot_report

        return snapshot_report(report)
    return tables_html(report, charts=charts)


def tables_html(report: Report, *, charts: bool = True) -> str:
    """One responsive HTML page: the summary, the charts (embedded) and every table."""
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
             "<meta name='viewport' content='width=device-width, initial-scale=1'>",
             "<title>Qwen usage report</title>", f"<style>{_STYLE}</style></head><body>",
             "<h1>Qwen usage report</h1><ul class='summary'>"]
    parts += [f"<li>{safe.html_text(line)}</li>" for line in summary_lines(report)]
    parts.append("</ul>")
    if charts:
        from .charts import chart_pngs

        for title, png in chart_pngs(report):
            encoded = base64.b64encode(png).decode()
            parts.append(f"<h2>{safe.html_text(title)}</h2><img alt='{safe.html_text(title)}' "
                         f"src='data:image/png;base64,{encoded}'>")
    for title, frame in _sections(report):
        parts.append(f"<h2>{safe.html_text(title)}</h2>{_html_table(frame)}")
    parts += [f"<p class='note'>{safe.html_text(note)}</p>" for note in _notes(report)]
    parts.append("</body></html>")
    return "".join(parts)


def render(report: Report, fmt: str, *, width: int | None = None) -> str:
    """The report in one of :data:`FORMATS` (``width``: the terminal table's)."""
    if fmt == "table":
        return to_text(report, width=width)
    renderers = {"csv": to_csv, "md": to_markdown, "json": to_json, "html": to_html}
    if fmt not in renderers:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    return renderers[fmt](report)
