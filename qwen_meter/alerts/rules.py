"""When to alert: a budget's spend crossing a threshold of its limit in its period, a key's
limiter window nearly full (or refusing calls), the upstream failing too often.

Each rule turns figures into :class:`~.events.Alert` objects whose ``mark`` names the threshold
and the period, so that claiming the mark once (:mod:`.claims`) sends the alert once: a budget's
80 % alert once per budget period, a limiter or error-rate alert once per ``repeat`` period
(an hour by default).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import deque
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING

from ..limits.budget.periods import period_bounds
from ..limits.budget.values import subject_text
from .events import Alert

if TYPE_CHECKING:
    from ..limits.budget.core import Budget
    from ..limits.limiter.core import RateLimiter
    from ..meter.records import UsageRecord

#: error kinds of a call the client-side limiter refused
LIMITER_REFUSALS = ("RateLimited",)
#: record statuses that say nothing about the upstream's health
NOT_UPSTREAM = ("refused", "lost", "closed", "cancelled", "pending")


@dataclass(frozen=True)
class AlertRules:
    """The rules' settings (the ``alerts:`` section's ``rules:`` in the gateway config)."""

    #: saturation alert when a key's window holds this much of its RPM or TPM (None: off)
    limiter_percent: float | None = 90.0
    #: alert when the limiter refuses a call
    limiter_refusals: bool = True
    #: error-rate alert at this share of failed calls (5xx, timeouts, dropped connections)
    error_percent: float | None = 20.0
    #: ... over the last ``error_calls`` calls within ``error_seconds``
    error_calls: int = 20
    error_seconds: float = 300.0
    #: ... once at least this many calls are in the window
    error_min_calls: int = 5
    #: limiter and error-rate alerts go out once per this calendar period (UTC)
    repeat: str = "hour"


def _pct(part: Decimal, whole: Decimal) -> Decimal:
    return (part * 100 / whole).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


def _tag(t: float) -> str:
    return f"{t:g}"


def budget_alerts(budget: Budget, scope_value: str, thresholds: tuple[float, ...], *,
                  source: str | None = None) -> list[Alert]:
    """Alerts for every threshold (percent of the limit) the budget's committed spend of its
    current period has reached, highest first. Reads the budget's store once."""
    status = budget.status(None if budget.scope == "global" else scope_value)
    if status.degraded or budget.limit <= 0:
        return []
    percent = _pct(status.committed, budget.limit)
    # Named as the budget's own messages name it (``key=search`` once, not ``key=key=search``).
    who = subject_text(budget.scope, scope_value)
    subject = who.partition("=")[2] or who
    out = []
    for threshold in sorted(thresholds, reverse=True):
        if percent < Decimal(str(threshold)):
            continue
        out.append(Alert(
            "budget", f"budget:{who}:{budget.name}:{status.period}:{_tag(threshold)}",
            "critical" if threshold >= 100 else "warning",
            {"name": budget.name, "scope": budget.scope,
             "subject": subject,
             "per": budget.per, "period": status.period, "threshold": threshold,
             "percent": percent, "spent": status.committed, "limit": budget.limit,
             "currency": budget.currency, "mode": budget.mode}, source=source))
    return out


def repeat_period(repeat: str, now: float) -> str:
    """The label of the ``repeat`` period (UTC) containing ``now``."""
    return period_bounds(repeat, now, dt.timezone.utc)[0]


def limiter_alerts(limiter: RateLimiter, model: str, label: str, percent: float, now: float,
                   *, repeat: str = "hour", source: str | None = None) -> list[Alert]:
    """Saturation alerts for the limiter's window of ``model`` (RPM and TPM separately)."""
    limit = limiter.limits_for(model)
    requests, tokens = limiter.usage(model)
    period = repeat_period(repeat, now)
    out = []
    for window, used, cap in (("rpm", requests, limit.rpm), ("tpm", tokens, limit.tpm)):
        if not cap or used * 100 < percent * cap:
            continue
        out.append(Alert("limiter", f"limiter:{label}:{period}:{window}:{_tag(percent)}",
                         "warning", {"key": label, "window": window, "used": used,
                                     "limit": cap, "threshold": percent, "period": period},
                         source=source))
    return out


def refusal_alert(record: UsageRecord, label: str, refused: int, now: float, *,
                  repeat: str = "hour", source: str | None = None) -> Alert:
    period = repeat_period(repeat, now)
    return Alert("limiter", f"limiter:{label}:{period}:refused", "warning",
                 {"key": label, "window": "refused", "refused": refused, "period": period,
                  "reason": (record.error or "")[:200]}, source=source)


def failed_upstream(record: UsageRecord) -> bool | None:
    """True: the upstream failed the call (5xx, timeout, dropped connection); False: it
    answered; None: the record says nothing about the upstream (refused before sending, the
    client hung up, a call settled after its process died)."""
    if record.status in NOT_UPSTREAM:
        return None
    if record.http_status is not None:
        return record.http_status >= 500 or record.http_status == 408
    return record.status in ("error", "unknown")


class ErrorWindow:
    """The last calls to one upstream; an alert when too many of them failed."""

    def __init__(self, rules: AlertRules, label: str) -> None:
        self.rules = rules
        self.label = label
        self._calls: deque[tuple[float, bool, str | None]] = deque(maxlen=rules.error_calls)
        self._lock = threading.Lock()

    def add(self, record: UsageRecord, failed: bool, now: float, *,
            source: str | None = None) -> Alert | None:
        rules = self.rules
        with self._lock:
            self._calls.append((now, failed, record.error_kind if failed else None))
            while self._calls and self._calls[0][0] < now - rules.error_seconds:
                self._calls.popleft()
            calls = len(self._calls)
            failures = sum(1 for _, f, _ in self._calls if f)
            last = next((kind for _, f, kind in reversed(self._calls) if f), None)
        if (rules.error_percent is None or calls < rules.error_min_calls
                or failures * 100 < rules.error_percent * calls):
            return None
        period = repeat_period(rules.repeat, now)
        return Alert("errors", f"errors:{self.label}:{period}:{_tag(rules.error_percent)}",
                     "critical", {"upstream": self.label,
                                  "rate": _pct(Decimal(failures), Decimal(calls)),
                                  "failures": failures, "calls": calls,
                                  "threshold": rules.error_percent,
                                  "window_calls": rules.error_calls,
                                  "window_seconds": _tag(rules.error_seconds),
                                  "period": period, "last_error": last}, source=source)
