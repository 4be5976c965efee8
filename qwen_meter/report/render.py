"""A report as a terminal table, CSV, Markdown, JSON or one self-contained HTML page."""

from __future__ import annotations

import base64
import html
import json
import math
from decimal import Decimal
from typing import Any

from .build import Report

FORMATS = ("table", "csv", "md", "json", "html")


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, Decimal):
        return f"{value.normalize():f}" if value else "0"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _rows(frame: Any) -> tuple[list[str], list[list[str]]]:
    header = [str(c) for c in frame.columns]
    rows = [[_cell(v) for v in record] for record in frame.itertuples(index=False, name=None)]
    return header, rows


def _numeric(cell: str) -> bool:
    return cell[:1].isdigit() or (cell[:1] == "-" and cell[1:2].isdigit())


def _text_table(frame: Any) -> str:
    header, rows = _rows(frame)
    widths = [max(len(x) for x in column) for column in zip(header, *rows, strict=True)] \
        if header else []
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) if _numeric(c) else c.ljust(w)
                        for c, w in zip(row, widths, strict=True))
              for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def _markdown_table(frame: Any) -> str:
    header, rows = _rows(frame)
    escape = str.maketrans({"|": "\\|"})
    lines = ["| " + " | ".join(h.translate(escape) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(c.translate(escape) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _sections(report: Report) -> list[tuple[str, Any]]:
    sections = [("Totals (per currency)", report.totals),
                (f"By {', '.join(report.by)}", report.breakdown)]
    if report.repricing is not None:
        sections.append((f"Re-priced: {report.reprice_label}", report.repricing))
    if report.burn_down is not None:
        limit = report.burn_down.attrs.get("limit")
        currency = report.burn_down.attrs.get("currency")
        sections.append((f"Budget burn-down ({limit} {currency})", report.burn_down))
    if len(report.top_tags):
        sections.append(("Top tags", report.top_tags))
    return sections


def _notes(report: Report) -> list[str]:
    notes = [f"{report.records:,} records"]
    if report.skipped:
        notes.append(f"{len(report.skipped)} lines skipped: " + "; ".join(
            f"{s.source}:{s.line} {s.reason}" for s in report.skipped[:20])
            + (" …" if len(report.skipped) > 20 else ""))
    if report.unpriced:
        notes.append(f"{len(report.unpriced)} records could not be priced: " + "; ".join(
            f"{s.source} ({s.reason})" for s in report.unpriced[:20])
            + (" …" if len(report.unpriced) > 20 else ""))
    return notes


def to_text(report: Report) -> str:
    parts = []
    for title, frame in _sections(report):
        parts += [title, _text_table(frame), ""]
    parts += _notes(report)
    return "\n".join(parts)


def to_csv(report: Report) -> str:
    """The breakdown table (the other sections have their own shapes: use md/json/html)."""
    header, rows = _rows(report.breakdown)
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def to_markdown(report: Report) -> str:
    parts = ["# Qwen usage report", ""]
    for title, frame in _sections(report):
        parts += [f"## {title}", "", _markdown_table(frame), ""]
    parts += [f"- {note}" for note in _notes(report)]
    return "\n".join(parts) + "\n"


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return f"{value.normalize():f}"
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return value


def to_json(report: Report) -> str:
    def records(frame: Any) -> list[dict[str, Any]]:
        return [{str(k): _json_value(v) for k, v in row.items()}
                for row in frame.to_dict(orient="records")]

    data = {"by": list(report.by), "records": report.records,
            "sections": {title: records(frame) for title, frame in _sections(report)},
            "tokens_by_kind": report.tokens_by_kind,
            "skipped": [s.__dict__ for s in report.skipped],
            "unpriced": [s.__dict__ for s in report.unpriced]}
    return json.dumps(data, ensure_ascii=False, indent=2)


_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;margin:0 0 1.5rem;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.3rem .6rem;text-align:right}
th{background:#f4f4f4} td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #eee;margin:.5rem 0 1.5rem}
.note{color:#666;font-size:.85rem}
"""


def _html_table(frame: Any) -> str:
    header, rows = _rows(frame)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def to_html(report: Report, *, charts: bool = True) -> str:
    """One HTML page with every table and the charts embedded (no external files)."""
    parts = ["<!doctype html><html><head><meta charset='utf-8'>",
             "<title>Qwen usage report</title>", f"<style>{_STYLE}</style></head><body>",
             "<h1>Qwen usage report</h1>"]
    if charts:
        from .charts import chart_pngs

        for title, png in chart_pngs(report):
            encoded = base64.b64encode(png).decode()
            parts.append(f"<h2>{html.escape(title)}</h2>"
                         f"<img alt='{html.escape(title)}' src='data:image/png;base64,{encoded}'>")
    for title, frame in _sections(report):
        parts.append(f"<h2>{html.escape(title)}</h2>{_html_table(frame)}")
    parts += [f"<p class='note'>{html.escape(note)}</p>" for note in _notes(report)]
    parts.append("</body></html>")
    return "".join(parts)


def render(report: Report, fmt: str) -> str:
    """The report in one of :data:`FORMATS`."""
    renderers = {"table": to_text, "csv": to_csv, "md": to_markdown, "json": to_json,
                 "html": to_html}
    if fmt not in renderers:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    return renderers[fmt](report)
