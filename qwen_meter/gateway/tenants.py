"""Tenants: one meter per virtual key (its budgets and limits), sharing store, log, metrics.

Budgets and limiter windows live in the configured store, so with ``redis://`` every replica
enforces the same per-key and global figures. Each key's budgets use scope ``key`` and the
call's ``key=<name>`` tag, so reports group by key as they group by any tag; a key's user's
budgets use scope ``user`` and its team's scope ``team`` (the call's ``team=<team>`` tag).

The table is live: :meth:`Tenants.update` takes the current keys and user / team budgets
(from the ledger, or the re-read config file; see :mod:`.live_keys`) and rebuilds only the
tenants whose key or budgets changed. A rebuilt tenant's budgets and windows are the same
entries of the store, so it keeps its spend; a call in flight settles on the meter it began
on. Looking a request's key up stays one hash and one dict read.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..base.errors import QwenMeterError
from ..ledger.base import BudgetSpec, KeyEntry, ScopeBudget
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
from .keys import hash_key
from .limits import TenantLimiter

log = logging.getLogger("qwen_meter.gateway")


@dataclass
class Tenant:
    """Who a call is for, where it goes, and the meter that enforces their limits."""

    name: str | None  # None: no virtual keys (the client's key is forwarded)
    #: not in the repr: a tenant printed in a traceback or a log never shows the key's hash
    key: KeyEntry | None = field(repr=False)
    upstream: UpstreamConfig
    meter: Meter
    #: what the tenant was built from: rebuilt only when this changes
    signature: tuple[Any, ...] = field(default=(), repr=False)
    #: the key's own budgets with their scope value, for /metrics
    key_budgets: list[tuple[Budget, str]] = field(default_factory=list)

    @property
    def tags(self) -> tuple[str, ...]:
        if self.key is None:
            return ()
        team = () if self.team is None or any(t.startswith("team=") for t in self.key.tags) \
            else (f"team={self.team}",)
        return (f"key={self.key.name}", *self.key.tags, *team)

    @property
    def user(self) -> str | None:
        return self.key.user if self.key else None

    @property
    def team(self) -> str | None:
        return key_team(self.key) if self.key else None

    def allows(self, model: object) -> bool:
        models = self.key.models if self.key else None
        return models is None or model in models


def key_team(key: KeyEntry) -> str | None:
    """A key's team: its ``team`` field, else its ``team=`` tag."""
    if key.team:
        return key.team
    return next((t.partition("=")[2] for t in key.tags if t.startswith("team=")), None)


def entry_from_config(key: KeyConfig) -> KeyEntry:
    """A key of the config file as the ledger holds keys (the one shape tenants are built of)."""
    return KeyEntry(name=key.name, hash=key.hash, prefix=key.prefix, user=key.user,
                    team=getattr(key, "team", None), tags=key.tags, upstream=key.upstream,
                    rpm=key.rpm, tpm=key.tpm, models=key.models,
                    budgets=tuple(BudgetSpec(b.name, b.limit, b.per, b.mode)
                                  for b in key.budgets),
                    headers=tuple(getattr(key, "headers", None) or ()), revoked=key.revoked,
                    created=key.created)


def _budget(config: BudgetConfig | BudgetSpec, store: Store, scope: str,
            policy: str = "closed") -> Budget:
    return Budget(config.limit, per=config.per, scope=scope, name=config.name,
                  mode=config.mode, store=store, on_store_error=policy)


def _open_store(config: GatewayConfig) -> Store:
    """The configured store, its round trips bounded by ``store_timeout``."""
    if config.store.startswith("memory:") or config.store_timeout is None:
        return open_store(config.store)
    return open_store(config.store, timeout=config.store_timeout)


def scope_value(budget: ScopeBudget) -> str:
    """The value the meter keys a user / team budget by for a call (see meter.plan)."""
    if budget.scope == "global":
        return "global"
    return budget.subject if budget.scope == "user" else f"team={budget.subject}"


class Tenants:
    """The tenant of every live key, and the default tenant (no virtual keys)."""

    def __init__(self, config: GatewayConfig, observers: list[Observer],
                 log: str | os.PathLike[str] | None = None, *, ledger: UsageLog | None = None,
                 keys: Sequence[KeyEntry] | None = None,
                 scope_budgets: Sequence[ScopeBudget] = ()) -> None:
        self.config = config
        self.observers = observers
        self.store = _open_store(config)
        #: ``closed``: a call the store cannot check is refused (503); ``open``: it goes ahead
        self.policy = "open" if config.store_policy == "fail_open" else "closed"
        #: no I/O and no waiting in the pipeline: run it on the event loop (gateway.metering)
        self.inline = isinstance(self.store, MemoryStore) and config.limiter_wait == 0 \
            and ledger is None
        # With a ledger, it is the usage log: every replica's records in one place.
        self.log: UsageLog | None = ledger if ledger is not None else \
            open_log(log or config.log or default_log_path())
        self.replica = f"{socket.gethostname()}:{os.getpid()}"
        self.global_budgets = [_budget(b, self.store, "global", self.policy)
                               for b in config.budgets]
        account = self._account_limiter(config.region)
        self.default = Tenant(None, None, config.upstreams["default"],
                              self._meter(config.region, account, self.global_budgets))
        self.by_name: dict[str, Tenant] = {}
        self.by_hash: dict[str, Tenant] = {}
        self.scope_budgets: dict[ScopeBudget, Budget] = {}
        self._lock = threading.Lock()
        self.update([entry_from_config(k) for k in config.keys] if keys is None else keys,
                    scope_budgets)
        self.recovered = self._recover()

    def store_retry_after(self) -> float:
        """Seconds after which a call refused for want of its store (503) is worth sending
        again: the rest of the store's circuit-breaker cool-down while it skips the store (no
        call can be checked before), else the config's ``store_retry_after``."""
        breaker = getattr(self.store, "breaker", None)
        cooling = breaker.remaining if breaker is not None else 0.0
        return max(cooling, self.config.store_retry_after)

    # --- the live table ---------------------------------------------------------------------

    def lookup(self, key: str | None) -> Tenant | None:
        """The tenant of the key a client sent (None: unknown or revoked)."""
        return self.by_hash.get(hash_key(key)) if key else None

    def update(self, entries: Iterable[KeyEntry], scope_budgets: Iterable[ScopeBudget] = ()
               ) -> list[str]:
        """Make the table match ``entries`` (revoked ones left out) and the user / team /
        global budgets; returns the names of the keys added, rebuilt or removed."""
        with self._lock:
            budgets = {b: self.scope_budgets.get(b) or _budget(b.budget, self.store, b.scope,
                                                                 self.policy)
                       for b in scope_budgets}
            table: dict[str, Tenant] = {}
            changed = []
            for entry in entries:
                if entry.revoked or entry.name in table:
                    continue
                own = tuple(sorted((b for b in budgets if _applies(b, entry)),
                                   key=lambda b: (b.scope, b.subject, b.budget.name)))
                signature = (entry, own)
                old = self.by_name.get(entry.name)
                if old is not None and old.signature == signature:
                    table[entry.name] = old
                    continue
                try:
                    table[entry.name] = self._tenant(entry, [budgets[b] for b in own],
                                                     signature)
                except QwenMeterError as exc:
                    # One bad key (an upstream this replica's config lacks ...) must not
                    # take the others down: it answers 401 here until fixed.
                    log.warning("gateway key %r left out: %s", entry.name, exc)
                    continue
                changed.append(entry.name)
            changed += [name for name in self.by_name if name not in table]
            # Two plain assignments: a request reads either the old table or the new one.
            self.scope_budgets = budgets
            self.by_hash = {t.key.hash: t for t in table.values() if t.key is not None}
            self.by_name = table
            return changed

    def _tenant(self, key: KeyEntry, shared: list[Budget], signature: tuple[Any, ...]
                ) -> Tenant:
        upstream = self.config.upstreams.get(key.upstream)
        if upstream is None:
            raise QwenMeterError(f"its upstream {key.upstream!r} is not in this gateway's "
                                 f"config (known: {', '.join(self.config.upstreams)})")
        region = upstream.region or self.config.region
        budgets = [_budget(b, self.store, "key", self.policy) for b in key.budgets]
        limiter: RateLimiter | None = self._account_limiter(region)
        if key.rpm is not None or key.tpm is not None:
            limiter = TenantLimiter(self.store, key.name, RateLimit(key.rpm, key.tpm),
                                    limiter, region, on_store_error=self.policy)
        meter = self._meter(region, limiter, [*budgets, *shared, *self.global_budgets])
        return Tenant(key.name, key, upstream, meter, signature,
                      [(b, f"key={key.name}") for b in budgets])

    # --- building ---------------------------------------------------------------------------

    def _recover(self) -> list[UsageRecord]:
        """Settle, once for every tenant, the calls a dead gateway process left unsettled in
        this log (``lost``, charged at their holds; see :mod:`qwen_meter.meter.recovery`)."""
        tenants = (self.default, *self.by_name.values())
        limiters = [t.meter.limiter for t in tenants if t.meter.limiter is not None]
        budgets = [*self.global_budgets, *self.scope_budgets.values(),
                   *(b for t in tenants for b, _ in t.key_budgets)]
        return recover(self.log, budgets=budgets, limiters=limiters, observers=self.observers)

    def _account_limiter(self, region: str | None) -> RateLimiter | None:
        if not self.config.account_limits:
            return None
        # One window per (region, model), shared by every key: the real account's limits.
        return RateLimiter(self.store, account=f"gateway-account:{region or 'cn'}",
                           region=region, on_store_error=self.policy)

    def _meter(self, region: str | None, limiter: RateLimiter | None, budgets: list[Budget]
               ) -> Meter:
        wait = self.config.limiter_wait > 0
        return Meter(region=region, limiter=limiter, budget=budgets, log=self.log,
                     preflight=self.config.preflight, wait=wait,
                     timeout=self.config.limiter_wait if wait else None,
                     # The client's SDK retries; a second layer of retries would multiply them.
                     retry=RetryPolicy(max_retries=0), observers=self.observers,
                     recover=False)  # once for all tenants, in __init__

    def budgets(self) -> list[tuple[Budget, str | None]]:
        """Every budget and scope value, for the metrics endpoint."""
        shared = [(b, scope_value(s)) for s, b in self.scope_budgets.items()]
        return [*((b, None) for b in self.global_budgets), *shared,
                *((b, v) for t in self.by_name.values() for b, v in t.key_budgets)]

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None
        self.store.close()


def _applies(budget: ScopeBudget, key: KeyEntry) -> bool:
    if budget.scope == "global":
        return True
    if budget.scope == "user":
        return key.user == budget.subject
    return budget.scope == "team" and key_team(key) == budget.subject
