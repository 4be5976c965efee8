"""Every script in examples/ runs as a user would run it — against the local DashScope stand-in,
with a key or ``--offline`` without one — and what it prints and records is checked against
what the stand-in billed. Without a key and without ``--offline`` nothing is sent."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

import qwen_meter as qm
from qwen_meter.testing import FakeDashScope

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ROOT = EXAMPLES.parent
#: What the scripts see of the user's environment: no key, no endpoint, no log of theirs.
CLEAN = {k: v for k, v in os.environ.items()
         if k not in ("DASHSCOPE_API_KEY", "DASHSCOPE_BASE_URL", "QWEN_METER_LOG",
                      "QWEN_METER_EXAMPLE_OFFLINE", "UPSTREAM")}
CLEAN["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))


@pytest.fixture
def server():
    with FakeDashScope() as fake:
        yield fake


def run(script: str, *args: str, env: dict[str, str] | None = None,
        home: Path | None = None) -> subprocess.CompletedProcess[str]:
    extra = {"HOME": str(home), "XDG_DATA_HOME": str(home / "data")} if home else {}
    return subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True,
                          text=True, timeout=120, env={**CLEAN, **extra, **(env or {})})


def _billed_line(stdout: str) -> tuple[int, int]:
    found = re.search(r"billed: (\d+) prompt \+ (\d+) completion tokens", stdout)
    assert found, stdout
    return int(found[1]), int(found[2])


def test_count_and_check_runs_offline() -> None:
    done = run("count_and_check.py")
    assert done.returncode == 0, done.stderr
    request = json.loads((ROOT / "data" / "examples" / "chat.json").read_text(encoding="utf-8"))
    counted = qm.count_messages(request["messages"], "qwen-plus", tools=request.get("tools"))
    estimate = qm.estimate_cost(request, "qwen-plus", max_tokens=1024)
    assert f"prompt: {counted.tokens} tokens (exact" in done.stdout
    assert f"fits: {counted.tokens} of" in done.stdout
    assert f"cost: {estimate.low} .. {estimate.high}" in done.stdout


def test_count_and_check_reports_a_request_that_does_not_fit(tmp_path: Path) -> None:
    huge = tmp_path / "huge.json"
    huge.write_text('{"model": "qwen-max", "messages": [{"role": "user", "content": "'
                    + "你好" * 40_000 + '"}]}', encoding="utf-8")
    done = run("count_and_check.py", str(huge))
    assert done.returncode == 1
    assert "does not fit" in done.stdout


def test_metered_client_then_report(server: FakeDashScope, tmp_path: Path) -> None:
    pytest.importorskip("openai")
    log = tmp_path / "usage.jsonl"
    env = {"DASHSCOPE_BASE_URL": server.compatible, "DASHSCOPE_API_KEY": "sk-test",
           "QWEN_METER_LOG": str(log)}
    done = run("metered_client.py", env=env)
    assert done.returncode == 0, done.stderr
    [record] = qm.read_usage(log)
    assert [b["model"] for b in server.billed] == ["qwen-plus"] and record.status == "ok"
    assert _billed_line(done.stdout) == (record.prompt_tokens, record.completion_tokens)
    assert f"spent today: {record.cost} CNY of 5" in done.stdout

    pytest.importorskip("pandas")
    report = run("report_from_log.py", env=env)  # no argument: the meter's default log
    assert report.returncode == 0, report.stderr
    assert "| qwen-plus" in report.stdout and f"¥{Decimal(record.cost).normalize():f}" in \
        report.stdout


def test_metered_client_offline_needs_no_key(tmp_path: Path) -> None:
    pytest.importorskip("openai")
    log = tmp_path / "usage.jsonl"
    for how in (["--offline"], []):
        env = {"QWEN_METER_LOG": str(log)} | ({} if how else {"QWEN_METER_EXAMPLE_OFFLINE": "1"})
        done = run("metered_client.py", *how, env=env, home=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "offline: calling the DashScope stand-in on http://127.0.0.1:" in done.stdout
        record = qm.read_usage(log)[-1]
        assert record.status == "ok" and record.cost is not None
        assert _billed_line(done.stdout) == (record.prompt_tokens, record.completion_tokens)
    assert len(qm.read_usage(log)) == 2


def test_metered_client_offline_leaves_the_users_log_alone(tmp_path: Path) -> None:
    pytest.importorskip("openai")
    done = run("metered_client.py", "--offline", home=tmp_path)
    assert done.returncode == 0, done.stderr
    scratch = re.search(r"usage log (\S+)", done.stdout)
    assert scratch and not Path(scratch[1]).exists()  # a scratch log, removed afterwards
    # no usage log in the user's home (the default log's place): stand-in calls are not spend
    assert not [p for p in tmp_path.rglob("*") if p.suffix in (".jsonl", ".db")]


def test_metered_client_without_a_key_sends_nothing(server: FakeDashScope,
                                                    tmp_path: Path) -> None:
    pytest.importorskip("openai")
    log = tmp_path / "usage.jsonl"
    done = run("metered_client.py", env={"DASHSCOPE_BASE_URL": server.compatible,
                                         "QWEN_METER_LOG": str(log)}, home=tmp_path)
    assert done.returncode == 2
    assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1
    assert "DASHSCOPE_API_KEY is not set" in done.stderr and "--offline" in done.stderr
    assert server.requests == [] and not log.exists()


def test_metered_client_failure_is_one_line(server: FakeDashScope, tmp_path: Path) -> None:
    pytest.importorskip("openai")
    server.push({"status": 401, "code": "invalid_api_key", "message": "Incorrect API key"})
    log = tmp_path / "usage.jsonl"
    done = run("metered_client.py", env={"DASHSCOPE_BASE_URL": server.compatible,
                                         "DASHSCOPE_API_KEY": "sk-wrong",
                                         "QWEN_METER_LOG": str(log)})
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "the call failed" in done.stderr and "Incorrect API key" in done.stderr
    [record] = qm.read_usage(log)
    assert record.status == "error" and record.http_status == 401 and server.billed == []


def test_report_from_a_missing_log_is_one_line(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    done = run("report_from_log.py", str(tmp_path / "none.jsonl"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "none.jsonl: no such file" in done.stderr


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def gateway(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("uvicorn")
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    cli = f"{sys.executable} -m qwen_meter.cli"
    return subprocess.run(["bash", str(EXAMPLES / "gateway_curl.sh"), *args],
                          capture_output=True, text=True, timeout=120,
                          env={**CLEAN, "PORT": str(_port()), "QWEN_METER": cli,
                               "PYTHON": sys.executable, **env})


def test_gateway_with_curl(server: FakeDashScope, tmp_path: Path) -> None:
    log = tmp_path / "gateway.jsonl"
    done = gateway({"UPSTREAM": server.url, "QWEN_METER_LOG": str(log),
                    "DASHSCOPE_API_KEY": "sk-test"})
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    [record] = qm.read_usage(log)
    assert record.status == "ok" and len(server.billed) == 1
    assert (record.prompt_tokens, record.completion_tokens) == (
        answer["usage"]["prompt_tokens"], answer["usage"]["completion_tokens"])


def test_gateway_with_curl_fails_when_the_call_fails(server: FakeDashScope,
                                                     tmp_path: Path) -> None:
    server.push({"status": 401, "code": "invalid_api_key", "message": "Incorrect API key"})
    log = tmp_path / "gateway.jsonl"
    done = gateway({"UPSTREAM": server.url, "QWEN_METER_LOG": str(log),
                    "DASHSCOPE_API_KEY": "sk-wrong"})
    assert done.returncode != 0
    assert "Incorrect API key" in done.stdout  # the gateway's error body is still shown
    [record] = qm.read_usage(log)
    assert record.status == "error" and record.http_status == 401


def test_gateway_with_curl_offline_and_without_a_key(tmp_path: Path) -> None:
    log = tmp_path / "gateway.jsonl"
    done = gateway({"QWEN_METER_LOG": str(log)}, "--offline")
    assert done.returncode == 0, done.stderr
    assert "offline: upstream is the DashScope stand-in" in done.stderr
    answer = json.loads(done.stdout)
    [record] = qm.read_usage(log)
    assert record.status == "ok" and record.prompt_tokens == answer["usage"]["prompt_tokens"]
    missing = gateway({"QWEN_METER_LOG": str(tmp_path / "none.jsonl")})
    assert missing.returncode == 2 and "DASHSCOPE_API_KEY is not set" in missing.stderr
    assert not (tmp_path / "none.jsonl").exists()


def test_the_stand_in_as_a_process_with_the_openai_sdk(tmp_path: Path) -> None:
    openai = pytest.importorskip("openai")
    port = _port()
    process = subprocess.Popen([sys.executable, "-m", "qwen_meter.testing", "--port", str(port),
                                "--host", "127.0.0.1"], stdout=subprocess.PIPE, text=True,
                               env=CLEAN)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.strip() == f"DashScope stand-in on http://127.0.0.1:{port}"
        compatible = process.stdout.readline().split(": ", 1)[1].strip()
        assert compatible == f"http://127.0.0.1:{port}/compatible-mode/v1"
        meter = qm.Meter(log=str(tmp_path / "usage.jsonl"))
        client = meter.wrap(openai.OpenAI(api_key="sk-any", base_url=compatible))
        reply = client.chat.completions.create(
            model="qwen-plus", messages=[{"role": "user", "content": "你好"}])
        meter.close()
        assert reply.choices[0].message.content
        expected = qm.count_messages([{"role": "user", "content": "你好"}], "qwen-plus").tokens
        [record] = qm.read_usage(tmp_path / "usage.jsonl")
        assert reply.usage.prompt_tokens == record.prompt_tokens == expected
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0  # SIGTERM: a clean stop


def test_the_stand_in_refuses_a_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "qwen_meter.testing", "--port", str(port)],
                              capture_output=True, text=True, timeout=60, env=CLEAN)
    assert done.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in done.stderr


def test_the_testing_guide_runs(tmp_path: Path) -> None:
    pytest.importorskip("openai")
    for page in ("docs/guides/testing.md", "docs/zh/guides/testing.md"):
        code = re.search(r"```python\n(.+?)```", (ROOT / page).read_text(encoding="utf-8"),
                         re.S)
        assert code, page
        namespace: dict[str, object] = {}
        exec(compile(code[1], page, "exec"), namespace)
        folder = tmp_path / page.replace("/", "_")
        folder.mkdir()
        namespace["test_a_call_is_recorded_as_billed"](folder)  # type: ignore[operator]
