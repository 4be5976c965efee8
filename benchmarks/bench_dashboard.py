"""The dashboard over a 1M-record usage log: the load (records read, checked, into DuckDB),
the first paint (the page's first API set: meta, overview, series, top), and each filter
change (the same set with one more filter), beside `qwen-meter report` on the same log.
Then `qwen-meter dashboard` itself: cold start (no cache, and the first run that writes it)
and warm start (the cache) to the page served and to the API's first answer, and in a real
browser (Debian's chromium via Playwright): the process's start to the overview's totals in
the DOM, navigation start to the totals on a running server, and each filter change (a chip
added or removed -> the totals redrawn), timed inside the page.

Run:  pip install ".[bench,reports]"
      python benchmarks/bench_dashboard.py --records 1000000 [--log /tmp/dash-1m.jsonl]
The log is generated once at --log (about 0.4 GB per 1M records) and reused; keep it out of the
repository. Times are medians of --rounds rounds (each answer computed afresh: the app's answer
cache is cleared between rounds), printed in ms.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

MODELS = ["qwen-plus", "qwen-flash", "qwen-max", "qwen3-max", "qwen-turbo"]
USERS = [f"用户{i:02d}" for i in range(40)] + [f"user{i:02d}" for i in range(20)]
FEATURES = ["智能客服", "翻译", "搜索", "摘要", "代码助手", "审核"]
KEYS = [f"team-{i}" for i in range(12)]
STATUSES = ["ok"] * 40 + ["error", "refused", "cancelled", "lost"]


def generate(path: Path, n: int) -> None:
    """``n`` records over the 60 days before now: keys, users, Chinese tags, problems."""
    rng = random.Random(25)
    end = dt.datetime.now(dt.timezone.utc)
    start = end - dt.timedelta(days=60)
    step = (end - start) / n
    with path.open("w", encoding="utf-8") as handle:
        lines = []
        for i in range(n):
            status = rng.choice(STATUSES)
            prompt, completion = rng.randint(20, 20_000), rng.randint(1, 2_000)
            billed = status not in ("error", "refused")
            cost = f"{(prompt * 8 + completion * 20) / 10**7:.7f}"
            intl = rng.random() < 0.1
            record = {
                "version": 1, "id": f"r{i:08d}", "time": (start + step * i).isoformat(),
                "model": rng.choice(MODELS), "region": "intl" if intl else "cn",
                "endpoint": "chat", "status": status,
                "prompt_tokens": prompt if billed else 0,
                "completion_tokens": completion if billed else 0,
                "cached_tokens": rng.choice((0, 0, prompt // 2)) if billed else 0,
                "reasoning_tokens": 0, "usage_estimated": status in ("cancelled", "lost"),
                "cost": cost if billed else None,
                "currency": ("USD" if intl else "CNY") if billed else None,
                "latency_ms": rng.randint(100, 9000),
                "tags": [f"key={rng.choice(KEYS)}", f"feature={rng.choice(FEATURES)}"],
                "user": rng.choice(USERS)}
            lines.append(json.dumps(record, ensure_ascii=False))
            if len(lines) >= 50_000:
                handle.write("\n".join(lines) + "\n")
                lines.clear()
        if lines:
            handle.write("\n".join(lines) + "\n")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def first_paint(views: object, params: dict[str, list[str]]) -> float:
    """The page's first set of answers; returns the slowest answer's time."""
    answer = views.answer  # type: ignore[attr-defined]
    slowest = 0.0
    for name, extra in (("meta", {}), ("overview", {}),
                        ("series", {"metric": ["cost"], "by": ["model"], "bucket": ["day"]}),
                        ("top", {"by": ["model"]})):
        began = time.perf_counter()
        answer(name, {**params, **extra})
        slowest = max(slowest, time.perf_counter() - began)
    return slowest


def timed(views: object, params: dict[str, list[str]], rounds: int) -> str:
    """'<set> ms  (slowest answer <n> ms)', medians over ``rounds``."""
    times, slowest = [], []
    for _ in range(rounds):
        views._cache.clear()  # type: ignore[attr-defined]
        began = time.perf_counter()
        slowest.append(first_paint(views, params))
        times.append(time.perf_counter() - began)
    return (f"{_ms(statistics.median(times))}  (slowest answer "
            f"{statistics.median(slowest) * 1000:.0f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--log", default="/tmp/qwen-meter-dash-1m.jsonl")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tz", default="Asia/Shanghai")
    parser.add_argument("--no-server", action="store_true",
                        help="skip `qwen-meter dashboard` and the browser")
    args = parser.parse_args()
    log = Path(args.log)
    if not log.exists():
        print(f"generating {args.records:,} records at {log} ...", file=sys.stderr)
        generate(log, args.records)
    from qwen_meter.report.views import open_views

    began = time.perf_counter()
    views = open_views(log, tz=args.tz)
    load = time.perf_counter() - began
    records = views.records.db.execute("SELECT count(*) FROM records").fetchall()[0][0]
    print(f"records {records:,}, {log.stat().st_size / 1e6:.0f} MB, money summed from "
          f"{views.records.cost_column}")
    print(f"load (read, check, into DuckDB)         {_ms(load)}")
    base = {"tz": [args.tz]}
    print(f"first paint (meta+overview+series+top)  {timed(views, base, args.rounds)}")
    changes = {"model=qwen-plus": {"model": ["qwen-plus"]},
               "user=用户07": {"user": ["用户07"]},
               "tag=feature=智能客服": {"tag": ["feature=智能客服"]},
               "key=team-3": {"key": ["team-3"]},
               "status=error": {"status": ["error"]},
               "since=last 7 days": {"since": [(dt.date.today() - dt.timedelta(days=7))
                                               .isoformat()]},
               "by hour, 3 days": {"since": [(dt.date.today() - dt.timedelta(days=3))
                                             .isoformat()]}}
    for label, extra in changes.items():
        params = {**base, **extra}
        print(f"filter change {label:<25} {timed(views, params, args.rounds)}")
    for name, params in (("calls (drill-down, 100 rows)", {**base, "model": ["qwen-max"]}),
                         ("series by tag, hourly", {**base, "by": ["tag"],
                                                    "bucket": ["hour"]})):
        view = "calls" if name.startswith("calls") else "series"
        times = []
        for _ in range(args.rounds):
            views._cache.clear()
            began = time.perf_counter()
            views.answer(view, params)
            times.append(time.perf_counter() - began)
        print(f"{name:<39} {_ms(statistics.median(times))}")
    before = views.records._rid
    with log.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"model": "qwen-plus", "time": dt.datetime.now(
            dt.timezone.utc).isoformat(), "prompt_tokens": 1, "completion_tokens": 1,
            "cost": "0.0001", "currency": "CNY"}) + "\n")
    began = time.perf_counter()
    views.refresh()
    print(f"live refresh (1 appended record)        {_ms(time.perf_counter() - began)}"
          f"  (+{views.records._rid - before})")
    views.records.close()
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "qwen_meter", "report", str(log), "--tz", args.tz,
                    "-q"], check=True, capture_output=True)
    print(f"qwen-meter report (same log, CLI)       {_ms(time.perf_counter() - began)}")
    if not args.no_server:
        serve(log, args.tz)


# --- qwen-meter dashboard itself, and the page in chromium ----------------------------------

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
#: Records when the overview's totals first appear and when a view is redrawn (in-page clock:
#: performance.now() counts from the navigation's start).
WATCH = """
window.__qm = {paint: null, ready: null};
new MutationObserver(() => {
  if (window.__qm.paint === null && document.querySelector('[data-stat="cost"] .qm-money'))
    window.__qm.paint = performance.now();
  const v = document.getElementById('qm-view');
  if (v && v.dataset.ready !== window.__qm.seen) {
    window.__qm.seen = v.dataset.ready; window.__qm.ready = performance.now();
  }
}).observe(document, {subtree: true, childList: true, attributes: true});
"""


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


class Server:
    """`qwen-meter dashboard LOG` in a process of its own, timed from its start."""

    def __init__(self, log: Path, tz: str, cache_home: str, *extra: str) -> None:
        self.port = _port()
        self.url = f"http://127.0.0.1:{self.port}/"
        env = dict(os.environ, XDG_CACHE_HOME=cache_home)
        self.began = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qwen_meter", "dashboard", str(log), "--port",
             str(self.port), "--tz", tz, *extra], env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)

    def until(self, path: str, want: int = 200) -> float:
        """Seconds from the start until ``path`` answers ``want``."""
        while _status(self.url + path) != want:
            if self.proc.poll() is not None:
                raise SystemExit(f"qwen-meter dashboard exited ({self.proc.returncode})")
            time.sleep(0.01)
        return time.perf_counter() - self.began

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _start(log: Path, tz: str, cache_home: str, label: str, *extra: str) -> None:
    server = Server(log, tz, cache_home, *extra)
    try:
        page = server.until("")
        api = server.until("api/overview")
    finally:
        server.stop()
    print(f"{label:<39} page {_ms(page)}, data {_ms(api)}")


def serve(log: Path, tz: str) -> None:
    cache_home = tempfile.mkdtemp(prefix="qwen-meter-bench-cache-")
    try:
        _serve(log, tz, cache_home)
    finally:
        shutil.rmtree(cache_home, ignore_errors=True)


def _serve(log: Path, tz: str, cache_home: str) -> None:
    _start(log, tz, cache_home, "start --no-cache (to page / to data)", "--no-cache")
    _start(log, tz, cache_home, "cold start, writes the cache", )
    _start(log, tz, cache_home, "warm start (the cache)")
    if not Path(CHROMIUM).exists():
        print(f"(no {CHROMIUM}: no browser timings)")
        return
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            for label, extra in (("cold", ("--no-cache",)), ("warm", ())):
                _browser_start(browser, log, tz, cache_home, label, extra)
            server = Server(log, tz, cache_home)
            try:
                server.until("api/overview")
                _browser_filters(browser, server.url + f"?view=overview&tz={tz}")
            finally:
                server.stop()
        finally:
            browser.close()


def _page(browser: Any) -> Any:
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
    context.add_init_script(WATCH)
    return context.new_page()


def _browser_start(browser: Any, log: Path, tz: str, cache_home: str, label: str,
                   extra: tuple[str, ...]) -> None:
    """Process start -> totals in the DOM (the page opened as soon as it is served)."""
    server = Server(log, tz, cache_home, *extra)
    page = _page(browser)
    try:
        server.until("")
        navigated = time.perf_counter() - server.began
        page.goto(server.url + f"?view=overview&tz={tz}")
        page.wait_for_function("() => window.__qm.paint !== null", timeout=120_000)
        total = time.perf_counter() - server.began
        # the page's first contentful paint (the frame, and the load's progress if loading)
        fcp = page.evaluate("() => (performance.getEntriesByName('first-contentful-paint')[0]"
                            " || {startTime: NaN}).startTime") / 1000
    finally:
        page.context.close()
        server.stop()
    print(f"browser: {label} start -> totals in DOM    {_ms(total)}  (first contentful "
          f"paint {_ms(navigated + fcp).strip()} after the start)")


def _browser_filters(browser: Any, url: str, rounds: int = 5) -> None:
    page = _page(browser)
    try:
        paints = []
        for _ in range(rounds):
            page.goto(url)
            page.wait_for_function("() => window.__qm.paint !== null")
            paints.append(page.evaluate("window.__qm.paint") / 1000)
        print(f"browser: navigation -> totals in DOM    {_ms(statistics.median(paints))}"
              "  (running server)")
        for dim, value in (("model", "qwen-plus"), ("user", "用户07"),
                           ("tag", "feature=智能客服"), ("key", "team-3"), ("status", "error")):
            adds, removes = [], []
            for _ in range(rounds):
                page.select_option("#qm-dim", dim)
                page.fill("#qm-value", value)
                adds.append(_timed_click(page, "#qm-add"))
                removes.append(_timed_click(page, f'.qm-chip[data-dim="{dim}"] .qm-chip-x'))
            print(f"browser: chip {dim}={value:<18} add {_ms(statistics.median(adds))}, "
                  f"remove {_ms(statistics.median(removes))}")
    finally:
        page.context.close()


def _timed_click(page: Any, selector: str) -> float:
    """Click -> the view redrawn with its totals (seconds, the page's own clock)."""
    before = page.evaluate("document.getElementById('qm-view').dataset.ready")
    page.evaluate("window.__qm.t0 = performance.now()")
    page.click(selector)
    page.wait_for_function("(b) => document.getElementById('qm-view').dataset.ready !== b",
                           arg=before)
    with contextlib.suppress(Exception):
        page.wait_for_function("() => window.__qm.ready >= window.__qm.t0", timeout=2000)
    return float(page.evaluate("window.__qm.ready - window.__qm.t0")) / 1000


if __name__ == "__main__":
    main()
