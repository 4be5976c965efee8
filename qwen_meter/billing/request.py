"""A chat request as the pre-flight, counting and pricing functions take it.

:func:`normalize_request` turns any request shape DashScope accepts into one flat,
OpenAI-style dict:

* an OpenAI-compatible body (``messages``, ``tools``, ``max_tokens`` ..., with DashScope's
  extras either at the top level or under the SDK's ``extra_body``);
* a native DashScope body (``input.messages`` / ``input.prompt`` / ``input.history`` and
  ``parameters``), or the keyword arguments of ``dashscope.Generation.call`` (``prompt``,
  ``history``, ``messages`` next to the parameters);
* a bare list of messages.

:class:`Request` then validates the options that change a count or a cost.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..base.errors import InvalidMessages, InvalidRequest

#: DashScope's range for ``n`` (several choices per request).
MAX_CHOICES = 4

# Keys of a native body's ``parameters`` that are not request options of their own.
_NATIVE_ONLY = ("result_format", "incremental_output")


def _history(raw: Any) -> list[Any]:
    """Native ``history``: ``[{"user": ..., "bot": ...}]`` pairs, or messages as they are."""
    if raw is None:
        return []
    if isinstance(raw, (str, bytes, Mapping)) or not isinstance(raw, Sequence):
        raise InvalidRequest("must be a list of {user, bot} pairs or of messages",
                             field="history")
    out: list[Any] = []
    for n, item in enumerate(raw):
        if isinstance(item, Mapping) and "role" not in item and ("user" in item or "bot" in item):
            if "user" in item:
                out.append({"role": "user", "content": item["user"]})
            if "bot" in item:
                out.append({"role": "assistant", "content": item["bot"]})
        elif isinstance(item, Mapping):
            out.append(item)
        else:
            raise InvalidRequest(f"history[{n}] must be an object", field="history")
    return out


def _messages_of(messages: Any, prompt: Any, history: Any) -> list[Any]:
    # The SDK sends prompt, history and messages side by side; the server reads them as one
    # conversation: a leading system message, the history pairs, the messages, then the
    # prompt as the last user turn.
    listed: list[Any] = []
    if messages is not None:
        if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
            raise InvalidMessages(f"messages must be a list of message objects, not "
                                  f"{type(messages).__name__}")
        listed = list(messages)
    head: list[Any] = []
    if listed and isinstance(listed[0], Mapping) and listed[0].get("role") == "system":
        head, listed = listed[:1], listed[1:]
    out = head + _history(history) + listed
    if prompt is not None:
        if not isinstance(prompt, str):
            raise InvalidRequest(f"must be a string, not {type(prompt).__name__}",
                                 field="prompt")
        out.append({"role": "user", "content": prompt})
    return out


def normalize_request(body: Any) -> dict[str, Any]:
    """One flat OpenAI-style request dict from any request shape DashScope accepts.

    The result always has ``messages``; every other key of the body (``model``, ``tools``,
    ``max_tokens``, ``n``, ``enable_thinking``, ``thinking_budget``, ``enable_search`` ...)
    is kept at the top level. ``input.prompt`` becomes the last user message and
    ``input.history`` pairs become user / assistant turns, in the order the server reads
    them. The body is not modified.
    """
    if isinstance(body, Sequence) and not isinstance(body, (str, bytes)):
        return {"messages": list(body)}
    if not isinstance(body, Mapping):
        raise InvalidMessages(f"a request must be an object or a list of messages, not "
                              f"{type(body).__name__}")
    if "role" in body and not any(k in body for k in ("messages", "input", "prompt")):
        raise InvalidMessages("messages must be a list of message objects, not a single "
                              "message")
    flat: dict[str, Any] = {k: v for k, v in body.items()
                            if k not in ("input", "parameters", "extra_body")}
    for nested in ("parameters", "extra_body"):
        extra = body.get(nested)
        if extra is None:
            continue
        if not isinstance(extra, Mapping):
            raise InvalidRequest("must be an object", field=nested)
        for key, value in extra.items():
            if key not in _NATIVE_ONLY:
                flat.setdefault(key, value)
    source: Mapping[str, Any] = body
    if "input" in body:
        source = body["input"]
        if not isinstance(source, Mapping):
            raise InvalidRequest("must be an object with messages, prompt or history",
                                 field="input")
    messages, prompt, history = (source.get("messages"), source.get("prompt"),
                                 source.get("history"))
    if messages is None and prompt is None and history is None:
        raise InvalidMessages("a request object needs 'messages' (or a native 'input' with "
                              "messages / prompt / history)")
    flat["messages"] = _messages_of(messages, prompt, history)
    flat.pop("prompt", None)
    flat.pop("history", None)
    return flat


_SOFT_SWITCH = re.compile(r"/(no_think|think)\s*$")


def soft_thinking_switch(messages: Any) -> bool | None:
    """True / False when the last user message ends in ``/think`` / ``/no_think`` (Qwen3's
    soft switches), else None."""
    if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)):
        return None
    for raw in reversed(messages):
        if isinstance(raw, Mapping) and raw.get("role") == "user":
            content = raw.get("content")
            if isinstance(content, list):
                texts = [p.get("text") for p in content if isinstance(p, Mapping)]
                content = "".join(t for t in texts if isinstance(t, str))
            if not isinstance(content, str):
                return None
            match = _SOFT_SWITCH.search(content)
            return None if match is None else match.group(1) == "think"
    return None


def _positive_int(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequest(f"must be a positive whole number, got {value!r}", field=field)
    return value


def _flag(value: Any, field: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise InvalidRequest(f"must be true or false, got {value!r}", field=field)


def _object(value: Any, field: str) -> Mapping[str, Any] | None:
    if value is None or isinstance(value, Mapping):
        return value
    raise InvalidRequest(f"must be an object, got {type(value).__name__}", field=field)


def _wants_audio(options: Mapping[str, Any]) -> bool:
    modalities = options.get("modalities")
    if modalities is None:
        return False
    if isinstance(modalities, str) or not isinstance(modalities, Sequence):
        raise InvalidRequest("must be a list such as [\"text\", \"audio\"]", field="modalities")
    return "audio" in modalities


def _forces_a_call(choice: Any) -> bool:
    """Whether ``tool_choice`` may change the prompt: "required", a named function, or a
    value this version does not know (counted as one that may); "auto", "none" and no value
    leave the prompt as the template writes it."""
    if choice is None or choice in ("auto", "none"):
        return False
    if isinstance(choice, (str, Mapping)):
        return True
    raise InvalidRequest(f"must be \"auto\", \"none\", \"required\" or a function object, "
                         f"got {choice!r}", field="tool_choice")


#: What the server adds to the prompt for each option (recorded DashScope replies of
#: 2024-2025 in cnblogs/dashscope-sdk's test data; the wording is not published).
_SERVER_ADDITIONS = {
    "search": "enable_search: search results are added to the prompt server-side; the count "
              "is the request without them (a lower bound)",
    "code_interpreter": "enable_code_interpreter: the tool's prompt and each run's code and "
                        "results are added server-side; the count is the request without "
                        "them (a lower bound; a recorded reply billed 723 for an 18-token "
                        "request)",
    "parallel_tool_calls": "parallel_tool_calls: the server adds instructions for parallel "
                           "calls that are not published (recorded replies billed 26 to 83 "
                           "tokens more); the count is the request without them",
    "forced_tool_choice": "tool_choice: forcing a call adds server-side instructions that are "
                          "not published (a recorded reply billed about 40 tokens more); the "
                          "count is the request without them",
}


@dataclass(frozen=True)
class Request:
    """What is sent (``subject``: messages, a text or a prompt token count) and the options
    that change its count or cost."""

    subject: Any
    tools: Any = None
    max_tokens: int | None = None
    enable_thinking: bool | None = None
    high_resolution: bool = False
    #: Choices per request; output (and the worst case) scales with it, the prompt does not.
    n: int = 1
    thinking_budget: int | None = None
    preserve_thinking: bool | None = None
    #: ``enable_search``: search results enter the prompt server-side.
    search: bool = False
    search_options: Mapping[str, Any] | None = None
    #: ``enable_code_interpreter``: the tool's prompt, code and results enter the prompt
    #: server-side (each run is another round).
    code_interpreter: bool = False
    #: ``parallel_tool_calls: true`` and a ``tool_choice`` that forces a call: the server
    #: adds instructions to the prompt that are not published.
    parallel_tool_calls: bool = False
    forced_tool_choice: bool = False
    translation_options: Mapping[str, Any] | None = None
    #: Omni ``modalities`` with "audio": the reply is billed as audio output.
    audio_output: bool = False
    #: ``/think`` or ``/no_think`` at the end of the last user message.
    soft_thinking: bool | None = None
    model: str | None = None

    @property
    def server_additions(self) -> tuple[str, ...]:
        """What the server adds to this request's prompt that no local count can know: one
        note per option (web search, code interpreter, parallel tool calls, a forced tool
        choice). A count of a request with any is a lower bound, marked inexact."""
        return tuple(note for option, note in _SERVER_ADDITIONS.items()
                     if getattr(self, option))

    @classmethod
    def of(cls, request: Any, *, tools: Any = None, max_tokens: int | None = None,
           enable_thinking: bool | None = None, n: int | None = None,
           thinking_budget: int | None = None, search: bool | None = None) -> Request:
        """From a request object (any shape :func:`normalize_request` takes) or a bare
        subject (token count, text, list of messages); keyword arguments win over the
        object's keys. Raises :class:`~qwen_meter.errors.InvalidRequest` naming the option
        that DashScope would refuse."""
        options: Mapping[str, Any] = {}
        subject = request
        if isinstance(request, Mapping):
            options = normalize_request(request)
            subject = options["messages"]
        if max_tokens is None:
            max_tokens = options.get("max_tokens", options.get("max_completion_tokens"))
        choices = n if n is not None else options.get("n", 1)
        choices = _positive_int(choices, "n") or 1
        if choices > MAX_CHOICES:
            raise InvalidRequest(f"must be between 1 and {MAX_CHOICES}, got {choices}",
                                 field="n")
        enable_search = search if search is not None else _flag(options.get("enable_search"),
                                                                "enable_search")
        model = options.get("model")
        return cls(
            subject=subject,
            tools=tools if tools is not None else options.get("tools"),
            max_tokens=_positive_int(max_tokens, "max_tokens"),
            enable_thinking=_flag(enable_thinking if enable_thinking is not None
                                  else options.get("enable_thinking"), "enable_thinking"),
            high_resolution=bool(_flag(options.get("vl_high_resolution_images"),
                                       "vl_high_resolution_images")),
            n=choices,
            thinking_budget=_positive_int(thinking_budget if thinking_budget is not None
                                          else options.get("thinking_budget"),
                                          "thinking_budget"),
            preserve_thinking=_flag(options.get("preserve_thinking"), "preserve_thinking"),
            search=bool(enable_search),
            search_options=_object(options.get("search_options"), "search_options"),
            code_interpreter=bool(_flag(options.get("enable_code_interpreter"),
                                        "enable_code_interpreter")),
            parallel_tool_calls=bool(_flag(options.get("parallel_tool_calls"),
                                           "parallel_tool_calls")),
            forced_tool_choice=_forces_a_call(options.get("tool_choice")),
            translation_options=_object(options.get("translation_options"),
                                        "translation_options"),
            audio_output=_wants_audio(options),
            soft_thinking=soft_thinking_switch(subject),
            model=model if isinstance(model, str) else None,
        )


#: The keys :meth:`Request.of` reads (and may refuse) besides ``max_tokens``, ``model``,
#: ``messages`` and ``tools``; a body with none of them needs no full :class:`Request`.
_OPTION_KEYS = frozenset({
    "input", "parameters", "extra_body", "prompt", "history", "n", "enable_search",
    "enable_thinking", "vl_high_resolution_images", "thinking_budget", "preserve_thinking",
    "search_options", "enable_code_interpreter", "parallel_tool_calls", "tool_choice",
    "translation_options", "modalities", "max_completion_tokens"})


def max_tokens_of(request: Mapping[str, Any]) -> int | None:
    """``Request.of(request).max_tokens``, with the same checks, for a body that has
    ``messages``: an OpenAI-style body with no other option to check (the usual chat call)
    reads ``max_tokens`` alone; any other goes through :meth:`Request.of`, which validates
    every option DashScope would refuse."""
    if type(request.get("messages")) is list and _OPTION_KEYS.isdisjoint(request):
        return _positive_int(request.get("max_tokens"), "max_tokens")
    return Request.of(request).max_tokens
