"""Charts of a report, drawn with matplotlib (an optional extra, imported only here)."""

from __future__ import annotations

import io
import os
from typing import Any

from ..errors import QwenMeterError
from .build import Report


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise QwenMeterError("charts need matplotlib: pip install qwen-meter[reports]") from exc
    return plt


def _daily_cost(ax: Any, report: Report) -> None:
    frame = report.daily
    priced = frame[frame["currency"] != "-"]
    if priced.empty:
        ax.text(0.5, 0.5, "no priced usage", ha="center", va="center")
        return
    currency = priced.groupby("currency")["calls"].sum().idxmax()
    data = priced[priced["currency"] == currency]
    table = data.pivot_table(index="day", columns="model", values="cost", aggfunc="sum",
                             fill_value=0).sort_index()
    bottom = [0.0] * len(table)
    for model in table.columns:
        values = [float(v or 0) for v in table[model]]
        ax.bar(list(table.index), values, bottom=bottom, label=model)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_ylabel(currency)
    ax.set_title(f"Daily cost by model ({currency})")
    ax.legend(fontsize="small")
    ax.tick_params(axis="x", labelrotation=45, labelsize="small")


def _tokens(ax: Any, report: Report) -> None:
    kinds = report.tokens_by_kind
    labels = [k.replace("_tokens", "") for k in kinds]
    ax.bar(labels, list(kinds.values()), color=["#4c72b0", "#dd8452", "#55a868", "#c44e52"])
    ax.set_title("Tokens by kind")


def _tags(ax: Any, report: Report) -> None:
    tags = report.top_tags
    if tags.empty:
        ax.text(0.5, 0.5, "no tags", ha="center", va="center")
    else:
        ax.barh(list(tags["tag"])[::-1], list(tags["calls"])[::-1])
    ax.set_title("Top tags (calls)")


CHARTS = (("Daily cost by model", _daily_cost), ("Tokens by kind", _tokens),
          ("Top tags", _tags))


def chart_pngs(report: Report) -> list[tuple[str, bytes]]:
    """Each chart as (title, PNG bytes)."""
    plt = _pyplot()
    out = []
    for title, draw in CHARTS:
        figure, ax = plt.subplots(figsize=(8, 3.6), dpi=100)
        draw(ax, report)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        plt.close(figure)
        out.append((title, buffer.getvalue()))
    return out


def save_png(report: Report, path: str | os.PathLike[str]) -> None:
    """All charts, stacked in one PNG file."""
    plt = _pyplot()
    figure, axes = plt.subplots(len(CHARTS), 1, figsize=(9, 3.6 * len(CHARTS)), dpi=100)
    for ax, (_, draw) in zip(axes, CHARTS, strict=True):
        draw(ax, report)
    figure.tight_layout()
    figure.savefig(path, format="png")
    plt.close(figure)
