"""``qwen-meter dashboard``: the web dashboard over a usage log (or a folder of logs, Parquet,
a ledger ...), on a local port."""

from __future__ import annotations

import argparse
import sys
import threading
import webbrowser
from typing import Any

from ..base.errors import QwenMeterError


def build_app(args: argparse.Namespace, background: bool = False) -> Any:
    """The dashboard app the command line asks for (its sources, a gateway config's budgets
    — from the ledger when it names one — and its store's live state). ``background``: the
    records are loaded on a worker thread (``app.views`` is then a
    :class:`~qwen_meter.dashboard.loading.LoadingViews`), else before this returns. The
    records are cached unless ``args.no_cache`` (a namespace without it: not cached)."""
    try:
        from ..dashboard import dashboard_app
    except ImportError as exc:
        raise QwenMeterError('the dashboard needs `pip install ".[dashboard]"` '
                             f"(missing: {exc.name})") from None
    budgets: list[Any] = []
    limiters: list[Any] = []
    store = None
    sources: list[str] | None = list(args.sources) or None
    if args.config:
        from ..gateway.config import load_config
        from ..gateway.ui import budget_specs, limiter_specs

        config = load_config(args.config)
        keys: list[Any] = list(config.keys)
        scoped: list[Any] = []
        if config.ledger:  # a fleet: its keys and user / team budgets live in the ledger
            from ..ledger import open_ledger

            ledger = open_ledger(config.ledger)
            try:
                keys, scoped = ledger.list_keys(revoked=False), ledger.list_budgets()
            finally:
                ledger.close()
        budgets = budget_specs(config, keys, scoped)
        limiters = limiter_specs(keys)
        if config.store and not config.store.startswith("memory:"):
            store = config.store  # a shared store: the gateway's live budget state
        default = config.ledger or config.log
        if sources is None and default:
            sources = [default]
    return dashboard_app(sources, base_path="", tz=args.tz, budgets=budgets, store=store,
                         limiters=limiters, title=args.title, refresh_seconds=args.refresh,
                         cache=not getattr(args, "no_cache", True), background=background)


def _run(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError as exc:
        raise QwenMeterError('the dashboard needs `pip install ".[dashboard]"` '
                             f"(missing: {exc.name})") from None
    # loaded on a worker thread: the page is served at once and shows the load's progress
    app = build_app(args, background=True)
    url = f"http://{args.host}:{args.port}/"
    print(f"qwen-meter dashboard on {url} ({app.views.label})", file=sys.stderr)
    if args.open:
        threading.Timer(1.0, webbrowser.open, (url,)).start()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", lifespan="on")
    return 0


def register(sub: Any) -> None:
    """Adds ``dashboard`` to the CLI's subparsers."""
    parser = sub.add_parser(
        "dashboard", help="web dashboard of spend over usage logs",
        description="A local web dashboard (English and Chinese) over qwen_meter usage logs: "
                    "spend and tokens over time, filters, top tables, drill-down to the calls, "
                    "budgets. SOURCE is read as `qwen-meter report` reads it (default: the "
                    "meter's default log, or the ledger or log of --config).")
    parser.add_argument("sources", nargs="*", metavar="SOURCE",
                        help="usage logs (.jsonl, .db), a folder of them, Parquet of "
                             "`log compact`, a ledger URL (sqlite:///…, postgresql://…)")
    parser.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8686, help="port (default 8686)")
    parser.add_argument("--config", help="a gateway config: its budgets (and its store's live "
                                         "state) on the overview")
    parser.add_argument("--tz", help="default time zone, e.g. Asia/Shanghai (default: the "
                                     "system's; the page can change it)")
    parser.add_argument("--title", help="the page's title")
    parser.add_argument("--refresh", type=int, default=10, metavar="SECONDS",
                        help="how often the page over a live log asks again (default 10)")
    parser.add_argument("--no-cache", action="store_true",
                        help="read every record of the sources afresh, and keep none for the "
                             "next start (default: the loaded records are kept in the user's "
                             "cache folder, so a restart reads only what the logs gained)")
    parser.add_argument("--open", action="store_true", help="open it in the browser")
    parser.set_defaults(run=_run)
