"""Prometheus: counters, histograms and gauges of the metered calls (extra ``prometheus``).

    from qwen_meter.integrations.prometheus import instrument
    instrument(meter)                          # prometheus_client's global REGISTRY
    instrument(meter, registry=my_registry)    # e.g. the registry a gateway's /metrics serves

Metrics (prefix ``qwen_meter_``; ``model`` is the name the caller asked for):

* ``requests_total{model,endpoint,status}`` — every call, refused and failed ones included;
* ``tokens_total{model,kind}`` — billed tokens, kind ``input`` / ``output`` / ``cached`` /
  ``reasoning`` (cached is part of input, reasoning part of output);
* ``cost_total{model,currency}`` — cost as qwen_meter prices it (a float view of the exact
  Decimal in the usage log);
* ``request_duration_seconds{model,endpoint}`` — histogram, from counting to the record;
* ``retries_total{model,error}``, ``refusals_total{model,reason}`` (budget, limiter or
  pre-flight said no), ``in_flight{model}``;
* ``budget_limit``, ``budget_remaining{budget,scope,currency}`` and
  ``limiter_utilisation{model,account,window}`` — read from the budget and limiter stores
  when scraped (one store read per scope and scrape; nothing per call).

One :class:`PrometheusObserver` per registry: :func:`instrument` returns the same observer for
every meter on the same registry, so several meters (or a gateway and a library) share the
series instead of failing on duplicate registration. ``tag_labels=("feature",)`` turns tags
``feature=...`` into a label (mind the cardinality).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..base.errors import ConfigurationError, MissingExtra

try:
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        REGISTRY,
        CollectorRegistry,
        Counter,
        Gauge,
        Histogram,
    )
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingExtra("the Prometheus integration needs prometheus-client: "
                       "pip install 'qwen-meter[prometheus]'") from exc

from ..meter.observers import Observer
from . import _common as c

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from ..meter.call import MeteredCall
    from ..meter.log import UsageRecord
    from ..meter.pipeline import Meter

#: Duration buckets (seconds): LLM calls run from ~100 ms to minutes.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0)


class _StoreGauges(Collector):
    """Budget and limiter gauges, computed at scrape time from what the observer saw."""

    def __init__(self, watched: c.Watched, namespace: str) -> None:
        self.watched = watched
        self.namespace = namespace

    def collect(self) -> Iterator[Metric]:
        ns = self.namespace
        limit = GaugeMetricFamily(f"{ns}_budget_limit", "Budget limit of the current period",
                                  labels=["budget", "scope", "currency"])
        left = GaugeMetricFamily(f"{ns}_budget_remaining",
                                 "Budget left in the current period (limit - spent - reserved)",
                                 labels=["budget", "scope", "currency"])
        for budget, scope, amount, remaining in self.watched.budgets():
            labels = [budget.name, f"{budget.scope}={scope}" if budget.scope != "global"
                      else "global", budget.currency]
            limit.add_metric(labels, float(amount))
            left.add_metric(labels, float(remaining))
        used = GaugeMetricFamily(f"{ns}_limiter_utilisation",
                                 "Share of the client-side rate limit used this minute",
                                 labels=["model", "account", "window"])
        for limiter, model, window, share in self.watched.limiters():
            used.add_metric([model, limiter.account, window], share)
        yield limit
        yield left
        yield used

    def describe(self) -> Iterator[Metric]:
        return iter(())  # computed at scrape time; nothing to check at registration


class PrometheusObserver(Observer):
    """The metrics of the module docs, registered in ``registry`` (default: the global one)."""

    def __init__(self, registry: CollectorRegistry | None = None, *,
                 namespace: str = "qwen_meter", tag_labels: Sequence[str] = ()) -> None:
        self.registry = REGISTRY if registry is None else registry
        self.tag_labels = tuple(tag_labels)
        for label in self.tag_labels:
            if not label.isidentifier() or label in ("model", "endpoint", "status", "kind"):
                raise ConfigurationError(f"tag label {label!r} must be a Python identifier "
                                         "other than model, endpoint, status, kind")
        self._watched = c.Watched()
        self._begun = c.CallSlot("prometheus")
        r, ns, extra = self.registry, namespace, list(self.tag_labels)
        self.requests = Counter("requests", "Metered calls by outcome", namespace=ns,
                                labelnames=["model", "endpoint", "status", *extra], registry=r)
        self.tokens = Counter("tokens", "Billed tokens by kind", namespace=ns,
                              labelnames=["model", "kind", *extra], registry=r)
        self.cost = Counter("cost", "Cost as qwen_meter prices it", namespace=ns,
                            labelnames=["model", "currency", *extra], registry=r)
        self.duration = Histogram("request_duration_seconds", "Call duration", namespace=ns,
                                  labelnames=["model", "endpoint"], buckets=DURATION_BUCKETS,
                                  registry=r)
        self.retries = Counter("retries", "Attempts retried", namespace=ns,
                               labelnames=["model", "error"], registry=r)
        self.refusals = Counter("refusals", "Calls refused before sending, by what refused "
                                "them (BudgetExceeded, RateLimited, ...)", namespace=ns,
                                labelnames=["model", "reason"], registry=r)
        self.in_flight = Gauge("in_flight", "Calls begun and not yet settled", namespace=ns,
                               labelnames=["model"], registry=r)
        self._gauges = _StoreGauges(self._watched, ns)
        r.register(self._gauges)

    def close(self) -> None:
        """Remove this observer's metrics from its registry."""
        for metric in (self.requests, self.tokens, self.cost, self.duration, self.retries,
                       self.refusals, self.in_flight, self._gauges):
            self.registry.unregister(metric)

    def _extra(self, tags: Sequence[str]) -> list[str]:
        if not self.tag_labels:
            return []
        found = dict(t.split("=", 1) for t in tags if "=" in t)
        return [found.get(label, "") for label in self.tag_labels]

    def on_begin(self, call: MeteredCall) -> None:
        self._watched.see(call)
        self.in_flight.labels(call.model).inc()
        self._begun.put(call, True)  # so only calls counted in are counted out

    def on_retry(self, call: MeteredCall, error: BaseException, delay: float) -> None:
        self.retries.labels(call.model, str(getattr(error, "kind", type(error).__name__))).inc()

    def on_record(self, record: UsageRecord, call: MeteredCall | None) -> None:
        if call is not None and self._begun.pop(call):
            self.in_flight.labels(call.model).dec()
        extra = self._extra(record.tags)
        model = record.model
        self.requests.labels(model, record.endpoint, record.status, *extra).inc()
        self.duration.labels(model, record.endpoint).observe(c.duration_s(record))
        refused = c.refusal(record)
        if refused is not None:
            self.refusals.labels(model, refused).inc()
        if record.status not in c.FAILED:
            for kind, name in c.TOKEN_KINDS:
                value = getattr(record, name)
                if value:
                    self.tokens.labels(model, kind, *extra).inc(value)
        amount = c.cost_amount(record)
        if amount is not None and record.currency:
            self.cost.labels(model, record.currency, *extra).inc(float(amount))


_shared: weakref.WeakKeyDictionary[CollectorRegistry, PrometheusObserver] = \
    weakref.WeakKeyDictionary()
_lock = threading.Lock()


def observer_for(registry: CollectorRegistry | None = None, **options: Any
                 ) -> PrometheusObserver:
    """The one :class:`PrometheusObserver` of ``registry``, made on first use."""
    target = REGISTRY if registry is None else registry
    with _lock:
        observer = _shared.get(target)
        if observer is None:
            observer = _shared[target] = PrometheusObserver(target, **options)
        elif options and (options.get("namespace", "qwen_meter") != "qwen_meter"
                          or tuple(options.get("tag_labels", ())) != observer.tag_labels):
            raise ConfigurationError("this registry already has qwen_meter metrics with "
                                     "other options")
        return observer


def instrument(meter: Meter, *, registry: CollectorRegistry | None = None,
               **options: Any) -> PrometheusObserver:
    """Count ``meter``'s calls in ``registry`` (see :func:`observer_for`); returns the observer."""
    observer = observer_for(registry, **options)
    if observer not in meter.observers:
        meter.add_observer(observer)
    return observer


#: The ``Content-Type`` of :func:`metrics_text`'s answer.
CONTENT_TYPE = CONTENT_TYPE_LATEST


def metrics_text(registry: CollectorRegistry | None = None) -> bytes:
    """The registry in Prometheus' text format (what a ``/metrics`` endpoint returns, with
    :data:`CONTENT_TYPE`)."""
    from prometheus_client import generate_latest

    return generate_latest(REGISTRY if registry is None else registry)
