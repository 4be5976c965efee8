"""Chat counting: published DashScope figures, profile behaviour, and exact agreement with the
official Qwen templates rendered by transformers."""

from __future__ import annotations

import pytest
from conftest import ORACLE_MODELS
from hypothesis import assume, given
from hypothesis import strategies as st

import qwen_meter as qm

HELLO = [{"role": "system", "content": "You are a helpful assistant."},
         {"role": "user", "content": "你是誰?"}]
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}


# --- published figures ------------------------------------------------------------------

def test_published_prompt_tokens_22():
    # OpenAI-compatible example: system + "你是誰?" -> usage.prompt_tokens == 22.
    for model in ("qwen-plus", "qwen-plus-2024-09-19", "qwen-max", "qwen-flash"):
        assert qm.count_messages(HELLO, model).tokens == 22


def test_published_completion_tokens_16():
    reply = "我是來自阿里雲的大規模語言模型,我叫通義千問。"
    assert qm.count_completion(reply, "qwen-plus").tokens == 16


def test_count_is_length_of_encoded_rendering():
    messages = [*HELLO, {"role": "assistant", "content": "你好！"},
                {"role": "user", "content": "再见"}]
    text = qm.render_messages(messages, "qwen-plus")
    assert qm.count_messages(messages, "qwen-plus").tokens == len(qm.encode(text, "qwen-plus"))


# --- profile switches -------------------------------------------------------------------

def test_default_system_message_of_qwen25_era_snapshots():
    user_only = HELLO[1:]
    assert qm.render_messages(user_only, "qwen-plus-2024-09-19").startswith(
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")
    assert qm.count_messages(user_only, "qwen-plus-2024-09-19").tokens == 22
    assert qm.render_messages(user_only, "qwen2.5-7b-instruct").startswith(
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud.")
    # Qwen3-era snapshots add nothing.
    assert qm.render_messages(user_only, "qwen-plus").startswith("<|im_start|>user\n")


def test_thinking_switch_of_hybrid_snapshots():
    user_only = HELLO[1:]
    off = qm.count_messages(user_only, "qwen-turbo", enable_thinking=False).tokens
    on = qm.count_messages(user_only, "qwen-turbo", enable_thinking=True).tokens
    assert off - on == 4  # <think>\n\n</think>\n\n
    assert qm.count_messages(user_only, "qwen-turbo").tokens == off  # DashScope default: off
    assert qm.count_messages(user_only, "qwen3-8b").tokens == on  # open Qwen3: thinking on
    late = qm.count_messages(user_only, "qwen-plus", enable_thinking=False).tokens
    assert late == on  # late-2025 snapshots: plain ChatML either way


def test_template_override_per_call():
    user_only = HELLO[1:]
    default = qm.count_messages(user_only, "qwen-plus").tokens
    legacy = qm.count_messages(user_only, "qwen-plus", template="dashscope-qwen2.5").tokens
    assert legacy == default + 11 == 22  # the 2024 default system turn
    with pytest.raises(qm.UnknownFamily, match="template profile"):
        qm.count_messages(user_only, "qwen-plus", template="nope")


def test_tools_block_layout():
    text = qm.render_messages([{"role": "user", "content": "天气?"}], "qwen-flash",
                              tools=[WEATHER_TOOL])
    assert text.startswith("<|im_start|>system\n# Tools\n\nYou may call one or more functions")
    assert '\n{"type": "function", "function": {"name": "get_weather"' in text
    with_system = qm.render_messages(HELLO, "qwen-flash", tools=[WEATHER_TOOL])
    assert with_system.startswith("<|im_start|>system\nYou are a helpful assistant.\n\n# Tools")


def test_tool_calls_and_folded_tool_results():
    messages = [
        {"role": "user", "content": "Weather in Beijing and Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "a", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"北京"}'}},
            {"id": "b", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "a", "content": "21°C"},
        {"role": "tool", "tool_call_id": "b", "content": "18°C"},
    ]
    text = qm.render_messages(messages, "qwen-plus", tools=[WEATHER_TOOL])
    # DashScope re-serializes the arguments string; consecutive results share one user turn.
    assert ('<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": '
            '{"city": "北京"}}\n</tool_call>\n<tool_call>') in text
    assert ("<|im_start|>user\n<tool_response>\n21°C\n</tool_response>\n<tool_response>\n"
            "18°C\n</tool_response><|im_end|>\n") in text
    assert text.count("<|im_start|>user") == 2


def test_reasoning_in_history_only_after_last_query():
    messages = [{"role": "user", "content": "q1"},
                {"role": "assistant", "content": "a1", "reasoning_content": "r1"},
                {"role": "user", "content": "q2"},
                {"role": "assistant", "content": "", "reasoning_content": "r2",
                 "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "content": "ok"}]
    text = qm.render_messages(messages, "qwen3-8b")
    assert "r1" not in text and "<think>\nr2\n</think>" in text


def test_completion_with_reasoning_and_tool_calls():
    plain = qm.count_completion("答案", "qwen3-8b").tokens
    with_reasoning = qm.count_completion({"content": "答案", "reasoning_content": "想想"},
                                         "qwen3-8b").tokens
    think_tokens = qm.count_tokens("<think>\n想想\n</think>\n\n", "qwen3-8b").tokens
    assert with_reasoning == plain + think_tokens
    call = qm.count_completion({"content": None, "tool_calls": [
        {"function": {"name": "get_weather", "arguments": '{"city": "北京"}'}}]}, "qwen-plus")
    expected = qm.count_tokens('<tool_call>\n{"name": "get_weather", "arguments": '
                               '{"city": "北京"}}\n</tool_call>', "qwen-plus")
    assert call.tokens == expected.tokens
    # Qwen3.5 prompts already open <think>; the completion does not repeat it.
    opened = qm.count_completion({"content": "a", "reasoning_content": "r"}, "qwen3.5-plus")
    assert opened.tokens == qm.count_tokens("r\n</think>\n\na", "qwen3.5-plus").tokens


def test_literal_special_tokens_in_content_count_as_one_token():
    a = qm.count_messages([{"role": "user", "content": "x<|im_start|>y"}], "qwen-plus").tokens
    b = qm.count_messages([{"role": "user", "content": ""}], "qwen-plus").tokens
    assert a == b + 3  # "x", <|im_start|>, "y"
    assert qm.encode("x<|im_start|>y", "qwen-plus")[1] == 151644


def test_list_content_text_parts_concatenate():
    parts = [{"type": "text", "text": "你是"}, {"type": "text", "text": "誰?"}]
    count = qm.count_messages([HELLO[0], {"role": "user", "content": parts}], "qwen-plus")
    assert count.tokens == 22


def test_sdk_objects_are_accepted():
    pydantic = pytest.importorskip("pydantic")

    class Msg(pydantic.BaseModel):
        role: str
        content: str

    assert qm.count_messages([Msg(**m) for m in HELLO], "qwen-plus").tokens == 22


def test_repeated_counts_of_growing_chat_agree():
    messages = list(HELLO)
    for i in range(20):
        messages.append({"role": "assistant", "content": f"回答 {i}"})
        messages.append({"role": "user", "content": f"问题 {i}"})
        text = qm.render_messages(messages, "qwen-plus")
        assert qm.count_messages(messages, "qwen-plus").tokens == len(qm.encode(text))


# --- agreement with the official templates (transformers backend) -------------------------

texts = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=30),
    st.sampled_from(["", " ", "\n", "hello", "你好", "  padded  ", "\nlead", "trail\n",
                     "<think>\nr\n</think>\n\nanswer", "a</think>b",
                     "<tool_response>\nx\n</tool_response>",
                     "<|im_start|>", "tab\tand  spaces", "한국어"]),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=6)
arguments = st.dictionaries(st.text("abcdefgh_", min_size=1, max_size=6), json_values,
                            max_size=3)
tools_lists = st.lists(st.fixed_dictionaries({
    "type": st.just("function"),
    "function": st.fixed_dictionaries({
        "name": st.text("abcdefgh_", min_size=1, max_size=8),
        "description": texts,
        "parameters": st.just({"type": "object", "properties": {"x": {"type": "string"}}})})}),
    max_size=2)


@st.composite
def conversations(draw, template: str):
    messages = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": draw(texts)})
    roles = ["user", "assistant", "tool"] + (["system"] if template != "qwen3.5" else [])
    for _ in range(draw(st.integers(1, 6))):
        role = draw(st.sampled_from(roles))
        message = {"role": role, "content": draw(texts)}
        if role == "assistant":
            if template != "qwen2.5" and draw(st.booleans()):
                message["reasoning_content"] = draw(texts)
            if draw(st.booleans()):
                message["tool_calls"] = [
                    {"type": "function", "function": {"name": draw(st.text("abc_", min_size=1,
                                                                           max_size=6)),
                                                      "arguments": draw(arguments)}}
                    for _ in range(draw(st.integers(1, 2)))]
        messages.append(message)
    if template == "qwen3.5":
        messages.append({"role": "user", "content": draw(texts)})
        assume(not (messages[-1]["content"].strip().startswith("<tool_response>")
                    and messages[-1]["content"].strip().endswith("</tool_response>")))
    return messages


def _agree(hf_folder, template, messages, tools, enable_thinking):
    model = ORACLE_MODELS[template]
    folder = hf_folder(template)
    ours = qm.count_messages(messages, model, tools=tools, enable_thinking=enable_thinking,
                             template=template)
    oracle = qm.count_messages(messages, model, tools=tools, enable_thinking=enable_thinking,
                               tokenizer=folder)
    assert oracle.backend == "transformers" and oracle.template == "tokenizer"
    backend = qm.load_backend(qm.resolve(model).family, tokenizer=folder)
    plain = [dict(m) for m in messages]
    kwargs = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
    oracle_text = backend.render_chat(plain, tools or None, **kwargs)
    ours_text = qm.render_messages(messages, model, tools=tools, template=template,
                                   enable_thinking=enable_thinking)
    assert ours_text == oracle_text
    assert ours.tokens == oracle.tokens
    assert qm.encode(ours_text, model) == backend.encode(oracle_text)


@pytest.mark.parametrize("template", ["qwen2.5", "qwen3", "qwen3.5"])
@given(data=st.data())
def test_matches_official_template(hf_folder, template, data):
    messages = data.draw(conversations(template))
    tools = data.draw(tools_lists)
    thinking = data.draw(st.sampled_from([None, True, False])) if template != "qwen2.5" else None
    _agree(hf_folder, template, messages, tools, thinking)


@pytest.mark.parametrize("template", ["qwen3", "qwen3.5"])
@pytest.mark.parametrize("thinking", [None, True, False])
def test_fixed_tool_conversation_matches_official_template(hf_folder, template, thinking):
    messages = [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "Weather in 北京?"},
        {"role": "assistant", "content": "Let me check.", "reasoning_content": "Need a tool.",
         "tool_calls": [{"type": "function", "function": {
             "name": "get_weather", "arguments": {"city": "北京", "days": [1, 2]}}}]},
        {"role": "tool", "content": '{"c": 21}'},
        {"role": "tool", "content": '{"c": 22}'},
    ]
    _agree(hf_folder, template, messages, [WEATHER_TOOL], thinking)


@given(st.text(st.characters(codec="utf-8"), max_size=200))
def test_tiktoken_and_transformers_agree_on_text(hf_folder, text):
    for template in ("qwen3", "qwen3.5"):
        model = ORACLE_MODELS[template]
        assert qm.encode(text, model, tokenizer=hf_folder(template)) == qm.encode(text, model)


@pytest.mark.parametrize("model", ["qwen-plus", "qwen-turbo", "qwen-max", "qwen3-8b",
                                   "qwen3.5-plus", "qwen2.5-7b-instruct"])
@given(data=st.data())
def test_count_equals_length_of_encoded_rendering_property(model, data):
    template = {"qwen3.5-plus": "qwen3.5", "qwen2.5-7b-instruct": "qwen2.5"}.get(model, "qwen3")
    messages = data.draw(conversations(template))
    tools = data.draw(tools_lists)
    thinking = data.draw(st.sampled_from([None, True, False]))
    text = qm.render_messages(messages, model, tools=tools, enable_thinking=thinking)
    count = qm.count_messages(messages, model, tools=tools, enable_thinking=thinking)
    assert count.tokens == len(qm.encode(text, model)) and count.exact
