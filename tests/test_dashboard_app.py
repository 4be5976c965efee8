"""The dashboard's web app and CLI: `qwen-meter dashboard` on a real uvicorn, the app under /ui
behind a token, and the HTML report as a snapshot of the page."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import dashboard_api_log as L
import pytest
from gateway_server import wait_answering

from qwen_meter.cli.main import main
from qwen_meter.dashboard import dashboard_app
from qwen_meter.report import build_report, load_usage, render
from qwen_meter.report.snapshot import SNAPSHOT_ID

pytest.importorskip("duckdb")
pytest.importorskip("pandas")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

ROOT = Path(__file__).resolve().parent.parent
RANGE = {"since": "2026-11-01", "until": "2026-12-01", "tz": "Asia/Shanghai"}


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    return L.write(tmp_path_factory.mktemp("dash-app") / "usage.jsonl")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_cli_serves_the_page_and_the_api(log, tmp_path):
    port = _free_port()
    # its cache of the records goes to a folder of the test's, never the user's
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    process = subprocess.Popen(
        [sys.executable, "-m", "qwen_meter", "dashboard", str(log), "--port", str(port),
         "--tz", "Asia/Shanghai"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}/"
    try:
        wait_answering(base + "api/meta", process)
        page = httpx.get(base)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "assets/app.js" in page.text and page.headers["cache-control"] == "no-cache"
        assert "default-src 'self'" in page.headers["content-security-policy"]
        script = httpx.get(base + "assets/app.js")
        assert script.headers["content-type"] == "text/javascript; charset=utf-8"
        assert "max-age" in script.headers["cache-control"]
        again = httpx.get(base + "assets/app.js", headers={"if-none-match": script.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        charts = httpx.get(base + "assets/vendor/echarts/echarts.min.js")
        assert charts.status_code == 200 and len(charts.content) > 100_000
        css = httpx.get(base + "assets/app.css")
        assert css.headers["content-type"] == "text/css; charset=utf-8"
        assert httpx.get(base + "assets/../pyproject.toml").status_code == 404
        overview = httpx.get(base + "api/overview", params=RANGE).json()
        report = build_report(load_usage(log, tz="Asia/Shanghai"), by=["model"])
        assert {k: Decimal(v) for k, v in overview["cost"].items()} == {
            r.currency: r.cost for r in report.totals.itertuples() if r.currency != "-"}
        meta = httpx.get(base + "api/meta").json()
        assert meta["source"] == str(log) and meta["skipped"]["count"] == 2
        bad = httpx.get(base + "api/series", params={"bucket": "week"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "bucket"
        assert httpx.post(base + "api/meta").status_code == 405
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0


def _call(app, path, headers=(), query=b""):
    sent = []
    scope = {"type": "http", "method": "GET", "path": path, "headers": list(headers),
             "query_string": query}

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"]


def test_under_ui_behind_a_token(log):
    async def auth(scope):  # an async check works as a plain one does
        return (b"authorization", b"Bearer s3cret") in scope["headers"]

    app = dashboard_app(log, base_path="/ui", auth=auth, tz="UTC")
    try:
        status, head, _ = _call(app, "/ui")
        assert status == 308 and head[b"location"] == b"/ui/"
        assert _call(app, "/ui/")[0] == 200  # the page holds no data: it asks for the token
        status, _, body = _call(app, "/ui/api/meta")
        assert status == 401 and json.loads(body)["error"]["code"] == "unauthorized"
        status, _, body = _call(app, "/ui/api/meta", [(b"authorization", b"Bearer s3cret")])
        assert status == 200 and json.loads(body)["tz"] == "UTC"
        assert _call(app, "/api/meta")[0] == 404  # only under its base
    finally:
        app.views.records.close()


def test_the_page_names_each_asset_by_its_digest(log):
    """The served page names each asset with ``?v=<digest of its bytes>``: a browser holding an
    older copy of one of the page's scripts (ten that must match) asks for the new one; one
    asked for by its current digest may be kept for good, a stale digest not at all."""
    app = dashboard_app(log, base_path="", tz="UTC")
    try:
        status, head, body = _call(app, "/")
        html = body.decode("utf-8")
        assert status == 200 and head[b"cache-control"] == b"no-cache"
        refs = dict(re.findall(r'(?:src|href)="assets/([^"?]+)\?v=([0-9a-f]{16})"', html))
        on_disk = (ROOT / "data" / "dashboard" / "index.html").read_text(encoding="utf-8")
        assert sorted(refs) == sorted(re.findall(r'(?:src|href)="assets/([^"]+)"', on_disk))
        assert {"i18n.js", "core.js", "app.js", "app.css",
                "vendor/echarts/echarts.min.js"} <= set(refs)
        for name, version in refs.items():
            data = (ROOT / "data" / "dashboard" / name).read_bytes()
            assert version == hashlib.sha256(data).hexdigest()[:16], name
        status, head, body = _call(app, "/assets/core.js", query=f"v={refs['core.js']}".encode())
        assert status == 200 and head[b"cache-control"] == b"public, max-age=31536000, immutable"
        assert body == (ROOT / "data" / "dashboard" / "core.js").read_bytes()
        assert _call(app, "/assets/core.js", query=b"v=0123456789abcdef")[1][b"cache-control"] \
            == b"no-cache"
        assert _call(app, "/assets/core.js")[1][b"cache-control"] == b"public, max-age=3600"
    finally:
        app.views.records.close()


def _snapshot(html: str) -> dict:
    start = html.index(f'<script type="application/json" id="{SNAPSHOT_ID}">')
    start = html.index(">", start) + 1
    return json.loads(html[start:html.index("</script>", start)])


def test_html_report_is_a_snapshot_of_the_page(log, tmp_path):
    out = tmp_path / "report.html"
    assert main(["report", str(log), "--format", "html", "--tz", "Asia/Shanghai",
                 "--out", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    assert html.count(f'id="{SNAPSHOT_ID}"') == 1 and "<!--qm-snapshot-->" not in html
    data = _snapshot(html)  # the block ends where it should: its JSON reads whole
    report = build_report(load_usage(log, tz="Asia/Shanghai"), by=["model"])
    assert {k: Decimal(v) for k, v in data["overview"]["cost"].items()} == {
        r.currency: r.cost for r in report.totals.itertuples() if r.currency != "-"}
    assert data["overview"]["calls"] == report.records
    assert data["meta"]["live"] is False and data["meta"]["skipped"]["count"] == 2
    tags = [r["name"] for r in data["top"]["tag"]["rows"]]
    assert L.BREAKOUT in tags and L.HOSTILE in tags  # the data, intact
    assert "window.__pwned" not in html.replace("\\u003c", "<").split(SNAPSHOT_ID)[0]
    assert "<script>window.__pwned=1</script>" not in html  # no markup from a tag
    assert "cost:model:day" in data["series"] and "calls:none:day" in data["series"]
    assert len(data["calls"]["rows"]) == report.records
    # one file: every asset inlined, nothing fetched from anywhere
    assert 'src="assets/' not in html and 'href="assets/' not in html
    external = re.findall(r"""(?:\b(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//"""
                          r"""|url\(\s*["']?\s*(?:https?:)?//|@import)""", html, re.IGNORECASE)
    assert external == []
    assert html.count("<script") == html.count("</script>")
    # the page's scripts, each inlined once, in index.html's order (each builds on the last)
    folder = ROOT / "data" / "dashboard"
    index = (folder / "index.html").read_text("utf-8")
    names = re.findall(r'src="assets/([a-z0-9_-]+\.js)"', index)
    firsts = [(folder / n).read_text(encoding="utf-8").splitlines()[0] for n in names]
    assert len(names) > 2 and all(html.count(first) == 1 for first in firsts)
    assert [html.index(first) for first in firsts] == sorted(html.index(f) for f in firsts)


def test_report_made_by_hand_keeps_a_static_page(log):
    report = build_report(load_usage(log, tz="UTC"), by=["model"])
    report.usage = None
    page = render(report, "html")
    assert SNAPSHOT_ID not in page and "<table>" in page


def test_html_report_of_stdin(log, tmp_path, monkeypatch):
    """`-` is spooled to a file the HTML report reads again (before the spool is removed)."""
    import io

    out = tmp_path / "stdin.html"
    stdin = io.TextIOWrapper(io.BytesIO(log.read_bytes()), encoding="utf-8")
    monkeypatch.setattr("sys.stdin", stdin)
    assert main(["report", "-", "--format", "html", "--tz", "UTC", "--out", str(out)]) == 0
    data = _snapshot(out.read_text(encoding="utf-8"))
    assert data["overview"]["calls"] == len(L.records())
