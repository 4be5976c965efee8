"""Budgets on the overview: what each spent in its current period (from the records, as the
report counts them), its burn-down, a linear forecast to the period's end, and — when a store
is configured — the live state the gateway's budgets hold in it.

A budget here is a plain :class:`BudgetSpec` (the CLI builds them from a gateway config, which
this layer cannot import). Its period is the calendar period of the budget's own zone (UTC for
the gateway's budgets), as :mod:`qwen_meter.limits.budget.periods` cuts it.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ...limits.budget.periods import period_bounds
from ..sql import quote
from .money import amount_text
from .query import ts_literal


@dataclass(frozen=True)
class BudgetSpec:
    """One spending limit: ``scope`` global, key, user or a tag key (team ...); ``subject``
    the key's name, user or tag value it applies to (empty for global)."""

    name: str
    limit: Decimal
    currency: str
    period: str | None = None
    scope: str = "global"
    subject: str = ""
    mode: str = "hard"
    tz: str = "UTC"

    @property
    def store_key(self) -> str | None:
        """The ``key=`` a :class:`~qwen_meter.limits.Budget` of this scope is asked with."""
        if self.scope == "global":
            return None
        return self.subject if self.scope == "user" else f"{self.scope}={self.subject}"


_LABELS = {"hour": "%Y-%m-%dT%H", "day": "%Y-%m-%d", "month": "%Y-%m"}


def period_span(period: str | None, now: dt.datetime, tz: dt.tzinfo
                ) -> tuple[dt.datetime | None, dt.datetime | None]:
    """(start, end) of the calendar period holding ``now`` (None, None: no period)."""
    label, end = period_bounds(period, now.timestamp(), tz)
    if period is None or end is None:
        return None, None
    if period == "week":
        start = dt.datetime.strptime(label + "-1", "%G-W%V-%u")
    else:
        start = dt.datetime.strptime(label, _LABELS[period])
    return start.replace(tzinfo=tz), dt.datetime.fromtimestamp(end, tz)


def _subject_sql(spec: BudgetSpec) -> str:
    if spec.scope == "global":
        return "true"
    if spec.scope == "key":
        return f'"key" = {quote(spec.subject)}'
    if spec.scope == "user":
        return f'"user" = {quote(spec.subject)}'
    return f"list_contains(tags, {quote(spec.scope + '=' + spec.subject)})"


def budget_view(db: Any, spec: BudgetSpec, now: dt.datetime, show_tz: dt.tzinfo
                ) -> dict[str, Any]:
    """The overview's entry for one budget (``db``: a connection with ``records``)."""
    tz = zoneinfo.ZoneInfo(spec.tz)
    start, end = period_span(spec.period, now, tz)
    where = [f"currency = {quote(spec.currency)}", "cost IS NOT NULL", _subject_sql(spec),
             f"ts < {ts_literal(now)}"]
    if start is not None:
        where.append(f"ts >= {ts_literal(start)}")
    step = "hour" if spec.period in ("hour", "day") else "day"
    rows = db.execute(
        f"SELECT date_trunc('{step}', timezone({quote(spec.tz)}, ts)) AS b, sum(cost) "
        f"FROM records WHERE {' AND '.join(where)} GROUP BY 1 ORDER BY 1").fetchall()
    burn: list[list[str]] = []
    spent = Decimal(0)
    for bucket, amount in rows:
        spent += amount
        moment = bucket.replace(tzinfo=tz) + (dt.timedelta(hours=1) if step == "hour"
                                              else dt.timedelta(days=1))
        burn.append([min(moment, now).astimezone(show_tz).isoformat(), amount_text(spent)])
    if start is None and rows:
        start = rows[0][0].replace(tzinfo=tz)
    forecast: Decimal | None = None
    if start is not None and end is not None:
        elapsed = (now - start).total_seconds()
        total = (end - start).total_seconds()
        forecast = spent if elapsed <= 0 else spent * Decimal(total) / Decimal(elapsed)
    return {"scope": spec.scope, "subject": spec.subject, "name": spec.name,
            "limit": amount_text(spec.limit), "currency": spec.currency,
            "period": spec.period, "mode": spec.mode,
            "period_start": start.astimezone(show_tz).isoformat() if start else None,
            "period_end": end.astimezone(show_tz).isoformat() if end else None,
            "spent": amount_text(spent), "remaining": amount_text(spec.limit - spent),
            "forecast": None if forecast is None else amount_text(forecast.quantize(
                Decimal("0.000001"))),
            "burn": burn}


@dataclass(frozen=True)
class LimiterSpec:
    """A rate limit whose window the store holds: ``account`` and ``model`` name the window as
    the :class:`~qwen_meter.limits.RateLimiter` that fills it names it (the gateway keeps a
    key's window as account ``gateway-key:<name>``, model ``*``)."""

    subject: str
    account: str
    model: str
    rpm: int | None = None
    tpm: int | None = None
    scope: str = "key"


def limiter_state(specs: list[LimiterSpec], store: Any) -> list[dict[str, Any]]:
    """Requests and tokens in each limit's current one-minute window, beside the limit."""
    from ...limits.limiter import RateLimit, RateLimiter

    out = []
    for spec in specs:
        limiter = RateLimiter(store, account=spec.account,
                              limits={spec.model: RateLimit(spec.rpm, spec.tpm)},
                              on_store_error="open")
        requests, tokens = limiter.usage(spec.model)
        out.append({"scope": spec.scope, "subject": spec.subject, "window": "60 s",
                    "requests": requests, "rpm": spec.rpm, "tokens": tokens, "tpm": spec.tpm,
                    "degraded": limiter.degraded})
    return out


def live_state(specs: list[BudgetSpec], store: Any,
               limiters: list[LimiterSpec] | None = None) -> dict[str, Any]:
    """The budgets' committed / reserved spend as the store holds it now (what the gateway
    enforces), each with its period's id, and the limiters' current windows; a store that
    cannot be asked is said so."""
    from ...limits.budget.core import Budget

    out = []
    for spec in specs:
        budget = Budget(f"{spec.limit} {spec.currency}", per=spec.period, scope=spec.scope,
                        name=spec.name, mode=spec.mode, tz=spec.tz, store=store,
                        on_store_error="open")
        status = budget.status(key=spec.store_key)
        out.append({"scope": spec.scope, "subject": spec.subject, "name": spec.name,
                    "currency": status.currency, "limit": amount_text(status.limit),
                    "committed": amount_text(status.committed),
                    "reserved": amount_text(status.reserved),
                    "remaining": amount_text(status.remaining), "period": status.period,
                    "degraded": status.degraded})
    return {"budgets": out, "limiter": limiter_state(limiters or [], store)}
