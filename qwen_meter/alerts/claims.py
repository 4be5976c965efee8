"""Who sends an alert: the first to claim its mark. With a ledger
(:meth:`~qwen_meter.ledger.Ledger.claim_alert`) or a shared store the claim is atomic across
processes, so three gateway replicas send one alert; without either, a set in this process.

Every claim is remembered locally too, so a budget that stays over 80 % does not cost a
database round trip per call to learn again that its 80 % alert went out.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from decimal import Decimal
from typing import Any, Protocol

from ..base.errors import ConfigurationError
from ..ledger.base import Ledger
from ..limits.store import Store
from ..limits.store.base import to_units

log = logging.getLogger("qwen_meter.alerts")

#: how long a claim in a store is kept (longer than the longest budget period, a month)
STORE_CLAIM_SECONDS = 40 * 86_400


class Claims(Protocol):
    def claim(self, mark: str) -> bool:
        """True for the first claim of ``mark`` anywhere this object can see."""


class MemoryClaims:
    """Marks claimed in this process."""

    def __init__(self) -> None:
        self._marks: set[str] = set()
        self._lock = threading.Lock()

    def claim(self, mark: str) -> bool:
        with self._lock:
            if mark in self._marks:
                return False
            self._marks.add(mark)
            return True


class LedgerClaims:
    """Marks claimed in a :class:`~qwen_meter.ledger.Ledger` (every replica of a fleet)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def claim(self, mark: str) -> bool:
        return bool(self.ledger.claim_alert(mark))


class StoreClaims:
    """Marks claimed in a budget store (Redis, SQLite): a one-unit ledger per mark that admits
    one reservation, held until it expires — the store's own atomic admission decides."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def claim(self, mark: str) -> bool:
        now = time.time()
        until = now + STORE_CLAIM_SECONDS
        one = to_units(Decimal(1))
        # A fresh id each time: the store treats the same id reserved again as already held.
        result = self.store.ledger_reserve(f"alert:{mark}", secrets.token_hex(8), one, one,
                                           until, now, until)
        return bool(result.ok)


class CachedClaims:
    """Asks ``inner`` once per mark; if it cannot answer (database down), claims in this
    process instead — an alert sent twice beats an alert never sent."""

    def __init__(self, inner: Claims | None = None) -> None:
        self.inner = inner
        self._seen: set[str] = set()
        self._local = MemoryClaims()
        self._lock = threading.Lock()

    def claim(self, mark: str) -> bool:
        with self._lock:
            if mark in self._seen:
                return False
            if len(self._seen) >= 100_000:  # months of marks: old periods' are done with
                self._seen.clear()
            self._seen.add(mark)
        if self.inner is None:
            return self._local.claim(mark)
        try:
            return self.inner.claim(mark)
        except Exception as exc:  # any backend failure: the database, the network
            log.warning("alert claim %s failed (%s); deciding in this process", mark, exc)
            return self._local.claim(mark)


def claims_for(target: Any) -> CachedClaims:
    """Claims backed by a ledger, a store, a ready :class:`Claims`, or (None) this process."""
    if target is None or isinstance(target, CachedClaims):
        return target or CachedClaims()
    if isinstance(target, Ledger):
        return CachedClaims(LedgerClaims(target))
    if isinstance(target, Store):
        return CachedClaims(StoreClaims(target))
    if callable(getattr(target, "claim", None)):
        return CachedClaims(target)
    raise ConfigurationError(f"claims= takes a Ledger, a Store or an object with claim(mark), not "
                    f"{type(target).__name__}")
