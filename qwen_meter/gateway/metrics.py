"""The gateway's Prometheus metrics: an :class:`~qwen_meter.observers.Observer` of its meters.

One registry per app (two gateways in one process never share counters). Calls, tokens and
cost come from the usage records (by endpoint, model, key and status); refusals the gateway
answers itself (bad key, body too large, rate limit, budget ...) are counted by the app;
budget remaining is read from the store when ``/metrics`` is scraped, so every replica reports
the same shared figure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from ..meter.observers import Observer

if TYPE_CHECKING:
    from ..limits.budget.core import Budget
    from ..meter.core import MeteredCall
    from ..meter.log import UsageRecord

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def key_of(tags: Iterable[str]) -> str:
    return next((t[4:] for t in tags if t.startswith("key=")), "-")


class _BudgetCollector:
    """``qwen_meter_gateway_budget_remaining``: read from the store at scrape time."""

    def __init__(self, budgets: Callable[[], Iterable[tuple[Budget, str | None]]]) -> None:
        self.budgets = budgets

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("qwen_meter_gateway_budget_remaining",
                                   "Money left in the budget's current period",
                                   labels=["budget", "scope", "currency"])
        for budget, key in self.budgets():
            try:
                status = budget.status(key)
            except Exception:  # a store outage must not break the scrape
                continue
            family.add_metric([budget.name, key or "global", budget.currency],
                              float(status.remaining))
        yield family


class GatewayMetrics(Observer):
    """Counters and histograms of one gateway app."""

    def __init__(self, budgets: Callable[[], Iterable[tuple[Budget, str | None]]] = list
                 ) -> None:
        self.registry = CollectorRegistry()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        r = self.registry
        self.calls = Counter("qwen_meter_gateway_calls", "Metered calls by outcome",
                             ["endpoint", "model", "key", "status"], registry=r)
        self.tokens = Counter("qwen_meter_gateway_tokens", "Tokens billed",
                              ["model", "key", "kind"], registry=r)
        self.cost = Counter("qwen_meter_gateway_cost", "Cost of the calls",
                            ["model", "key", "currency"], registry=r)
        self.upstream_errors = Counter("qwen_meter_gateway_upstream_errors",
                                       "Errors answered or caused by the upstream",
                                       ["model", "key", "kind"], registry=r)
        self.refusals = Counter("qwen_meter_gateway_refusals",
                                "Requests the gateway answered itself, by reason",
                                ["key", "reason"], registry=r)
        self.admission = Histogram("qwen_meter_gateway_admission_seconds",
                                   "Pre-flight, budget and limiter time (limiter waits "
                                   "included)", registry=r,
                                   buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1,
                                            5, 30))
        self.latency = Histogram("qwen_meter_gateway_call_seconds",
                                 "Whole call time, upstream included", ["endpoint"],
                                 registry=r)
        self.open_streams = Gauge("qwen_meter_gateway_open_streams",
                                  "Streams being relayed now", registry=r)
        r.register(_BudgetCollector(budgets))

    def _child(self, metric: Any, *labels: str) -> Any:
        # prometheus-client's labels() costs tens of µs; a call touches up to seven series.
        found = self._children.get((id(metric), labels))
        if found is None:
            found = self._children[(id(metric), labels)] = metric.labels(*labels)
        return found

    def on_record(self, record: UsageRecord, call: MeteredCall | None) -> None:
        key = key_of(record.tags)
        child = self._child
        child(self.calls, record.endpoint, record.model, key, record.status).inc()
        for kind in ("prompt", "completion", "cached", "reasoning"):
            value = getattr(record, f"{kind}_tokens")
            if value:
                child(self.tokens, record.model, key, kind).inc(value)
        if record.cost is not None and record.currency:
            child(self.cost, record.model, key, record.currency).inc(float(record.cost))
        if record.status in ("error", "dropped"):
            child(self.upstream_errors, record.model, key,
                  record.error_kind or record.status).inc()
        if record.latency_ms is not None:
            child(self.latency, record.endpoint).observe(record.latency_ms / 1000)

    def refused(self, key: str | None, reason: str) -> None:
        self._child(self.refusals, key or "-", reason).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def sample(self, name: str, **labels: str) -> Any:
        """A current value (for tests and health pages)."""
        return self.registry.get_sample_value(name, labels)
