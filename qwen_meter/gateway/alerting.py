"""The gateway's alerts: the ``alerts:`` section of its config turned into an
:class:`~qwen_meter.alerts.AlertObserver` on every tenant's meter.

Who sends an alert that several replicas see: the ledger when the gateway has one (its
``claim_alert``), else the budget store (``redis://`` or ``sqlite:`` is shared by the
replicas; ``memory://`` is this process alone). The sender's thread is stopped, after
finishing what it can within a few seconds, when the gateway shuts down.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ..alerts.observer import AlertObserver
from ..ledger.base import Ledger
from .config import GatewayConfig

if TYPE_CHECKING:
    from .tenants import Tenants

#: seconds the shutdown gives queued alerts to go out
CLOSE_SECONDS = 5.0


def observer(config: GatewayConfig) -> AlertObserver | None:
    """The observer for ``config`` (None without an ``alerts:`` section). Webhook URLs and
    secrets named by ``url_env`` / ``secret_env`` are read now: a missing one fails the start."""
    section = config.alerts
    if section is None:
        return None
    return AlertObserver(section.ready_channels(config.file), rules=section.rules,
                         tries=section.tries, backoff=section.backoff,
                         timeout=section.timeout, queue_size=section.queue_size,
                         check_every=section.check_every)


def attach(alerts: AlertObserver | None, tenants: Tenants, ledger: Any = None) -> None:
    """Name the replica in the messages and pick who claims alerts (see the module docs)."""
    if alerts is None:
        return
    alerts.source = tenants.replica
    if ledger is None and isinstance(tenants.log, Ledger):
        ledger = tenants.log
    alerts.use_claims(ledger if ledger is not None else tenants.store)


async def close(alerts: AlertObserver | None) -> None:
    if alerts is not None:
        # Off the event loop: a receiver that hangs must not stall the shutdown's loop.
        await asyncio.to_thread(alerts.close, CLOSE_SECONDS)
