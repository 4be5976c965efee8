"""Validate chat messages as the OpenAI-compatible and native DashScope APIs accept them.

The result is a tuple of small frozen records that the renderer can trust. Anything that is
not a message raises :class:`~qwen_meter.errors.InvalidMessages` naming the message index and
the content-part index.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..base.checks import json_problem
from ..base.errors import InvalidMessages, InvalidRequest

ROLES = ("system", "user", "assistant", "tool")
PartKind = Literal["text", "image", "audio", "video"]


@dataclass(frozen=True)
class Part:
    """One piece of message content: text, or a media item kept as given."""

    kind: PartKind
    text: str = ""
    source: Mapping[str, Any] | None = None
    index: int = 0
    position: int = 0


@dataclass(frozen=True)
class ToolCall:
    """An assistant's call of one function; ``arguments`` is a JSON string or an object."""

    name: str
    arguments: Any


@dataclass(frozen=True)
class Message:
    """A validated chat message."""

    role: str
    parts: tuple[Part, ...]
    tool_calls: tuple[ToolCall, ...] = ()
    reasoning: str | None = None
    index: int = 0
    #: An assistant prefix the model continues (partial mode): rendered open, no turn after.
    partial: bool = False


def as_mapping(obj: Any) -> Mapping[str, Any] | None:
    """A plain mapping view of a dict, or of an SDK object (pydantic ``model_dump``)."""
    if isinstance(obj, Mapping):
        return obj
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        value = dump(exclude_none=True)
        return value if isinstance(value, Mapping) else None
    return None


_MEDIA_KEYS: tuple[tuple[PartKind, tuple[str, ...]], ...] = (
    ("image", ("image_url", "image")),
    ("audio", ("input_audio", "audio")),
    ("video", ("video_url", "video")),
)
_TYPE_KIND: dict[str, PartKind] = {
    "text": "text", "image_url": "image", "image": "image", "input_audio": "audio",
    "audio": "audio", "video_url": "video", "video": "video",
}


def _part(raw: Any, index: int, position: int) -> Part:
    part = as_mapping(raw)
    if part is None:
        if isinstance(raw, str):
            return Part("text", raw, index=index, position=position)
        raise InvalidMessages(f"a content part must be an object, not {type(raw).__name__}",
                              index=index, part=position)
    kind_name = part.get("type")
    if "type" in part:  # present but null is no type the API knows, not "no type given"
        kind = _TYPE_KIND.get(kind_name) if isinstance(kind_name, str) else None
        if kind is None:
            raise InvalidMessages(f"unknown content part type {kind_name!r}", index=index,
                                  part=position)
    elif "text" in part:
        kind = "text"
    else:
        kind = next((k for k, keys in _MEDIA_KEYS if any(key in part for key in keys)), None)
        if kind is None:
            raise InvalidMessages(
                f"content part has no type and none of text/image/audio/video "
                f"(keys: {', '.join(map(str, part)) or 'none'})", index=index, part=position)
    if kind == "text":
        text = part.get("text")
        if not isinstance(text, str):
            raise InvalidMessages("a text part needs a string 'text'", index=index, part=position)
        return Part("text", text, index=index, position=position)
    return Part(kind, source=part, index=index, position=position)


def _content(raw: Any, index: int, role: str) -> tuple[Part, ...]:
    if isinstance(raw, str):
        return (Part("text", raw, index=index),)
    if raw is None:
        if role in ("system", "user"):
            raise InvalidMessages("content is required", index=index)
        return ()
    if isinstance(raw, Sequence) and not isinstance(raw, (bytes, bytearray)):
        return tuple(_part(p, index, i) for i, p in enumerate(raw))
    raise InvalidMessages(
        f"content must be a string or a list of parts, not {type(raw).__name__}", index=index)


def parse_tool_calls(raw: Any, index: int = 0) -> tuple[ToolCall, ...]:
    """Validate a ``tool_calls`` list (OpenAI / DashScope shape, or name + arguments)."""
    if raw is None:
        return ()
    if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)):
        raise InvalidMessages("tool_calls must be a list", index=index)
    calls = []
    for n, item in enumerate(raw):
        call = as_mapping(item)
        fn = as_mapping(call.get("function")) if call is not None else None
        fn = fn if fn is not None else call
        name = fn.get("name") if fn is not None else None
        if not isinstance(name, str) or not name:
            raise InvalidMessages(f"tool_calls[{n}] has no function name", index=index)
        arguments = fn.get("arguments", {}) if fn is not None else {}
        if not isinstance(arguments, (str, Mapping)):
            raise InvalidMessages(
                f"tool_calls[{n}].function.arguments must be a JSON string or an object",
                index=index)
        problem = None if isinstance(arguments, str) else \
            json_problem(dict(arguments), f"tool_calls[{n}].function.arguments")
        if problem:
            raise InvalidMessages(problem, index=index)
        calls.append(ToolCall(name, arguments))
    return tuple(calls)


def parse_messages(messages: Iterable[Any]) -> tuple[Message, ...]:
    """Validate ``messages`` and return them as :class:`Message` records."""
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Iterable):
        raise InvalidMessages(
            f"messages must be a list of message objects, not {type(messages).__name__}")
    out = []
    for index, raw in enumerate(messages):
        msg = as_mapping(raw)
        if msg is None:
            raise InvalidMessages(
                f"a message must be an object with 'role' and 'content', "
                f"not {type(raw).__name__}", index=index)
        role = msg.get("role")
        if role not in ROLES:
            raise InvalidMessages(
                f"unknown role {role!r}; expected one of {', '.join(ROLES)}", index=index)
        reasoning = msg.get("reasoning_content")
        if reasoning is not None and not isinstance(reasoning, str):
            raise InvalidMessages("reasoning_content must be a string", index=index)
        tool_calls = parse_tool_calls(msg.get("tool_calls"), index) if role == "assistant" else ()
        parts = _content(msg.get("content"), index, role)
        if role == "tool" and not parts and "content" not in msg:
            raise InvalidMessages("a tool message needs content", index=index)
        if role in ("system", "tool", "assistant") and any(p.kind != "text" for p in parts):
            bad = next(p for p in parts if p.kind != "text")
            raise InvalidMessages(f"{role} messages cannot carry {bad.kind} content",
                                  index=index, part=bad.position)
        partial = msg.get("partial")
        if partial is not None and partial is not False:
            _check_partial(partial, role, index)
        out.append(Message(role, parts, tool_calls, reasoning, index, partial is True))
    if not out:
        raise InvalidMessages("no messages")
    if any(m.partial for m in out[:-1]):
        first = next(m for m in out if m.partial)
        raise InvalidRequest("only the last message can be a partial prefix", field="partial",
                             index=first.index)
    return tuple(out)


def _check_partial(partial: Any, role: str, index: int) -> None:
    if not isinstance(partial, bool):
        raise InvalidRequest(f"must be true or false, got {partial!r}", field="partial",
                             index=index)
    if partial and role != "assistant":
        raise InvalidRequest(f"only an assistant message can be a partial prefix, not {role}",
                             field="partial", index=index)


def parse_tools(tools: Any) -> tuple[Mapping[str, Any], ...]:
    """Validate a ``tools`` list (function definitions) and return plain mappings."""
    if tools is None:
        return ()
    if isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Iterable):
        raise InvalidMessages(f"tools must be a list of tool objects, not {type(tools).__name__}")
    out = []
    for n, raw in enumerate(tools):
        tool = as_mapping(raw)
        if tool is None:
            raise InvalidMessages(f"tools[{n}] must be an object, not {type(raw).__name__}")
        problem = json_problem(dict(tool), f"tools[{n}]")
        if problem:
            raise InvalidMessages(problem)
        if tool.get("type", "function") == "function":
            # DashScope refuses a function tool without a name; counting it would be a guess.
            function = as_mapping(tool.get("function"))
            name = function.get("name") if function is not None else None
            if not isinstance(name, str) or not name.strip():
                raise InvalidMessages(f"tools[{n}].function.name: a function tool needs a "
                                      "non-empty name")
        out.append(tool)
    return tuple(out)
