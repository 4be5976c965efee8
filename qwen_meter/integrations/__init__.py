"""Integrations: usage where teams already look.

Each module plugs qwen_meter into one tool and imports that tool only when used:

* :mod:`.otel` — OpenTelemetry spans and metrics (GenAI semantic conventions), extra ``otel``;
* :mod:`.prometheus` — Prometheus counters, histograms and gauges, extra ``prometheus``;
* :mod:`.usage_logging` — one structured :mod:`logging` record per call, no extra;
* :mod:`.langchain` — LangChain tags, metadata and run ids on the usage records; ChatTongyi;
* :mod:`.litellm` — a LiteLLM ``CustomLogger`` and the LiteLLM price-map exporter.

``import qwen_meter`` imports none of them.
"""
