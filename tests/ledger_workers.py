"""Processes for the ledger tests (multiprocessing, spawn): each opens the ledger by its URL,
lines up with its siblings on a barrier, then writes, claims, opens or watches."""

from __future__ import annotations

from typing import Any

from qwen_meter.ledger import open_ledger
from qwen_meter.meter.records import UsageRecord


def write_records(url: str, prefix: str, n: int, shared: list[str], barrier: Any) -> None:
    """``n`` records of its own plus the ``shared`` ids every writer also writes."""
    ledger = open_ledger(url)
    barrier.wait(60)  # a sibling that failed breaks it: no hang
    for i in range(n):
        ledger.append(UsageRecord(model="qwen-plus", id=f"{prefix}-{i}", cost="0.001",
                                  currency="CNY", tags=(f"key={prefix}",)))
        if i < len(shared):
            ledger.append(UsageRecord(model="qwen-plus", id=shared[i], cost="0.5",
                                      currency="CNY"))
    ledger.close()


def open_each(urls: list[str], barrier: Any) -> None:
    """Open each ledger at the same moment as the sibling processes (one round per URL)."""
    for url in urls:
        barrier.wait(60)  # a sibling that failed breaks it: no hang
        open_ledger(url).close()


def claim(url: str, marks: list[str], barrier: Any, out: Any) -> None:
    ledger = open_ledger(url)
    barrier.wait(60)  # a sibling that failed breaks it: no hang
    out.put([mark for mark in marks if ledger.claim_alert(mark)])
    ledger.close()


def watch(url: str, key: str, ready: Any, stop: Any, out: Any) -> None:
    """Report ``(version, key revoked?)`` each time the watch fires, until ``stop``."""
    ledger = open_ledger(url)

    def seen(version: int) -> None:
        entry = ledger.get_key(key)
        out.put((version, None if entry is None else entry.revoked))

    ledger.watch(seen)
    ready.set()
    stop.wait(60)
    ledger.close()
