"""Alerts for a :class:`~qwen_meter.meter.Meter`: an observer that looks at every settled call
and hands the checks to the background sender — the same code the gateway runs.

    from qwen_meter import Budget, Meter
    from qwen_meter.alerts import AlertObserver, Channel

    alerts = AlertObserver([Channel("ops", "dingtalk", url, secret=secret, lang="zh")])
    meter = Meter(budget=Budget("100 CNY", per="month"), observers=[alerts])

What a call costs the caller: a few in-memory counts and a queue append. The budget's store,
the limiter's window and the claim are read on the sender's thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..meter.observers import Observer
from .claims import claims_for
from .delivery import Channel
from .events import Alert
from .rules import (
    LIMITER_REFUSALS,
    AlertRules,
    ErrorWindow,
    budget_alerts,
    failed_upstream,
    limiter_alerts,
    refusal_alert,
    repeat_period,
)
from .sender import AlertSender

if TYPE_CHECKING:
    from ..limits.budget.core import Budget
    from ..limits.limiter.core import RateLimiter
    from ..meter.call import MeteredCall
    from ..meter.records import UsageRecord

ALL_MODELS = "*"  # a gateway key's own window covers every model (gateway.limits)


def key_label(record: UsageRecord) -> str:
    """Whose calls: the gateway key (``key=`` tag), else the user, else ``meter``."""
    for tag in record.tags:
        if tag.startswith("key="):
            return tag[4:]
    return record.user or "meter"


class AlertObserver(Observer):
    """Budget, limiter and error-rate alerts for the meters it observes (see module docs).

    ``claims`` decides who sends an alert seen by several processes: a
    :class:`~qwen_meter.ledger.Ledger` or a shared :class:`~qwen_meter.store.Store` (one of
    them sends it), or None (this process alone). ``source`` names this process in the
    messages. ``check_every`` (seconds) bounds how often one budget's or one limiter
    window's figures are read, however many calls settle: under load a check waits at most
    that long and covers every call meanwhile. The other keywords go to
    :class:`~.sender.AlertSender`.
    """

    def __init__(self, channels: Sequence[Channel], *, rules: AlertRules | None = None,
                 claims: Any = None, source: str | None = None,
                 sender: AlertSender | None = None, check_every: float = 0.25,
                 **sending: Any) -> None:
        self.check_every = check_every
        self.channels = tuple(channels)
        self.rules = rules or AlertRules()
        self.source = source
        self.sender = sender or AlertSender(self.channels, claims=claims, **sending)
        kinds = {kind for c in self.channels for kind in c.on}
        self.budgets = "budget" in kinds
        self.limiter = "limiter" in kinds
        self.errors = "errors" in kinds
        #: every threshold any channel wants (each channel then takes its own)
        self.thresholds = tuple(sorted({t for c in self.channels if "budget" in c.on
                                        for t in c.thresholds}))
        self._windows: dict[str, ErrorWindow] = {}
        self._refused: dict[tuple[str, str], int] = {}
        self._queued: set[str] = set()
        self._lock = threading.Lock()

    # --- events ------------------------------------------------------------------------------

    def on_record(self, record: UsageRecord, call: MeteredCall | None) -> None:
        now = time.time()
        if self.budgets and call is not None and record.status != "refused":
            for budget, reservation in call.reservations:
                self.check_budget(budget, reservation.scope_value)
        if self.limiter:
            if record.status == "refused" and record.error_kind in LIMITER_REFUSALS:
                self._refusal(record, now)
            elif call is not None and call.limiter is not None and record.status != "refused":
                self._saturation(call.limiter, record, now)
        if self.errors:
            failed = failed_upstream(record)
            if failed is not None:
                label = record.region or "default"
                with self._lock:
                    window = self._windows.get(label)
                    if window is None:
                        window = self._windows[label] = ErrorWindow(self.rules, label)
                alert = window.add(record, failed, now, source=self.source)
                if alert is not None:
                    self._send_once(alert)

    # --- checks, queued for the sender's thread ----------------------------------------------

    def check_budget(self, budget: Budget, scope_value: str) -> None:
        """Queue a look at ``budget`` (for ``scope_value``); one look per budget and scope is
        queued at a time, however many calls settle meanwhile."""
        thresholds, source = self.thresholds, self.source
        self.sender.submit(lambda: budget_alerts(budget, scope_value, thresholds,
                                                 source=source),
                           key=("budget", id(budget), scope_value), every=self.check_every)

    def _saturation(self, limiter: RateLimiter, record: UsageRecord, now: float) -> None:
        percent = self.rules.limiter_percent
        if percent is None:
            return
        label, repeat, source = key_label(record), self.rules.repeat, self.source

        def job() -> list[Alert]:
            found = []
            for each, model, whose in _windows_of(limiter, record.model, label):
                found += limiter_alerts(each, model, whose, percent, now, repeat=repeat,
                                        source=source)
            return found

        self.sender.submit(job, key=("limiter", id(limiter), record.model),
                           every=self.check_every)

    def _refusal(self, record: UsageRecord, now: float) -> None:
        if not self.rules.limiter_refusals:
            return
        label = key_label(record)
        period = repeat_period(self.rules.repeat, now)
        with self._lock:
            count = self._refused[(label, period)] = self._refused.get((label, period), 0) + 1
            if len(self._refused) > 10_000:  # old periods: forget them
                self._refused = {k: v for k, v in self._refused.items() if k[1] == period}
        self._send_once(refusal_alert(record, label, count, now, repeat=self.rules.repeat,
                                      source=self.source))

    def _send_once(self, alert: Alert) -> None:
        """Queue an alert this process has not queued yet: a flood of failing or refused
        calls queues one claim, not one per call."""
        with self._lock:
            if alert.mark in self._queued:
                return
            if len(self._queued) > 10_000:
                self._queued.clear()
            self._queued.add(alert.mark)
        self.sender.send([alert])

    def use_claims(self, target: Any) -> None:
        """Decide who sends through ``target`` (a ledger, a store, or None: this process);
        for an owner that opens its ledger or store after building the observer."""
        self.sender.claims = claims_for(target)

    # --- life --------------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued check ran and every alert was delivered or given up."""
        return self.sender.flush(timeout)

    def close(self, timeout: float | None = 5.0) -> None:
        self.sender.close(timeout)


def _windows_of(limiter: RateLimiter, model: str, label: str
                ) -> list[tuple[RateLimiter, str, str]]:
    """The windows a call was admitted through, with whose they are: a gateway key's own
    (every model, ``*``) and, behind it, the account's shared window for the model."""
    behind = getattr(limiter, "account_limiter", None)
    if ALL_MODELS in limiter.overrides:
        out = [(limiter, ALL_MODELS, label)]
    else:
        out = [(limiter, model, f"{label}/{model}")]
    if behind is not None:
        out.append((behind, model, f"account/{model}"))
    return out
