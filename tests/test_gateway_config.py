"""Gateway configuration, key management, the command line, and the stream readers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("uvicorn")

from gateway_server import ROOT, gateway_process

from qwen_meter.base.errors import GatewayConfigError
from qwen_meter.cli.main import main
from qwen_meter.gateway.config import load_config, parse_config
from qwen_meter.gateway.keys import KeyTable, hash_key
from qwen_meter.gateway.routes import ROUTES
from qwen_meter.gateway.streams import CompatibleStream, NativeStream
from qwen_meter.meter.log import read_jsonl
from qwen_meter.testing.dashscope import REPLY, FakeDashScope

HASH = "sha256:" + "0" * 64


@pytest.mark.parametrize(("data", "field", "words"), [
    ({"port": "80"}, "port", "whole number"),
    ({"store": "mongodb://x"}, "store", "redis://"),
    ({"upstreams": {"default": {"url": "ftp://x"}}}, "upstreams.default.url", "http"),
    ({"upstreams": {"other": {}}}, "upstreams", "default"),
    ({"keys": [{"name": "a"}]}, "keys[0].hash", "required"),
    ({"keys": [{"name": "a", "hash": "md5:x"}]}, "keys[0].hash", "sha256"),
    ({"upstreams": {"default": {"api_key_env": "K"}},
      "keys": [{"name": "a", "hash": HASH, "rpm": 0}]}, "keys[0].rpm", ">= 1"),
    ({"upstreams": {"default": {"api_key_env": "K"}},
      "keys": [{"name": "a", "hash": HASH, "budgets": [{"limit": "5"}]}]},
     "keys[0].budgets[0].limit", "currency"),
    ({"upstreams": {"default": {"api_key_env": "K"}},
      "keys": [{"name": "a", "hash": HASH, "upstream": "intl"}]}, "keys[0].upstream",
     "no upstream"),
    ({"keys": [{"name": "a", "hash": HASH}]}, "upstreams.default", "api_key_env"),
    ({"budgets": [{"limit": "5 CNY", "per": "year"}]}, "budgets[0].per", "month"),
    ({"listen": 1}, "listen", "unknown field"),
])
def test_config_errors_name_file_and_field(data, field, words):
    with pytest.raises(GatewayConfigError) as caught:
        parse_config(data, "gw.yaml")
    assert caught.value.file == "gw.yaml" and caught.value.field == field
    assert str(caught.value).startswith(f"gw.yaml: {field}: ") and words in str(caught.value)


def test_yaml_syntax_error_names_line(tmp_path):
    path = tmp_path / "gw.yaml"
    path.write_text("store: memory://\nkeys: [\n", encoding="utf-8")
    with pytest.raises(GatewayConfigError, match=r"gw.yaml: not valid YAML at line 3"):
        load_config(path)


def test_missing_real_key_fails_at_start(tmp_path, monkeypatch):
    from qwen_meter.gateway import create_app

    monkeypatch.delenv("QM_ABSENT_KEY", raising=False)
    config = parse_config({"upstreams": {"default": {"api_key_env": "QM_ABSENT_KEY"}},
                           "keys": [{"name": "a", "hash": HASH}]}, "gw.yaml")
    with pytest.raises(GatewayConfigError, match="QM_ABSENT_KEY is not set"):
        create_app(config, log_path=str(tmp_path / "u.jsonl"))


def test_keys_add_list_revoke(tmp_path, capsys):
    path = tmp_path / "gw.yaml"
    assert main(["serve", "keys", "add", "search", "--config", str(path), "--user", "li",
                 "--tag", "team=search", "--rpm", "60", "--model", "qwen-plus",
                 "--budget", "20 CNY/day", "--json"]) == 0
    added = json.loads(capsys.readouterr().out)
    key = added["key"]
    assert key.startswith("sk-qm-") and len(key) > 30
    text = path.read_text(encoding="utf-8")
    assert key not in text and hash_key(key) in text  # only the hash is stored
    config = load_config(path)
    assert KeyTable(config.keys).lookup(key).name == "search"
    assert config.keys[0].budgets[0].limit == "20 CNY" and config.keys[0].budgets[0].per == "day"
    assert main(["serve", "keys", "list", "--config", str(path)]) == 0
    listing = capsys.readouterr().out
    assert "search" in listing and key not in listing and "rpm 60" in listing
    assert main(["serve", "keys", "revoke", "search", "--config", str(path)]) == 0
    assert KeyTable(load_config(path).keys).lookup(key) is None
    assert main(["serve", "keys", "revoke", "nobody", "--config", str(path)]) == 2
    assert "no key named 'nobody'" in capsys.readouterr().err
    assert main(["serve", "keys", "add", "search", "--config", str(path)]) == 2
    assert "duplicate name" in capsys.readouterr().err


def test_serve_with_a_bad_config_exits_naming_it(tmp_path):
    path = tmp_path / "gw.yaml"
    path.write_text("port: eighty\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "qwen_meter.cli", "serve", "--config",
                           str(path)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2
    assert f"{path}: port: must be a whole number" in done.stderr


def test_readme_commands_default_config_and_curl(tmp_path):
    """`qwen-meter serve --upstream URL` then curl, as README shows them."""
    fake = FakeDashScope()
    log = tmp_path / "usage.jsonl"
    try:
        with gateway_process("--upstream", fake.url, "--log", str(log)) as (url, _):
            done = subprocess.run(
                ["curl", "-s", f"{url}/compatible-mode/v1/chat/completions", "-H",
                 "Authorization: Bearer sk-own", "-H", "Content-Type: application/json",
                 "-d", '{"model": "qwen-plus", "messages": [{"role": "user", '
                       '"content": "你好"}]}'], capture_output=True, text=True, timeout=30)
            assert json.loads(done.stdout)["choices"][0]["message"]["content"] == REPLY
    finally:
        fake.close()
    [record] = read_jsonl(log)
    assert record.status == "ok" and record.metadata["gateway"].endswith(tuple("0123456789"))


# --- stream readers: pass-through whatever the chunking ------------------------------------

def _compatible_stream(with_usage: bool) -> tuple[bytes, bytes]:
    """(the upstream's bytes, what the client must see when it did not ask for usage)."""
    def event(data: dict) -> bytes:
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()

    body = b"".join(event({"id": "c1", "model": "qwen-plus",
                           "choices": [{"index": 0, "delta": {"content": piece}}]})
                    for piece in ("我是", "通义", "千问"))
    usage = event({"id": "c1", "choices": [], "usage": {"prompt_tokens": 5,
                                                        "completion_tokens": 3}})
    done = b"data: [DONE]\n\n"
    return body + (usage if with_usage else b"") + done, body + done


@given(st.lists(st.integers(min_value=1, max_value=40), max_size=30))
def test_compatible_reader_hides_only_the_usage_chunk(cuts):
    upstream, expected = _compatible_stream(with_usage=True)
    reader = CompatibleStream(hide_usage_chunk=True)
    out, at = [], 0
    for cut in [*cuts, len(upstream)]:
        out.append(reader.feed(upstream[at:at + cut]))
        at += cut
    out.append(reader.flush())
    assert b"".join(out) == expected
    assert reader.usage == {"prompt_tokens": 5, "completion_tokens": 3}
    assert reader.message()["content"] == "我是通义千问"


@given(st.lists(st.integers(min_value=1, max_value=60), max_size=30), st.booleans())
def test_native_reader_passes_every_byte_at_once(cuts, incremental):
    texts = ["我是", "通义", "千问"]
    events = []
    so_far = ""
    for n, text in enumerate(texts):
        so_far += text
        data = {"output": {"text": text if incremental else so_far,
                           "finish_reason": "stop" if n == 2 else "null"},
                "usage": {"input_tokens": 4, "output_tokens": n + 1}, "request_id": "r"}
        events.append(f"id:{n}\nevent:result\r\n:HTTP_STATUS/200\ndata:"
                      f"{json.dumps(data, ensure_ascii=False)}\n\n".encode())
    upstream = b"".join(events)
    reader = NativeStream(incremental)
    at = 0
    for cut in [*cuts, len(upstream)]:
        piece = upstream[at:at + cut]
        assert reader.feed(piece) == piece  # nothing held back
        at += cut
    reader.flush()
    assert reader.usage["output_tokens"] == 3 and reader.content == "我是通义千问"
    assert ROUTES["/api/v1/services/aigc/text-generation/generation"].ended(reader, b"")


@pytest.mark.parametrize("raw", ["port: 8080\nhost: caf\xe9\n".encode("latin-1"),
                                 "port: 1\n".encode("utf-16"),
                                 b"a: &a [x]\n" + b"".join(b"b%d: &b%d [*a, *a]\n" % (i, i)
                                                          for i in range(300))])
def test_unreadable_or_hostile_config_names_the_file(tmp_path, raw):
    """Read as catalogue overrides are: not UTF-8, UTF-16 and alias bombs are refused."""
    path = tmp_path / "gw.yaml"
    path.write_bytes(raw)
    with pytest.raises(GatewayConfigError, match=r"gw\.yaml"):
        load_config(path)
