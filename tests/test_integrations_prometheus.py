"""Prometheus metrics in a real prometheus_client registry."""

from __future__ import annotations

from decimal import Decimal

import pytest
from integration_support import HELLO, openai_client, refused_record

import qwen_meter as qm

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client import CollectorRegistry  # noqa: E402

from qwen_meter.integrations.prometheus import (  # noqa: E402
    PrometheusObserver,
    instrument,
    metrics_text,
    observer_for,
)


def value(registry, name, **labels):
    return registry.get_sample_value(name, labels)


def test_counts_tokens_cost_and_duration(make_meter, server):
    registry = CollectorRegistry()
    meter = make_meter(budget=qm.Budget("1 CNY"), limiter=qm.RateLimiter(
        limits={"qwen-plus": (100, 1_000_000)}))
    instrument(meter, registry=registry)
    client = openai_client(meter, server)
    for _ in range(3):
        client.chat.completions.create(model="qwen-plus", messages=HELLO, max_tokens=100)
    assert value(registry, "qwen_meter_requests_total", model="qwen-plus", endpoint="chat",
                 status="ok") == 3
    assert value(registry, "qwen_meter_tokens_total", model="qwen-plus", kind="input") == 66
    assert value(registry, "qwen_meter_tokens_total", model="qwen-plus", kind="output") == 48
    assert value(registry, "qwen_meter_tokens_total", model="qwen-plus", kind="cached") is None
    assert value(registry, "qwen_meter_cost_total", model="qwen-plus",
                 currency="CNY") == pytest.approx(3 * 0.0000496)
    assert value(registry, "qwen_meter_request_duration_seconds_count", model="qwen-plus",
                 endpoint="chat") == 3
    assert value(registry, "qwen_meter_in_flight", model="qwen-plus") == 0
    left = value(registry, "qwen_meter_budget_remaining", budget="budget", scope="global",
                 currency="CNY")
    assert left == pytest.approx(float(1 - 3 * Decimal("0.0000496")))
    assert value(registry, "qwen_meter_budget_limit", budget="budget", scope="global",
                 currency="CNY") == 1
    assert value(registry, "qwen_meter_limiter_utilisation", model="qwen-plus",
                 account="default", window="rpm") == pytest.approx(0.03)
    assert value(registry, "qwen_meter_limiter_utilisation", model="qwen-plus",
                 account="default", window="tpm") == pytest.approx(3 * 38 / 1_000_000)


def test_per_user_budget_gauge_per_scope(make_meter, server):
    registry = CollectorRegistry()
    meter = make_meter(budget=qm.Budget("2 CNY", scope="user", name="per-user"))
    instrument(meter, registry=registry)
    client = openai_client(meter, server)
    for user in ("ana", "bo", "bo"):
        with qm.attribute(user=user):
            client.chat.completions.create(model="qwen-plus", messages=HELLO)
    ana = value(registry, "qwen_meter_budget_remaining", budget="per-user", scope="user=ana",
                currency="CNY")
    bo = value(registry, "qwen_meter_budget_remaining", budget="per-user", scope="user=bo",
               currency="CNY")
    assert ana == pytest.approx(2 - 0.0000496) and bo == pytest.approx(2 - 2 * 0.0000496)


def test_tag_scoped_budget_gauge_names_the_scope_once(make_meter, server):
    registry = CollectorRegistry()
    meter = make_meter(budget=qm.Budget("2 CNY", scope="feature", name="per-feature"))
    instrument(meter, registry=registry)
    with qm.attribute(tags=["feature=search"]):
        openai_client(meter, server).chat.completions.create(model="qwen-plus",
                                                             messages=HELLO)
    left = value(registry, "qwen_meter_budget_remaining", budget="per-feature",
                 scope="feature=search", currency="CNY")
    assert left == pytest.approx(2 - 0.0000496)


def test_failures_retries_and_refusals(make_meter, server):
    registry = CollectorRegistry()
    meter = make_meter()
    observer = instrument(meter, registry=registry)
    server.push({"status": 429, "code": "Throttling.RateQuota"})
    openai_client(meter, server).chat.completions.create(model="qwen-plus", messages=HELLO)
    (retried,) = [s for m in registry.collect() if m.name == "qwen_meter_retries"
                  for s in m.samples if s.name.endswith("_total")]
    assert retried.value == 1 and retried.labels["model"] == "qwen-plus"
    observer.on_record(refused_record(), None)
    assert value(registry, "qwen_meter_requests_total", model="qwen-plus", endpoint="chat",
                 status="refused") == 1
    assert value(registry, "qwen_meter_tokens_total", model="qwen-plus", kind="input") == 22
    assert value(registry, "qwen_meter_refusals_total", model="qwen-plus",
                 reason="BudgetExceeded") == 1


def test_one_observer_per_registry_shared_by_meters(make_meter, server):
    registry = CollectorRegistry()
    first, second = make_meter(), make_meter()
    assert instrument(first, registry=registry) is instrument(second, registry=registry)
    instrument(first, registry=registry)
    assert len(first.observers) == 1
    for meter in (first, second):
        openai_client(meter, server).chat.completions.create(model="qwen-plus",
                                                             messages=HELLO)
    assert value(registry, "qwen_meter_requests_total", model="qwen-plus", endpoint="chat",
                 status="ok") == 2
    text = metrics_text(registry).decode()
    assert 'qwen_meter_requests_total{endpoint="chat",model="qwen-plus",status="ok"} 2.0' in text
    with pytest.raises(qm.ConfigurationError):
        observer_for(registry, tag_labels=("feature",))


def test_tag_labels(make_meter, server):
    registry = CollectorRegistry()
    meter = make_meter()
    meter.add_observer(PrometheusObserver(registry, tag_labels=("feature",)))
    with qm.attribute(tags=["feature=search"]):
        openai_client(meter, server).chat.completions.create(model="qwen-plus",
                                                             messages=HELLO)
    assert value(registry, "qwen_meter_cost_total", model="qwen-plus", currency="CNY",
                 feature="search") == pytest.approx(0.0000496)
    with pytest.raises(qm.ConfigurationError):
        PrometheusObserver(CollectorRegistry(), tag_labels=("not a label",))


def test_close_unregisters():
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)
    observer.close()
    PrometheusObserver(registry)  # the names are free again


def test_an_unreadable_store_does_not_break_the_scrape(make_meter, server, monkeypatch):
    registry = CollectorRegistry()
    budget = qm.Budget("1 CNY")
    meter = make_meter(budget=budget)
    instrument(meter, registry=registry)
    openai_client(meter, server).chat.completions.create(model="qwen-plus", messages=HELLO)

    def down(key=None):
        raise qm.StoreUnavailable("redis is down")

    monkeypatch.setattr(budget, "status", down)
    text = metrics_text(registry).decode()
    assert "qwen_meter_requests_total" in text and "qwen_meter_budget_remaining{" not in text


def test_in_flight_counts_only_calls_it_saw_begin(make_meter, server):
    registry = CollectorRegistry()
    meter = make_meter()
    observer = PrometheusObserver(registry)
    call = meter.begin({"model": "qwen-plus", "messages": HELLO})
    meter.add_observer(observer)  # added while the call is in flight
    call.finish({"prompt_tokens": 22, "completion_tokens": 16, "total_tokens": 38})
    assert value(registry, "qwen_meter_in_flight", model="qwen-plus") in (None, 0)
    assert value(registry, "qwen_meter_requests_total", model="qwen-plus", endpoint="chat",
                 status="ok") == 1


# --- bounded label values (issue 26) ----------------------------------------------------------

def series(registry, name):
    return [s for metric in registry.collect() for s in metric.samples if s.name == name]


def test_one_thousand_tag_values_stay_bounded(make_meter, server):
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry, tag_labels=("feature",), max_label_values=50)
    for n in range(1_000):
        observer.on_record(qm.UsageRecord(model="qwen-plus", tags=(f"feature=f{n}",),
                                          prompt_tokens=10, completion_tokens=2,
                                          cost="0.001", currency="CNY", latency_ms=5.0), None)
    calls = series(registry, "qwen_meter_requests_total")
    assert len(calls) == 51  # 50 kept values + other
    assert sum(s.value for s in calls) == 1_000
    assert value(registry, "qwen_meter_requests_total", model="qwen-plus", endpoint="chat",
                 status="ok", feature="other") == 950
    assert value(registry, "qwen_meter_requests_total", model="qwen-plus", endpoint="chat",
                 status="ok", feature="f0") == 1
    assert len(series(registry, "qwen_meter_tokens_total")) == 2 * 51
    everything = sum(len(m.samples) for m in registry.collect())
    assert everything < 600  # was 8,035 for 1,000 tag values
    # the default cap is 100
    default = CollectorRegistry()
    capped = PrometheusObserver(default, tag_labels=("feature",))
    for n in range(1_000):
        capped.on_record(qm.UsageRecord(model="qwen-plus", tags=(f"feature=f{n}",)), None)
    assert len(series(default, "qwen_meter_requests_total")) == 101
    with pytest.raises(qm.ConfigurationError):
        PrometheusObserver(CollectorRegistry(), max_label_values=0)


def test_model_label_takes_only_catalogue_names(make_meter, server):
    registry = CollectorRegistry()
    meter = make_meter()
    observer = PrometheusObserver(registry)
    meter.add_observer(observer)
    client = openai_client(meter, server)
    client.chat.completions.create(model="qwen-plus", messages=HELLO)
    client.chat.completions.create(model="qwen-plus-2031-01-01", messages=HELLO)  # a rule
    for n in range(500):  # names a caller made up
        observer.on_record(qm.UsageRecord(model=f"made-up-{n}", status="error"), None)
    for n in range(200):  # listed names spelled as a caller likes: the catalogue's spelling
        spelled = f"p{n}/qwen-plus" if n % 2 else "qwen-plus".upper()[:n % 9] + "qwen-plus"[n % 9:]
        observer.on_record(qm.UsageRecord(model=spelled, status="error"), None)
    models = {s.labels["model"] for s in series(registry, "qwen_meter_requests_total")}
    assert models == {"qwen-plus", "other"}
    assert value(registry, "qwen_meter_requests_total", model="qwen-plus", endpoint="chat",
                 status="error") == 200
    assert value(registry, "qwen_meter_requests_total", model="other", endpoint="chat",
                 status="error") == 500
    assert value(registry, "qwen_meter_requests_total", model="other", endpoint="chat",
                 status="ok") == 1
    assert {s.labels["model"] for s in series(registry, "qwen_meter_in_flight")} <= {
        "qwen-plus", "other"}
