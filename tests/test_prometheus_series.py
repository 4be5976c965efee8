"""The gateway's /metrics and the Prometheus integration count with one implementation
(qwen_meter.integrations.prometheus_series), each under its own series names."""

from __future__ import annotations

import pytest

import qwen_meter as qm

pytest.importorskip("prometheus_client")
pytest.importorskip("aiohttp")  # qwen_meter.gateway needs the gateway extra
from prometheus_client import CollectorRegistry

from qwen_meter.gateway.metrics import GatewayMetrics
from qwen_meter.integrations import prometheus_series
from qwen_meter.integrations.prometheus import PrometheusObserver

OK = qm.UsageRecord(model="qwen-plus", prompt_tokens=22, completion_tokens=16,
                    total_tokens=38, cached_tokens=4, cost="0.0000496", currency="CNY",
                    latency_ms=250.0, tags=("key=alice", "team=search"))
FAILED = qm.UsageRecord(model="qwen-plus", status="error", error_kind="rate_limited",
                        http_status=429, latency_ms=40.0, tags=("key=alice",))
DROPPED = qm.UsageRecord(model="qwen-plus", status="dropped", prompt_tokens=22,
                         completion_tokens=5, usage_estimated=True, latency_ms=90.0,
                         tags=("key=alice",))
REFUSED = qm.UsageRecord(model="qwen-plus", status="refused", error_kind="BudgetExceeded",
                         currency="CNY", tags=("key=alice",))


def both(*records: qm.UsageRecord) -> tuple[GatewayMetrics, CollectorRegistry]:
    gateway = GatewayMetrics()
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry, tag_labels=("key",))
    for record in records:
        gateway.on_record(record, None)
        observer.on_record(record, None)
    return gateway, registry


def library(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_both_faces_are_built_from_the_shared_series():
    gateway = GatewayMetrics()
    observer = PrometheusObserver(CollectorRegistry())
    assert type(gateway.series) is type(observer.series) is prometheus_series.CallSeries
    assert gateway.series.naming is prometheus_series.GATEWAY
    assert observer.series.naming == prometheus_series.library_naming()
    assert (gateway.calls, gateway.tokens, gateway.cost, gateway.latency) == \
        (gateway.series.calls, gateway.series.tokens, gateway.series.cost,
         gateway.series.duration)
    assert (observer.requests, observer.tokens, observer.cost, observer.duration) == \
        (observer.series.calls, observer.series.tokens, observer.series.cost,
         observer.series.duration)
    gauges = [c for c in gateway.registry._collector_to_names
              if isinstance(c, prometheus_series.StoreGauges)]
    assert len(gauges) == 1 and isinstance(observer._gauges, prometheus_series.StoreGauges)


def test_one_record_gives_the_same_figures_on_both_faces():
    gateway, registry = both(OK, FAILED)
    for status in ("ok", "error"):
        assert gateway.sample("qwen_meter_gateway_calls_total", endpoint="chat",
                              model="qwen-plus", key="alice", status=status) == \
            library(registry, "qwen_meter_requests_total", endpoint="chat", model="qwen-plus",
                    key="alice", status=status) == 1
    for kind, alias in (("prompt", "input"), ("completion", "output"), ("cached", "cached")):
        assert gateway.sample("qwen_meter_gateway_tokens_total", model="qwen-plus",
                              key="alice", kind=kind) == \
            library(registry, "qwen_meter_tokens_total", model="qwen-plus", key="alice",
                    kind=alias)
    cost = gateway.sample("qwen_meter_gateway_cost_total", model="qwen-plus", key="alice",
                          currency="CNY")
    assert cost == library(registry, "qwen_meter_cost_total", model="qwen-plus",
                           key="alice", currency="CNY") == pytest.approx(0.0000496)
    assert gateway.sample("qwen_meter_gateway_call_seconds_sum", endpoint="chat") == \
        library(registry, "qwen_meter_request_duration_seconds_sum", model="qwen-plus",
                endpoint="chat") == pytest.approx(0.29)
    assert gateway.sample("qwen_meter_gateway_upstream_errors_total", model="qwen-plus",
                          key="alice", kind="rate_limited") == 1


def test_the_two_choices_the_faces_differ_in():
    gateway, registry = both(DROPPED, REFUSED)
    # A dropped stream's estimated tokens: counted by the gateway only.
    assert gateway.sample("qwen_meter_gateway_tokens_total", model="qwen-plus", key="alice",
                          kind="prompt") == 22
    assert library(registry, "qwen_meter_tokens_total", model="qwen-plus", key="alice",
                   kind="input") is None
    # A refused call (no duration): a 0 s observation in the integration only.
    assert gateway.sample("qwen_meter_gateway_call_seconds_count", endpoint="chat") == 1
    assert library(registry, "qwen_meter_request_duration_seconds_count", model="qwen-plus",
                   endpoint="chat") == 2
    assert library(registry, "qwen_meter_refusals_total", model="qwen-plus",
                   reason="BudgetExceeded") == 1


def test_calls_without_the_tag_label():
    gateway, registry = both(qm.UsageRecord(model="qwen-plus"))
    assert gateway.sample("qwen_meter_gateway_calls_total", endpoint="chat",
                          model="qwen-plus", key="-", status="ok") == 1
    assert library(registry, "qwen_meter_requests_total", endpoint="chat", model="qwen-plus",
                   key="", status="ok") == 1


def test_budget_gauges_share_the_scope_label():
    per_key = qm.Budget("5 CNY", scope="key", name="daily")
    per_user = qm.Budget("5 CNY", scope="user", name="users")
    everyone = qm.Budget("5 CNY", name="all")
    label = prometheus_series.scope_label
    assert label(per_key, "key=bob") == "key=bob"  # the meter's scope value is the whole tag
    assert label(per_user, "ana") == "user=ana"
    assert label(everyone, "global") == "global"
    gateway = GatewayMetrics(lambda: [(everyone, None), (per_key, "key=bob")])
    for scope, budget in (("global", "all"), ("key=bob", "daily")):
        for name in ("qwen_meter_gateway_budget_limit", "qwen_meter_gateway_budget_remaining"):
            assert gateway.sample(name, budget=budget, scope=scope, currency="CNY") == 5
