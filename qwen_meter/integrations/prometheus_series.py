"""The Prometheus series of metered calls: one implementation behind both faces.

The Prometheus integration (:mod:`qwen_meter.integrations.prometheus`:
``qwen_meter_requests_total`` ...) and the gateway's ``/metrics``
(``qwen_meter_gateway_calls_total`` ...) count every usage record with :class:`CallSeries`
and read budgets (and limiters) when scraped with :class:`StoreGauges`. What differs between
the two faces is data, a :class:`Naming` each (:func:`library_naming`, :data:`GATEWAY`): the
series' names, the token kinds' label values, the duration histogram's labels and buckets, and
two choices the faces made before they shared this code. Extra labels (the gateway's ``key``,
the integration's ``tag_labels``) are tag values of the call.

Label values are bounded, since every distinct value is a series Prometheus keeps: ``model``
is the name the caller asked for only when the catalogue lists it (a name, alias or
snapshot; in lower case, without a ``provider/`` prefix), else ``other``; and each label
(``model`` and the tag labels) keeps at most ``max_label_values`` distinct values (default
100), later new values counting as ``other``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..base.errors import MissingExtra

try:
    from prometheus_client import CollectorRegistry, Counter, Histogram
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingExtra("Prometheus metrics need prometheus-client: "
                       'pip install ".[prometheus]" (from a clone)') from exc

from . import _common as c
from ._common import budget_figures

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from ..limits.budget import Budget
    from ..limits.limiter import RateLimiter
    from ..meter.log import UsageRecord

__all__ = ["GATEWAY", "MAX_LABEL_VALUES", "OTHER", "CallSeries", "LabelValues", "Naming",
           "StoreGauges", "budget_figures", "catalogue_names", "library_naming", "scope_label"]

#: The label value standing for names outside the catalogue and values over the cap.
OTHER = "other"
#: Distinct values a label keeps by default (each is one more series per metric).
MAX_LABEL_VALUES = 100

#: (budget, scope value, limit, remaining), as :meth:`._common.Watched.budgets` yields them.
BudgetFigures = Callable[[], Iterable[tuple["Budget", str, Decimal, Decimal]]]
#: (limiter, model, "rpm" | "tpm", share used), as :meth:`._common.Watched.limiters` yields them.
LimiterFigures = Callable[[], Iterable[tuple["RateLimiter", str, str, float]]]

#: The integration's duration buckets (seconds): LLM calls run from ~100 ms to minutes.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0)


@dataclass(frozen=True)
class Naming:
    """The names (after ``namespace_``) and the choices of one face."""

    namespace: str
    calls: str
    tokens: str
    cost: str
    duration: str
    #: (label value, UsageRecord field) of each token kind
    token_kinds: tuple[tuple[str, str], ...]
    buckets: tuple[float, ...]
    #: duration labels: (model, endpoint) if True, else (endpoint,)
    duration_by_model: bool
    #: count the tokens of failed calls too (a dropped stream's estimate)
    failed_tokens: bool
    #: observe calls without a duration (refused before sending) as 0 s
    refused_duration: bool
    #: failed calls by error kind (status error or dropped), labels (model, kind, tags...)
    errors: str | None = None
    #: calls refused before sending by what refused them, labels (model, reason)
    refusals: str | None = None
    #: label value of a tag label the call does not carry
    missing_tag: str = ""

    def full_name(self, suffix: str) -> str:
        """``namespace_suffix`` (as prometheus-client joins a ``namespace=``)."""
        return f"{self.namespace}_{suffix}" if self.namespace else suffix


def library_naming(namespace: str = "qwen_meter") -> Naming:
    """The series of :mod:`qwen_meter.integrations.prometheus` (its module docs list them)."""
    return Naming(namespace, "requests", "tokens", "cost", "request_duration_seconds",
                  c.TOKEN_KINDS, DURATION_BUCKETS, duration_by_model=True,
                  failed_tokens=False, refused_duration=True, refusals="refusals")


#: The series of the gateway's ``/metrics`` (``qwen_meter_gateway_calls_total`` ...), label
#: ``key`` the virtual key's name ("-" without virtual keys).
GATEWAY = Naming("qwen_meter_gateway", "calls", "tokens", "cost", "call_seconds",
                 (("prompt", "prompt_tokens"), ("completion", "completion_tokens"),
                  ("cached", "cached_tokens"), ("reasoning", "reasoning_tokens")),
                 tuple(Histogram.DEFAULT_BUCKETS), duration_by_model=False,
                 failed_tokens=True, refused_duration=False, errors="upstream_errors",
                 missing_tag="-")


def catalogue_names(catalogue: Any = None) -> frozenset[str]:
    """Every name ``catalogue`` (default: the default one) lists: models, aliases, snapshots
    (lower case)."""
    if catalogue is None:
        from ..catalogue.core import default_catalogue

        catalogue = default_catalogue()
    return frozenset(n.lower() for spec in catalogue
                     for n in (spec.name, *spec.aliases, getattr(spec, "snapshot", None)) if n)


class LabelValues:
    """One label's values: the first ``limit`` distinct ones kept, later new ones ``other``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        with self._lock:
            if value in self._seen:
                return value
            if len(self._seen) >= self.limit:
                return OTHER
            self._seen.add(value)
            return value


class CallSeries:
    """One face's per-call series in one registry, counted from each usage record.

    ``models``: the names kept as ``model`` label values (default: the default catalogue's);
    ``max_label_values``: the cap on each label's distinct values (module docs).
    """

    def __init__(self, registry: CollectorRegistry, naming: Naming,
                 tag_labels: Sequence[str] = (), *, models: Collection[str] | None = None,
                 max_label_values: int = MAX_LABEL_VALUES) -> None:
        self.naming = naming
        self.tag_labels = tuple(tag_labels)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._models = None if models is None else frozenset(m.lower() for m in models)
        self._model_values = LabelValues(max_label_values)
        self._tag_values = [LabelValues(max_label_values) for _ in self.tag_labels]
        n, r, extra = naming, registry, list(self.tag_labels)

        name = n.full_name
        self.calls = Counter(name(n.calls), "Metered calls by outcome",
                             ["model", "endpoint", "status", *extra], registry=r)
        self.tokens = Counter(name(n.tokens), "Billed tokens by kind",
                              ["model", "kind", *extra], registry=r)
        self.cost = Counter(name(n.cost), "Cost as qwen_meter prices it",
                            ["model", "currency", *extra], registry=r)
        self.duration = Histogram(name(n.duration), "Whole call time, upstream included",
                                  ["model", "endpoint"] if n.duration_by_model else ["endpoint"],
                                  buckets=n.buckets, registry=r)
        self.errors = None if n.errors is None else Counter(
            name(n.errors), "Calls that failed, by error kind", ["model", "kind", *extra],
            registry=r)
        self.refusals = None if n.refusals is None else Counter(
            name(n.refusals), "Calls refused before sending, by what refused them "
            "(BudgetExceeded, RateLimited, ...)", ["model", "reason"], registry=r)

    def metrics(self) -> list[Any]:
        """Every series registered (to unregister them)."""
        return [m for m in (self.calls, self.tokens, self.cost, self.duration, self.errors,
                            self.refusals) if m is not None]

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, kept: prometheus-client's costs tens of µs and a call
        touches up to seven series."""
        found = self._children.get((id(metric), labels))
        if found is None:
            found = self._children[(id(metric), labels)] = metric.labels(*labels)
        return found

    def model_label(self, model: str) -> str:
        """The ``model`` label of a name a caller sent (module docs)."""
        if self._models is None:
            self._models = catalogue_names()
        key = model.strip().lower() if isinstance(model, str) else ""
        if key not in self._models:
            key = key.rsplit("/", 1)[-1]  # a provider prefix: dashscope/qwen-plus
            if key not in self._models:
                return OTHER
        # The catalogue's spelling, not the caller's: "QWEN-Plus" and "x/qwen-plus" would
        # each be a series of their own, so the values stay within the catalogue's names.
        return self._model_values(key)

    def tag_values(self, tags: Sequence[str]) -> tuple[str, ...]:
        """The values of the tag labels in a call's ``name=value`` tags (capped)."""
        if not self.tag_labels:
            return ()
        found = dict(t.split("=", 1) for t in tags if "=" in t)
        missing = self.naming.missing_tag
        return tuple(keep(found.get(label, missing))
                     for label, keep in zip(self.tag_labels, self._tag_values, strict=True))

    def count(self, record: UsageRecord) -> None:
        """Count one usage record in every series."""
        n, child = self.naming, self.child
        extra = self.tag_values(record.tags)
        model, status = self.model_label(record.model), record.status
        child(self.calls, model, record.endpoint, status, *extra).inc()
        if record.latency_ms is not None or n.refused_duration:
            labels = (model, record.endpoint) if n.duration_by_model else (record.endpoint,)
            child(self.duration, *labels).observe(c.duration_s(record))
        if self.refusals is not None:
            refused = c.refusal(record)
            if refused is not None:
                child(self.refusals, model, refused).inc()
        if n.failed_tokens or status not in c.FAILED:
            for kind, field in n.token_kinds:
                value = getattr(record, field)
                if value:
                    child(self.tokens, model, kind, *extra).inc(value)
        amount = c.cost_amount(record)
        if amount is not None and record.currency:
            child(self.cost, model, record.currency, *extra).inc(float(amount))
        if self.errors is not None and status in ("error", "dropped"):
            child(self.errors, model, record.error_kind or status, *extra).inc()


def scope_label(budget: Budget, scope: str) -> str:
    """The ``scope`` label of a budget scope: ``global``, ``user=ana``, ``key=bob`` ..."""
    if budget.scope == "global":
        return "global"
    prefix = f"{budget.scope}="
    return scope if scope.startswith(prefix) else prefix + scope


class StoreGauges(Collector):
    """Budget (and limiter) gauges, read from their stores when scraped: nothing per call."""

    def __init__(self, naming: Naming, budgets: BudgetFigures,
                 limiters: LimiterFigures | None = None) -> None:
        self.naming = naming
        self.budgets = budgets
        self.limiters = limiters

    def collect(self) -> Iterator[Metric]:
        name = self.naming.full_name
        limit = GaugeMetricFamily(name("budget_limit"), "Budget limit of the current period",
                                  labels=["budget", "scope", "currency"])
        left = GaugeMetricFamily(name("budget_remaining"),
                                 "Budget left in the current period (limit - spent - reserved)",
                                 labels=["budget", "scope", "currency"])
        for budget, scope, amount, remaining in self.budgets():
            labels = [budget.name, scope_label(budget, scope), budget.currency]
            limit.add_metric(labels, float(amount))
            left.add_metric(labels, float(remaining))
        yield limit
        yield left
        if self.limiters is None:
            return
        used = GaugeMetricFamily(name("limiter_utilisation"),
                                 "Share of the client-side rate limit used this minute",
                                 labels=["model", "account", "window"])
        for limiter, model, window, share in self.limiters():
            used.add_metric([model, limiter.account, window], share)
        yield used

    def describe(self) -> Iterator[Metric]:
        return iter(())  # computed at scrape time; nothing to check at registration
