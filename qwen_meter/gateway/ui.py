"""The dashboard at the gateway's ``/ui``: the same page and JSON API as ``qwen-meter
dashboard``, over the gateway's own records (its ledger, else its usage log), with the budgets
of its config, its live keys and its ledger, behind the admin token.

The page and its assets hold no data and load for anyone (so the page can ask for the token);
every ``/ui/api/*`` answer needs ``Authorization: Bearer <admin token>``. A gateway with no
``admin_token_env`` has no ``/ui`` (404, as for ``/admin``). The records are read on the first
``/ui`` request, in a worker thread, not at start: a large log must not delay the gateway.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from .admin import bearer_matches, error_body
from .asgi import Receive, Scope, Send, send_bytes
from .config import GatewayConfig


def budget_specs(config: GatewayConfig, keys: Iterable[Any] | None = None,
                 scope_budgets: Sequence[Any] = ()) -> list[Any]:
    """The budgets a gateway enforces — its config's global ones, each live key's (``keys``:
    the config's, or a ledger's :class:`~qwen_meter.ledger.KeyEntry` list) and a ledger's user /
    team budgets — as the dashboard's :class:`~qwen_meter.report.views.BudgetSpec`."""
    from ..limits.budget.money import parse_money
    from ..report.views import BudgetSpec

    def spec(budget: Any, scope: str, subject: str) -> BudgetSpec:
        amount, currency = parse_money(budget.limit)  # checked when loaded: has a currency
        return BudgetSpec(name=budget.name, limit=Decimal(amount), currency=str(currency),
                          period=budget.per, scope=scope, subject=subject, mode=budget.mode)

    specs = [spec(b, "global", "") for b in config.budgets]
    for key in config.keys if keys is None else keys:
        if not key.revoked:
            specs += [spec(b, "key", key.name) for b in key.budgets]
    for scoped in scope_budgets:
        if scoped.scope in ("user", "team"):
            specs.append(spec(scoped.budget, scoped.scope, scoped.subject))
    return specs


_NO_UI = json.dumps(error_body(
    404, "no dashboard: the gateway's config names no admin_token_env")).encode("utf-8")


def limiter_specs(keys: Iterable[Any]) -> list[Any]:
    """The RPM / TPM windows of the live keys that have one, named as :class:`TenantLimiter`
    names them in the store, for the dashboard's live state."""
    from ..report.views import LimiterSpec
    from .limits import ALL_MODELS

    return [LimiterSpec(subject=key.name, account=f"gateway-key:{key.name}", model=ALL_MODELS,
                        rpm=key.rpm, tpm=key.tpm)
            for key in keys if not key.revoked and (key.rpm is not None or key.tpm is not None)]


class GatewayUI:
    """``/ui`` of one gateway; ``source`` is its ledger URL or its log's path."""

    def __init__(self, config: GatewayConfig, token: str | None, source: str | None,
                 keys: Any = None, ledger: Any = None, store: Any = None) -> None:
        self.config = config
        self._token = token.encode("utf-8") if token else None
        self.source = source
        self.keys = keys
        self.ledger = ledger
        self.store = store
        self._app: Any = None
        self._opening: asyncio.Lock | None = None

    def allowed(self, scope: Scope) -> bool:
        """The admin token (see :func:`.admin.bearer_matches`)."""
        return bearer_matches(scope, self._token)

    def _open(self) -> Any:
        from ..dashboard import dashboard_app

        keys = list(self.keys() if callable(self.keys) else self.keys or self.config.keys)
        scoped = self.ledger.list_budgets() if self.ledger is not None else ()
        return dashboard_app(self.source, base_path="/ui", auth=self.allowed,
                             budgets=budget_specs(self.config, keys, scoped), store=self.store,
                             limiters=limiter_specs(keys), title="qwen-meter gateway")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._token is None:
            await send_bytes(send, 404, _NO_UI, b"application/json")
            return
        if self._app is None:
            self._opening = self._opening or asyncio.Lock()
            async with self._opening:
                if self._app is None:
                    try:
                        self._app = await asyncio.to_thread(self._open)
                    except ImportError as exc:  # the gateway extra alone has no DuckDB
                        body = json.dumps({"error": {
                            "message": 'the dashboard needs `pip install "qwen-meter[dashboard]"`'
                                       f" (missing: {exc.name})", "type": "not_installed",
                            "param": None, "code": "not_installed"}}).encode("utf-8")
                        await send_bytes(send, 501, body, b"application/json")
                        return
        await self._app(scope, receive, send)

    def close(self) -> None:
        if self._app is not None:
            self._app.views.records.close()
            self._app = None
