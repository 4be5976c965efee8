"""The qwen-meter command."""

from __future__ import annotations

import json
import subprocess
import sys

from qwen_meter.cli import main


def test_count_example(capsys):
    assert main(["count", "--example"]) == 0
    out = capsys.readouterr().out
    assert "tokens (exact; tiktoken, family qwen3, template dashscope-qwen3)" in out


def test_count_text_json(capsys):
    assert main(["count", "你好", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["tokens"] == 1 and result["exact"] is True and result["family"] == "qwen3"


def test_count_file_and_messages(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("Observation", encoding="utf-8")
    assert main(["count", "-f", str(text), "--model", "qwen-turbo", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tokens"] == 2
    request = tmp_path / "r.json"
    request.write_text(json.dumps([{"role": "system", "content": "You are a helpful assistant."},
                                   {"role": "user", "content": "你是誰?"}]), encoding="utf-8")
    assert main(["count", "-m", str(request), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tokens"] == 22


def test_errors_exit_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe")
    assert main(["count", "-f", str(bad)]) == 2
    assert "not valid UTF-8" in capsys.readouterr().err
    assert main(["count", "x", "--model", "qwen-plsu"]) == 2
    assert "did you mean" in capsys.readouterr().err
    request = tmp_path / "r.json"
    request.write_text('[{"role": "bot", "content": "x"}]')
    assert main(["count", "-m", str(request)]) == 2
    assert "messages[0]: unknown role" in capsys.readouterr().err


def test_stdin_through_console_script():
    run = subprocess.run([sys.executable, "-m", "qwen_meter.cli", "count", "--json"],
                         input=b"hello world", capture_output=True, check=True)
    assert json.loads(run.stdout)["tokens"] == 2
