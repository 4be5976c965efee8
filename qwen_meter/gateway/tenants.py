"""Tenants: one meter per virtual key (its budgets and limits), sharing store, log, metrics.

Budgets and limiter windows live in the configured store, so with ``redis://`` every replica
enforces the same per-key and global figures. Each key's budgets use scope ``key`` and the
call's ``key=<name>`` tag, so reports group by key as they group by any tag.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from ..limits.budget.core import Budget
from ..limits.limiter.core import RateLimiter
from ..limits.limiter.values import RateLimit
from ..limits.store import MemoryStore, Store, open_store
from ..meter.config import default_log_path
from ..meter.log import UsageLog, UsageRecord, open_log
from ..meter.observers import Observer
from ..meter.pipeline import Meter
from ..meter.recovery import recover
from ..meter.server_errors import RetryPolicy
from .config import BudgetConfig, GatewayConfig, KeyConfig, UpstreamConfig
from .limits import TenantLimiter


@dataclass
class Tenant:
    """Who a call is for, where it goes, and the meter that enforces their limits."""

    name: str | None  # None: no virtual keys (the client's key is forwarded)
    key: KeyConfig | None
    upstream: UpstreamConfig
    meter: Meter

    @property
    def tags(self) -> tuple[str, ...]:
        if self.key is None:
            return ()
        return (f"key={self.key.name}", *self.key.tags)

    @property
    def user(self) -> str | None:
        return self.key.user if self.key else None

    def allows(self, model: object) -> bool:
        models = self.key.models if self.key else None
        return models is None or model in models


def _budget(config: BudgetConfig, store: Store, scope: str, policy: str = "closed") -> Budget:
    return Budget(config.limit, per=config.per, scope=scope, name=config.name,
                  mode=config.mode, store=store, on_store_error=policy)


def _open_store(config: GatewayConfig) -> Store:
    """The configured store, its round trips bounded by ``store_timeout``."""
    if config.store.startswith("memory:") or config.store_timeout is None:
        return open_store(config.store)
    return open_store(config.store, timeout=config.store_timeout)


class Tenants:
    """Builds every tenant's meter once, at start (a bad figure fails before serving)."""

    def __init__(self, config: GatewayConfig, observers: list[Observer],
                 log: str | os.PathLike[str] | None = None) -> None:
        self.config = config
        self.store = _open_store(config)
        #: ``closed``: a call the store cannot check is refused (503); ``open``: it goes ahead
        self.policy = "open" if config.store_policy == "fail_open" else "closed"
        #: no I/O and no waiting in the pipeline: run it on the event loop (gateway.metering)
        self.inline = isinstance(self.store, MemoryStore) and config.limiter_wait == 0
        self.log: UsageLog | None = open_log(log or config.log or default_log_path())
        self.replica = f"{socket.gethostname()}:{os.getpid()}"
        self.global_budgets = [_budget(b, self.store, "global", self.policy)
                               for b in config.budgets]
        self.key_budgets: list[tuple[Budget, str]] = []
        account = self._account_limiter(config.region)
        self.default = Tenant(None, None, config.upstreams["default"],
                              self._meter(config.region, account, self.global_budgets,
                                          observers))
        self.by_name: dict[str, Tenant] = {}
        for key in config.keys:
            if key.revoked:
                continue
            upstream = config.upstreams[key.upstream]
            region = upstream.region or config.region
            budgets = [_budget(b, self.store, "key", self.policy) for b in key.budgets]
            self.key_budgets += [(b, f"key={key.name}") for b in budgets]
            limiter: RateLimiter | None = self._account_limiter(region)
            if key.rpm is not None or key.tpm is not None:
                limiter = TenantLimiter(self.store, key.name, RateLimit(key.rpm, key.tpm),
                                        limiter, region, on_store_error=self.policy)
            meter = self._meter(region, limiter, [*budgets, *self.global_budgets], observers)
            self.by_name[key.name] = Tenant(key.name, key, upstream, meter)
        self.recovered = self._recover(observers)

    def _recover(self, observers: list[Observer]) -> list[UsageRecord]:
        """Settle, once for every tenant, the calls a dead gateway process left unsettled in
        this log (``lost``, charged at their holds; see :mod:`qwen_meter.meter.recovery`)."""
        limiters = [t.meter.limiter for t in (self.default, *self.by_name.values())
                    if t.meter.limiter is not None]
        return recover(self.log, budgets=[*self.global_budgets, *(b for b, _ in self.key_budgets)],
                       limiters=limiters, observers=observers)

    def _account_limiter(self, region: str | None) -> RateLimiter | None:
        if not self.config.account_limits:
            return None
        # One window per (region, model), shared by every key: the real account's limits.
        return RateLimiter(self.store, account=f"gateway-account:{region or 'cn'}",
                           region=region, on_store_error=self.policy)

    def _meter(self, region: str | None, limiter: RateLimiter | None, budgets: list[Budget],
               observers: list[Observer]) -> Meter:
        wait = self.config.limiter_wait > 0
        return Meter(region=region, limiter=limiter, budget=budgets, log=self.log,
                     preflight=self.config.preflight, wait=wait,
                     timeout=self.config.limiter_wait if wait else None,
                     # The client's SDK retries; a second layer of retries would multiply them.
                     retry=RetryPolicy(max_retries=0), observers=observers,
                     recover=False)  # once for all tenants, in __init__

    def budgets(self) -> list[tuple[Budget, str | None]]:
        """Every budget and scope value, for the metrics endpoint."""
        return [*((b, None) for b in self.global_budgets), *self.key_budgets]

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None
        self.store.close()
