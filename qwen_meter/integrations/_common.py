"""What every integration reads off a call and its record, in one place.

The OpenTelemetry, Prometheus and logging observers report the same figures; the field
choices (operation name, which statuses are failures, the budget and limiter outcome) live
here so the three cannot drift apart.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..limits.budget import Budget
    from ..limits.limiter import RateLimiter
    from ..meter.call import MeteredCall
    from ..meter.log import UsageRecord

log = logging.getLogger("qwen_meter.integrations")

#: ``gen_ai.provider.name`` (and the older ``gen_ai.system``) for DashScope / Model Studio.
PROVIDER = "dashscope"
#: Statuses of calls that did not get an answer.
FAILED = frozenset({"error", "dropped", "refused"})
#: Token kinds reported by every integration: (kind, UsageRecord field).
TOKEN_KINDS = (("input", "prompt_tokens"), ("output", "completion_tokens"),
               ("cached", "cached_tokens"), ("reasoning", "reasoning_tokens"))


def operation(endpoint: str) -> str:
    """The GenAI ``gen_ai.operation.name`` of a qwen_meter endpoint."""
    return "embeddings" if endpoint == "embeddings" else "chat"


def error_type(record: UsageRecord) -> str | None:
    """``error.type``: the error's kind for failed calls, else None."""
    if record.status not in FAILED:
        return None
    return record.error_kind or record.status


def refusal(record: UsageRecord) -> str | None:
    """What refused a call before sending (its error kind: ``BudgetExceeded``,
    ``RateLimited``, ``ContextLimitExceeded`` ...), or None if it was not refused."""
    if record.status != "refused":
        return None
    return record.error_kind or "refused"


def cost_amount(record: UsageRecord) -> Decimal | None:
    """The record's cost as Decimal (None when unpriced or failed)."""
    return None if record.cost is None else Decimal(record.cost)


def duration_s(record: UsageRecord) -> float:
    """Seconds from the start of the call (counting included) to its record."""
    return (record.latency_ms or 0.0) / 1000.0


def end_time_ns(record: UsageRecord) -> int:
    """When the record was made, in Unix nanoseconds (its ``time`` field)."""
    try:
        stamp = dt.datetime.fromisoformat(record.time)
    except ValueError:
        return time.time_ns()
    return int(stamp.timestamp() * 1_000_000_000)


def start_time_ns(started_perf: float) -> int:
    """A :func:`time.perf_counter` reading converted to Unix nanoseconds."""
    return time.time_ns() - int((time.perf_counter() - started_perf) * 1_000_000_000)


@dataclass(frozen=True)
class Outcome:
    """What the budgets and the limiter said about one call."""

    budgets: tuple[str, ...]
    budget_degraded: bool
    limited: bool
    limiter_degraded: bool
    tokens_reserved: int


def outcome(call: MeteredCall) -> Outcome:
    """The budget and limiter outcome of a call that began (it passed both)."""
    return Outcome(
        budgets=tuple(f"{b.name}:{r.scope_value}" for b, r in call.reservations),
        budget_degraded=any(r.degraded for _, r in call.reservations),
        limited=call.permit is not None,
        limiter_degraded=bool(call.permit is not None and call.permit.degraded),
        tokens_reserved=call.tokens_reserved)


class Watched:
    """The budget scopes and limiter models seen in calls, read again when metrics are
    collected: a gauge of budget remaining costs one store read per scrape, not per call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._budgets: weakref.WeakKeyDictionary[Budget, set[str]] = weakref.WeakKeyDictionary()
        self._limiters: weakref.WeakKeyDictionary[RateLimiter, set[str]] = \
            weakref.WeakKeyDictionary()

    def see(self, call: MeteredCall) -> None:
        if not call.reservations and call.permit is None:
            return
        with self._lock:
            for budget, reservation in call.reservations:
                self._budgets.setdefault(budget, set()).add(reservation.scope_value)
            limiter = call.meter.limiter
            if call.permit is not None and limiter is not None:
                self._limiters.setdefault(limiter, set()).add(call.permit.model)

    def budget_scopes(self) -> list[tuple[Budget, str]]:
        """(budget, scope value) for every scope seen (nothing read from a store)."""
        with self._lock:
            return [(b, s) for b, scopes in self._budgets.items() for s in sorted(scopes)]

    def budgets(self) -> Iterator[tuple[Budget, str, Decimal, Decimal]]:
        """(budget, scope value, limit, remaining) for every scope seen; a scope whose store
        cannot be read is skipped (logged), so one unreachable store never fails a scrape."""
        with self._lock:
            items = [(b, sorted(s)) for b, s in self._budgets.items()]
        yield from budget_figures((budget, scope) for budget, scopes in items
                                  for scope in scopes)

    def limiters(self) -> Iterator[tuple[RateLimiter, str, str, float]]:
        """(limiter, model, "rpm" | "tpm", fraction of the limit used this minute)."""
        with self._lock:
            items = [(lim, sorted(m)) for lim, m in self._limiters.items()]
        for limiter, models in items:
            for model in models:
                try:
                    limits = limiter.limits_for(model)
                    requests, tokens = limiter.usage(model)
                except Exception as exc:  # as above
                    log.warning("cannot read the limiter for %s: %s", model, exc)
                    continue
                if limits.rpm:
                    yield limiter, model, "rpm", requests / limits.rpm
                if limits.tpm:
                    yield limiter, model, "tpm", tokens / limits.tpm


def budget_figures(scopes: Iterable[tuple[Budget, str]]
                   ) -> Iterator[tuple[Budget, str, Decimal, Decimal]]:
    """(budget, scope value, limit, remaining) of each (budget, scope value) (``"global"``
    for a global budget), read from the budget's store; a scope whose store cannot be read is
    skipped (logged), so one unreachable store never fails a scrape."""
    for budget, scope in scopes:
        try:
            status = budget.status(None if budget.scope == "global" else scope)
        except Exception as exc:  # a store outage must not break the exporter
            log.warning("cannot read budget %s (%s): %s", budget.name, scope, exc)
            continue
        yield budget, scope, status.limit, status.remaining


class CallSlot:
    """One observer's value riding on a call between ``on_begin`` and ``on_record``.

    Kept in the call's ``__dict__`` so it dies with the call (no registry to leak when a
    caller abandons a stream); calls without one (a slotted class) use a table instead.
    """

    def __init__(self, name: str) -> None:
        self.name = f"_qwen_meter_{name}_{id(self)}"
        self._table: dict[int, tuple[Any, Any]] = {}
        self._lock = threading.Lock()

    def put(self, call: Any, value: Any) -> None:
        try:
            vars(call)[self.name] = value
        except TypeError:
            with self._lock:
                self._table[id(call)] = (call, value)

    def get(self, call: Any) -> Any:
        try:
            return vars(call).get(self.name)
        except TypeError:
            with self._lock:
                entry = self._table.get(id(call))
            return None if entry is None else entry[1]

    def pop(self, call: Any) -> Any:
        try:
            return vars(call).pop(self.name, None)
        except TypeError:
            with self._lock:
                entry = self._table.pop(id(call), None)
            return None if entry is None else entry[1]


def any_attr(obj: Any, name: str) -> Any:
    """``obj.name`` or None: fields the pipeline may add later (e.g. ``max_tokens``)."""
    return getattr(obj, name, None)
