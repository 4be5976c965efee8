"""The per-turn counting of plain chats gives exactly what rendering the whole prompt and
encoding it gives, for every template profile (the speed work must not move a count)."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import qwen_meter as qm
from qwen_meter.tokens.templates import profile_names

MODELS = {"qwen2.5": "qwen2.5-7b-instruct", "qwen3": "qwen3-8b", "qwen3.5": "qwen3.5-27b"}

contents = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=40),
    st.sampled_from(["", " ", "\n", "  padded  ", "\nlead", "trail\n", "한국어", "e\u0301",
                     "<think>\nr\n</think>\n\nanswer", "a</think>b", "<|im_start|>x",
                     "<|im_end|>", "1 < 2", "<tool_response>\nx\n</tool_response>",
                     "hi /no_think"]),
)


@st.composite
def plain_chats(draw):
    messages = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": draw(contents)})
    for _ in range(draw(st.integers(0, 6))):
        messages.append({"role": draw(st.sampled_from(["user", "assistant", "system"])),
                         "content": draw(contents)})
    messages.append({"role": draw(st.sampled_from(["user", "user", "assistant"])),
                     "content": draw(contents)})
    return messages


def reference(messages, model, template, thinking):
    """Render the whole prompt and encode it: the renderer's count, before any shortcut."""
    text = qm.render_messages(messages, model, template=template, enable_thinking=thinking)
    return len(qm.encode(text, model))


@pytest.mark.parametrize("template", profile_names())
@given(messages=plain_chats(), thinking=st.sampled_from([None, True, False]))
def test_fast_count_equals_rendered_count(template, messages, thinking):
    # qwen-long file references are replaced by their files on purpose (test_request_features).
    assume(not any("fileid://" in m["content"] for m in messages))
    family = qm.get_profile(template)
    model = MODELS["qwen3.5" if family.tools == "qwen3.5" else
                   "qwen2.5" if family.tools == "qwen2.5" else "qwen3"]
    try:
        expected = reference(messages, model, template, thinking)
    except qm.InvalidMessages:
        with pytest.raises(qm.InvalidMessages):
            qm.count_messages(messages, model, template=template, enable_thinking=thinking)
        return
    counted = qm.count_messages(messages, model, template=template, enable_thinking=thinking)
    assert counted.tokens == expected
    # Counting again (from the per-turn cache) changes nothing.
    again = qm.count_messages(messages, model, template=template, enable_thinking=thinking)
    assert again.tokens == expected


@given(st.text(st.characters(codec="utf-8"), max_size=60))
def test_count_equals_length_of_encode(text):
    for model in ("qwen-plus", "qwen3.5-plus"):
        assert qm.count_tokens(text, model).tokens == len(qm.encode(text, model))


def test_growing_chat_recount_matches_a_fresh_count():
    chat = [{"role": "system", "content": "You are a helpful assistant."}]
    for turn in range(40):
        chat.append({"role": "user", "content": f"question {turn} 问题"})
        counted = qm.count_messages(chat, "qwen-plus").tokens
        assert counted == reference(chat, "qwen-plus", None, None)
        chat.append({"role": "assistant", "content": f"answer {turn} 回答"})
        assert qm.count_messages(chat, "qwen-plus").tokens == reference(chat, "qwen-plus",
                                                                        None, None)


edits = st.lists(st.one_of(
    st.tuples(st.just("append"), st.sampled_from(["user", "assistant", "system"]), contents),
    st.tuples(st.just("edit"), st.integers(0, 50), contents),  # a message changed in place
    st.tuples(st.just("pop")),
    st.tuples(st.just("copy")),  # the same turns in a new list
    st.tuples(st.just("tuple")),
), min_size=1, max_size=25)


@pytest.mark.parametrize("template", ["dashscope-qwen3", "dashscope-qwen2.5", "qwen3",
                                      "qwen3.5"])
@given(ops=edits)
def test_a_conversation_changed_between_counts_is_counted_afresh(template, ops):
    """A re-count resumes from the turns counted before only while they are unchanged: a
    message edited in place, a turn removed or a new list with other turns is counted as
    the rendered prompt says."""
    model = MODELS["qwen3.5" if template == "qwen3.5" else "qwen3"]
    # Long enough to be remembered between counts (short chats are just counted again).
    chat: list = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}"}
                  for i in range(9)]
    for op in ops:
        if op[0] == "append":
            chat.append({"role": op[1], "content": op[2]})
        elif op[0] == "edit":
            chat[op[1] % len(chat)]["content"] = op[2]
        elif op[0] == "pop" and len(chat) > 1:
            chat.pop()
        elif op[0] == "copy":
            chat = [dict(m) for m in chat]
        subject = tuple(chat) if op[0] == "tuple" else chat
        if any("fileid://" in m["content"] for m in chat):
            continue
        try:
            expected = reference(list(subject), model, template, None)
        except qm.InvalidMessages:
            continue
        assert qm.count_messages(subject, model, template=template).tokens == expected
