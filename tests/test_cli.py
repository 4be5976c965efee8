"""The qwen-meter command."""

from __future__ import annotations

import json
import subprocess
import sys

from qwen_meter.cli.main import main


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


def test_models_table_and_filters(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "qwen-plus" in out and "qwen3.5-plus" in out and "rows" in out
    assert main(["models", "--family", "qwen3.5", "--region", "cn", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(r["family"] == "qwen3.5" and r["region"] == "cn" for r in rows)


def test_price_command(capsys):
    assert main(["price", "qwen-plus"]) == 0
    out = capsys.readouterr().out
    assert "[cn] CNY" in out and "[intl] USD" in out and "input (131,072, 262,144]" in out
    assert main(["price", "qwen-long", "--region", "intl"]) == 2
    assert "not offered" in capsys.readouterr().err


def test_estimate_both_regions(capsys):
    assert main(["estimate", EXAMPLE_PATH, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["cn"]["low"]["currency"] == "CNY" and result["intl"]["high"]["currency"] == "USD"
    assert result["cn"]["prompt_tokens"] == 220


def test_check_command(tmp_path, capsys):
    assert main(["check", EXAMPLE_PATH]) == 0
    assert "fits: 220 prompt tokens" in capsys.readouterr().out
    assert main(["check", EXAMPLE_PATH, "--model", "qwen-max-2024-04-28", "--max-tokens",
                 "6000", "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["fits"] is False and result["error"] == "OutputLimitExceeded"


EXAMPLE_PATH = str(__import__("qwen_meter.base.data", fromlist=["data_dir"]).data_dir()
                   / "examples" / "chat.json")


def test_every_command_and_option_has_help():
    import argparse

    from qwen_meter.cli.main import build_parser

    missing = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                missing.extend(f"{path} {c.dest}" for c in action._choices_actions
                               if not c.help)
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")
            elif action.help is None:
                missing.append(f"{path} {action.option_strings or action.dest}")

    walk(build_parser(), "qwen-meter")
    assert missing == []


def test_wording_and_validation_slips(tmp_path, capsys, monkeypatch):
    import io

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("你好".encode())))
    assert main(["count", "-f", "-"]) == 0
    assert "— stdin, model" in capsys.readouterr().out
    assert main(["count", "hi", "--template", "nosuch"]) == 2
    assert "--template applies to chat requests" in capsys.readouterr().err
    assert main(["models", "--family", "qwen9"]) == 2
    assert "known: qwen2.5, qwen3, qwen3.5" in capsys.readouterr().err
    assert main(["count", "hi", "--tokenizer", str(tmp_path / "missing")]) == 2
    assert "no tokenizer folder at" in capsys.readouterr().err
    request = tmp_path / "tool.json"
    request.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}],
                                   "tools": [{"type": "function", "function": {}}]}))
    assert main(["count", "-m", str(request)]) == 2
    assert "tools[0].function.name" in capsys.readouterr().err
