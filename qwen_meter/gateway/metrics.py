"""The gateway's Prometheus metrics: an :class:`~qwen_meter.observers.Observer` of its meters.

One registry per app (two gateways in one process never share counters). Calls, tokens, cost,
upstream errors and call time come from the usage records (by endpoint, model, key and
status), counted by the same code as the Prometheus integration
(:mod:`qwen_meter.integrations.prometheus_series`, names :data:`~.prometheus_series.GATEWAY`);
refusals the gateway answers itself (bad key, body too large, rate limit, budget ...) are
counted by the app; budget limit and remaining are read from the store when ``/metrics`` is
scraped, so every replica reports the same shared figure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..integrations.prometheus_series import (
    GATEWAY,
    MAX_LABEL_VALUES,
    CallSeries,
    StoreGauges,
    budget_figures,
)
from ..meter.observers import Observer

if TYPE_CHECKING:
    from ..limits.budget import Budget
    from ..meter.call import MeteredCall
    from ..meter.log import UsageRecord

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class GatewayMetrics(Observer):
    """Counters and histograms of one gateway app."""

    def __init__(self, budgets: Callable[[], Iterable[tuple[Budget, str | None]]] = list,
                 *, keys: int = 0) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        #: calls, tokens, cost, upstream errors, call time: the integration's code. Labels
        #: are capped (a caller may send any model name); every configured key keeps its own.
        self.series = CallSeries(r, GATEWAY, ("key",),
                                 max_label_values=max(MAX_LABEL_VALUES, keys + 1))
        self.calls = self.series.calls
        self.tokens = self.series.tokens
        self.cost = self.series.cost
        self.upstream_errors = self.series.errors
        self.refusals = Counter("qwen_meter_gateway_refusals",
                                "Requests the gateway answered itself, by reason",
                                ["key", "reason"], registry=r)
        self.free_calls = Counter("qwen_meter_gateway_free_calls",
                                  "Calls the upstream does not bill (GET /models), by "
                                  "outcome; never charged or recorded as usage",
                                  ["endpoint", "key", "status"], registry=r)
        self.admission = Histogram("qwen_meter_gateway_admission_seconds",
                                   "Pre-flight, budget and limiter time (limiter waits "
                                   "included)", registry=r,
                                   buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1,
                                            5, 30))
        self.latency = self.series.duration
        self.open_streams = Gauge("qwen_meter_gateway_open_streams",
                                  "Streams being relayed now", registry=r)
        # Every configured budget and scope (None: global), read when scraped.
        r.register(StoreGauges(GATEWAY, lambda: budget_figures(
            (budget, key or "global") for budget, key in budgets())))

    def on_record(self, record: UsageRecord, call: MeteredCall | None) -> None:
        self.series.count(record)

    def refused(self, key: str | None, reason: str) -> None:
        self.series.child(self.refusals, key or "-", reason).inc()

    def free_call(self, key: str | None, endpoint: str, status: str) -> None:
        self.series.child(self.free_calls, endpoint, key or "-", status).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def sample(self, name: str, **labels: str) -> Any:
        """A current value (for tests and health pages)."""
        return self.registry.get_sample_value(name, labels)
