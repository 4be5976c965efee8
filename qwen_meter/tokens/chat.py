"""Render a chat request the way the model's template does, so its length is the billed prompt.

One renderer serves every Qwen generation; a :class:`~qwen_meter.tokens.templates.TemplateProfile`
says which of the generations' differences apply (default system message, tools layout, tool-call
format, reasoning in the history, the generation prompt). The output is the exact prompt text,
with one placeholder per media item; the media's own token counts are added by the caller.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..base.errors import InvalidMessages
from .messages import Message, Part, ToolCall
from .templates import TemplateProfile

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"

_JSON_TOOLS_INTRO = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
_JSON_TOOLS_OUTRO = (
    "\n</tools>\n\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
)
_XML_TOOLS_INTRO = "# Tools\n\nYou have access to the following functions:\n\n<tools>"
_XML_TOOLS_OUTRO = (
    "\n</tools>\n\nIf you choose to call a function ONLY reply in the following format with NO "
    "suffix:\n\n<tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>\n"
    "value_1\n</parameter>\n<parameter=example_parameter_2>\nThis is the value for the second "
    "parameter\nthat can span\nmultiple lines\n</parameter>\n</function>\n</tool_call>\n\n"
    "<IMPORTANT>\nReminder:\n- Function calls MUST follow the specified format: an inner "
    "<function=...></function> block must be nested within <tool_call></tool_call> XML tags\n"
    "- Required parameters MUST be specified\n- You may provide optional reasoning for your "
    "function call in natural language BEFORE the function call, but NOT after\n- If there is "
    "no function call available, answer the question like normal with your current knowledge "
    "and do not tell the user about function calls\n</IMPORTANT>"
)

MediaText = Callable[[Part], str]


def to_json(value: Any) -> str:
    """JSON as the templates' ``tojson`` writes it: UTF-8 kept, default separators, key order
    as given."""
    return json.dumps(value, ensure_ascii=False)


def _no_media(part: Part) -> str:
    raise InvalidMessages(f"{part.kind} content needs a media-aware count", index=part.index,
                          part=part.position)


def content_text(message: Message, media_text: MediaText, trim: bool) -> str:
    text = "".join(p.text if p.kind == "text" else media_text(p) for p in message.parts)
    return text.strip() if trim else text


def _arguments_json(call: ToolCall, profile: TemplateProfile) -> str:
    args = call.arguments
    if isinstance(args, str):
        if profile.tool_arguments == "verbatim":
            return args
        if profile.tool_arguments == "tojson":
            # The open Qwen2.5 template pipes the string through tojson: a JSON string
            # holding the JSON text, quotes escaped.
            return to_json(args)
        try:
            return to_json(json.loads(args))
        except ValueError:
            return args  # not JSON: the server can only have seen it as written
    return to_json(args)


def _arguments_object(call: ToolCall) -> Mapping[str, Any]:
    args = call.arguments
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError:
            return {}
    return args if isinstance(args, Mapping) else {}


def _xml_value(value: Any) -> str:
    # The template writes mappings and lists as JSON and everything else with Python's str().
    if isinstance(value, (Mapping, list, tuple)):
        return to_json(value)
    return str(value)


def render_tool_calls(calls: Sequence[ToolCall], content: str, profile: TemplateProfile) -> str:
    """Tool calls as the assistant's turn writes them, after ``content``."""
    out = []
    for n, call in enumerate(calls):
        if profile.tool_calls == "xml":
            if n == 0:
                out.append("\n\n" if content.strip() else "")
            else:
                out.append("\n")
            out.append(f"<tool_call>\n<function={call.name}>\n")
            for key, value in _arguments_object(call).items():
                out.append(f"<parameter={key}>\n{_xml_value(value)}\n</parameter>\n")
            out.append("</function>\n</tool_call>")
            continue
        if profile.tools == "qwen2.5" or n > 0 or content:
            out.append("\n")
        out.append(f'<tool_call>\n{{"name": "{call.name}", "arguments": '
                   f"{_arguments_json(call, profile)}}}\n</tool_call>")
    return "".join(out)


def _split_reasoning(content: str) -> tuple[str, str]:
    """(reasoning, answer) of content that carries an inline ``<think>...</think>``."""
    reasoning = content.split("</think>")[0].rstrip("\n").split("<think>")[-1].lstrip("\n")
    return reasoning, content.split("</think>")[-1].lstrip("\n")


def is_tool_response(text: str) -> bool:
    return text.startswith("<tool_response>") and text.endswith("</tool_response>")


def _system_block(system: str | None, tools: Sequence[Mapping[str, Any]],
                  profile: TemplateProfile) -> str:
    if not tools:
        return "" if system is None else f"{IM_START}system\n{system}{IM_END}\n"
    lines = "".join("\n" + to_json(tool) for tool in tools)
    if profile.tools == "qwen3.5":
        tail = f"\n\n{system}" if system else ""
        return f"{IM_START}system\n{_XML_TOOLS_INTRO}{lines}{_XML_TOOLS_OUTRO}{tail}{IM_END}\n"
    if profile.tools == "qwen2.5":
        head = f"{system or ''}\n\n"
    else:
        head = "" if system is None else f"{system}\n\n"
    return f"{IM_START}system\n{head}{_JSON_TOOLS_INTRO}{lines}{_JSON_TOOLS_OUTRO}{IM_END}\n"


def render_assistant(message: Message, content: str, after_last_query: bool, is_last: bool,
                      profile: TemplateProfile) -> str:
    if profile.reasoning == "none":
        if not message.tool_calls:
            return f"{IM_START}assistant\n{content}{IM_END}\n"
        head = f"{IM_START}assistant" + (f"\n{content}" if content else "")
        return head + render_tool_calls(message.tool_calls, content, profile) + f"{IM_END}\n"

    reasoning = message.reasoning
    if reasoning is None:
        reasoning = ""
        if "</think>" in content:
            reasoning, content = _split_reasoning(content)
    if profile.reasoning == "qwen3.5":
        reasoning = reasoning.strip()
        if after_last_query:
            head = f"{IM_START}assistant\n<think>\n{reasoning}\n</think>\n\n{content}"
        else:
            head = f"{IM_START}assistant\n{content}"
    elif after_last_query and (is_last or reasoning):
        head = (f"{IM_START}assistant\n<think>\n{reasoning.strip(chr(10))}\n</think>\n\n"
                f"{content.lstrip(chr(10))}")
    else:
        head = f"{IM_START}assistant\n{content}"
    return head + render_tool_calls(message.tool_calls, content, profile) + f"{IM_END}\n"


def render_prompt(messages: Sequence[Message], profile: TemplateProfile, *,
                  tools: Sequence[Mapping[str, Any]] = (), enable_thinking: bool | None = None,
                  add_generation_prompt: bool = True, media_text: MediaText = _no_media,
                  preserve_thinking: bool = False) -> str:
    """The prompt text the model's template produces for this request.

    A last assistant message with ``partial`` is a prefix the model continues: it is written
    as given, left open (no ``<|im_end|>``, no think block) and no generation prompt follows.
    ``preserve_thinking`` keeps the reasoning of every earlier assistant turn, not only of
    those after the last user query.
    """
    partial = messages[-1] if messages and messages[-1].partial else None
    body = messages[:-1] if partial is not None else messages
    trim = profile.trim_content
    texts = [content_text(m, media_text, trim) for m in body]

    first_is_system = bool(body) and body[0].role == "system"
    system = texts[0] if first_is_system else profile.default_system
    out = [_system_block(system, tools, profile)]

    last_query = len(body) - 1
    if profile.reasoning != "none":
        for i in range(len(body) - 1, -1, -1):
            if body[i].role == "user" and not is_tool_response(texts[i]):
                last_query = i
                break
        else:
            if profile.strict:
                raise InvalidMessages("the template needs at least one user message")

    for i, message in enumerate(body):
        role, text = message.role, texts[i]
        if role == "system":
            if i == 0:
                continue
            if profile.strict:
                raise InvalidMessages("a system message must come first", index=i)
            out.append(f"{IM_START}system\n{text}{IM_END}\n")
        elif role == "user":
            out.append(f"{IM_START}user\n{text}{IM_END}\n")
        elif role == "assistant":
            out.append(render_assistant(message, text, i > last_query or preserve_thinking,
                                         i == len(body) - 1, profile))
        else:
            previous = body[i - 1].role if i > 0 else None
            opens_run = previous != "tool" and (i > 0 or profile.tools != "qwen3.5")
            closes_run = i == len(body) - 1 or body[i + 1].role != "tool"
            out.append((f"{IM_START}user" if opens_run else "")
                       + f"\n<tool_response>\n{text}\n</tool_response>"
                       + (f"{IM_END}\n" if closes_run else ""))
    if partial is not None:
        # The prefix is continued byte for byte, so it is not trimmed even where the
        # template trims finished turns.
        out.append(f"{IM_START}assistant\n{content_text(partial, media_text, False)}")
    elif add_generation_prompt:
        out.append(profile.generation_prompt(enable_thinking))
    return "".join(out)


def render_completion(profile: TemplateProfile, *, content: str | None = None,
                      reasoning: str | None = None, tool_calls: Sequence[ToolCall] = (),
                      enable_thinking: bool | None = None) -> str:
    """The text a model generates for this reply, as DashScope bills it.

    Billed output is the generated text without the closing ``<|im_end|>``: the reasoning
    (with the ``<think>`` the prompt did not already open), then the answer, then any
    tool calls in the template's format.
    """
    content = content or ""
    out = []
    if reasoning:
        opened = profile.generation_prompt(enable_thinking).endswith("<think>\n")
        out.append(("" if opened else "<think>\n") + f"{reasoning}\n</think>\n\n")
    out.append(content)
    if tool_calls:
        calls = render_tool_calls(tool_calls, content, profile)
        # The reply starts right after "assistant\n"; no separator precedes a first call.
        out.append(calls if content else calls.lstrip("\n"))
    return "".join(out)

