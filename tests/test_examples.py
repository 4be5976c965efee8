"""Every script in examples/ runs as a user would run it, against the local DashScope stand-in."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import qwen_meter as qm
from qwen_meter.testing.dashscope import FakeDashScope

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def server():
    fake = FakeDashScope()
    yield fake
    fake.close()


def run(script: str, *args: str,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})


def test_count_and_check_runs_offline() -> None:
    done = run("count_and_check.py")
    assert done.returncode == 0, done.stderr
    assert "prompt: 220 tokens (exact" in done.stdout
    assert "fits: 220 of" in done.stdout
    assert "cost: ¥" in done.stdout


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
    assert "billed:" in done.stdout and "spent today:" in done.stdout
    # One call: its journal intent and its outcome, read back as one record.
    assert log.read_text(encoding="utf-8").count("\n") == 2
    assert len(qm.read_usage(log)) == 1

    pytest.importorskip("pandas")
    report = run("report_from_log.py", env=env)  # no argument: the meter's default log
    assert report.returncode == 0, report.stderr
    assert "qwen-plus" in report.stdout


def test_gateway_with_curl(server: FakeDashScope, tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    import shutil
    import socket

    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "gateway.jsonl"
    cli = f"{sys.executable} -m qwen_meter.cli"
    done = subprocess.run(["bash", str(EXAMPLES / "gateway_curl.sh")], capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "UPSTREAM": server.url, "PORT": str(port),
                               "QWEN_METER_LOG": str(log), "QWEN_METER": cli,
                               "DASHSCOPE_API_KEY": "sk-test"})
    assert done.returncode == 0, done.stderr
    assert '"choices"' in done.stdout
    assert log.is_file() and len(qm.read_usage(log)) == 1
