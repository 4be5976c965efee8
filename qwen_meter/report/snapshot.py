"""The static HTML report as a snapshot of the dashboard: the page of ``data/dashboard`` with
every asset inlined and the API's answers for one range in a
``<script type="application/json" id="qm-snapshot">`` block, which the page reads instead of
asking a server. One self-contained file: nothing is loaded from anywhere. The page's scripts
(``i18n.js``, ``core.js`` ... ``app.js``; each builds on the ones before it) are inlined where
``index.html`` names them, so they run in the same order as when served.

What the snapshot holds (the page limits its filters to it, and says so): ``meta``,
``overview``, ``problems``, ``calls`` (the newest calls), ``top`` keyed by dimension,
``series`` keyed ``"metric:by:bucket"`` (e.g. ``cost:model:day``). ``meta.live`` is false: no
server is behind a file.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

from ..base.errors import QwenMeterError

SNAPSHOT_ID = "qm-snapshot"
MARK = "<!--qm-snapshot-->"
SERIES_METRICS = ("cost", "tokens", "calls")
#: Every dimension by day; the totals by hour too (for a range of a few days).
_DAILY = ("model", "key", "user", "tag", "region", "status", "endpoint", "none")
SERIES_KEYS = (*((by, "day") for by in _DAILY), ("none", "hour"))
CALLS_KEPT = 500
_SCRIPT = re.compile(r"""<script\b([^>]*?)\ssrc=["']assets/([^"']+)["']([^>]*)>\s*</script>""",
                     re.IGNORECASE)
_STYLE = re.compile(r"""<link\b[^>]*?\bhref=["']assets/([^"']+\.css)["'][^>]*>""", re.IGNORECASE)
_OTHER = re.compile(r"""(\b(?:src|href)=["'])assets/([^"']+)(["'])""", re.IGNORECASE)
_MIME = {".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon",
         ".woff2": "font/woff2", ".json": "application/json", ".js": "text/javascript",
         ".css": "text/css"}


def page_dir() -> Path:
    from ..base.data import data_dir

    return data_dir() / "dashboard"


def script_json(value: Any) -> str:
    """JSON that cannot end the ``<script>`` block it sits in (nor open a comment in it):
    ``<``, ``>`` and ``&`` are written as ``\\u003c`` ..., which JSON reads back the same."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def snapshot_data(views: Any, params: dict[str, list[str]]) -> dict[str, Any]:
    """The API's answers for ``params`` (range, zone, filters) that the page needs."""
    from .views import DIMS

    data: dict[str, Any] = {
        "snapshot": {"made": dt.datetime.now(dt.timezone.utc).isoformat(),
                     "params": {k: v[-1] for k, v in params.items() if v}},
        "meta": {**views.meta(params), "live": False, "refresh_seconds": None},
        "overview": views.overview(params),
        "problems": views.problems(params),
        "calls": views.calls({**params, "limit": [str(CALLS_KEPT)]}),
        "top": {by: views.top({**params, "by": [by], "n": ["50"]}) for by in DIMS},
        "series": {}}
    for metric in SERIES_METRICS:
        for by, bucket in SERIES_KEYS:
            data["series"][f"{metric}:{by}:{bucket}"] = views.series(
                    {**params, "metric": [metric], "by": [by], "bucket": [bucket]})
    return data


def _inline_script(body: str) -> str:
    """Script text that cannot end its block early: ``</`` is written ``<\\/`` (the same in
    JavaScript strings and regular expressions, where it can only occur)."""
    return body.replace("</", "<\\/").replace("<!--", "<\\!--")


def snapshot_html(views: Any, params: dict[str, list[str]] | None = None, *,
                  assets: str | Path | None = None) -> str:
    """The dashboard page as one file with ``views``' answers for ``params`` inlined."""
    folder = Path(assets) if assets is not None else page_dir()
    try:
        page = (folder / "index.html").read_text(encoding="utf-8")
    except OSError as exc:
        raise QwenMeterError(f"the dashboard page is missing ({folder / 'index.html'}: "
                             f"{exc.strerror}); reinstall qwen_meter") from None
    data = snapshot_data(views, params or {})

    def read(name: str) -> str:
        path = folder / name
        if ".." in Path(name).parts or not path.is_file():
            raise QwenMeterError(f"the dashboard page names a missing asset: assets/{name}")
        return path.read_text(encoding="utf-8")

    def script(match: re.Match[str]) -> str:
        attrs = (match.group(1) + match.group(3)).replace(" defer", "").replace(" async", "")
        return f"<script{attrs}>{_inline_script(read(match.group(2)))}</script>"

    def style(match: re.Match[str]) -> str:
        css = read(match.group(1)).replace("</style", "<\\/style")
        return f"<style>{css}</style>"

    def other(match: re.Match[str]) -> str:
        path = folder / match.group(2)
        if ".." in Path(match.group(2)).parts or not path.is_file():
            return match.group(0)
        kind = _MIME.get(path.suffix.lower(), "application/octet-stream")
        encoded = base64.b64encode(path.read_bytes()).decode("ascii")
        return f"{match.group(1)}data:{kind};base64,{encoded}{match.group(3)}"

    page = _SCRIPT.sub(script, page)
    page = _STYLE.sub(style, page)
    page = _OTHER.sub(other, page)
    block = (f'<script type="application/json" id="{SNAPSHOT_ID}">{script_json(data)}'
             "</script>")
    if MARK in page:  # where the page wants it: before its own scripts
        return page.replace(MARK, block, 1)
    at = page.lower().find("</head>")
    return page[:at] + block + page[at:] if at >= 0 else block + page


def _day_text(value: dt.date | dt.datetime) -> str:
    return value.isoformat()


def snapshot_report(report: Any, *, assets: str | Path | None = None) -> str:
    """The HTML report: the dashboard snapshot of the usage ``report`` was built from, over
    its range (its since / until, else every day with a call) in its zone."""
    from .views import RecordStore, Views

    usage = report.usage
    store = RecordStore(usage.sources, catalogue=usage.catalogue,
                        default_model=usage.default_model, region=usage.region)
    try:
        views = Views(store, tz=report.tz, title="Qwen usage report", refresh_seconds=None)
        params: dict[str, list[str]] = {"tz": [report.tz]}
        first, last = store.db.execute("SELECT min(ts), max(ts) FROM records").fetchall()[0]
        zone = views.query({"tz": [report.tz]}).tz
        if usage.since is not None:
            params["since"] = [_day_text(usage.since)]
        elif first is not None:
            params["since"] = [first.astimezone(zone).date().isoformat()]
        if usage.until is not None:
            params["until"] = [_day_text(usage.until)]
        elif last is not None:
            params["until"] = [(last.astimezone(zone).date() + dt.timedelta(days=1)).isoformat()]
        return snapshot_html(views, params, assets=assets)
    finally:
        store.close()
