"""The gateway, served by a real uvicorn on 127.0.0.1, in front of the local DashScope stand-in,
called with curl, the openai SDK, the dashscope SDK and httpx."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

from gateway_server import running_gateway

from qwen_meter.gateway import create_app
from qwen_meter.gateway.config import default_config, parse_config
from qwen_meter.gateway.keys import hash_key, new_key
from qwen_meter.meter.log import read_jsonl
from qwen_meter.testing.dashscope import REPLY, FakeDashScope

REAL_KEY = "sk-REALupstreamKEY0123456789abcdef"
MESSAGES = [{"role": "user", "content": "你是谁？"}]


@pytest.fixture(scope="module")
def fake():
    server = FakeDashScope()
    yield server
    server.close()


def records(path: Path) -> list:
    """The settled calls (a call in flight reads as ``pending`` until it settles)."""
    return [r for r in read_jsonl(path) if r.status != "pending"] if path.exists() else []


def wait_records(path: Path, n: int, timeout: float = 30.0) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = records(path)
        if len(found) >= n:
            return found
        time.sleep(0.02)
    return records(path)


def wait_sample(app, name: str, minimum: float, timeout: float = 5.0, **labels: str) -> float:
    """A metric once it reaches ``minimum`` (or its value at the timeout): the record reaches
    the log a moment before the metric observers run, so a test that saw the record may
    look too early."""
    deadline = time.monotonic() + timeout
    value = app.metrics.sample(name, **labels) or 0.0
    while value < minimum and time.monotonic() < deadline:
        time.sleep(0.02)
        value = app.metrics.sample(name, **labels) or 0.0
    return value


@pytest.fixture(scope="module")
def open_gateway(fake, tmp_path_factory):
    """The embedded default config (no virtual keys) in front of the fake."""
    log = tmp_path_factory.mktemp("gw") / "usage.jsonl"
    app = create_app(default_config(fake.url), log_path=str(log))
    with running_gateway(app) as url:
        yield url, log, app


KEYS = {name: new_key() for name in ("alice", "bob", "revoked", "slow")}


@pytest.fixture(scope="module")
def keyed_gateway(fake, tmp_path_factory):
    """Virtual keys: alice (RPM 3, qwen-plus/qwen-flash only), bob (a tiny budget), revoked."""
    import os

    os.environ["QM_TEST_REAL_KEY"] = REAL_KEY
    folder = tmp_path_factory.mktemp("gwk")
    config = parse_config({
        "upstreams": {"default": {"url": fake.url, "api_key_env": "QM_TEST_REAL_KEY"}},
        "max_body_bytes": 4096,
        "keys": [
            {"name": "alice", "hash": hash_key(KEYS["alice"]), "user": "alice",
             "tags": ["team=search"], "rpm": 3, "models": ["qwen-plus", "qwen-flash"]},
            {"name": "bob", "hash": hash_key(KEYS["bob"]),
             "budgets": [{"name": "daily", "limit": "0.00005 CNY", "per": "day"}]},
            {"name": "revoked", "hash": hash_key(KEYS["revoked"]), "revoked": True},
            {"name": "slow", "hash": hash_key(KEYS["slow"])},
        ]}, "test.yaml")
    log = folder / "usage.jsonl"
    app = create_app(config, log_path=str(log))
    with running_gateway(app) as url:
        yield url, log, app


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-s", "-S", "--max-time", "20", *args], capture_output=True,
                          text=True, timeout=30)


# --- the embedded default: curl, SDKs, pass-through ----------------------------------------

def test_curl_plain_and_stream_pass_through_and_are_metered(fake, open_gateway):
    url, log, _ = open_gateway
    before = len(records(log))
    body = json.dumps({"model": "qwen-plus", "messages": MESSAGES}, ensure_ascii=False)
    done = curl(f"{url}/compatible-mode/v1/chat/completions", "-H",
                "Authorization: Bearer sk-client-own-key", "-H",
                "Content-Type: application/json", "-d", body)
    answer = json.loads(done.stdout)
    assert answer["choices"][0]["message"]["content"] == REPLY
    # No virtual keys: the client's own key goes upstream as is.
    assert fake.requests[-1]["headers"]["authorization"] == "Bearer sk-client-own-key"
    assert fake.requests[-1]["body"] == json.loads(body)
    streamed = curl("-N", f"{url}/compatible-mode/v1/chat/completions", "-H",
                    "Authorization: Bearer sk-client-own-key", "-d",
                    json.dumps({"model": "qwen-plus", "messages": MESSAGES, "stream": True}))
    # As an SSE client reads it: comment lines (": keep-alive") are not events.
    events = ["\n".join(line for line in e.splitlines() if not line.startswith(":"))
              for e in streamed.stdout.split("\n\n")]
    events = [e for e in events if e.strip()]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e[5:]) for e in events[:-1]]
    # Usage was asked for upstream, but the client did not ask: the extra chunk is hidden.
    assert fake.requests[-1]["body"]["stream_options"] == {"include_usage": True}
    assert all(c["choices"] for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == REPLY
    new = wait_records(log, before + 2)[before:]
    assert [(r.status, r.stream, r.usage_estimated) for r in new] == \
        [("ok", False, False), ("ok", True, False)]
    assert new[0].prompt_tokens == answer["usage"]["prompt_tokens"]
    assert new[1].total_tokens == new[0].total_tokens and new[1].cost is not None


def test_openai_sdk_plain_and_stream_match_direct(fake, open_gateway):
    openai = pytest.importorskip("openai")
    url, log, _ = open_gateway
    via = openai.OpenAI(api_key="sk-client", base_url=f"{url}/compatible-mode/v1",
                        max_retries=0)
    direct = openai.OpenAI(api_key="sk-client", base_url=fake.compatible, max_retries=0)
    reply = via.chat.completions.create(model="qwen-plus", messages=MESSAGES, max_tokens=50)
    assert reply.choices[0].message.content == REPLY and reply.usage.total_tokens > 0

    def shape(client, **extra):
        stream = client.chat.completions.create(model="qwen-plus", messages=MESSAGES,
                                                stream=True, **extra)
        return [(bool(c.choices), c.choices[0].delta.content if c.choices else None,
                 c.usage.total_tokens if c.usage else None) for c in stream]

    assert shape(via) == shape(direct)
    asked = {"stream_options": {"include_usage": True}}
    with_usage = shape(via, **asked)
    assert with_usage == shape(direct, **asked) and with_usage[-1][2] > 0
    new = wait_records(log, 1)
    assert new[-1].status == "ok" and not new[-1].usage_estimated


def test_httpx_embeddings_and_async_client(fake, open_gateway):
    url, log, _ = open_gateway
    before = len(records(log))
    answer = httpx.post(f"{url}/compatible-mode/v1/embeddings",
                        json={"model": "text-embedding-v4", "input": ["风急天高", "猿啸哀"]},
                        headers={"Authorization": "Bearer sk-x"}, timeout=10)
    assert answer.status_code == 200 and len(answer.json()["data"]) == 2
    record = wait_records(log, before + 1)[-1]
    assert record.endpoint == "embeddings"
    assert record.prompt_tokens == answer.json()["usage"]["prompt_tokens"]


def test_dashscope_sdk_native_plain_and_stream(fake, open_gateway, monkeypatch):
    dashscope = pytest.importorskip("dashscope")
    url, log, _ = open_gateway
    monkeypatch.setattr(dashscope, "base_http_api_url", f"{url}/api/v1")
    before = len(records(log))
    plain = dashscope.Generation.call(model="qwen-plus", messages=MESSAGES, api_key="sk-ds",
                                      result_format="message")
    assert plain.status_code == 200
    assert plain.output.choices[0].message.content == REPLY
    pieces = list(dashscope.Generation.call(model="qwen-plus", messages=MESSAGES,
                                            api_key="sk-ds", stream=True,
                                            incremental_output=True))
    assert all(p.status_code == 200 for p in pieces)
    assert "".join(p.output.text for p in pieces) == REPLY
    new = wait_records(log, before + 2)[before:]
    assert [r.status for r in new] == ["ok", "ok"]
    assert new[1].stream and new[1].completion_tokens == pieces[-1].usage.output_tokens


def test_bad_json_names_the_position(open_gateway):
    url, _, _ = open_gateway
    answer = httpx.post(f"{url}/compatible-mode/v1/chat/completions",
                        content=b'{"model": "qwen-plus", "messages": [}', timeout=10)
    assert answer.status_code == 400
    message = answer.json()["error"]["message"]
    assert "line 1 column 37" in message and "char 36" in message
    native = httpx.post(f"{url}/api/v1/services/aigc/text-generation/generation",
                        content=b"[1, 2]", timeout=10)
    assert native.status_code == 400 and native.json()["code"] == "InvalidParameter"


def test_unknown_model_and_unmetered_paths(open_gateway):
    url, log, _ = open_gateway
    before = len(records(log))
    # A model the catalogue does not know yet is metered, not refused (no hard budget here):
    # it goes upstream and is recorded unpriced, as the client meter does.
    answer = httpx.post(f"{url}/compatible-mode/v1/chat/completions",
                        json={"model": "qwen-nonesuch-9", "messages": MESSAGES}, timeout=10)
    assert answer.status_code == 200
    new = wait_records(log, before + 1)[before:]
    assert new[-1].model == "qwen-nonesuch-9" and new[-1].cost is None and new[-1].unpriced
    other = httpx.post(f"{url}/compatible-mode/v1/images/generations", json={}, timeout=10)
    assert other.status_code == 404


def test_dropped_stream_reaches_the_client_and_is_recorded(fake, open_gateway):
    url, log, _ = open_gateway
    before = len(records(log))
    fake.push({"drop_after": 2})
    seen = []
    with pytest.raises(httpx.HTTPError), httpx.stream(
            "POST", f"{url}/compatible-mode/v1/chat/completions", timeout=10,
            json={"model": "qwen-plus", "messages": MESSAGES, "stream": True}) as response:
        for line in response.iter_lines():
            seen.append(line)
    assert any("我是" in line for line in seen) and "data: [DONE]" not in seen
    record = wait_records(log, before + 1)[-1]
    assert record.status == "dropped" and record.usage_estimated
    assert record.prompt_tokens > 0 and record.completion_tokens > 0


def test_client_disconnect_cancels_and_settles(fake, open_gateway):
    url, log, app = open_gateway
    before = len(records(log))
    fake.push({"slow": 1.0})  # 6 chunks, 6 s if read to the end
    with httpx.stream("POST", f"{url}/compatible-mode/v1/chat/completions", timeout=10,
                      json={"model": "qwen-plus", "messages": MESSAGES,
                            "stream": True}) as response:
        first = next(line for line in response.iter_lines() if not line.startswith(":"))
        assert first.startswith("data:")
    new = wait_records(log, before + 1, timeout=30)
    # "closed" with estimated usage: settled when the client left, not when the stream ended
    assert new[-1].status == "closed" and new[-1].usage_estimated
    # The record is written as the stream is cancelled; the gauge drops just after.
    deadline = time.monotonic() + 2
    while app.metrics.sample("qwen_meter_gateway_open_streams") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert app.metrics.sample("qwen_meter_gateway_open_streams") == 0


def test_healthz_and_metrics(open_gateway):
    url, _, _ = open_gateway
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    text = httpx.get(f"{url}/metrics").text
    assert 'qwen_meter_gateway_calls_total{endpoint="chat",key="-",model="qwen-plus",' \
           'status="ok"}' in text
    assert 'qwen_meter_gateway_tokens_total{key="-",kind="prompt",model="qwen-plus"}' in text
    assert "qwen_meter_gateway_cost_total" in text


def test_metrics_match_the_prometheus_integration_for_the_same_call(open_gateway):
    """The gateway's /metrics and qwen_meter.integrations.prometheus count a call with the
    same code: the figures of one call through the gateway agree, name for name."""
    from prometheus_client import CollectorRegistry

    from qwen_meter.integrations.prometheus import PrometheusObserver

    url, _, app = open_gateway
    meter = app.tenants.default.meter
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry, tag_labels=("key",))
    gw = {"calls": ("qwen_meter_gateway_calls_total",
                    {"endpoint": "chat", "model": "qwen-plus", "key": "-", "status": "ok"}),
          "input": ("qwen_meter_gateway_tokens_total",
                    {"model": "qwen-plus", "key": "-", "kind": "prompt"}),
          "output": ("qwen_meter_gateway_tokens_total",
                     {"model": "qwen-plus", "key": "-", "kind": "completion"}),
          "cost": ("qwen_meter_gateway_cost_total",
                   {"model": "qwen-plus", "key": "-", "currency": "CNY"}),
          "seconds": ("qwen_meter_gateway_call_seconds_sum", {"endpoint": "chat"})}
    lib = {"calls": ("qwen_meter_requests_total",
                     {"endpoint": "chat", "model": "qwen-plus", "key": "", "status": "ok"}),
           "input": ("qwen_meter_tokens_total", {"model": "qwen-plus", "key": "", "kind": "input"}),
           "output": ("qwen_meter_tokens_total",
                      {"model": "qwen-plus", "key": "", "kind": "output"}),
           "cost": ("qwen_meter_cost_total", {"model": "qwen-plus", "key": "", "currency": "CNY"}),
           "seconds": ("qwen_meter_request_duration_seconds_sum",
                       {"endpoint": "chat", "model": "qwen-plus"})}
    before = {k: app.metrics.sample(n, **labels) or 0.0 for k, (n, labels) in gw.items()}
    meter.add_observer(observer)
    try:
        answer = httpx.post(f"{url}/compatible-mode/v1/chat/completions", timeout=10,
                            json={"model": "qwen-plus", "messages": MESSAGES})
        assert answer.status_code == 200
        deadline = time.monotonic() + 5
        while not registry.get_sample_value(*lib["calls"]) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        meter.observers.remove(observer)
    for what, (name, labels) in gw.items():
        added = app.metrics.sample(name, **labels) - before[what]
        assert added == pytest.approx(registry.get_sample_value(*lib[what])), what
        assert added > 0, what


# --- virtual keys -------------------------------------------------------------------------

def test_unknown_and_revoked_keys_are_401(keyed_gateway):
    openai = pytest.importorskip("openai")
    url, _, _ = keyed_gateway
    for key in ("sk-qm-unknown", KEYS["revoked"], REAL_KEY):
        client = openai.OpenAI(api_key=key, base_url=f"{url}/compatible-mode/v1",
                               max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model="qwen-plus", messages=MESSAGES)
    native = httpx.post(f"{url}/api/v1/services/aigc/text-generation/generation",
                        json={"model": "qwen-plus"}, timeout=10)
    assert native.status_code == 401 and native.json()["code"] == "InvalidApiKey"


def test_virtual_key_maps_to_tenant_and_real_key(fake, keyed_gateway):
    url, log, _ = keyed_gateway
    answer = httpx.post(f"{url}/compatible-mode/v1/chat/completions", timeout=10,
                        headers={"Authorization": f"Bearer {KEYS['slow']}"},
                        json={"model": "qwen-max", "messages": MESSAGES})
    assert answer.status_code == 200
    assert fake.requests[-1]["headers"]["authorization"] == f"Bearer {REAL_KEY}"
    record = wait_records(log, 1)[-1]
    assert record.tags == ("key=slow",) and record.status == "ok"
    alice = httpx.post(f"{url}/compatible-mode/v1/chat/completions", timeout=10,
                       headers={"Authorization": f"Bearer {KEYS['alice']}"},
                       json={"model": "qwen-plus", "messages": MESSAGES})
    assert alice.status_code == 200
    record = wait_records(log, 2)[-1]
    assert record.tags == ("key=alice", "team=search") and record.user == "alice"


def test_model_not_allowed_and_body_too_large(keyed_gateway):
    url, _, _ = keyed_gateway
    auth = {"Authorization": f"Bearer {KEYS['alice']}"}
    denied = httpx.post(f"{url}/compatible-mode/v1/chat/completions", headers=auth,
                        json={"model": "qwen-max", "messages": MESSAGES}, timeout=10)
    assert denied.status_code == 403 and "qwen-max" in denied.json()["error"]["message"]
    big = [{"role": "user", "content": "长" * 5000}]
    large = httpx.post(f"{url}/compatible-mode/v1/chat/completions", headers=auth,
                       json={"model": "qwen-plus", "messages": big}, timeout=10)
    assert large.status_code == 413
    chunked = curl("-i", "-H", "Transfer-Encoding: chunked", "-H",
                   f"Authorization: Bearer {KEYS['alice']}", "--data-binary", "@-",
                   f"{url}/compatible-mode/v1/chat/completions")
    assert chunked.returncode == 0  # no body at all: 400, not a hang


def test_key_rpm_is_answered_like_dashscope(keyed_gateway):
    openai = pytest.importorskip("openai")
    url, _, app = keyed_gateway
    client = openai.OpenAI(api_key=KEYS["alice"], base_url=f"{url}/compatible-mode/v1",
                           max_retries=0)
    admitted = 0
    refused = None
    for _ in range(5):
        try:
            client.chat.completions.create(model="qwen-flash", messages=MESSAGES)
            admitted += 1
        except openai.RateLimitError as exc:
            refused = exc
    assert refused is not None and admitted <= 3
    assert int(refused.response.headers["retry-after"]) >= 1
    assert wait_sample(app, "qwen_meter_gateway_refusals_total", 2, key="alice",
                       reason="rate_limited") >= 2


def test_key_budget_refuses_with_a_clear_error(fake, keyed_gateway):
    url, _, _ = keyed_gateway
    auth = {"Authorization": f"Bearer {KEYS['bob']}"}
    answer = httpx.post(f"{url}/compatible-mode/v1/chat/completions", headers=auth,
                        json={"model": "qwen-plus", "messages": MESSAGES, "max_tokens": 4000},
                        timeout=10)
    assert answer.status_code == 403
    error = answer.json()["error"]
    assert error["code"] == "budget_exceeded" and "daily" in error["message"]
    text = httpx.get(f"{url}/metrics").text
    assert 'qwen_meter_gateway_budget_remaining{budget="daily",currency="CNY",' \
           'scope="key=bob"} 5e-05' in text
    assert 'qwen_meter_gateway_budget_limit{budget="daily",currency="CNY",' \
           'scope="key=bob"} 5e-05' in text


def test_real_key_never_in_logs_records_metrics_or_errors(fake, keyed_gateway):
    url, log, _ = keyed_gateway
    fake.push({"status": 401, "code": "invalid_api_key",
               "message": f"Incorrect API key provided: {REAL_KEY}"})
    answer = httpx.post(f"{url}/compatible-mode/v1/chat/completions", timeout=10,
                        headers={"Authorization": f"Bearer {KEYS['slow']}"},
                        json={"model": "qwen-plus", "messages": MESSAGES})
    assert answer.status_code == 401 and REAL_KEY not in answer.text
    wait_records(log, 1)
    assert REAL_KEY not in log.read_text(encoding="utf-8")
    for key in KEYS.values():
        assert key not in log.read_text(encoding="utf-8")
    assert REAL_KEY not in httpx.get(f"{url}/metrics").text


# --- shutdown -----------------------------------------------------------------------------

def test_graceful_shutdown_finishes_open_streams(fake, tmp_path):
    log = tmp_path / "usage.jsonl"
    app = create_app(default_config(fake.url), log_path=str(log))
    fake.push({"slow": 0.15})
    lines: list[str] = []
    import threading

    streaming = threading.Event()
    with running_gateway(app, shutdown_timeout=10) as url:
        def read() -> None:
            with httpx.stream("POST", f"{url}/compatible-mode/v1/chat/completions",
                              json={"model": "qwen-plus", "messages": MESSAGES,
                                    "stream": True}, timeout=10) as response:
                for line in response.iter_lines():
                    lines.append(line)
                    streaming.set()

        reader = threading.Thread(target=read)
        reader.start()
        assert streaming.wait(10)  # mid-stream when the server is told to stop
    reader.join(10)
    assert "data: [DONE]" in lines
    assert [r.status for r in records(log)] == ["ok"]


def test_upstream_errors_pass_through_and_are_recorded(fake, open_gateway):
    url, log, app = open_gateway
    before = len(records(log))
    fake.push({"status": 429, "retry_after": 3})
    answer = httpx.post(f"{url}/compatible-mode/v1/chat/completions", timeout=10,
                        json={"model": "qwen-plus", "messages": MESSAGES})
    assert answer.status_code == 429 and answer.headers["retry-after"] == "3"
    assert answer.json()["error"]["code"] == "Throttling.RateQuota"  # DashScope's own body
    record = wait_records(log, before + 1)[-1]
    assert (record.status, record.http_status, record.error_kind) == \
        ("error", 429, "rate_limited")
    assert record.cost is None and record.total_tokens == 0
    assert wait_sample(app, "qwen_meter_gateway_upstream_errors_total", 1, model="qwen-plus",
                       key="-", kind="rate_limited") >= 1


def test_store_outage_is_503_not_a_client_error(fake, tmp_path):
    """A budget whose Redis is gone: 503 + Retry-After (fail closed), nothing sent upstream."""
    pytest.importorskip("redis")
    from gateway_server import free_port

    config = parse_config({"store": f"redis://127.0.0.1:{free_port()}/0",
                           "upstreams": {"default": {"url": fake.url}},
                           "budgets": [{"name": "all", "limit": "5 CNY", "per": "day"}]})
    app = create_app(config, log_path=str(tmp_path / "usage.jsonl"))
    sent = len(fake.requests)
    with running_gateway(app) as url:
        answer = httpx.post(f"{url}/compatible-mode/v1/chat/completions", timeout=20,
                            json={"model": "qwen-plus", "messages": MESSAGES})
    assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
    assert len(fake.requests) == sent


def test_metrics_model_label_is_bounded(open_gateway):
    """A caller may send any model name: names outside the catalogue share ``other``."""
    url, _, app = open_gateway
    for name in ("qwen-plus-2031-01-01", "qwen-plus-2031-01-02"):
        answer = httpx.post(f"{url}/compatible-mode/v1/chat/completions", timeout=10,
                            json={"model": name, "messages": MESSAGES})
        assert answer.status_code == 200
    assert wait_sample(app, "qwen_meter_gateway_calls_total", 2, endpoint="chat", key="-",
                       model="other", status="ok") >= 2
    text = httpx.get(f"{url}/metrics").text
    assert "qwen-plus-2031" not in text


# --- records agree with what the client saw (issue 26) ----------------------------------------

@pytest.mark.parametrize("path", ["/compatible-mode/v1/chat/completions",
                                  "/api/v1/services/aigc/text-generation/generation"])
def test_a_200_that_is_not_json_is_recorded_unknown_and_charged(fake, open_gateway, path):
    url, log, _ = open_gateway
    before = len(records(log))
    billed = len(fake.billed)
    fake.push({"non_json": "<html><body>502 from a proxy</body></html>"})
    body = {"model": "qwen-plus", "messages": MESSAGES, "max_tokens": 100}
    if path.startswith("/api/"):
        body = {"model": "qwen-plus", "input": {"messages": MESSAGES},
                "parameters": {"max_tokens": 100}}
    answer = httpx.post(f"{url}{path}", json=body, timeout=10)
    assert answer.status_code == 200 and answer.text.startswith("<html>")
    assert len(fake.billed) == billed + 1  # the server may well have billed it
    record = wait_records(log, before + 1)[-1]
    assert record.status == "unknown" and record.usage_estimated
    assert "not a JSON answer" in record.error and "text/html" in record.error
    # charged at the pre-call estimate: the prompt and the output the request allowed
    assert record.prompt_tokens == record.estimated_prompt_tokens > 0
    assert record.completion_tokens == 100
    assert record.cost == record.estimated_cost_high


def test_a_dropped_native_stream_is_recorded_dropped(fake, open_gateway):
    url, log, _ = open_gateway
    before = len(records(log))
    fake.push({"drop_after": 2})
    seen = []
    with pytest.raises(httpx.HTTPError), httpx.stream(
            "POST", f"{url}/api/v1/services/aigc/text-generation/generation", timeout=10,
            headers={"X-DashScope-SSE": "enable"},
            json={"model": "qwen-plus", "input": {"messages": MESSAGES},
                  "parameters": {"incremental_output": True}}) as response:
        for line in response.iter_lines():
            seen.append(line)
    assert any(line.startswith("data:") for line in seen)
    assert not any('"finish_reason":"stop"' in line.replace(" ", "") for line in seen)
    record = wait_records(log, before + 1)[-1]
    assert record.status == "dropped", record
    # the usage DashScope reported in the events that arrived: exact up to the drop
    assert record.usage_estimated is False and record.completion_tokens > 0
