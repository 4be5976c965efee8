"""Charts of a report, drawn with matplotlib (an optional extra, imported only here).

One daily-cost chart and one top-tags chart per currency (CNY and USD are never on one axis),
and tokens by kind. Labels are drawn through a list of fonts, glyph by glyph: a Latin font,
then a font whose character map really has the CJK glyphs (Chinese tags and user names are
common), found among the installed fonts even when matplotlib's font cache predates it
(:mod:`.fonts`); with none installed, one warning says which characters will be boxes and how
to fix it. Mathtext is off, so a ``$`` in a tag is just a dollar sign.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
from collections.abc import Callable, Iterator
from typing import Any

from ..base.errors import QwenMeterError
from . import safe
from .build import Report
from .fonts import CJK_FAMILIES, MissingFontWarning, chart_fonts, cjk_font

__all__ = ["CJK_FAMILIES", "PLOT_FORMATS", "MissingFontWarning", "chart_pngs", "charts",
           "cjk_font", "plot_format", "save_charts", "save_png"]


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise QwenMeterError('charts need matplotlib: pip install ".[reports]"') from exc
    return plt


def _labels(report: Report) -> Iterator[str]:
    for frame in (report.daily, report.top_tags, report.top_tags_by_calls):
        if frame is None:
            continue
        for column in ("model", "tag"):
            if column in frame.columns:
                yield from (safe.plain(v) for v in frame[column])


@contextlib.contextmanager
def _style(report: Report, *, stacklevel: int = 4) -> Iterator[None]:
    """rcParams for the charts: mathtext off, and a list of fonts to fall back through glyph by
    glyph (a Latin font, then one that really has the CJK glyphs, ...: see :mod:`.fonts`).
    Missing-glyph warnings are left alone: if one shows, a glyph is drawn as a box."""
    import matplotlib

    # stacklevel: the missing-font warning points at the caller of chart_pngs / save_charts
    fonts = chart_fonts([*_labels(report), report.tz], stacklevel=stacklevel)
    params: dict[str, Any] = {"text.parse_math": False, "axes.unicode_minus": False,
                              "font.family": list(fonts.families)}
    with matplotlib.rc_context(params):  # type: ignore[arg-type]
        yield


def _label(text: Any, limit: int = 28) -> str:
    value = safe.plain(text)
    return value if len(value) <= limit else value[:limit - 1] + "…"


def _currencies(report: Report) -> list[str]:
    daily = report.daily
    priced = daily[(daily["currency"] != "-") & daily["cost"].notna()]
    return sorted(set(priced["currency"]))


def _daily_cost(ax: Any, report: Report, currency: str) -> None:
    data = report.daily[(report.daily["currency"] == currency) & report.daily["cost"].notna()]
    table = data.assign(cost=[float(v) for v in data["cost"]]).pivot_table(
        index="day", columns="model", values="cost", aggfunc="sum", fill_value=0).sort_index()
    bottom = [0.0] * len(table)
    for model in table.columns:
        values = list(table[model])
        ax.bar(list(table.index), values, bottom=bottom, label=_label(model))
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_ylabel(currency)
    ax.set_title(f"Daily cost by model ({currency}, {report.tz} days)")
    ax.legend(fontsize="small")
    ax.tick_params(axis="x", labelrotation=45, labelsize="small")
    if len(table) > 20:
        step = max(1, len(table) // 20)
        ax.set_xticks(list(table.index)[::step])


def _tokens(ax: Any, report: Report) -> None:
    kinds = report.tokens_by_kind
    labels = [k.replace("_tokens", "") for k in kinds]
    ax.bar(labels, list(kinds.values()), color=["#4c72b0", "#dd8452", "#55a868", "#c44e52"])
    ax.set_title("Tokens by kind (all currencies)")


def _tags(ax: Any, report: Report, currency: str) -> None:
    tags = report.top_tags[report.top_tags["currency"] == currency]
    if tags.empty:
        ax.text(0.5, 0.5, f"no tagged spend in {currency}", ha="center", va="center")
    else:
        ax.barh([_label(t) for t in tags["tag"]][::-1], [float(c) for c in tags["cost"]][::-1])
        ax.set_xlabel(currency)
    ax.set_title(f"Top tags by cost ({currency})")


def charts(report: Report) -> list[tuple[str, Callable[[Any], None]]]:
    """(title, draw(ax)) for each chart of ``report``."""
    out: list[tuple[str, Callable[[Any], None]]] = []
    for currency in _currencies(report):
        out.append((f"Daily cost by model ({currency})",
                    functools.partial(_daily_cost, report=report, currency=currency)))
    out.append(("Tokens by kind", functools.partial(_tokens, report=report)))
    for currency in _currencies(report):
        if len(report.top_tags) and (report.top_tags["currency"] == currency).any():
            out.append((f"Top tags by cost ({currency})",
                        functools.partial(_tags, report=report, currency=currency)))
    return out


def chart_pngs(report: Report) -> list[tuple[str, bytes]]:
    """Each chart as (title, PNG bytes)."""
    plt = _pyplot()
    out = []
    with _style(report):
        for title, draw in charts(report):
            figure, ax = plt.subplots(figsize=(8, 3.6), dpi=100)
            draw(ax)
            figure.tight_layout()
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png")
            plt.close(figure)
            out.append((title, buffer.getvalue()))
    return out


#: File formats ``--plot`` / :func:`save_charts` write, by file extension (matplotlib's
#: writers; jpg, webp, gif and tiff go through Pillow, a dependency of matplotlib).
PLOT_FORMATS = ("png", "jpg", "jpeg", "svg", "svgz", "pdf", "eps", "ps", "webp", "tif", "tiff",
                "gif")


def plot_format(path: str | os.PathLike[str]) -> str:
    """The image format ``path``'s extension names; a clear error for any other (a chart saved
    as PNG bytes under ``.jpg`` would be a broken file to every viewer)."""
    suffix = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
    if suffix not in PLOT_FORMATS:
        named = f"extension .{suffix}" if suffix else "no extension"
        raise QwenMeterError(f"cannot draw charts to {os.fspath(path)}: {named}; use one of "
                             + ", ".join(f".{f}" for f in PLOT_FORMATS))
    return suffix


def save_charts(report: Report, path: str | os.PathLike[str]) -> None:
    """All charts, stacked in one image file, in the format its extension names
    (:data:`PLOT_FORMATS`)."""
    _save(report, path, plot_format(path))


def save_png(report: Report, path: str | os.PathLike[str]) -> None:
    """All charts, stacked in one PNG file (whatever the extension)."""
    _save(report, path, "png")


def _save(report: Report, path: str | os.PathLike[str], fmt: str) -> None:
    plt = _pyplot()
    with _style(report, stacklevel=5):
        drawn = charts(report)
        figure, axes = plt.subplots(len(drawn), 1, figsize=(9, 3.6 * len(drawn)), dpi=100,
                                    squeeze=False)
        for ax, (_, draw) in zip(axes[:, 0], drawn, strict=True):
            draw(ax)
        figure.tight_layout()
        try:
            figure.savefig(path, format=fmt)
        except OSError as exc:
            raise QwenMeterError(f"cannot write {os.fspath(path)}: {exc.strerror or exc}"
                                 ) from None
        finally:
            plt.close(figure)
