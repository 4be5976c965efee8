"""What makes a gateway one replica of a fleet: the ledger (``ledger:`` in the config) that
holds every replica's records, the keys and the user / team budgets, the live key table
(:mod:`.live_keys`) and the admin API (:mod:`.admin`).

Without a ledger, the keys are the config file's (re-read when it changes) and there is no
admin API. With one, the config file's keys, if any, are copied into the ledger at start —
each only when the ledger has no key of that name, so a key changed or revoked through the
admin API stays as it was changed.
"""

from __future__ import annotations

import os

from ..ledger.base import KeyEntry, Ledger, ScopeBudget
from ..meter.observers import Observer
from .admin import AdminAPI, admin_token
from .asgi import Receive, Scope, Send
from .config import GatewayConfig
from .live_keys import LiveKeys, import_config_keys, source_for
from .tenants import Tenants, entry_from_config


def open_ledger(url: str) -> Ledger:
    """The ledger of ``url`` (imported only by a gateway that has one)."""
    from ..ledger import open_ledger as opener

    return opener(url)


class Fleet:
    """Opened before the tenants are built; started and stopped with the server."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        # Read first: a missing admin token fails the start before anything is opened.
        self.token = admin_token(config)
        self.ledger: Ledger | None = open_ledger(config.ledger) if config.ledger else None
        try:
            self.keys: list[KeyEntry] = [entry_from_config(k) for k in config.keys]
            self.budgets: list[ScopeBudget] = []
            if self.ledger is not None:
                import_config_keys(self.ledger, config.keys)
                self.keys = self.ledger.list_keys(revoked=False)
                self.budgets = self.ledger.list_budgets()
        except BaseException:
            self.close()
            raise
        self.live: LiveKeys | None = None
        self.admin: AdminAPI | None = None

    def tenants(self, observers: Observer | list[Observer],
                log: str | os.PathLike[str] | None) -> Tenants:
        """The tenant table of the keys read at start, kept live from then on."""
        if isinstance(observers, Observer):
            observers = [observers]
        try:
            tenants = Tenants(self.config, observers, log, ledger=self.ledger, keys=self.keys,
                              scope_budgets=self.budgets)
        except BaseException:
            self.close()
            raise
        source = source_for(self.config, self.ledger)
        self.live = LiveKeys(tenants, source) if source is not None else None
        self.admin = AdminAPI(self.config, self.token, self.ledger, tenants, self.live)
        return tenants

    async def admin_api(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.admin is not None
        await self.admin(scope, receive, send)

    def start(self) -> None:
        if self.live is not None:
            self.live.start()

    def stop(self) -> None:
        """Stop following changes (the ledger itself is closed with the tenants' log)."""
        if self.live is not None:
            self.live.stop()

    def close(self) -> None:
        if self.ledger is not None:
            self.ledger.close()
            self.ledger = None
