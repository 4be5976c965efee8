"""Bad input gets a typed error that says what and where."""

from __future__ import annotations

import pytest

import qwen_meter as qm


@pytest.mark.parametrize(("messages", "match"), [
    ("hello", "must be a list"),
    ({"role": "user", "content": "x"}, "must be a list"),
    ([], "no messages"),
    ([42], r"messages\[0\]: a message must be an object"),
    ([{"role": "robot", "content": "x"}], r"messages\[0\]: unknown role 'robot'"),
    ([{"content": "x"}], "unknown role None"),
    ([{"role": "user"}], r"messages\[0\]: content is required"),
    ([{"role": "user", "content": 5}], "content must be a string or a list"),
    ([{"role": "user", "content": [{"type": "file", "file": "x"}]}],
     r"messages\[0\]\.content\[0\]: unknown content part type 'file'"),
    ([{"role": "user", "content": "a"}, {"role": "user", "content": [{"text": 3}]}],
     r"messages\[1\]\.content\[0\]: a text part needs a string"),
    ([{"role": "user", "content": [{"foo": 1}]}], r"content\[0\]: content part has no type"),
    ([{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
     "system messages cannot carry image"),
    ([{"role": "assistant", "content": "", "tool_calls": [{"function": {}}]}],
     r"tool_calls\[0\] has no function name"),
    ([{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f",
                                                                        "arguments": 3}}]}],
     "arguments must be a JSON string or an object"),
    ([{"role": "assistant", "content": "x", "reasoning_content": 1}],
     "reasoning_content must be a string"),
])
def test_invalid_messages(messages, match):
    with pytest.raises(qm.InvalidMessages, match=match):
        qm.count_messages(messages, "qwen-plus")


def test_invalid_messages_carry_indices():
    with pytest.raises(qm.InvalidMessages) as info:
        qm.count_messages([{"role": "user", "content": "ok"},
                           {"role": "user", "content": ["x", {"type": "bogus"}]}], "qwen-plus")
    assert (info.value.index, info.value.part) == (1, 1)


def test_qwen35_strict_rules():
    with pytest.raises(qm.InvalidMessages, match="user message"):
        qm.count_messages([{"role": "system", "content": "s"}], "qwen3.5-27b")
    with pytest.raises(qm.InvalidMessages, match="system message must come first"):
        qm.count_messages([{"role": "user", "content": "u"}, {"role": "system", "content": "s"}],
                          "qwen3.5-27b")
    # DashScope's own profile renders a late system message instead of rejecting it.
    assert qm.count_messages([{"role": "user", "content": "u"},
                              {"role": "system", "content": "s"}], "qwen3.5-plus").tokens > 0


def test_bad_tools():
    with pytest.raises(qm.InvalidMessages, match="tools must be a list"):
        qm.count_messages([{"role": "user", "content": "x"}], "qwen-plus", tools="f")
    with pytest.raises(qm.InvalidMessages, match=r"tools\[0\] must be an object"):
        qm.count_messages([{"role": "user", "content": "x"}], "qwen-plus", tools=[1])


def test_errors_share_one_base():
    for exc in (qm.InvalidMessages, qm.UnknownModel, qm.MediaError, qm.CatalogueError,
                qm.TokenizerUnavailable, qm.UnknownFamily, qm.InputDecodeError):
        assert issubclass(exc, qm.QwenMeterError)
