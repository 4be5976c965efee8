"""Estimating a Batch API input file: per model, at batch prices, bad lines named."""

from __future__ import annotations

import json

import qwen_meter as qm
from qwen_meter.cli.main import main


def line(custom_id, body, url="/v1/chat/completions"):
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body},
                      ensure_ascii=False)


BODIES = [
    {"model": "qwen-plus", "messages": [{"role": "user", "content": "你好"}], "max_tokens": 100},
    {"model": "qwen-plus", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 50,
     "n": 2},
    {"model": "qwen-max", "messages": [{"role": "user", "content": "x"}], "max_tokens": 10},
]


def write_batch(tmp_path):
    lines = [line("a", BODIES[0]), line("b", BODIES[1]), "{not json", "",
             line("d", {"model": "qwen-nope", "messages": [{"role": "user", "content": "x"}]}),
             json.dumps(BODIES[2]),  # a bare Batch Chat API body
             line("f", {"model": "qwen-plus", "messages": [{"role": "robot", "content": "x"}]}),
             line("g", {"model": "text-embedding-v4", "input": "x"}, url="/v1/embeddings")]
    path = tmp_path / "batch.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_estimate_batch_sums_per_model_at_batch_price(tmp_path):
    seen = []
    result = qm.estimate_batch(write_batch(tmp_path), region="cn",
                               progress=lambda done, total: seen.append((done, total)))
    assert result.requests == 3 and result.lines == 8
    assert seen[-1] == (8, 8) and len(seen) == 8
    plus, maxed = result.models["qwen-plus"], result.models["qwen-max"]
    expected = [qm.estimate_cost(b, b["model"], region="cn", batch=True) for b in BODIES]
    assert plus.requests == 2 and maxed.requests == 1
    assert plus.prompt_tokens == expected[0].prompt_tokens + expected[1].prompt_tokens
    assert plus.max_output_tokens == 100 + 2 * 50
    assert plus.low == expected[0].low.amount + expected[1].low.amount
    assert plus.high == expected[0].high.amount + expected[1].high.amount
    assert maxed.high == expected[2].high.amount
    full_price = qm.estimate_cost(BODIES[0], "qwen-plus", region="cn")
    assert expected[0].high.amount < full_price.high.amount  # batch is cheaper
    errors = {e.line: e for e in result.errors}
    assert set(errors) == {3, 5, 7, 8}
    assert "not JSON" in errors[3].error and errors[5].custom_id == "d"
    assert "unknown model" in errors[5].error and "unknown role" in errors[7].error
    assert "only chat requests" in errors[8].error


def test_cli_estimates_a_batch_file_and_names_bad_lines(tmp_path, capsys):
    path = write_batch(tmp_path)
    assert main(["estimate", str(path), "--region", "cn"]) == 1
    captured = capsys.readouterr()
    assert "3 requests in 8 lines" in captured.out
    assert "qwen-plus [cn]: 2 requests" in captured.out
    assert "line 3: not JSON" in captured.err and "line 5 (d)" in captured.err
    assert main(["estimate", str(path), "--region", "cn", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["requests"] == 3 and [e["line"] for e in doc["errors"]] == [3, 5, 7, 8]


def test_a_clean_batch_file_exits_0(tmp_path, capsys):
    path = tmp_path / "ok.jsonl"
    path.write_text(line("a", BODIES[0]) + "\n", encoding="utf-8")
    assert main(["estimate", str(path), "--region", "cn"]) == 0
    assert "1 request in 1 line," in capsys.readouterr().out
