"""Argument checks of :class:`~qwen_meter.limits.budget.core.Budget`'s constructor (types and
ranges; the money itself is checked by :func:`~qwen_meter.limits.budget.money.parse_money`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ...base import checks as check
from ..store import Store

MODES = ("hard", "soft")


def check_budget_args(*, currency: Any, scope: Any, name: Any, tz: Any, thresholds: Any,
                      on_threshold: Any, store: Any, clock: Any) -> None:
    """Types and ranges of Budget()'s arguments (the money itself: :func:`parse_money`)."""
    check.optional_text(currency, "Budget(currency=)")
    check.text(scope, "Budget(scope=)")
    check.text(name, "Budget(name=)")
    if not isinstance(tz, (str, dt.tzinfo)):
        raise check.type_error("Budget(tz=)", "a time zone name or tzinfo", tz)
    check.sequence(thresholds, "Budget(thresholds=)")
    for n, threshold in enumerate(thresholds):
        check.number(threshold, f"Budget(thresholds[{n}]=)", positive=True)
    check.callable_(on_threshold, "Budget(on_threshold=)", optional=True)
    if store is not None and not isinstance(store, (Store, str)) \
            and not type(store).__module__.startswith("redis"):
        raise check.type_error("Budget(store=)", "a Store, a store URL or a Redis client", store)
    # lease: checked by check_seconds (InvalidTimeout), as every duration is.
    check.callable_(clock, "Budget(clock=)")
