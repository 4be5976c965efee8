"""The admin API under ``/admin``: keys, user / team / global budgets and spend, as JSON.

Every request needs ``Authorization: Bearer <token>``, the token being the value of the
environment variable the config names in ``admin_token_env`` (compared in constant time). A
missing or wrong token is a 401; a gateway whose config names no ``admin_token_env`` has no
admin API: every ``/admin`` path answers 404, as any unknown path does.

Keys and budgets are written to the ledger; the replica that wrote applies the change at once,
the others within 2 seconds (:mod:`.live_keys`). A new key's secret is in the answer to its
``POST`` and nowhere else: never in a log, a list, or another answer. The ledger's calls run
in a worker thread, so the event loop keeps relaying calls meanwhile. The routes and their
JSON are described by the OpenAPI document at ``/admin/openapi.json`` (:mod:`.admin_openapi`).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote

from ..base.errors import GatewayConfigError
from ..ledger.base import Ledger, LedgerConflict, LedgerError, LedgerNotFound
from .admin_fields import (
    BadField,
    check_name,
    key_fields,
    key_row,
    new_entry,
    scope_budget_body,
    scope_budget_row,
    scope_of,
    spend_query,
    spend_row,
)
from .asgi import ClientGone, Receive, Scope, Send, TooLarge, read_body, send_bytes
from .config import GatewayConfig
from .live_keys import LiveKeys
from .tenants import Tenants, scope_value

log = logging.getLogger("qwen_meter.gateway.admin")

#: the largest admin request body read
MAX_BODY = 64 * 1024

#: (method, path pattern, handler name): what the API serves (the OpenAPI document lists the
#: same, which a test checks)
ROUTES: tuple[tuple[str, str, str], ...] = (
    ("GET", "/admin/openapi.json", "openapi"),
    ("GET", "/admin/keys", "list_keys"),
    ("POST", "/admin/keys", "create_key"),
    ("GET", "/admin/keys/{name}", "get_key"),
    ("PATCH", "/admin/keys/{name}", "update_key"),
    ("DELETE", "/admin/keys/{name}", "revoke_key"),
    ("GET", "/admin/spend", "spend"),
    ("GET", "/admin/budgets", "list_budgets"),
    ("GET", "/admin/budgets/{scope}/{subject}", "list_budgets"),
    ("GET", "/admin/budgets/{scope}/{subject}/{name}", "get_budget"),
    ("PUT", "/admin/budgets/{scope}/{subject}/{name}", "put_budget"),
    ("DELETE", "/admin/budgets/{scope}/{subject}/{name}", "delete_budget"),
)


def _pattern(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path)) + "$")


_COMPILED = [(method, _pattern(path), handler) for method, path, handler in ROUTES]


def admin_token(config: GatewayConfig) -> str | None:
    """The admin token from the environment (None: no admin API); read once, at start."""
    if config.admin_token_env is None:
        return None
    token = os.environ.get(config.admin_token_env, "").strip()
    if not token:
        raise GatewayConfigError(f"environment variable {config.admin_token_env} is not set "
                                 "(the admin API's token)", file=config.file,
                                 field="admin_token_env")
    return token


class Reply(Exception):
    """A finished answer: ``raise Reply(201, {...})`` from a handler."""

    def __init__(self, status: int, data: Any, headers: tuple[tuple[bytes, bytes], ...] = ()
                 ) -> None:
        super().__init__(status)
        self.status = status
        self.data = data
        self.headers = headers


#: what must never reach an answer or a log line: a key, or a key's hash
_SECRETS = re.compile(r"sha256:[0-9a-fA-F]{16,}|sk-[A-Za-z0-9_-]{8,}")


def error_body(status: int, message: str, field: str | None = None) -> dict[str, Any]:
    message = _SECRETS.sub("***", message)
    kind = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found",
            405: "method_not_allowed", 409: "conflict", 413: "request_too_large",
            503: "service_unavailable"}.get(status, "error")
    return {"error": {"message": message, "type": kind, "param": field, "code": kind}}


def bearer_matches(scope: Scope, token: bytes | None) -> bool:
    """Whether the request carries ``Authorization: Bearer <token>`` (never, without a token);
    compared in constant time, so a timing probe learns nothing of the token."""
    if token is None:
        return False
    for name, value in scope["headers"]:
        if name.lower() == b"authorization":
            kind, _, given = value.partition(b" ")
            return kind.lower() == b"bearer" and hmac.compare_digest(given.strip(), token)
    return False


class AdminAPI:
    """The ``/admin`` routes of one gateway (``token`` None: the API is off)."""

    def __init__(self, config: GatewayConfig, token: str | None, ledger: Ledger | None,
                 tenants: Tenants, live: LiveKeys | None) -> None:
        self.config = config
        self._token = token.encode("utf-8") if token else None
        self.ledger = ledger
        self.tenants = tenants
        self.live = live

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            status, data, headers = await self._handle(scope, receive)
        except ClientGone:
            return
        body = json.dumps(data, ensure_ascii=False).encode("utf-8")
        await send_bytes(send, status, body, b"application/json",
                         [(b"cache-control", b"no-store"), *headers])

    async def _handle(self, scope: Scope, receive: Receive
                      ) -> tuple[int, Any, tuple[tuple[bytes, bytes], ...]]:
        path = scope["path"].rstrip("/") or "/"
        if self._token is None or self.ledger is None:
            return 404, error_body(404, f"{path} is not served: this gateway has no admin "
                                        "API (set admin_token_env and ledger)"), ()
        if not self._authorized(scope):
            return 401, error_body(401, "missing or wrong admin token (Authorization: "
                                        "Bearer <token>)"), ((b"www-authenticate", b"Bearer"),)
        method = scope["method"]
        allowed = []
        for route_method, pattern, handler in _COMPILED:
            match = pattern.match(path)
            if match is None:
                continue
            if route_method != method:
                allowed.append(route_method)
                continue
            params = {k: unquote(v) for k, v in match.groupdict().items()}
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            try:
                body = await self._body(scope, receive) if method in ("POST", "PATCH", "PUT") \
                    else None
                status, data = await getattr(self, handler)(params=params, query=query,
                                                            body=body)
                return status, data, ()
            except Reply as reply:
                return reply.status, reply.data, reply.headers
            except BadField as exc:
                return exc.status, error_body(exc.status, exc.message, exc.field), ()
            except LedgerConflict as exc:
                return 409, error_body(409, str(exc)), ()
            except LedgerNotFound as exc:
                return 404, error_body(404, str(exc)), ()
            except LedgerError as exc:
                if exc.__context__ is None and "closed" not in str(exc):
                    return 400, error_body(400, str(exc)), ()  # a value the ledger refused
                log.warning("admin API: the ledger failed: %s", exc)
                return 503, error_body(503, f"the ledger is unavailable: {exc}"), \
                    ((b"retry-after", b"1"),)
        if allowed:
            return 405, error_body(405, f"{method} is not allowed on {path} (allowed: "
                                        f"{', '.join(allowed)})"), \
                ((b"allow", ", ".join(allowed).encode()),)
        return 404, error_body(404, f"{path} is not an admin API path (see "
                                    "/admin/openapi.json)"), ()

    def _authorized(self, scope: Scope) -> bool:
        return bearer_matches(scope, self._token)

    async def _body(self, scope: Scope, receive: Receive) -> Any:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope["headers"]}
        try:
            raw = await read_body(receive, headers, MAX_BODY)
        except TooLarge:
            raise Reply(413, error_body(413, f"the body is larger than {MAX_BODY} bytes")
                        ) from None
        try:
            return json.loads(raw or b"{}")
        except ValueError as exc:
            raise BadField(f"the body is not valid JSON: {exc}") from None

    async def _run(self, work: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(work, *args, **kwargs)

    async def _changed(self) -> None:
        """Apply a change here at once (the other replicas hear of it from the ledger)."""
        if self.live is not None:
            await self._run(self.live.refresh)

    @property
    def _ledger(self) -> Ledger:
        assert self.ledger is not None
        return self.ledger

    # --- handlers: each returns (status, JSON) ------------------------------------------------

    async def openapi(self, **_: Any) -> tuple[int, Any]:
        from .admin_openapi import document

        return 200, document()

    async def list_keys(self, *, query: dict[str, str], **_: Any) -> tuple[int, Any]:
        revoked = query.get("revoked", "true").lower() not in ("false", "0", "no")
        keys = await self._run(self._ledger.list_keys, revoked=revoked)
        return 200, {"keys": [key_row(k) for k in keys]}

    async def create_key(self, *, body: Any, **_: Any) -> tuple[int, Any]:
        secret, entry = new_entry(body, self.config.upstreams)
        name = entry.name
        stored = await self._run(self._ledger.create_key, entry)
        await self._changed()
        log.info("admin API: key %r created", name)
        # The only time the secret is shown.
        return 201, {"name": name, "key": secret, **key_row(stored), "prefix": secret[:10]}

    async def get_key(self, *, params: dict[str, str], **_: Any) -> tuple[int, Any]:
        key = await self._run(self._ledger.get_key, params["name"])
        if key is None:
            raise LedgerNotFound(f"no key named {params['name']!r}")
        return 200, key_row(key)

    async def update_key(self, *, params: dict[str, str], body: Any, **_: Any
                         ) -> tuple[int, Any]:
        name = params["name"]
        changes = key_fields(body, self.config.upstreams, name=name, partial=True)
        changes.pop("name", None)
        key = await self._run(self._ledger.update_key, name, **changes)
        await self._changed()
        log.info("admin API: key %r changed (%s)", name, ", ".join(sorted(changes)))
        return 200, key_row(key)

    async def revoke_key(self, *, params: dict[str, str], **_: Any) -> tuple[int, Any]:
        key = await self._run(self._ledger.revoke_key, params["name"])
        await self._changed()
        log.info("admin API: key %r revoked", params["name"])
        return 200, key_row(key)

    async def spend(self, *, query: dict[str, str], **_: Any) -> tuple[int, Any]:
        by, since, until, tz = spend_query(query)
        # tz as an IANA name ("UTC" for the default): the ledger groups days in it
        rows = await self._run(self._ledger.spend, by, since=since, until=until, tz=str(tz))
        return 200, {"by": by, "since": since.isoformat() if since else None,
                     "until": until.isoformat() if until else None, "tz": str(tz),
                     "rows": [spend_row(r, by) for r in rows]}

    async def list_budgets(self, *, params: dict[str, str], **_: Any) -> tuple[int, Any]:
        owner = scope_of(params["scope"], params["subject"]) if params else None
        budgets = await self._run(self._ledger.list_budgets)
        chosen = [b for b in budgets if owner is None or (b.scope, b.subject) == owner]
        return 200, {"budgets": await self._run(self._budget_rows, chosen)}

    async def get_budget(self, *, params: dict[str, str], **_: Any) -> tuple[int, Any]:
        found = await self._find_budget(params)
        return 200, (await self._run(self._budget_rows, [found]))[0]

    async def put_budget(self, *, params: dict[str, str], body: Any, **_: Any
                         ) -> tuple[int, Any]:
        scope, subject = scope_of(params["scope"], params["subject"])
        name = check_name(params["name"])
        stored = await self._run(self._ledger.set_budget,
                                 scope_budget_body(body, scope, subject, name))
        await self._changed()
        log.info("admin API: budget %s/%s/%s set", scope, subject, name)
        return 200, (await self._run(self._budget_rows, [stored]))[0]

    async def delete_budget(self, *, params: dict[str, str], **_: Any) -> tuple[int, Any]:
        found = await self._find_budget(params)
        await self._run(self._ledger.delete_budget, found.scope, found.subject,
                        found.budget.name)
        await self._changed()
        log.info("admin API: budget %s/%s/%s deleted", found.scope, found.subject,
                 found.budget.name)
        return 200, {**scope_budget_row(found), "deleted": True}

    async def _find_budget(self, params: dict[str, str]) -> Any:
        scope, subject = scope_of(params["scope"], params["subject"])
        budgets = await self._run(self._ledger.list_budgets)
        for budget in budgets:
            if (budget.scope, budget.subject, budget.budget.name) == \
                    (scope, subject, params["name"]):
                return budget
        raise LedgerNotFound(f"no {scope} budget {params['name']!r} for {subject!r}")

    def _budget_rows(self, budgets: list[Any]) -> list[dict[str, Any]]:
        """Each budget with its spend in the current period, read from the shared store."""
        from ..limits.budget.core import Budget
        from .admin_fields import decimal_text

        rows = []
        for budget in budgets:
            spec = budget.budget
            live = self.tenants.scope_budgets.get(budget) or Budget(
                spec.limit, per=spec.per, scope=budget.scope, name=spec.name, mode=spec.mode,
                store=self.tenants.store)
            status = live.status(None if budget.scope == "global" else scope_value(budget))
            rows.append({**scope_budget_row(budget), "period": status.period,
                         "committed": decimal_text(status.committed),
                         "reserved": decimal_text(status.reserved),
                         "remaining": decimal_text(status.remaining),
                         "currency": status.currency})
        return rows

