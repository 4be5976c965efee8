"""A dated snapshot newer than the catalogue (``qwen-plus-2026-03-01``) counts as its stable
name does now, marked an estimate with a note — in ``count_messages`` and in the meter alike."""

from __future__ import annotations

import pytest

import qwen_meter as qm
from qwen_meter.billing import index

openai = pytest.importorskip("openai")

HELLO = [{"role": "user", "content": "你好"}]


@pytest.mark.parametrize(("snapshot", "stable"), [
    ("qwen-plus-2026-03-01", "qwen-plus"), ("qwen3-max-2027-01-01", "qwen3-max"),
    ("qwen-turbo-2026-11-30", "qwen-turbo"), ("qwen-flash-2026-09-01", "qwen-flash")])
def test_newer_snapshot_counts_as_its_stable_name_now_but_inexact(snapshot, stable):
    listed = qm.count_messages(HELLO, stable)
    guess = qm.count_messages(HELLO, snapshot)
    # qwen-plus-2026-03-01 fell to the 2024 catch-all rule: Qwen2.5 template, 20 tokens not 9
    assert (guess.tokens, guess.family, guess.template) == (
        listed.tokens, listed.family, listed.template)
    assert listed.exact and not guess.exact
    assert any(stable in n and "estimate" in n for n in guess.notes)
    spec = qm.resolve(snapshot)
    assert spec.matched_rule == f"newer snapshot of {stable}" and not spec.offers
    # the counting index (no YAML) and the catalogue agree
    assert index.lookup(snapshot).template == spec.template == qm.resolve(stable).template


def test_a_full_count_is_marked_too():
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    guess = qm.count_messages(HELLO, "qwen-plus-2026-03-01", tools=tools)
    assert guess.tokens == qm.count_messages(HELLO, "qwen-plus", tools=tools).tokens
    assert not guess.exact and guess.notes


def test_older_unlisted_snapshots_keep_their_eras_rule():
    # the rules know the eras: a 2024 qwen-plus snapshot is Qwen2.5, a 2025-08+ one Qwen3
    assert qm.resolve("qwen-plus-2024-01-01").template == "dashscope-qwen2.5"
    assert qm.resolve("qwen-plus-2025-10-15").family == "qwen3"
    rule_count = qm.count_messages(HELLO, "qwen-plus-2024-01-01")
    assert not rule_count.exact and "name rule" in rule_count.notes[0]
    # listed names and their aliases and snapshots stay exact
    for name in ("qwen-plus", "qwen-plus-latest", "qwen-plus-2025-12-01"):
        assert qm.count_messages(HELLO, name).exact


def test_the_meter_records_the_same_count_and_says_why(make_meter, server):
    meter = make_meter(log=None, observers=[seen := _Seen()])
    client = meter.wrap(openai.OpenAI(api_key="sk-test0123456789abcdef",
                                      base_url=server.compatible))
    client.chat.completions.create(model="qwen-plus-2026-03-01", messages=HELLO)
    (record,) = seen.records
    counted = qm.count_messages(HELLO, "qwen-plus-2026-03-01")
    assert record.estimated_prompt_tokens == counted.tokens
    assert record.estimate_exact is False and counted.exact is False
    assert any("newer than qwen-plus" in w for w in record.warnings)


class _Seen(qm.Observer):
    def __init__(self) -> None:
        self.records: list[qm.UsageRecord] = []

    def on_record(self, record, call) -> None:
        self.records.append(record)
