"""The dashboard page in a real browser (Debian's chromium driven by Playwright's sync API):
`qwen-meter dashboard` serves a log with Chinese tags and users in two currencies, and the page
must show the report's numbers, filter and drill down correctly, switch language, draw CJK
glyphs, keep hostile names as text, say what is wrong instead of going blank, and work as the
static HTML report opened from disk with no network at all.

One server and one browser for the module; screenshots of each view go to
``$QWEN_METER_ARTEFACTS`` (default tests/artefacts/), and to docs/img/ when
``QWEN_METER_DOCS_SCREENSHOTS`` is set.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from dashboard_log import HOSTILE_TAG, Generated, write_log
from gateway_server import free_port, serving, wait_answering

pytest.importorskip("duckdb")
sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ROOT = Path(__file__).resolve().parent.parent
ARTEFACTS = Path(os.environ.get("QWEN_METER_ARTEFACTS") or ROOT / "tests" / "artefacts")
#: The servers' cache folder ($XDG_CACHE_HOME): never the user's.
CACHE_HOME = Path(tempfile.mkdtemp(prefix="qwen-meter-dash-cache-"))
VIEWS = ("overview", "series", "top", "calls", "problems")

if not Path(CHROMIUM).exists():
    if os.environ.get("QWEN_METER_REQUIRE_CHROMIUM"):
        raise RuntimeError(f"{CHROMIUM} is required (QWEN_METER_REQUIRE_CHROMIUM) but missing")
    pytest.skip(f"no chromium at {CHROMIUM}", allow_module_level=True)


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), TZ="UTC", PYTHONIOENCODING="utf-8",
               XDG_CACHE_HOME=str(CACHE_HOME))
    env.pop("NO_COLOR", None)
    return env


@pytest.fixture(scope="module", autouse=True)
def _cache_home() -> Iterator[None]:
    yield
    shutil.rmtree(CACHE_HOME, ignore_errors=True)


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    return write_log(tmp_path_factory.mktemp("dash") / "usage.jsonl", corrupt=True)


@pytest.fixture(scope="module")
def reports(log: Generated) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """`qwen-meter report` as JSON and as the HTML snapshot, started at once so they run while
    the server and the browser start (and before the live test appends to the log)."""
    procs = {}
    for fmt in ("json", "html"):
        out = log.path.with_name(f"report.{fmt}")
        procs[fmt] = subprocess.Popen(
            [sys.executable, "-m", "qwen_meter", "report", str(log.path), "--format", fmt,
             "--tz", "UTC", "--out", str(out)], env=_env(), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT)
    yield procs
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def report_file(log: Generated, procs: dict[str, subprocess.Popen[bytes]], fmt: str) -> Path:
    proc = procs[fmt]
    output = proc.communicate(timeout=120)[0].decode("utf-8", "replace")
    assert proc.returncode == 0, output
    return log.path.with_name(f"report.{fmt}")


def _wait_for(proc: subprocess.Popen[bytes], port: int) -> str:
    """The server's URL once it answers api/meta (a failure shows what it printed)."""
    base = f"http://127.0.0.1:{port}/"
    try:
        wait_answering(base + "api/meta", proc)
    except RuntimeError as exc:
        pytest.fail(str(exc))
    return base


@pytest.fixture(scope="module")
def server(log: Generated, reports: Any) -> Iterator[str]:
    from qwen_meter import Budget

    port = free_port()
    # budgets for the overview's burn-down, and a shared store (SQLite) holding spend a gateway
    # committed, which no log shows: the overview's live state
    store = f"sqlite:///{log.path.with_name('store.db')}"
    budget = Budget("0.05 CNY", per="month", name="monthly", store=store)
    budget.commit(budget.reserve("0.02 CNY"), "0.0125 CNY")
    config = log.path.with_name("gw.yaml")
    config.write_text(f"store: {store}\n"
                      "budgets:\n  - {name: monthly, limit: 0.05 CNY, per: month}\n"
                      "  - {name: weekly, limit: 0.02 USD, per: week}\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "qwen_meter", "dashboard", str(log.path), "--port", str(port),
           "--tz", "UTC", "--config", str(config), "--refresh", "1"]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = _wait_for(proc, port)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Page:
    """A fresh browser context and page that records script errors and requests."""

    def __init__(self, browser: Any, locale: str = "en-US") -> None:
        self.context = browser.new_context(locale=locale, timezone_id="UTC",
                                           viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def open(self, url: str) -> Any:
        self.page.goto(url)
        return self.ready()

    def ready(self, before: str | None = None) -> Any:
        """Waits until the page has drawn a view (a newer one than ``before``)."""
        self.page.wait_for_function(
            "(b) => { const r = document.querySelector('#qm-view').dataset.ready;"
            " return r !== undefined && r !== b; }", arg=before)
        return self.page

    def mark(self) -> str | None:
        return self.page.eval_on_selector("#qm-view", "v => v.dataset.ready")

    def shot(self, name: str) -> Path:
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTEFACTS / f"dashboard-{name}.png"
        self.page.wait_for_timeout(150)  # let the charts' first frame land
        self.page.screenshot(path=str(path), full_page=True)
        if os.environ.get("QWEN_METER_DOCS_SCREENSHOTS"):
            (ROOT / "docs" / "img").mkdir(exist_ok=True)
            shutil.copy(path, ROOT / "docs" / "img" / path.name)
        return path

    def close(self) -> None:
        self.context.close()
        assert not self.errors, self.errors


@pytest.fixture
def tab(browser: Any) -> Iterator[Page]:
    p = Page(browser)
    yield p
    p.close()


def dom_money(page: Any, stat: str) -> dict[str, Decimal]:
    """The amounts of an overview card, per currency, exact (from data-amount)."""
    cells = page.query_selector_all(f'[data-stat="{stat}"] .qm-money')
    return {c.get_attribute("data-currency"): Decimal(c.get_attribute("data-amount"))
            for c in cells}


@pytest.fixture(scope="module")
def report(log: Generated, reports: dict[str, subprocess.Popen[bytes]]) -> dict[str, Any]:
    """`qwen-meter report`'s JSON for the log: the numbers the page must show."""
    data: dict[str, Any] = json.loads(report_file(log, reports, "json").read_text("utf-8"))
    return data


def exact(money: dict[str, Any]) -> dict[str, Decimal]:
    return {k: Decimal(v) for k, v in money.items()}


# --- numbers ---------------------------------------------------------------------------------


def test_overview_totals_equal_the_report(server: str, log: Generated, report: dict[str, Any],
                                          tab: Page) -> None:
    page = tab.open(server + "?view=overview")
    shown = dom_money(page, "cost")
    assert shown == exact(report["summary"]["spend"])
    assert shown == log.spend()  # and both equal the hand sums: two currencies, never added
    assert set(shown) == {"CNY", "USD"}
    assert page.inner_text('[data-stat="calls"] .qm-stat-value') == str(len(log.records))
    text = page.inner_text('[data-stat="cost"]')
    assert "¥" in text and "$" in text
    # the monthly budget: what this calendar month (UTC) spent in CNY, against 0.05, drawn
    month = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m")
    spent = sum((Decimal(r.cost) for r in log.records
                 if r.cost and r.currency == "CNY" and r.time[:7] == month), Decimal(0))
    card = '[data-budget="global::monthly"]'
    assert Decimal(page.get_attribute(f'{card} [data-fact="spent"] .qm-money', "data-amount")) \
        == spent
    assert page.get_attribute(f'{card} [data-fact="limit"] .qm-money', "data-amount") == "0.05"
    assert page.query_selector(f"{card} .qm-chart canvas") is not None
    tab.shot("overview")


def test_filter_chip_changes_totals(server: str, log: Generated, tab: Page) -> None:
    page = tab.open(server + "?view=overview")
    before = tab.mark()
    page.select_option("#qm-dim", "user")
    page.fill("#qm-value", "张三")
    page.click("#qm-add")
    tab.ready(before)
    assert "user=%E5%BC%A0%E4%B8%89" in page.url  # the state is in the link
    assert dom_money(page, "cost") == log.spend(user="张三")
    assert page.inner_text(".qm-chip .qm-chip-value") == "张三"
    # a second dimension is AND-ed; the link alone reproduces the view
    page = tab.open(server + "?view=overview&user=张三&tag=feature%3D智能客服")
    want = log.spend(user="张三", tag="feature=智能客服")
    assert want and dom_money(page, "cost") == want
    # removing the chip brings the whole log back
    before = tab.mark()
    page.click('.qm-chip[data-dim="user"] .qm-chip-x')
    tab.ready(before)
    assert dom_money(page, "cost") == log.spend(tag="feature=智能客服")


def call_ids(tab: Page) -> list[str]:
    """Every call id listed in the calls view, following its pages."""
    page = tab.page
    ids: list[str] = []
    while True:
        ids += [r.get_attribute("data-id") for r in page.query_selector_all("tr[data-id]")]
        nxt = page.query_selector("#qm-next")
        if nxt is None or nxt.is_disabled():
            return ids
        before = tab.mark()
        nxt.click()
        tab.ready(before)


def test_row_drills_down_to_its_calls(server: str, log: Generated, tab: Page) -> None:
    page = tab.open(server + "?view=top&top_by=user")
    tab.shot("top")
    before = tab.mark()
    page.click('tr[data-name="李四"]')
    tab.ready(before)
    assert "view=calls" in page.url
    ids = call_ids(tab)
    assert sorted(ids) == sorted(r.id for r in log.select(user="李四"))
    # a record's fields open under its row: the whole id, the Chinese user, the tags
    first = page.get_attribute("tr[data-id] >> nth=0", "data-id")
    page.click("tr[data-id] >> nth=0")
    record = page.inner_text(".qm-record .qm-fields")
    assert first in record and "李四" in record and "feature=" in record


def test_bar_drills_down_to_its_bucket(server: str, log: Generated, tab: Page) -> None:
    page = tab.open(server + "?view=series&metric=calls&by=none&bucket=day")
    tab.shot("series")
    day = log.records[30].time[:10]
    # a real click on the bar of that day, where ECharts says it is drawn
    point = page.evaluate(
        """(day) => {
            const box = document.querySelector('.qm-chart');
            const chart = echarts.getInstanceByDom(box);
            const opt = chart.getOption();
            const i = opt.xAxis[0].data.indexOf(day);
            const v = opt.series[0].data[i];
            const [x, y] = chart.convertToPixel({seriesIndex: 0}, [i, v / 2]);
            const r = box.getBoundingClientRect();
            return [r.left + x, r.top + y, v];
        }""", day)
    want = [r for r in log.records if r.time.startswith(day)]
    assert point[2] == len(want)
    before = tab.mark()
    page.mouse.click(point[0], point[1])
    tab.ready(before)
    assert "bucket_start=" in page.url
    assert sorted(call_ids(tab)) == sorted(r.id for r in want)
    tab.shot("calls")


def test_time_zone_picker_moves_the_days(server: str, log: Generated, tab: Page) -> None:
    from zoneinfo import ZoneInfo

    page = tab.open(server + "?view=series&metric=calls&by=none&bucket=day")
    assert page.input_value("#qm-tz") == "UTC"  # the server's zone (--tz) by default
    before = tab.mark()
    page.select_option("#qm-tz", "Asia/Shanghai")
    tab.ready(before)
    assert "tz=Asia%2FShanghai" in page.url
    bars = page.evaluate(
        """() => { const o = echarts.getInstanceByDom(document.querySelector('.qm-chart'))
                .getOption();
            const days = o.xAxis[0].data;
            return Object.fromEntries(days.map((d, i) => [d, o.series[0].data[i]])); }""")
    want: dict[str, int] = {}
    for r in log.records:
        day = dt.datetime.fromisoformat(r.time).astimezone(ZoneInfo("Asia/Shanghai")).date()
        want[day.isoformat()] = want.get(day.isoformat(), 0) + 1
    assert {d: n for d, n in bars.items() if n} == want


# --- words and glyphs ----------------------------------------------------------------------


def test_language_follows_the_browser_and_switches(server: str, browser: Any) -> None:
    zh = Page(browser, locale="zh-CN")
    try:
        page = zh.open(server)
        assert page.inner_text('.qm-tab[data-view="overview"]') == "概览"
        assert page.get_attribute("html", "lang") == "zh-CN"
        zh.shot("overview-zh")
        before = zh.mark()
        page.click("#qm-lang")
        zh.ready(before)
        assert page.inner_text('.qm-tab[data-view="overview"]') == "Overview"
        assert page.inner_text('[data-stat="today"] .qm-stat-label') == "Spent today"
        page.reload()  # the choice is remembered
        zh.ready()
        assert page.inner_text('.qm-tab[data-view="calls"]') == "Calls"
        before = zh.mark()
        page.click("#qm-lang")
        zh.ready(before)
        assert page.inner_text('.qm-tab[data-view="calls"]') == "调用明细"
    finally:
        zh.close()


GLYPH_JS = """([text, font]) => {
    // each character drawn alone with the page's own font stack, as its pixels
    const c = document.createElement('canvas');
    c.width = 64; c.height = 64;
    const ctx = c.getContext('2d', {willReadFrequently: true});
    return [...text].map(ch => {
        ctx.clearRect(0, 0, 64, 64);
        ctx.font = '40px ' + font;
        ctx.fillStyle = '#000';
        ctx.fillText(ch, 8, 48);
        const px = ctx.getImageData(0, 0, 64, 64).data;
        return Array.from(px.filter((_, i) => i % 4 === 3)).join(',');
    });
}"""


def test_chinese_is_drawn_as_glyphs_not_boxes(server: str, browser: Any) -> None:
    zh = Page(browser, locale="zh-CN")
    try:
        page = zh.open(server + "?view=top&top_by=tag")
        # the DOM: a Chinese name in the table, each character's crop differs from the others
        # (missing glyphs are all the same .notdef box) and from an unassigned code point's box
        cell = page.locator('td[data-col="name"]', has_text="智能客服").first
        assert cell.inner_text() == "feature=智能客服"
        font = page.evaluate("getComputedStyle(document.body).fontFamily")
        crops = []
        for ch in ("智", "能", "客", "\U0010fffd"):
            page.evaluate("""(ch) => { let s = document.getElementById('probe');
                if (!s) { s = document.createElement('span'); s.id = 'probe';
                  s.style.cssText = 'position:fixed;left:0;top:0;font-size:40px;background:#fff;'
                    + 'color:#000;padding:4px;z-index:99'; document.body.append(s); }
                s.textContent = ch; }""", ch)
            crops.append(page.locator("#probe").screenshot())
        assert len(set(crops)) == 4, "CJK characters render as identical boxes"
        page.evaluate("document.getElementById('probe').remove()")
        # the charts: canvas text with the font stack the charts use
        chart_font = page.evaluate(
            "() => { const ts = echarts.getInstanceByDom(document.querySelector('.qm-chart'))"
            ".getOption().textStyle; return (Array.isArray(ts) ? ts[0] : ts).fontFamily; }")
        assert "CJK" in chart_font
        for f in (font, chart_font):
            pix = page.evaluate(GLYPH_JS, ["智能\U0010fffd", f])
            assert len(set(pix)) == 3, f"canvas draws CJK as boxes with {f}"
        zh.shot("top-zh")
    finally:
        zh.close()


# --- bad input -------------------------------------------------------------------------------


def test_hostile_tag_is_text(server: str, tab: Page) -> None:
    from urllib.parse import quote

    page = tab.open(server + "?view=calls&tag=" + quote(HOSTILE_TAG))
    tags = [t.inner_text() for t in page.query_selector_all(".qm-tag")]
    assert HOSTILE_TAG in tags
    assert page.inner_text(".qm-chip .qm-chip-value") == HOSTILE_TAG
    assert page.query_selector_all("#qm-view img, #qm-chips img, #qm-messages img") == []
    # the top-by-tag table
    page = tab.open(server + "?view=top&top_by=tag&n=50")
    assert page.locator('td[data-col="name"]', has_text="<img src=x").count() == 1
    # the chart's tooltip (ECharts tooltips are HTML): hover the hostile tag's own bar
    page = tab.open(server + "?view=series&by=tag&metric=calls&bucket=day")
    x, y = page.evaluate(
        """(tag) => {
            const box = document.querySelector('.qm-chart');
            const opt = echarts.getInstanceByDom(box).getOption();
            const i = opt.series.findIndex(s => s.name === tag);
            const j = opt.series[i].data.findIndex(v => v > 0);
            let below = 0;  // the bars are stacked
            for (let k = 0; k < i; k++) below += opt.series[k].data[j];
            const [x, y] = echarts.getInstanceByDom(box).convertToPixel(
                {seriesIndex: i}, [j, below + opt.series[i].data[j] / 2]);
            const r = box.getBoundingClientRect();
            return [r.left + x, r.top + y];
        }""", HOSTILE_TAG)
    page.mouse.move(x, y)
    page.wait_for_selector(".qm-tip")
    assert HOSTILE_TAG in page.inner_text(".qm-tip")
    assert page.evaluate("window.__pwned") is None
    assert page.query_selector_all("img") == []


def test_corrupt_line_is_named(server: str, log: Generated, tab: Page) -> None:
    page = tab.open(server)
    note = page.inner_text("#qm-skipped")
    assert "1 log line(s) could not be read" in note
    assert f"line {log.corrupt_line}" in note and "usage.jsonl" in note


def test_unknown_filter_value_says_so(server: str, browser: Any, tab: Page) -> None:
    for view in ("overview", "top", "calls"):
        page = tab.open(server + f"?view={view}&model=no-such-model")
        assert "no calls match model=no-such-model" in page.inner_text("#qm-messages")
        assert page.is_visible(".qm-empty"), view
        assert "No calls match these filters" in page.inner_text(".qm-empty")
    zh = Page(browser, locale="zh-CN")
    try:
        page = zh.open(server + "?view=top&model=no-such-model")
        assert "没有调用符合 模型 = no-such-model" in page.inner_text("#qm-messages")
        assert "没有符合这些筛选条件和日期的调用" in page.inner_text(".qm-empty")
    finally:
        zh.close()


def test_bad_parameter_shows_the_servers_message(server: str, tab: Page) -> None:
    page = tab.open(server + "?tz=Mars/Olympus_Mons")
    error = page.inner_text(".qm-msg-error")
    assert "Mars/Olympus_Mons" in error and "tz" in error
    assert page.is_visible("#qm-tabs .qm-tab")  # the frame stays: never a blank page


def test_a_part_that_did_not_load_is_named(server: str, browser: Any) -> None:
    """The page is ten scripts: one missing from an installation is named in words, not left
    as a page stuck at "Loading…"."""
    broken = Page(browser)
    broken.context.route("**/assets/tables.js*", lambda route: route.fulfill(status=404))
    try:
        page = broken.page
        page.goto(server)
        page.wait_for_selector(".qm-msg-error")
        assert page.inner_text(".qm-msg-error") == \
            "The page failed: assets/tables.js did not load"
    finally:
        broken.close()


def test_problems_view_counts_and_drills(server: str, log: Generated, tab: Page) -> None:
    page = tab.open(server + "?view=problems")
    tab.shot("problems")
    assert page.locator("tr[data-kind]").count() == 5
    for kind in ("refused", "error"):
        calls = page.inner_text(f'tr[data-kind="{kind}"] td[data-col="calls"]')
        assert calls == str(len(log.select(status=kind)))
    assert page.inner_text('tr[data-kind="refused"] td[data-col="kind"]') == "Refused"
    before = tab.mark()
    page.click('tr[data-kind="refused"]')
    tab.ready(before)
    assert sorted(call_ids(tab)) == sorted(r.id for r in log.select(status="refused"))


def test_csv_link_carries_the_filters(server: str, log: Generated, tab: Page) -> None:
    page = tab.open(server + "?view=top&top_by=user&user=张三")
    href = page.get_attribute("a.qm-csv", "href")
    assert href and href.startswith("api/export.csv?") and "table=top" in href
    with urllib.request.urlopen(server + href) as r:
        text = r.read().decode("utf-8")
    assert "张三" in text and "李四" not in text


# --- under a base path, behind a token (as the gateway's /ui) -------------------------------


@pytest.fixture
def ui_server(log: Generated) -> Iterator[str]:
    """The app mounted at /ui in a uvicorn thread, its API behind a Bearer token."""
    pytest.importorskip("uvicorn")
    from qwen_meter.dashboard import dashboard_app

    def auth(scope: dict[str, Any]) -> bool:
        if not scope["path"].startswith("/ui/api/"):
            return True  # the page and its assets hold no data
        headers = dict(scope["headers"])
        return headers.get(b"authorization") == b"Bearer s3cret"

    app = dashboard_app(str(log.path), base_path="/ui", auth=auth, tz="UTC")
    with serving(app) as base:
        yield base + "/ui"


def test_under_ui_the_page_asks_for_the_token(ui_server: str, log: Generated,
                                              tab: Page) -> None:
    page = tab.open(ui_server)  # no trailing slash: the app redirects, relative URLs hold
    assert page.is_visible("#qm-token")
    assert "admin token" in page.inner_text(".qm-msg-error")
    page.fill("#qm-token", "s3cret")
    before = tab.mark()
    page.click(".qm-token button")
    tab.ready(before)
    assert dom_money(page, "cost") == log.spend()
    assert page.url.startswith(ui_server + "/")
    # the CSV link works with the token too (fetched with the header, handed over as a file)
    page = tab.open(ui_server + "/?view=top&top_by=user")
    with page.expect_download() as download:
        page.click("a.qm-csv")
    text = Path(download.value.path()).read_text(encoding="utf-8")
    assert "张三" in text and "李四" in text


def test_page_shows_the_load_then_paints(log: Generated, tab: Page) -> None:
    """While the server still reads the log the page is there, says how far the load got,
    and paints the totals once the records are in (no reload)."""
    pytest.importorskip("uvicorn")
    import threading

    from qwen_meter.dashboard import DashboardApp
    from qwen_meter.dashboard.loading import LoadingViews
    from qwen_meter.report.views import prepare_views

    gate = threading.Event()
    load = prepare_views(str(log.path), tz="UTC")

    def slow(progress: dict[str, Any]) -> Any:
        progress.update(source=str(log.path), done=300_000_000, total=400_000_000)
        assert gate.wait(60)
        return load(progress)

    loading = LoadingViews(slow, load.label)
    try:
        with serving(DashboardApp(loading)) as base:
            page = tab.page
            page.goto(f"{base}/?view=overview")
            page.wait_for_selector("#qm-load-state")
            text = page.inner_text("#qm-load-state")
            assert "75%" in text and "300 of 400 MB" in text and str(log.path) in text
            assert page.get_attribute("#qm-load-state", "data-loading") == "75"
            tab.shot("loading")
            gate.set()
            tab.ready()
            assert page.query_selector("#qm-load-state") is None
            assert dom_money(page, "cost") == log.spend()
    finally:
        gate.set()  # the loader thread must not wait for a test that failed


def test_live_budget_state_from_a_shared_store(server: str, tab: Page) -> None:
    """The module's server has a gateway config whose store is shared: the overview shows
    what the store holds now (spend a gateway committed, in no log)."""
    page = tab.open(server + "?view=overview")
    row = 'tr[data-budget="global::monthly"]'
    assert page.inner_text(f'{row} td[data-col="committed"]') == "0.0125"
    assert page.inner_text(f'{row} td[data-col="remaining"]') == "0.0375"
    assert "Committed" in page.inner_text(".qm-live")


# --- the snapshot: the static HTML report is the same page -----------------------------------


def test_snapshot_report_opens_from_disk_offline(log: Generated, report: dict[str, Any],
                                                 reports: dict[str, subprocess.Popen[bytes]],
                                                 browser: Any) -> None:
    out = report_file(log, reports, "html")
    snap = Page(browser)
    asked: list[str] = []

    def gate(route: Any) -> None:
        url = route.request.url
        if url.startswith("file://"):
            route.continue_()
        else:
            asked.append(url)
            route.abort()

    snap.context.route("**/*", gate)
    try:
        page = snap.open(out.as_uri())
        assert dom_money(page, "cost") == exact(report["summary"]["spend"])
        assert "snapshot" in page.inner_text("#qm-messages")
        assert page.query_selector(".qm-chart canvas") is not None
        snap.shot("snapshot")
        for view in ("series", "top", "calls"):
            before = snap.mark()
            page.click(f'.qm-tab[data-view="{view}"]')
            snap.ready(before)
            assert page.query_selector_all(".qm-msg-error") == [], view
        # the calls the snapshot holds, hostile tag included, as text
        assert HOSTILE_TAG in [t.inner_text() for t in page.query_selector_all(".qm-tag")]
        assert page.evaluate("window.__pwned") is None
        # a filter chip in a snapshot narrows the calls it holds, and says it is limited
        before = snap.mark()
        page.select_option("#qm-dim", "user")
        page.fill("#qm-value", "李四")
        page.press("#qm-value", "Enter")
        snap.ready(before)
        assert sorted(call_ids(snap)) == sorted(r.id for r in log.select(user="李四"))
        assert "Filters in a snapshot apply to the listed calls only" in \
            page.inner_text("#qm-messages")
        assert asked == []
    finally:
        snap.close()


# --- live: runs last, as it appends to the module's log ---------------------------------------


def test_live_log_refreshes_until_paused(server: str, log: Generated, tab: Page) -> None:
    from qwen_meter.meter.records import UsageRecord

    page = tab.open(server + "?view=overview")
    calls = '[data-stat="calls"] .qm-stat-value'
    assert page.inner_text(calls) == str(len(log.records))

    def append() -> None:
        record = UsageRecord(model="qwen-plus", user="赵六", prompt_tokens=1000,
                             completion_tokens=100, cost="0.25", currency="CNY",
                             tags=("feature=智能客服",))
        with log.path.open("a", encoding="utf-8") as f:
            f.write(record.to_json() + "\n")
        log.records.append(record)

    shows = "([sel, n]) => document.querySelector(sel).textContent === n"
    append()
    page.wait_for_function(shows, arg=[calls, str(len(log.records))], timeout=20_000)
    assert dom_money(page, "cost") == log.spend()
    assert page.inner_text("#qm-refresh") == "Pause auto-refresh"
    page.click("#qm-refresh")
    tab.ready()
    assert page.inner_text("#qm-refresh") == "Resume auto-refresh"
    shown = page.inner_text(calls)
    append()
    page.wait_for_timeout(2_500)  # 2.5 refresh periods: a running timer would have drawn it
    assert page.inner_text(calls) == shown
    page.click("#qm-refresh")
    page.wait_for_function(shows, arg=[calls, str(len(log.records))], timeout=20_000)
