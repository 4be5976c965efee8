"""Per-call overhead of each integration, and proof that an unused one costs nothing.

Run:  python benchmarks/bench_integrations.py [N]
Each row meters N calls through ``Meter.begin`` → ``MeteredCall.finish`` (the whole pipeline:
counting, pricing, record; no HTTP, no log file, so the integration's share is not hidden in
network noise) with one integration on, and reports the median µs per call and the extra µs
over the plain meter. The rows take turns call by call, so load from other processes falls
on all of them alike. "off" rows prove the zero cost: the integrations' modules are imported
(OpenTelemetry with no SDK configured = the API's no-op providers) but not added to the
meter, and the plain meter's time is unchanged. Peers: the OpenTelemetry SDK's own span cost
and prometheus_client's counter increment are printed for scale.
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
import time
from collections.abc import Callable

from bench_meter import timed  # one median timer for every benchmark

import qwen_meter as qm

REQUEST = {"model": "qwen-plus", "max_tokens": 100,
           "messages": [{"role": "system", "content": "You are a helpful assistant."},
                        {"role": "user", "content": "你是誰?"}]}
USAGE = {"prompt_tokens": 22, "completion_tokens": 16, "total_tokens": 38}


def one_call(meter: qm.Meter) -> Callable[[], object]:
    def run() -> object:
        return meter.begin(REQUEST).finish(USAGE, served_model="qwen-plus")
    return run


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 5000
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from prometheus_client import CollectorRegistry, Counter

    from qwen_meter.integrations.otel import OpenTelemetryObserver
    from qwen_meter.integrations.prometheus import PrometheusObserver
    from qwen_meter.integrations.usage_logging import UsageLoggingObserver

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])

    quiet = logging.getLogger("bench.off")
    quiet.setLevel(logging.ERROR)
    on = logging.getLogger("bench.on")
    on.addHandler(logging.NullHandler())
    on.setLevel(logging.INFO)
    on.propagate = False

    rows: dict[str, Callable[[], qm.Meter]] = {
        "plain meter (integrations imported, none added)": lambda: qm.Meter(log=None),
        "otel on (SDK, in-memory exporter)": lambda: qm.Meter(log=None, observers=[
            OpenTelemetryObserver(tracer_provider=tracer_provider,
                                  meter_provider=meter_provider)]),
        "otel on, API only (no SDK: no-op providers)": lambda: qm.Meter(
            log=None, observers=[OpenTelemetryObserver()]),
        "prometheus on": lambda: qm.Meter(log=None, observers=[
            PrometheusObserver(CollectorRegistry())]),
        "logging on (INFO, NullHandler)": lambda: qm.Meter(log=None, observers=[
            UsageLoggingObserver(on)]),
        "logging added, logger disabled": lambda: qm.Meter(log=None, observers=[
            UsageLoggingObserver(quiet)]),
    }
    order = list(rows.items())
    if "--reverse" in sys.argv:  # to see whether a row gains from its place in the turn
        order.reverse()
    calls = {label: one_call(make()) for label, make in order}
    for run in calls.values():  # warm-up
        for _ in range(200):
            run()
    samples: dict[str, list[float]] = {label: [] for label in calls}
    # Round robin, one call of each row in turn: load from other processes on the shared
    # machine hits every row alike instead of whichever row ran during it.
    for i in range(n):
        for label, run in calls.items():
            start = time.perf_counter()
            run()
            samples[label].append(time.perf_counter() - start)
        if i % 500 == 0:
            exporter.clear()
    medians = {label: statistics.median(v) * 1e6 for label, v in samples.items()}
    base = medians["plain meter (integrations imported, none added)"]
    report: dict[str, dict[str, float]] = {
        label: {"µs/call": round(us, 1), "overhead µs": round(us - base, 1)}
        for label, us in medians.items()}
    tracer = tracer_provider.get_tracer("peer")

    def bare_span() -> None:
        tracer.start_span("chat qwen-plus", attributes={"gen_ai.request.model": "qwen-plus"}).end()

    counter = Counter("peer", "peer", ["model"], registry=CollectorRegistry())
    report["peer: one OTel SDK span, 1 attribute"] = {
        "µs/call": round(timed(bare_span, n) * 1e6, 1)}
    report["peer: one prometheus_client counter inc"] = {
        "µs/call": round(timed(lambda: counter.labels("qwen-plus").inc(), n) * 1e6, 1)}
    print(json.dumps({"calls per row": n, "rows": report}, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
