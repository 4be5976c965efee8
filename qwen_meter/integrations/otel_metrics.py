"""The OpenTelemetry instruments, one set per meter provider, shared by every observer on it.

An OpenTelemetry meter hands out one instrument per name: a second observer creating
``qwen_meter.budget.remaining`` on the same provider would get the first one back, and the
SDK drops the second callback — its budgets and limiters would never be reported. So the
instruments (and the gauge callbacks) belong to the provider; each observer registers the
budgets and limiters it watches, and a collection reads all of them.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from . import _common as c

#: Bucket boundaries the GenAI conventions advise for ``gen_ai.client.token.usage``.
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304,
                 16777216, 67108864)
#: ... and for ``gen_ai.client.operation.duration`` (seconds).
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48,
                    40.96, 81.92)
SCOPE = "qwen_meter"


class Instruments:
    """The histograms, the cost counter and the gauges of one meter provider."""

    def __init__(self, provider: metrics.MeterProvider, version: str) -> None:
        meter = provider.get_meter(SCOPE, version)
        self._lock = threading.Lock()
        self._watched: weakref.WeakSet[c.Watched] = weakref.WeakSet()
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}",
            description="Number of input and output tokens used",
            explicit_bucket_boundaries_advisory=list(TOKEN_BUCKETS))
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s",
            description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS))
        self.cost = meter.create_counter(
            "qwen_meter.cost", unit="{currency}",
            description="Cost of the calls as qwen_meter prices them, in qwen_meter.currency")
        meter.create_observable_gauge(
            "qwen_meter.budget.remaining", [self._budget_gauge], unit="{currency}",
            description="Budget left in the current period, per budget and scope")
        meter.create_observable_gauge(
            "qwen_meter.limiter.utilization", [self._limiter_gauge], unit="1",
            description="Share of the rate limit used in the current minute (rpm / tpm)")

    def watch(self, watched: c.Watched) -> None:
        with self._lock:
            self._watched.add(watched)

    def _all(self) -> list[c.Watched]:
        with self._lock:
            return list(self._watched)

    def _budget_gauge(self, options: CallbackOptions) -> Iterable[Observation]:
        seen: dict[tuple[Any, ...], Observation] = {}
        scopes = {(budget, scope) for watched in self._all()
                  for budget, scope in watched.budget_scopes()}
        for budget, scope, _, remaining in c.budget_figures(sorted(
                scopes, key=lambda item: (item[0].name, item[1]))):
            attributes = {"qwen_meter.budget": budget.name,
                          "qwen_meter.budget.scope": budget.scope,
                          "qwen_meter.budget.scope_value": scope,
                          "qwen_meter.currency": budget.currency}
            # two budgets of one name on one provider: one point per series
            seen[tuple(sorted(attributes.items()))] = Observation(float(remaining), attributes)
        return list(seen.values())

    def _limiter_gauge(self, options: CallbackOptions) -> Iterable[Observation]:
        seen: dict[tuple[Any, ...], Observation] = {}
        for watched in self._all():
            for limiter, model, window, used in watched.limiters():
                attributes = {"gen_ai.request.model": model,
                              "qwen_meter.limiter.account": limiter.account,
                              "qwen_meter.limiter.window": window}
                seen[tuple(sorted(attributes.items()))] = Observation(used, attributes)
        return list(seen.values())


_lock = threading.Lock()
_by_provider: weakref.WeakKeyDictionary[Any, Instruments] = weakref.WeakKeyDictionary()
_by_id: dict[int, tuple[Any, Instruments]] = {}  # providers that take no weak reference


def instruments_for(provider: metrics.MeterProvider | None, version: str) -> Instruments:
    """The instruments of ``provider`` (default: the global one), made on first use."""
    provider = provider or metrics.get_meter_provider()
    with _lock:
        try:
            found = _by_provider.get(provider)
        except TypeError:
            entry = _by_id.get(id(provider))
            found = entry[1] if entry is not None else None
        if found is None:
            found = Instruments(provider, version)
            try:
                _by_provider[provider] = found
            except TypeError:
                _by_id[id(provider)] = (provider, found)
        return found
