"""Pre-flight checks and fitting a conversation into the context."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import qwen_meter as qm
from qwen_meter import check, fit_messages

SMALL = "qwen-max-2024-04-28"  # 8,000 context, 6,000 input, 2,000 output


def test_fits():
    result = check([{"role": "user", "content": "hi"}], "qwen-plus", max_tokens=100)
    assert result.prompt.tokens == 9 and result.max_input == 997_952 and not result.thinking


def test_prompt_over_input_limit_reports_numbers():
    with pytest.raises(qm.ContextLimitExceeded) as info:
        check([{"role": "user", "content": "字" * 7000}], SMALL)
    err = info.value
    assert err.prompt_tokens > 6000 and err.max_input == 6000 and err.context_window == 8000
    assert str(err.prompt_tokens) in str(err)


def test_output_over_limit():
    with pytest.raises(qm.OutputLimitExceeded) as info:
        check({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 40_000},
              "qwen-plus")
    assert info.value.max_output == 32_768 and info.value.requested_output == 40_000


def test_prompt_plus_output_over_context():
    long = [{"role": "user", "content": "hello " * 120_000}]  # 120,009 tokens
    check(long, "qwen-plus", region="intl", max_tokens=10_000)
    with pytest.raises(qm.ContextLimitExceeded, match="context window of 131072") as info:
        check(long, "qwen-plus", region="intl", max_tokens=16_000)
    assert info.value.prompt_tokens == 120_009 and info.value.requested_output == 16_000


def test_thinking_mode_has_its_own_limits():
    long = [{"role": "user", "content": "hello " * 100_000}]  # 100,009 tokens
    check(long, "qwen-turbo", enable_thinking=False)
    with pytest.raises(qm.ContextLimitExceeded) as info:
        check(long, "qwen-turbo", enable_thinking=True)
    assert info.value.max_input == 98_304 and info.value.thinking


def conversation(turns: int) -> list[dict]:
    messages = [{"role": "system", "content": "You are a weather bot."}]
    for i in range(turns):
        messages.append({"role": "user", "content": f"第{i}个问题：" + "天气怎么样？" * 40})
        messages.append({"role": "assistant", "content": "", "tool_calls": [
            {"id": f"c{i}", "type": "function",
             "function": {"name": "weather", "arguments": '{"city": "北京"}'}}]})
        messages.append({"role": "tool", "content": "晴" * 150})
        messages.append({"role": "tool", "content": "风" * 150})
        messages.append({"role": "assistant", "content": "今天晴。" * 30})
    return messages


def test_fit_keeps_system_and_tool_groups():
    messages = conversation(30)
    kept = fit_messages(messages, SMALL, max_tokens=1000)
    assert kept[0] is messages[0]
    assert 1 < len(kept) < len(messages)
    assert kept[1:] == messages[len(messages) - len(kept) + 1:]
    assert kept[1]["role"] != "tool"
    check(kept, SMALL, max_tokens=1000)
    # One more message from the history would not fit (or would split a tool group).
    start = len(messages) - len(kept) + 1
    longer = [messages[0], *messages[start - 1:]]
    if longer[1]["role"] not in ("tool",):
        with pytest.raises(qm.ContextLimitExceeded):
            check(longer, SMALL, max_tokens=1000)


@given(st.integers(1, 40), st.integers(100, 2000))
def test_fit_never_splits_a_tool_call_from_its_results(turns, max_tokens):
    messages = conversation(turns)
    try:
        kept = fit_messages(messages, SMALL, max_tokens=max_tokens)
    except qm.ContextLimitExceeded:
        return
    body = kept[1:]
    assert not body or body[0]["role"] != "tool"
    check(kept, SMALL, max_tokens=max_tokens)


def test_fit_everything_when_it_fits():
    messages = conversation(2)
    assert fit_messages(messages, "qwen-plus") == messages


def test_fit_raises_when_even_the_last_turn_is_too_long():
    with pytest.raises(qm.ContextLimitExceeded):
        fit_messages([{"role": "user", "content": "字" * 9000}], SMALL)
