"""Prometheus: counters, histograms and gauges of the metered calls (extra ``prometheus``).

    from qwen_meter.integrations.prometheus import instrument
    instrument(meter)                          # prometheus_client's global REGISTRY
    instrument(meter, registry=my_registry)    # e.g. the registry a gateway's /metrics serves

Metrics (prefix ``qwen_meter_``; ``model`` is the name the caller asked for when the
catalogue lists it, else ``other``):

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
``feature=...`` into a label. Cardinality is bounded: each label (``model`` and every tag
label) keeps at most ``max_label_values`` distinct values (default 100); later new values
are counted as ``other``. ``catalogue=`` names the catalogue whose models are kept (default:
the default catalogue).

The per-call series and the store gauges are counted by :mod:`.prometheus_series`, the same
code the gateway's ``/metrics`` counts with (under its own names).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..base.errors import ConfigurationError, MissingExtra

try:
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        REGISTRY,
        CollectorRegistry,
        Counter,
        Gauge,
    )
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingExtra("the Prometheus integration needs prometheus-client: "
                       'pip install ".[prometheus]" (from a clone)') from exc

from ..meter.observers import Observer
from . import _common as c
from .prometheus_series import (
    DURATION_BUCKETS,
    MAX_LABEL_VALUES,
    CallSeries,
    StoreGauges,
    catalogue_names,
    library_naming,
)

if TYPE_CHECKING:
    from ..meter.call import MeteredCall
    from ..meter.log import UsageRecord
    from ..meter.pipeline import Meter

__all__ = ["CONTENT_TYPE", "DURATION_BUCKETS", "PrometheusObserver", "instrument",
           "metrics_text", "observer_for"]


class PrometheusObserver(Observer):
    """The metrics of the module docs, registered in ``registry`` (default: the global one)."""

    def __init__(self, registry: CollectorRegistry | None = None, *,
                 namespace: str = "qwen_meter", tag_labels: Sequence[str] = (),
                 max_label_values: int = MAX_LABEL_VALUES, catalogue: Any = None) -> None:
        self.registry = REGISTRY if registry is None else registry
        self.tag_labels = tuple(tag_labels)
        for label in self.tag_labels:
            if not label.isidentifier() or label in ("model", "endpoint", "status", "kind"):
                raise ConfigurationError(f"tag label {label!r} must be a Python identifier "
                                         "other than model, endpoint, status, kind")
        if isinstance(max_label_values, bool) or not isinstance(max_label_values, int) \
                or max_label_values < 1:
            raise ConfigurationError(f"max_label_values must be a positive int, not "
                                     f"{max_label_values!r}")
        self._watched = c.Watched()
        self._begun = c.CallSlot("prometheus")
        r, ns = self.registry, namespace
        naming = library_naming(ns)
        #: requests, tokens, cost, duration and refusals: the code the gateway counts with
        self.series = CallSeries(r, naming, self.tag_labels,
                                 models=None if catalogue is None else
                                 catalogue_names(catalogue),
                                 max_label_values=max_label_values)
        self.requests = self.series.calls
        self.tokens = self.series.tokens
        self.cost = self.series.cost
        self.duration = self.series.duration
        self.retries = Counter("retries", "Attempts retried", namespace=ns,
                               labelnames=["model", "error"], registry=r)
        assert self.series.refusals is not None  # library_naming has refusals
        self.refusals = self.series.refusals
        self.in_flight = Gauge("in_flight", "Calls begun and not yet settled", namespace=ns,
                               labelnames=["model"], registry=r)
        self._gauges = StoreGauges(naming, self._watched.budgets, self._watched.limiters)
        r.register(self._gauges)

    def close(self) -> None:
        """Remove this observer's metrics from its registry."""
        for metric in (*self.series.metrics(), self.retries, self.in_flight, self._gauges):
            self.registry.unregister(metric)

    def on_begin(self, call: MeteredCall) -> None:
        self._watched.see(call)
        model = self.series.model_label(call.model)
        self.in_flight.labels(model).inc()
        self._begun.put(call, model)  # so only calls counted in are counted out

    def on_retry(self, call: MeteredCall, error: BaseException, delay: float) -> None:
        self.retries.labels(self.series.model_label(call.model),
                            str(getattr(error, "kind", type(error).__name__))).inc()

    def on_record(self, record: UsageRecord, call: MeteredCall | None) -> None:
        model = self._begun.pop(call) if call is not None else None
        if model is not None:
            self.in_flight.labels(model).dec()
        self.series.count(record)


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
    :data:`CONTENT_TYPE`), as UTF-8 **bytes** — ready to write to a response body or a socket;
    ``metrics_text(registry).decode()`` gives a ``str`` to search or print."""
    from prometheus_client import generate_latest

    return generate_latest(REGISTRY if registry is None else registry)
