"""The gateway hardened (issue 24, item 5): each bug the issue reproduced, against a real
uvicorn gateway in front of the local DashScope stand-in, called with the openai SDK, httpx,
curl and raw sockets."""

from __future__ import annotations

import json
import os
import random
import re
import socket
import string
import subprocess
import threading
import time

import httpx
import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

from gateway_server import running_gateway

from qwen_meter.base.errors import GatewayConfigError
from qwen_meter.gateway import create_app
from qwen_meter.gateway.config import parse_config
from qwen_meter.gateway.keys import hash_key, new_key
from qwen_meter.meter.log import read_jsonl
from qwen_meter.testing.dashscope import FakeDashScope

REAL_KEY = "sk-REALupstreamKEY0123456789abcdef"
MESSAGES = [{"role": "user", "content": "你是谁？"}]
CHAT = "/compatible-mode/v1/chat/completions"
KEYS = {name: new_key() for name in ("plain", "workspace", "narrow")}


@pytest.fixture(scope="module")
def fake():
    server = FakeDashScope()
    yield server
    server.close()


def config(fake, **extra):
    os.environ["QM_HARDEN_REAL_KEY"] = REAL_KEY
    return parse_config({
        "upstreams": {"default": {"url": fake.url, "api_key_env": "QM_HARDEN_REAL_KEY"}},
        "keys": [{"name": "plain", "hash": hash_key(KEYS["plain"])},
                 {"name": "workspace", "hash": hash_key(KEYS["workspace"]),
                  "headers": ["X-DashScope-WorkSpace"]},
                 {"name": "narrow", "hash": hash_key(KEYS["narrow"]),
                  "models": ["qwen-plus"]}],
        **extra}, "harden.yaml")


@pytest.fixture(scope="module")
def gateway(fake, tmp_path_factory):
    log = tmp_path_factory.mktemp("harden") / "usage.jsonl"
    app = create_app(config(fake, body_timeout=1, max_body_reads_per_client=2,
                            max_body_bytes=2048, headers=["X-Team-Trace"]),
                     log_path=str(log))
    with running_gateway(app) as url:
        yield url, log, app


def auth(name: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}", **headers}


def records(log) -> list:
    return [r for r in read_jsonl(log) if r.status != "pending"] if log.exists() else []


def raw_request(url: str, head: str, body_parts: list[bytes] = (), pause: float = 0.0,
                timeout: float = 30.0) -> tuple[int, dict[str, str], bytes]:
    """Send ``head`` (the request line and headers) and ``body_parts`` over one socket,
    ``pause`` seconds between parts, going on after an answer arrives as a slow client would
    (up to 12 parts more: longer than uvicorn's keep-alive timeout); the answer as (status,
    headers, body), the headers with ``(closed)``: did the gateway close the connection?"""
    host, port = url.removeprefix("http://").split(":")
    received, closed, after = b"", False, 0
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head.encode("latin-1"))
        for part in [*body_parts, None]:
            sock.setblocking(False)
            try:
                while chunk := sock.recv(65536):
                    received += chunk
                closed = True  # b"": the gateway closed the connection
            except BlockingIOError:
                pass
            except OSError:
                closed = True
            sock.setblocking(True)
            if closed or part is None or (received and (after := after + 1) > 12):
                break
            try:
                sock.sendall(part)
            except OSError:
                closed = True
                break
            time.sleep(pause)
        if not closed:
            sock.settimeout(2 if body_parts else timeout)
            try:
                while chunk := sock.recv(65536):
                    received += chunk
                closed = True
            except OSError:
                pass
    head_bytes, _, body = received.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    headers["(closed)"] = str(closed)
    return int(lines[0].split()[1]), headers, body


def post_head(url: str, length: int, key: str = "plain", path: str = CHAT) -> str:
    return (f"POST {path} HTTP/1.1\r\nHost: {url.removeprefix('http://')}\r\n"
            f"Authorization: Bearer {KEYS[key]}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n")


# --- 1. an allowlist of client headers; account headers only where the key allows ------------

def test_only_allowlisted_headers_reach_the_upstream(fake, gateway):
    openai = pytest.importorskip("openai")
    url, _, _ = gateway
    client = openai.OpenAI(api_key=KEYS["plain"], base_url=f"{url}/compatible-mode/v1",
                           max_retries=0, default_headers={
                               "X-Internal-Trace": "secret-infra", "Cookie": "session=1",
                               "X-Team-Trace": "t-1",  # listed in the config's headers
                               "X-Forwarded-For": "10.0.0.1", "OpenAI-Beta": "assistants=v2"})
    reply = client.chat.completions.create(model="qwen-plus", messages=MESSAGES)
    assert reply.choices[0].message.content
    seen = fake.requests[-1]["headers"]
    assert "x-internal-trace" not in seen and "cookie" not in seen
    assert "x-forwarded-for" not in seen
    # what the SDK sends to describe the request does go through
    assert seen["openai-beta"] == "assistants=v2" and seen["x-team-trace"] == "t-1"
    assert seen["x-stainless-lang"] == "python" and "user-agent" in seen
    assert seen["content-type"] == "application/json"
    assert seen["authorization"] == f"Bearer {REAL_KEY}"
    native = httpx.post(f"{url}/api/v1/services/aigc/text-generation/generation",
                        headers=auth("plain", **{"X-DashScope-SSE": "disable",
                                                 "X-DashScope-DataInspection": "enable",
                                                 "X-Not-Listed": "1"}),
                        json={"model": "qwen-plus", "input": {"messages": MESSAGES}},
                        timeout=10)
    assert native.status_code == 200
    seen = fake.requests[-1]["headers"]
    assert seen["x-dashscope-datainspection"] == "enable" and "x-not-listed" not in seen


def test_workspace_header_needs_the_keys_permission(fake, gateway):
    url, _, _ = gateway
    sent = len(fake.requests)
    refused = httpx.post(f"{url}{CHAT}", timeout=10,
                         headers=auth("plain", **{"X-DashScope-WorkSpace": "ws-other-team"}),
                         json={"model": "qwen-plus", "messages": MESSAGES})
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "header_not_allowed" and "x-dashscope-workspace" in error["message"]
    assert len(fake.requests) == sent  # nothing went upstream
    allowed = httpx.post(f"{url}{CHAT}", timeout=10,
                         headers=auth("workspace", **{"X-DashScope-WorkSpace": "ws-team"}),
                         json={"model": "qwen-plus", "messages": MESSAGES})
    assert allowed.status_code == 200
    assert fake.requests[-1]["headers"]["x-dashscope-workspace"] == "ws-team"
    plugin = httpx.post(f"{url}/api/v1/services/aigc/text-generation/generation", timeout=10,
                        headers=auth("workspace", **{"X-DashScope-Plugin": '{"search":{}}'}),
                        json={"model": "qwen-plus", "input": {"messages": MESSAGES}})
    assert plugin.status_code == 403 and plugin.json()["code"] == "AccessDenied"


def test_header_lists_are_validated(fake):
    with pytest.raises(GatewayConfigError, match=r"keys\[0\]\.headers.*Authorization"):
        parse_config({"upstreams": {"default": {"url": fake.url, "api_key_env": "X"}},
                      "keys": [{"name": "a", "hash": hash_key(new_key()),
                                "headers": ["Authorization"]}]})
    with pytest.raises(GatewayConfigError, match=r"headers.*not an HTTP header name"):
        parse_config({"headers": ["X Bad"]})


# --- 2. a body deadline, a size cap, a cap on slow bodies per client ---------------------------

def test_a_slow_body_gets_408_and_nothing_goes_upstream(fake, gateway):
    url, _, _ = gateway
    body = json.dumps({"model": "qwen-plus", "messages": MESSAGES}).encode()
    sent = len(fake.requests)
    status, headers, answer = raw_request(url, post_head(url, len(body)),
                                          [bytes([b]) for b in body], pause=0.5)
    assert status == 408 and headers["content-type"] == "application/json"
    assert json.loads(answer)["error"]["code"] == "request_timeout"
    assert headers["(closed)"] == "True"  # the rest of the body holds no connection open
    assert len(fake.requests) == sent


def test_slow_bodies_per_client_are_capped(fake, gateway):
    url, _, _ = gateway
    body = json.dumps({"model": "qwen-plus", "messages": MESSAGES}).encode()
    slow = []
    for _ in range(2):  # the cap: two body reads in progress from this address
        sock = socket.create_connection(tuple(url.removeprefix("http://").split(":")))
        sock.sendall(post_head(url, len(body)).encode() + body[:5])
        slow.append(sock)
    try:
        time.sleep(0.2)  # both reads have started
        third = httpx.post(f"{url}{CHAT}", headers=auth("plain"), content=body, timeout=10)
        assert third.status_code == 429 and third.headers["retry-after"] == "1"
        assert third.json()["error"]["code"] == "too_many_body_reads"
    finally:
        for sock in slow:
            sock.close()
    deadline = time.monotonic() + 10  # once they are gone, calls go through again
    while True:
        again = httpx.post(f"{url}{CHAT}", headers=auth("plain"), content=body, timeout=10)
        if again.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert again.status_code == 200


def test_a_chunked_body_over_the_cap_is_413_json(fake, gateway):
    url, _, _ = gateway
    sent = len(fake.requests)

    def chunks():
        for _ in range(10):
            yield b"x" * 1000

    answer = httpx.post(f"{url}{CHAT}", headers=auth("plain"), content=chunks(), timeout=10)
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "request_too_large"
    assert len(fake.requests) == sent


# --- 4. JSON for every answer the gateway gives itself -----------------------------------------

def test_unparsable_requests_are_answered_in_json(gateway):
    url, _, _ = gateway
    host = url.removeprefix("http://")
    for head in (f"POST {CHAT} HTTP/1.1\r\nHost: {host}\r\nBad Header Line\r\n\r\n",
                 f"POST {CHAT} HTTP/1.1\r\nHost: {host}\r\nContent-Length: abc\r\n\r\n",
                 "NOT-HTTP\r\n\r\n"):
        status, headers, body = raw_request(url, head)
        assert status == 400 and headers["content-type"] == "application/json", head
        assert headers["(closed)"] == "True"
        assert json.loads(body)["error"]["type"] == "invalid_request_error"


def test_routes_methods_and_crashes_answer_json(gateway, monkeypatch):
    url, _, app = gateway
    missing = httpx.get(f"{url}/v2/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = httpx.get(f"{url}{CHAT}", headers=auth("plain"))
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert wrong.json()["error"]["code"] == "method_not_allowed"
    native = httpx.put(f"{url}/api/v1/services/aigc/text-generation/generation")
    assert native.status_code == 405 and native.json()["code"] == "MethodNotAllowed"
    health = httpx.post(f"{url}/healthz")
    assert health.status_code == 405 and health.headers["allow"] == "GET"

    def broken(headers):
        raise RuntimeError("a bug")

    monkeypatch.setattr(app, "_tenant", broken)
    crash = httpx.post(f"{url}{CHAT}", json={"model": "qwen-plus", "messages": MESSAGES})
    assert crash.status_code == 500 and crash.json()["error"]["code"] == "internal_error"


@pytest.mark.parametrize("body", [{"messages": MESSAGES}, {"model": None, "messages": []},
                                  {"model": "", "messages": []}, {"model": 7}])
def test_a_body_without_a_model_is_400(fake, gateway, body):
    url, _, _ = gateway
    sent = len(fake.requests)
    for key in ("plain", "narrow"):  # narrow: restricted to some models (was 403 'None')
        answer = httpx.post(f"{url}{CHAT}", headers=auth(key), json=body, timeout=10)
        assert answer.status_code == 400, answer.text
        assert "'model'" in answer.json()["error"]["message"]
    assert len(fake.requests) == sent


# --- 5. metric labels bounded -----------------------------------------------------------------

def test_500_client_chosen_model_names_stay_a_few_series(gateway):
    url, _, _ = gateway
    rng = random.Random(24)

    def name():
        kind = rng.randrange(3)
        word = "".join(rng.choices(string.ascii_lowercase, k=8))
        if kind == 0:
            return f"{word}-model"  # no such model
        if kind == 1:  # a listed model behind a prefix of the client's choosing
            return f"{word}/qwen-plus"
        return "".join(c.upper() if rng.random() < 0.5 else c for c in "qwen-plus")

    names = [name() for _ in range(500)]
    with httpx.Client(base_url=url, headers=auth("plain"), timeout=20) as client:
        for model in names:
            client.post(CHAT, json={"model": model, "messages": MESSAGES})
    text = httpx.get(f"{url}/metrics").text
    labels = set(re.findall(r'qwen_meter_gateway_calls_total\{[^}]*model="([^"]*)"', text))
    assert labels <= {"qwen-plus", "other"}, sorted(labels)[:20]


# --- 6. GET /models passed through, free ------------------------------------------------------

def test_models_list_is_passed_through_and_free(fake, gateway):
    openai = pytest.importorskip("openai")
    url, log, app = gateway
    before = len(records(log))
    billed = len(fake.billed)
    client = openai.OpenAI(api_key=KEYS["plain"], base_url=f"{url}/compatible-mode/v1",
                           max_retries=0)
    listed = [m.id for m in client.models.list()]
    assert "qwen-plus" in listed
    assert fake.requests[-1]["method"] == "GET"
    assert fake.requests[-1]["headers"]["authorization"] == f"Bearer {REAL_KEY}"
    assert client.models.retrieve("qwen-plus").id == "qwen-plus"
    curl = subprocess.run(["curl", "-s", "-S", "--max-time", "20", "-H",
                           f"Authorization: Bearer {KEYS['plain']}",
                           f"{url}/compatible-mode/v1/models"], capture_output=True, text=True,
                          timeout=30)
    assert "qwen-plus" in curl.stdout
    unauthorised = httpx.get(f"{url}/compatible-mode/v1/models")
    assert unauthorised.status_code == 401
    assert len(fake.billed) == billed and len(records(log)) == before  # free: no usage record
    assert app.metrics.sample("qwen_meter_gateway_free_calls_total", endpoint="models",
                              key="plain", status="ok") == 3


# --- 3. the store's timeout and policy ---------------------------------------------------------

class SlowProxy:
    """A TCP proxy to Redis that holds each reply ``delay`` seconds (Redis under load)."""

    def __init__(self, target: tuple[str, int], delay: float) -> None:
        self.target, self.delay = target, delay
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self.pipe, args=(client, upstream, 0.0),
                             daemon=True).start()
            threading.Thread(target=self.pipe, args=(upstream, client, self.delay),
                             daemon=True).start()

    @staticmethod
    def pipe(source: socket.socket, sink: socket.socket, delay: float) -> None:
        try:
            while data := source.recv(65536):
                time.sleep(delay)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                s.close()

    def close(self) -> None:
        self.listener.close()


def store_gateway(fake, tmp_path, store: str, **extra):
    cfg = parse_config({"store": store, "upstreams": {"default": {"url": fake.url}},
                        "budgets": [{"name": "all", "limit": "5 CNY", "per": "day"}], **extra})
    return create_app(cfg, log_path=str(tmp_path / "usage.jsonl"))


def test_store_timeout_comes_from_the_config(fake, tmp_path, redis_url):
    """Redis answering in 1.2 s (healthy, but loaded): the default 1 s timeout answers 503;
    ``store_timeout: 5`` waits for it and the call goes through."""
    host, port = re.match(r"redis://([^:/]+):(\d+)", redis_url).groups()
    proxy = SlowProxy((host, int(port)), 1.2)
    db = redis_url.rsplit("/", 1)[-1]
    store = f"redis://127.0.0.1:{proxy.port}/{db}"
    try:
        app = store_gateway(fake, tmp_path, store, store_timeout=5)
        with running_gateway(app) as url:
            answer = httpx.post(f"{url}{CHAT}", timeout=60,
                                json={"model": "qwen-plus", "messages": MESSAGES})
        assert answer.status_code == 200, answer.text
        app = store_gateway(fake, tmp_path, store)
        with running_gateway(app) as url:
            answer = httpx.post(f"{url}{CHAT}", timeout=60,
                                json={"model": "qwen-plus", "messages": MESSAGES})
        assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
        assert answer.json()["error"]["code"] == "service_unavailable"
    finally:
        proxy.close()


@pytest.mark.filterwarnings("ignore::qwen_meter.StoreUnavailableWarning")
def test_store_policy_fail_open_lets_calls_through(fake, tmp_path):
    pytest.importorskip("redis")
    hole = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    store = f"redis://127.0.0.1:{hole.getsockname()[1]}/0"
    try:
        sent = len(fake.requests)
        closed = store_gateway(fake, tmp_path, store, store_timeout=0.2)
        with running_gateway(closed) as url:
            answer = httpx.post(f"{url}{CHAT}", timeout=30,
                                json={"model": "qwen-plus", "messages": MESSAGES})
        assert answer.status_code == 503 and len(fake.requests) == sent
        opened = store_gateway(fake, tmp_path, store, store_timeout=0.2,
                               store_policy="fail_open")
        with running_gateway(opened) as url:
            answer = httpx.post(f"{url}{CHAT}", timeout=30,
                                json={"model": "qwen-plus", "messages": MESSAGES})
        assert answer.status_code == 200 and len(fake.requests) == sent + 1
        # the record says the budget could not be checked
        assert [r.degraded for r in records(tmp_path / "usage.jsonl")][-1] is True
    finally:
        hole.close()
    with pytest.raises(GatewayConfigError, match="store_policy"):
        parse_config({"store_policy": "maybe"})
    with pytest.raises(GatewayConfigError, match="store_timeout"):
        parse_config({"store_timeout": 0})
