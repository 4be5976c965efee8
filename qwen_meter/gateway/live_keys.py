"""Keys that change while the gateway runs: created, changed or revoked on any replica, in
effect on every replica within 2 seconds.

A :class:`KeySource` says what the keys and the user / team budgets are now, and a version
that changes with them: the ledger (:class:`LedgerKeys`; its ``watch`` calls back on every
change any process makes — PostgreSQL LISTEN/NOTIFY, or the SQLite file's data version), or
the YAML file of a gateway without a ledger (:class:`FileKeys`; its modification). A
:class:`LiveKeys` thread waits for the callback, and asks the version once a second anyway in
case a notification was lost (a dropped database connection ...); when it changed, it reads
the keys and budgets again and :meth:`Tenants.update <.tenants.Tenants.update>` rebuilds the
tenants that changed. Requests never wait for any of this: they read the current table.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence

from ..base.errors import QwenMeterError
from ..ledger.base import KeyEntry, Ledger, ScopeBudget
from .config import GatewayConfig, KeyConfig, load_config
from .tenants import Tenants, entry_from_config

log = logging.getLogger("qwen_meter.gateway")

#: seconds between two version checks when no change was announced
POLL_INTERVAL = 1.0


class KeySource:
    """Where the keys live (see the module docs)."""

    def version(self) -> object:
        raise NotImplementedError

    def keys(self) -> list[KeyEntry]:
        raise NotImplementedError

    def budgets(self) -> list[ScopeBudget]:
        return []

    def watch(self, callback: Callable[[int], None]) -> Callable[[], None]:
        """Call ``callback`` on a change, if the source can tell (else: polled)."""
        return lambda: None


class LedgerKeys(KeySource):
    """The keys and user / team / global budgets of a ledger, shared by a fleet."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def version(self) -> object:
        return self.ledger.version()

    def keys(self) -> list[KeyEntry]:
        return self.ledger.list_keys(revoked=False)

    def budgets(self) -> list[ScopeBudget]:
        return self.ledger.list_budgets()

    def watch(self, callback: Callable[[int], None]) -> Callable[[], None]:
        return self.ledger.watch(callback)


class FileKeys(KeySource):
    """The ``keys:`` of a gateway's config file, read again when the file changes (what
    ``qwen-meter serve keys add|revoke`` edit). Only the keys: other settings need a restart.
    A file that no longer validates is not applied; the keys read before stay."""

    def __init__(self, path: str) -> None:
        self.path = path

    def version(self) -> object:
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        # `serve keys` replaces the file (a new inode); an editor may write in place.
        return stat.st_ino, stat.st_mtime_ns, stat.st_size

    def keys(self) -> list[KeyEntry]:
        config: GatewayConfig = load_config(self.path)
        return [entry_from_config(k) for k in config.keys]


class LiveKeys:
    """Keeps ``tenants`` in step with ``source`` from a background thread."""

    def __init__(self, tenants: Tenants, source: KeySource, *,
                 interval: float = POLL_INTERVAL) -> None:
        self.tenants = tenants
        self.source = source
        self.interval = interval
        self.seen: object = source.version()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._refresh_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._unwatch: Callable[[], None] = lambda: None

    def refresh(self) -> list[str]:
        """Read the source now and apply it; the names of the keys that changed."""
        with self._refresh_lock:
            # The version first: a change made while reading shows as a newer version at the
            # next check, so it is never missed.
            version = self.source.version()
            changed = self.tenants.update(self.source.keys(), self.source.budgets())
            self.seen = version
        if changed:
            log.info("gateway keys changed: %s", ", ".join(sorted(changed)))
        return changed

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        try:
            self._unwatch = self.source.watch(lambda _version: self._wake.set())
        except QwenMeterError as exc:  # no notifications: the poll alone keeps up
            log.warning("gateway keys: change notifications unavailable (%s); polling", exc)
        self._thread = threading.Thread(target=self._run, name="qwen-meter-live-keys",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        try:
            self._unwatch()
        finally:
            self._unwatch = lambda: None
            if self._thread is not None:
                self._thread.join(10)
                self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            announced = self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                if announced or self.source.version() != self.seen:
                    self.refresh()
            except Exception as exc:  # keep the last good table; try again next round
                log.warning("gateway keys: cannot read them (%s: %s); keeping the current "
                            "ones", type(exc).__name__, exc)


def import_config_keys(ledger: Ledger, keys: Sequence[KeyConfig]) -> list[str]:
    """Copy the config file's keys into the ledger, each only when the ledger has no key of
    that name (the ledger's copy wins: it may have been changed through the admin API)."""
    from ..ledger.base import LedgerConflict

    added = []
    for key in keys:
        if ledger.get_key(key.name) is not None:
            continue
        entry = entry_from_config(key)
        try:
            ledger.create_key(entry)
        except LedgerConflict:  # another replica imported it meanwhile
            continue
        if entry.revoked:
            ledger.revoke_key(entry.name)
        added.append(key.name)
    return added


def source_for(config: GatewayConfig, ledger: Ledger | None) -> KeySource | None:
    """Where this gateway's keys live: the ledger, the config file, or nowhere (no keys)."""
    if ledger is not None:
        return LedgerKeys(ledger)
    if config.file and config.keys:
        return FileKeys(config.file)
    return None
