"""The dashboard as a plain ASGI app: ``/`` the page, ``assets/*`` its files, ``api/*`` the
JSON views of :mod:`qwen_meter.report.views`; :mod:`.assets` versions the page's asset URLs.

Plain ASGI, as the gateway's own app, rather than Starlette: eight GET routes need no router,
the app adds no dependency beyond the ``reports`` extra, and the gateway mounts it at ``/ui``
by calling it (``base_path``) behind its admin check (``auth``) with no adapter between them.

DuckDB work runs on worker threads (the store serialises it), never on the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import logging
import os
import re
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from ..base.errors import QwenMeterError
from .assets import PAGE_CACHE, asset_cache, versioned_page
from .loading import LoadingViews

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
#: ``auth(scope)``: True (or an awaitable of True) lets a request through.
Auth = Callable[[Scope], "bool | Awaitable[bool]"]

log = logging.getLogger("qwen_meter.dashboard")

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
    ".json": "application/json; charset=utf-8", ".svg": "image/svg+xml",
    ".png": "image/png", ".ico": "image/x-icon", ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8", ".map": "application/json; charset=utf-8"}
#: The page may load nothing from another origin (no CDN, nothing to leak to).
CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; "
       "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'self'; "
       "form-action 'self'")
_SAFE_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
VIEWS = ("meta", "overview", "series", "top", "calls", "problems")


def assets_dir() -> Path:
    """``data/dashboard`` of this installation (the page and its vendored files)."""
    from ..base.data import data_dir

    return data_dir() / "dashboard"


class DashboardApp:
    """The ASGI app; see :func:`dashboard_app`."""

    def __init__(self, views: Any, *, base_path: str = "", auth: Auth | None = None,
                 assets: str | os.PathLike[str] | None = None) -> None:
        self.views = views
        self.base = base_path.rstrip("/")
        self.auth = auth
        self.assets = Path(assets) if assets is not None else assets_dir()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            await self._http(scope, send)
        except Exception:  # the answer says so; the server keeps serving
            log.exception("dashboard request failed: %s", scope.get("path"))
            await _json(send, 500, {"error": {"code": "internal",
                                              "message": "the dashboard failed to answer; "
                                                         "see the server's log"}})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                views = self.views
                if isinstance(views, LoadingViews):
                    views = views.views  # still loading: nothing to close yet
                if views is not None:
                    await asyncio.to_thread(views.records.close)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, send: Send) -> None:
        path: str = scope.get("path", "/")
        if self.base:
            if path == self.base:  # relative URLs need the trailing slash
                query = scope.get("query_string", b"")
                target = (self.base + "/" + ("?" + query.decode("latin-1") if query else ""))
                await _send(send, 308, b"", None, [(b"location", target.encode("latin-1"))])
                return
            if not path.startswith(self.base + "/"):
                await _error(send, 404, "not_found", f"no such page: {path}")
                return
            path = path[len(self.base):]
        if path.startswith("/api/") and self.auth is not None \
                and not await _allowed(self.auth, scope):
            # only the API holds data: the page loads, and asks for the token
            await _error(send, 401, "unauthorized", "this dashboard needs the admin token")
            return
        if scope.get("method") not in ("GET", "HEAD"):
            await _error(send, 405, "method_not_allowed", "the dashboard only reads (GET)",
                         [(b"allow", b"GET, HEAD")])
            return
        if path in ("/", "/index.html"):
            await self._file(scope, send, "index.html", page=True)
        elif path.startswith("/assets/"):
            await self._file(scope, send, path[len("/assets/"):])
        elif path.startswith("/api/"):
            await self._api(scope, send, path[len("/api/"):])
        else:
            await _error(send, 404, "not_found", f"no such page: {path}")

    async def _file(self, scope: Scope, send: Send, name: str, page: bool = False) -> None:
        parts = name.split("/")
        if not all(_SAFE_PART.match(p) for p in parts):
            await _error(send, 404, "not_found", f"no such asset: {name}")
            return
        path = self.assets.joinpath(*parts)
        try:
            body = await asyncio.to_thread(path.read_bytes)
        except OSError:
            what = "the page (data/dashboard/index.html)" if page else f"asset {name}"
            await _error(send, 404, "not_found", f"{what} is missing from this installation")
            return
        if page:  # each asset it names carries its digest: see .assets
            body = await asyncio.to_thread(versioned_page, body, self.assets)
        full = hashlib.sha256(body).hexdigest()
        etag = '"' + full[:32] + '"'
        version = (parse_qs(scope.get("query_string", b"").decode("latin-1")).get("v")
                   or [None])[-1]
        headers = [(b"etag", etag.encode()), (b"x-content-type-options", b"nosniff"),
                   (b"cache-control", PAGE_CACHE if page else asset_cache(full, version))]
        if page:
            headers += [(b"content-security-policy", CSP.encode()),
                        (b"referrer-policy", b"no-referrer")]
        if etag in _header(scope, b"if-none-match"):
            await _send(send, 304, b"", None, headers)
            return
        kind = CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
        await _send(send, 200, b"" if scope.get("method") == "HEAD" else body, kind.encode(),
                    headers, length=len(body))

    async def _api(self, scope: Scope, send: Send, name: str) -> None:
        from ..report.views import BadParam

        try:
            params = parse_qs(scope.get("query_string", b"").decode("latin-1"),
                              keep_blank_values=True, encoding="utf-8", errors="strict")
        except UnicodeDecodeError:
            await _error(send, 400, "bad_param", "the query string is not UTF-8",
                         param="query")
            return
        if name not in (*VIEWS, "export.csv"):
            await _error(send, 404, "not_found", f"no such API: api/{name}")
            return
        views = self.views
        if isinstance(views, LoadingViews):
            if views.error is not None:
                what = str(views.error) if isinstance(views.error, QwenMeterError) else \
                    f"{type(views.error).__name__}: {views.error}"
                await _error(send, 500, "load_failed",
                             f"the dashboard could not load {views.label}: {what}")
                return
            if views.views is None:
                await _json(send, 503, {"error": {"code": "loading", "message":
                                                  f"still reading {views.label}"},
                                        "loading": views.state()}, [(b"retry-after", b"1")])
                return
            views = views.views
        try:
            if name == "export.csv":
                text = await asyncio.to_thread(_refreshed, views, views.export_csv, params)
                table = (params.get("table") or ["top"])[-1]
                await _send(send, 200, text.encode("utf-8"), b"text/csv; charset=utf-8",
                            [(b"content-disposition",
                              f'attachment; filename="qwen-meter-{table}.csv"'.encode()),
                             (b"cache-control", b"no-store")])
                return
            answer = await asyncio.to_thread(_refreshed, views,
                                             lambda p: views.answer(name, p), params)
        except BadParam as exc:
            await _error(send, 400, "bad_param", exc.detail, param=exc.param)
            return
        except QwenMeterError as exc:
            await _error(send, 400, "bad_request", str(exc))
            return
        await _json(send, 200, answer)


def _refreshed(views: Any, view: Callable[[Any], Any], params: Any) -> Any:
    """The answer after a live source's new records are read (a stat when nothing changed)."""
    views.refresh()
    return view(params)


async def _allowed(auth: Auth, scope: Scope) -> bool:
    verdict = auth(scope)
    if inspect.isawaitable(verdict):
        verdict = await verdict
    return bool(verdict)


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return ""


async def _send(send: Send, status: int, body: bytes, content_type: bytes | None,
                headers: Sequence[tuple[bytes, bytes]] = (), length: int | None = None
                ) -> None:
    out = list(headers)
    if content_type is not None:
        out.append((b"content-type", content_type))
    out.append((b"content-length", str(len(body) if length is None else length).encode()))
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, status: int, value: Any,
                 headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps(value, ensure_ascii=False, default=str).encode("utf-8")
    await _send(send, status, body, b"application/json; charset=utf-8",
                [*headers, (b"cache-control", b"no-store"),
                 (b"x-content-type-options", b"nosniff")])


async def _error(send: Send, status: int, code: str, message: str,
                 headers: Sequence[tuple[bytes, bytes]] = (), param: str | None = None
                 ) -> None:
    error: dict[str, Any] = {"code": code, "message": message}
    if param is not None:
        error["param"] = param
    await _json(send, status, {"error": error}, headers)


def dashboard_app(source: Any = None, base_path: str = "/ui", auth: Auth | None = None, *,
                  tz: str | None = None, budgets: Sequence[Any] = (), store: Any = None,
                  limiters: Sequence[Any] = (),
                  title: str | None = None, refresh_seconds: int | None = 10,
                  assets: str | os.PathLike[str] | None = None,
                  cache: bool | str | os.PathLike[str] | None = None,
                  background: bool = False) -> DashboardApp:
    """The dashboard over ``source`` (a usage log, several, a folder, Parquet ... as
    ``qwen-meter report`` reads them; None: the default log; or opened
    :class:`~qwen_meter.report.views.Views`), served under ``base_path`` (``""`` at the
    root). When ``auth`` is given, each ``api/*`` request is let through only if
    ``auth(scope)`` is true (or an awaitable of true); the page and its assets hold no data
    and are served to anyone, so a browser can load the page that asks for the token.
    ``cache``: keep the loaded records between runs (True: the user's cache folder; see
    :mod:`qwen_meter.report.views.cache`). ``background``: load on a worker thread and answer
    the API with 503 "loading" until done (the sources are still checked here, at once)."""
    from ..report.views import Views, prepare_views

    if isinstance(source, Views):
        return DashboardApp(source, base_path=base_path, auth=auth, assets=assets)
    load = prepare_views(source, tz=tz, title=title, budgets=budgets, store=store,
                         limiters=limiters, refresh_seconds=refresh_seconds,
                         cache=cache)
    views: Any = LoadingViews(load, load.label) if background else load()
    return DashboardApp(views, base_path=base_path, auth=auth, assets=assets)
