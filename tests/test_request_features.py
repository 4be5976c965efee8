"""Request features that change the bill: partial mode, n, thinking controls, web search,
qwen-long files, qwen-mt, Omni audio output, native bodies. Each is checked against a
hand-rendered prompt or a hand-computed allowance."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image

import qwen_meter as qm
from qwen_meter.cli.main import main

FIB_USER = "请补全这个斐波那契函数，勿添加其它内容"
FIB_PREFIX = "def calculate_fibonacci(n):\n    if n <= 1:\n        return n\n    else:\n"
FIB = [{"role": "user", "content": FIB_USER},
       {"role": "assistant", "content": FIB_PREFIX, "partial": True}]


def tokens(text: str, model: str) -> int:
    return qm.count_tokens(text, model).tokens


def png_url(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


# --- partial mode ----------------------------------------------------------------------------

def test_partial_prefix_is_left_open_without_a_new_turn():
    expected = (f"<|im_start|>user\n{FIB_USER}<|im_end|>\n"
                f"<|im_start|>assistant\n{FIB_PREFIX}")
    for model in ("qwen3-coder-plus", "qwen-plus", "qwen3-max"):
        assert qm.render_messages(FIB, model) == expected
    count = qm.count_messages(FIB, "qwen-plus")
    assert count.tokens == tokens(expected, "qwen-plus") == 43 and count.exact
    # Without the flag the same prefix is a closed turn followed by a generation prompt.
    closed = qm.count_messages([FIB[0], {"role": "assistant", "content": FIB_PREFIX}],
                               "qwen-plus")
    assert closed.tokens > count.tokens


def test_qwen3_coder_partial_prefix_counts_alibabas_published_figure():
    # Alibaba's partial-mode page: this request to qwen3-coder-plus bills prompt_tokens 48,
    # the open prefix (43) plus <|im_end|>\n<|im_start|>assistant\n. Counted so, inexact.
    count = qm.count_messages(FIB, "qwen3-coder-plus")
    assert count.tokens == 48 and not count.exact
    assert any("partial prefix" in note for note in count.notes)
    estimate = qm.estimate_cost({"messages": FIB, "max_tokens": 100}, "qwen3-coder-plus")
    assert estimate.prompt_tokens == 48 and not estimate.exact_prompt


def test_alibabas_partial_image_example_text_tokens():
    # The partial-mode page's image example: 24 text tokens (the open prefix, no default
    # system message); its image is a 450x450 PNG, 198 tokens by the 32-px rule (the page's
    # 258 was measured on a 28-px model, see data/models.yaml).
    messages = [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": png_url(450, 450)}},
        {"type": "text", "text": "我要发社交媒体，请帮我想一下文案。"}]},
        {"role": "assistant", "content": "今天发现了一家宝藏咖啡馆", "partial": True}]
    count = qm.count_messages(messages, "qwen3-vl-plus")
    assert (count.text_tokens, count.image_tokens, count.exact) == (24, 198, True)


def test_partial_prefix_has_no_think_block_and_keeps_its_whitespace_on_qwen35():
    messages = [{"role": "user", "content": "写一首诗"},
                {"role": "assistant", "content": "  春眠不觉晓，\n", "partial": True}]
    text = qm.render_messages(messages, "qwen3.5-plus", enable_thinking=False)
    assert text == "<|im_start|>user\n写一首诗<|im_end|>\n<|im_start|>assistant\n  春眠不觉晓，\n"


def test_partial_with_an_image_counts_text_and_image_apart():
    url = png_url(450, 450)
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                             {"type": "text", "text": "写一段商品描述"}]},
                {"role": "assistant", "content": "这款", "partial": True}]
    model = "qwen-vl-max-2024-11-19"  # a 28-px model: 450x450 is 16x16 patches
    count = qm.count_messages(messages, model)
    text = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
            "<|vision_start|><|vision_end|>写一段商品描述<|im_end|>\n<|im_start|>assistant\n这款")
    assert count.image_tokens == 258
    assert count.text_tokens == tokens(text, model) - 2  # start/end belong to the image
    assert count.tokens == count.text_tokens + 258


@pytest.mark.parametrize(("messages", "index"), [
    ([{"role": "assistant", "content": "a", "partial": True},
      {"role": "user", "content": "b"}], 0),
    ([{"role": "user", "content": "a", "partial": True}], 0),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b",
                                         "partial": "yes"}], 1),
])
def test_bad_partial_is_a_typed_error_naming_the_field(messages, index):
    with pytest.raises(qm.InvalidRequest) as info:
        qm.count_messages(messages, "qwen-plus")
    assert info.value.field == "partial" and info.value.index == index
    assert f"messages[{index}]: partial" in str(info.value)


# --- n and thinking ---------------------------------------------------------------------------

def test_n_scales_the_output_allowance_not_the_prompt():
    request = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100}
    one = qm.estimate_cost(request, "qwen-plus")
    three = qm.estimate_cost({**request, "n": 3}, "qwen-plus")
    assert one.max_output_tokens == 100 and three.max_output_tokens == 300
    assert three.prompt_tokens == one.prompt_tokens and three.low.amount == one.low.amount
    assert three.high.amount - three.low.amount == 3 * (one.high.amount - one.low.amount)
    assert qm.estimate_cost(request, "qwen-plus", n=2).max_output_tokens == 200


@pytest.mark.parametrize(("options", "field"), [
    ({"n": 0}, "n"), ({"n": 5}, "n"), ({"n": "2"}, "n"), ({"n": True}, "n"),
    ({"thinking_budget": 0}, "thinking_budget"), ({"thinking_budget": -5}, "thinking_budget"),
    ({"thinking_budget": 1.5}, "thinking_budget"), ({"thinking_budget": "100"},
                                                    "thinking_budget"),
    ({"enable_search": "yes"}, "enable_search"), ({"max_tokens": 0}, "max_tokens"),
])
def test_bad_options_are_typed_errors_naming_the_field(options, field):
    request = {"messages": [{"role": "user", "content": "hi"}], **options}
    for call in (lambda: qm.estimate_cost(request, "qwen-plus"),
                 lambda: qm.check(request, "qwen-plus")):
        with pytest.raises(qm.InvalidRequest) as info:
            call()
        assert info.value.field == field and field in str(info.value)


def test_thinking_budget_caps_the_reasoning_allowance():
    spec = qm.resolve("qwen3-max")
    limits = spec.offer("cn").limits
    request = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1000,
               "enable_thinking": True}
    full = qm.estimate_cost(request, spec, region="cn")
    budgeted = qm.estimate_cost({**request, "thinking_budget": 500}, spec, region="cn")
    if limits.max_reasoning is not None:
        assert full.max_output_tokens == 1000 + limits.max_reasoning
    assert budgeted.max_output_tokens == 1000 + 500
    huge = qm.estimate_cost({**request, "thinking_budget": 10**9}, spec, region="cn")
    assert huge.max_output_tokens == full.max_output_tokens or limits.max_reasoning is None


def test_thinking_is_on_by_default_for_qwen35_and_later():
    for model in ("qwen3.5-plus", "qwen3.6-plus", "qwen3.7-max"):
        text = qm.render_messages([{"role": "user", "content": "hi"}], model)
        assert text.endswith("<|im_start|>assistant\n<think>\n")
        off = qm.render_messages([{"role": "user", "content": "hi"}], model,
                                 enable_thinking=False)
        assert off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_preserve_thinking_keeps_earlier_reasoning_on_36_only():
    messages = [{"role": "user", "content": "q1"},
                {"role": "assistant", "content": "a1", "reasoning_content": "because"},
                {"role": "user", "content": "q2"}]
    kept = qm.render_messages(messages, "qwen3.6-plus", preserve_thinking=True)
    assert "<|im_start|>assistant\n<think>\nbecause\n</think>\n\na1<|im_end|>" in kept
    plain = qm.render_messages(messages, "qwen3.6-plus")
    assert "because" not in plain and "<|im_start|>assistant\na1<|im_end|>" in plain
    with_flag = qm.count_messages({"messages": messages, "preserve_thinking": True},
                                  "qwen3.6-plus")
    assert with_flag.tokens == tokens(kept, "qwen3.6-plus")
    assert with_flag.tokens > qm.count_messages(messages, "qwen3.6-plus").tokens
    # qwen3.5's template has no such switch: the flag changes nothing.
    assert (qm.count_messages(messages, "qwen3.5-plus", preserve_thinking=True).tokens
            == qm.count_messages(messages, "qwen3.5-plus").tokens)


def test_soft_switches_are_read_from_the_last_user_message():
    from qwen_meter.billing.request import Request

    assert Request.of({"messages": [{"role": "user", "content": "hi /no_think"}]}
                      ).soft_thinking is False
    assert Request.of({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "hi /think"}]}]}).soft_thinking is True
    assert Request.of({"messages": [{"role": "user", "content": "/think later"}]}
                      ).soft_thinking is None
    # The switch text is part of the prompt and counted as written.
    with_switch = qm.count_messages([{"role": "user", "content": "hi /no_think"}], "qwen3-8b")
    assert with_switch.tokens == tokens(
        "<|im_start|>user\nhi /no_think<|im_end|>\n<|im_start|>assistant\n", "qwen3-8b")


# --- features the server adds to the prompt -----------------------------------------------

def test_web_search_marks_the_prompt_inexact():
    request = {"messages": [{"role": "user", "content": "今天的新闻"}], "enable_search": True,
               "search_options": {"forced_search": True}}
    count = qm.count_messages(request, "qwen-plus")
    assert not count.exact and any("enable_search" in n for n in count.notes)
    assert count.tokens == qm.count_messages(request["messages"], "qwen-plus").tokens
    assert not qm.estimate_cost(request, "qwen-plus").exact_prompt
    assert qm.estimate_cost(request["messages"], "qwen-plus").exact_prompt
    assert not qm.count_messages(request["messages"], "qwen-plus", enable_search=True).exact


def test_code_interpreter_marks_the_prompt_inexact():
    # A recorded DashScope reply (cnblogs/dashscope-sdk test data, qwen3-max-preview) bills
    # 723 input tokens for this 18-token request: the tool's prompt and the runs are added.
    native = {"model": "qwen3-max", "input": {"messages": [
        {"role": "user", "content": "123的21次方是多少？"}]},
        "parameters": {"enable_thinking": True, "enable_code_interpreter": True}}
    count = qm.count_messages(native)
    assert count.tokens == 18 and not count.exact
    assert any("enable_code_interpreter" in n for n in count.notes)
    assert not qm.estimate_cost(native, "qwen3-max").exact_prompt
    plain = {**native, "parameters": {"enable_thinking": True}}
    assert qm.count_messages(plain).exact
    with pytest.raises(qm.InvalidRequest) as info:
        qm.count_messages({**native, "parameters": {"enable_code_interpreter": "yes"}})
    assert info.value.field == "enable_code_interpreter"


WEATHER = {"type": "function", "function": {
    "name": "get_current_weather", "description": "获取现在的天气",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                   "required": ["location"]}}}


@pytest.mark.parametrize(("options", "field"), [
    ({"parallel_tool_calls": True}, "parallel_tool_calls"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tool_choice": {"type": "function", "function": {"name": "get_current_weather"}}},
     "tool_choice"),
])
def test_tool_options_the_server_expands_mark_the_prompt_inexact(options, field):
    # Recorded DashScope replies bill these requests 26-83 tokens above their rendering.
    body = {"model": "qwen-plus", "messages": [{"role": "user", "content": "杭州天气"}],
            "tools": [WEATHER]}
    plain = qm.count_messages(body)
    count = qm.count_messages({**body, **options})
    assert plain.exact and not count.exact and count.tokens == plain.tokens
    assert any(note.startswith(field) for note in count.notes)
    assert not qm.estimate_cost({**body, **options}, "qwen-plus").exact_prompt


@pytest.mark.parametrize("choice", ["auto", "none", None])
def test_tool_choices_that_force_nothing_stay_exact(choice):
    body = {"model": "qwen-plus", "messages": [{"role": "user", "content": "杭州天气"}],
            "tools": [WEATHER], "tool_choice": choice, "parallel_tool_calls": False}
    assert qm.count_messages(body).exact


@pytest.mark.parametrize(("options", "field"), [({"tool_choice": 5}, "tool_choice"),
                                                ({"parallel_tool_calls": "1"},
                                                 "parallel_tool_calls")])
def test_bad_tool_options_are_typed_errors(options, field):
    with pytest.raises(qm.InvalidRequest) as info:
        qm.count_messages({"model": "qwen-plus", "messages": [{"role": "user", "content": "x"}],
                           **options})
    assert info.value.field == field


def test_qwen_long_file_ids_count_once_registered(tmp_path):
    qm.forget_files()
    messages = [{"role": "system", "content": "fileid://file-fe-abc123"},
                {"role": "user", "content": "总结这篇文章"}]
    unknown = qm.count_messages(messages, "qwen-long")
    assert not unknown.exact and any("file-fe-abc123" in n for n in unknown.notes)
    bare = qm.count_messages([{"role": "system", "content": ""}, messages[1]], "qwen-long")
    qm.register_file("fileid://file-fe-abc123", 1000)
    try:
        known = qm.count_messages(messages, "qwen-long")
        assert known.exact and known.tokens == bare.tokens + 1000
        doc = tmp_path / "doc.txt"
        doc.write_text("通义千问长文档。" * 50, encoding="utf-8")
        counted = qm.count_file(doc, "qwen-long", file_id="file-fe-def")
        assert counted.tokens == tokens(doc.read_text(encoding="utf-8"), "qwen-long")
        two = [{"role": "system", "content": "fileid://file-fe-abc123,fileid://file-fe-def"},
               messages[1]]
        both = qm.count_messages(two, "qwen-long")
        assert both.exact and both.tokens == bare.tokens + 1000 + counted.tokens
    finally:
        qm.forget_files()
    with pytest.raises(qm.InvalidRequest):
        qm.register_file("file-x", -1)


def test_qwen_mt_adds_the_documented_estimate():
    request = {"messages": [{"role": "user", "content": "我看到这个视频后没有笑"}],
               "translation_options": {"source_lang": "Chinese", "target_lang": "English"}}
    count = qm.count_messages(request, "qwen-mt-plus")
    rendered = qm.count_messages(request["messages"], "qwen-plus")  # same vocabulary, no MT
    assert not count.exact and any("translation" in n for n in count.notes)
    assert count.tokens == rendered.tokens + 44
    terms = {**request["translation_options"],
             "terms": [{"source": "视频", "target": "video"}]}
    with_terms = qm.count_messages({**request, "translation_options": terms}, "qwen-mt-plus")
    assert with_terms.tokens == count.tokens + tokens("视频", "qwen-plus") + tokens(
        "video", "qwen-plus")


def test_omni_audio_output_is_priced_as_audio():
    spec = qm.resolve("qwen-omni-turbo")
    tier = spec.offer("cn").tiers[0]
    request = {"messages": [{"role": "user", "content": "讲个笑话"}], "max_tokens": 1000}
    text = qm.estimate_cost(request, spec, region="cn")
    audio = qm.estimate_cost({**request, "modalities": ["text", "audio"],
                              "audio": {"voice": "Cherry", "format": "wav"}}, spec, region="cn")
    assert tier.output_audio is not None
    assert audio.high.amount - audio.low.amount == 1000 * tier.output_audio / 1_000_000
    assert audio.high.amount > text.high.amount


# --- native request bodies ---------------------------------------------------------------

NATIVE = {"model": "qwen-plus",
          "input": {"messages": [{"role": "system", "content": "You are a helpful assistant."},
                                 {"role": "user", "content": "你是誰?"}]},
          "parameters": {"result_format": "message", "max_tokens": 50, "n": 2,
                         "enable_search": False}}


def test_native_body_counts_like_the_openai_one():
    openai_form = {"model": "qwen-plus", "messages": NATIVE["input"]["messages"],
                   "max_tokens": 50, "n": 2}
    assert qm.normalize_request(NATIVE) == {**openai_form, "enable_search": False}
    assert qm.count_messages(NATIVE).tokens == 22  # DashScope's published figure
    assert qm.check(NATIVE, "qwen-plus").max_tokens == 50
    assert qm.estimate_cost(NATIVE, "qwen-plus").max_output_tokens == 100


def test_native_prompt_and_history_become_turns():
    body = {"model": "qwen-turbo",
            "input": {"prompt": "再说一遍", "history": [{"user": "你好", "bot": "你好！"}]}}
    assert qm.normalize_request(body)["messages"] == [
        {"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好！"},
        {"role": "user", "content": "再说一遍"}]
    sdk = {"model": "qwen-turbo", "prompt": "再说一遍",
           "messages": [{"role": "system", "content": "s"}],
           "history": [{"user": "你好", "bot": "你好！"}]}
    assert [m["role"] for m in qm.normalize_request(sdk)["messages"]] == [
        "system", "user", "assistant", "user"]
    with pytest.raises(qm.InvalidRequest) as info:
        qm.normalize_request({"input": {"prompt": 3}})
    assert info.value.field == "prompt"
    with pytest.raises(qm.InvalidMessages):
        qm.normalize_request({"input": {}})


def test_extra_body_options_are_read():
    body = {"model": "qwen-plus", "messages": [{"role": "user", "content": "x"}],
            "extra_body": {"enable_search": True, "n": 2}}
    assert not qm.count_messages(body).exact
    assert qm.normalize_request(body)["n"] == 2


def test_cli_accepts_native_bodies(tmp_path, capsys):
    request = tmp_path / "native.json"
    request.write_text(json.dumps(NATIVE, ensure_ascii=False), encoding="utf-8")
    assert main(["count", "-m", str(request), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tokens"] == 22
    assert main(["check", str(request), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["prompt_tokens"] == 22
    assert main(["estimate", str(request), "--region", "cn", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cn"]["max_output_tokens"] == 100


# --- Qwen2.5 open template: JSON-string arguments ----------------------------------------------

def test_qwen25_open_template_double_encodes_string_arguments():
    messages = [{"role": "user", "content": "北京天气"},
                {"role": "assistant", "content": "", "tool_calls": [{"type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city": "北京"}'}}]}]
    text = qm.render_messages(messages, "qwen2.5-7b-instruct", add_generation_prompt=False)
    assert '{"name": "get_weather", "arguments": "{\\"city\\": \\"北京\\"}"}' in text
    # DashScope's own Qwen2.5-era models parse the string back into an object.
    served = qm.render_messages(messages, "qwen-max", add_generation_prompt=False)
    assert '{"name": "get_weather", "arguments": {"city": "北京"}}' in served


def test_qwen25_string_arguments_match_the_official_template(hf_folder):
    messages = [{"role": "user", "content": "北京天气"},
                {"role": "assistant", "content": "ok", "tool_calls": [{"type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city":"北京"}'}}]},
                {"role": "tool", "content": "21C"}]
    folder = hf_folder("qwen2.5")
    ours = qm.count_messages(messages, "qwen2.5-7b-instruct", template="qwen2.5")
    oracle = qm.count_messages(messages, "qwen2.5-7b-instruct", tokenizer=folder)
    assert ours.tokens == oracle.tokens
