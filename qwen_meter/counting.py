"""The counting API: tokens of text, of chat requests and of replies, for a named model."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from . import validate as check
from .catalogue import Catalogue, ModelSpec, default_catalogue, resolve
from .errors import InvalidMessages
from .tokens.backends import TokenizerBackend, TransformersBackend, load_backend
from .tokens.chat import IM_START, render_completion, render_prompt
from .tokens.media import PLACEHOLDER_TOKENS, VISION_PLACEHOLDER, MediaTokens, VisionRule, measure
from .tokens.messages import (
    Message,
    Part,
    as_mapping,
    parse_messages,
    parse_tool_calls,
    parse_tools,
)
from .tokens.templates import TemplateProfile, get_profile

#: The model assumed when none is named.
DEFAULT_MODEL = "qwen-plus"

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class TokenCount:
    """A token count and how far to trust it.

    ``tokens`` is the total; ``exact`` is False when any part of it was estimated (heuristic
    backend, remote image, audio, video), and ``notes`` says which. ``text_tokens`` plus the
    media fields add up to ``tokens``.
    """

    tokens: int
    exact: bool
    backend: str
    family: str
    template: str | None = None
    text_tokens: int = 0
    image_tokens: int = 0
    audio_tokens: int = 0
    video_tokens: int = 0
    notes: tuple[str, ...] = ()

    def __int__(self) -> int:
        return self.tokens

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class _Setup:
    spec: ModelSpec
    backend: TokenizerBackend
    profile: TemplateProfile


def _setup(model: str | None, family: str | None, template: str | TemplateProfile | None,
           tokenizer: PathLike | None, backend: str | None) -> _Setup:
    path = None if tokenizer is None else os.fspath(tokenizer)
    return _cached_setup(default_catalogue(), model or DEFAULT_MODEL, family, template, path,
                         backend)


@lru_cache(maxsize=256)
def _cached_setup(catalogue: Catalogue, model: str, family: str | None,
                  template: str | TemplateProfile | None, tokenizer: str | None,
                  backend: str | None) -> _Setup:
    # Keyed by the catalogue object, so overrides loaded later ($QWEN_METER_CATALOGUE) apply.
    spec = catalogue.resolve(model)
    chosen = load_backend(family or spec.family, tokenizer=tokenizer, backend=backend)
    profile = get_profile(template or spec.template)
    if template is None and spec.thinking_default is not None \
            and spec.thinking_default != profile.thinking_default:
        profile = replace(profile, thinking_default=spec.thinking_default)
    return _Setup(spec, chosen, profile)


def _text_backend(model: str | None, family: str | None, tokenizer: PathLike | None,
                  backend: str | None) -> TokenizerBackend:
    return _setup(model, family, None, tokenizer, backend).backend


def get_tokenizer(model: str | None = None, *, family: str | None = None,
                  tokenizer: PathLike | None = None, backend: str | None = None
                  ) -> TokenizerBackend:
    """The tokenizer backend a model uses, for hot loops (``.count(text)``, ``.encode``)."""
    check.counting_args("get_tokenizer", model=model, family=family, tokenizer=tokenizer,
                        backend=backend)
    return _text_backend(model, family, tokenizer, backend)


def count_tokens(text: str, model: str | None = None, *, family: str | None = None,
                 tokenizer: PathLike | None = None, backend: str | None = None) -> TokenCount:
    """Tokens of plain ``text`` for ``model`` (default ``qwen-plus``).

    Added tokens written in the text (``<|im_start|>``, ``<think>`` ...) count as the single
    tokens the server sees.
    """
    check.text(text, "count_tokens(text=)", empty=True)
    check.counting_args("count_tokens", model=model, family=family, tokenizer=tokenizer,
                        backend=backend)
    chosen = _text_backend(model, family, tokenizer, backend)
    n = chosen.count(text)
    return TokenCount(n, chosen.exact, chosen.name, chosen.family.name, text_tokens=n)


def encode(text: str, model: str | None = None, *, family: str | None = None,
           tokenizer: PathLike | None = None, backend: str | None = None) -> list[int]:
    """Token ids of ``text`` for ``model``."""
    check.text(text, "encode(text=)", empty=True)
    check.counting_args("encode", model=model, family=family, tokenizer=tokenizer,
                        backend=backend)
    return _text_backend(model, family, tokenizer, backend).encode(text)


def decode(ids: Sequence[int], model: str | None = None, *, family: str | None = None,
           tokenizer: PathLike | None = None, backend: str | None = None) -> str:
    """Text of token ``ids`` for ``model``."""
    check.token_ids(ids, "decode(ids=)")
    check.counting_args("decode", model=model, family=family, tokenizer=tokenizer,
                        backend=backend)
    return _text_backend(model, family, tokenizer, backend).decode(ids)


class _Media:
    """Measures each media part once and remembers the results for the count."""

    def __init__(self, rule: VisionRule | None, high_resolution: bool) -> None:
        self.rule = rule or VisionRule()
        self.assumed_rule = rule is None
        self.high_resolution = high_resolution
        self.items: list[MediaTokens] = []

    def placeholder(self, part: Part) -> str:
        self.items.append(measure(part, self.rule, self.high_resolution))
        return VISION_PLACEHOLDER[part.kind]

    def totals(self) -> dict[str, int]:
        totals = {"image": 0, "audio": 0, "video": 0}
        for item in self.items:
            totals[item.kind] += item.tokens
        return totals


def _count_rendered(backend: TokenizerBackend, text: str) -> int:
    # Every message starts with <|im_start|>, a special token the BPE never merges across,
    # so each message's tokens can be counted (and cached) on their own.
    pieces = text.split(IM_START)
    total = backend.count_cached(pieces[0]) if pieces[0] else 0
    return total + sum(backend.count_cached(IM_START + p) for p in pieces[1:])


def render_messages(messages: Iterable[Any], model: str | None = None, *, tools: Any = None,
                    enable_thinking: bool | None = None,
                    template: str | TemplateProfile | None = None,
                    add_generation_prompt: bool = True) -> str:
    """The prompt text the model's template renders (one placeholder per media item)."""
    check.counting_args("render_messages", model=model, template=template)
    check.optional_flag(enable_thinking, "render_messages(enable_thinking=)")
    check.flag(add_generation_prompt, "render_messages(add_generation_prompt=)")
    spec = resolve(model or DEFAULT_MODEL)
    profile = get_profile(template or spec.template)
    return render_prompt(parse_messages(messages), profile, tools=parse_tools(tools),
                         enable_thinking=enable_thinking,
                         add_generation_prompt=add_generation_prompt,
                         media_text=lambda part: VISION_PLACEHOLDER[part.kind])


def count_messages(messages: Iterable[Any], model: str | None = None, *, tools: Any = None,
                   enable_thinking: bool | None = None,
                   template: str | TemplateProfile | None = None,
                   family: str | None = None, tokenizer: PathLike | None = None,
                   backend: str | None = None, high_resolution: bool = False,
                   add_generation_prompt: bool = True) -> TokenCount:
    """Prompt tokens of a chat request, as DashScope bills them (``prompt_tokens``).

    ``messages`` and ``tools`` are what the OpenAI-compatible or native API takes;
    ``enable_thinking`` and ``high_resolution`` (``vl_high_resolution_images``) are the
    request's switches. ``template`` overrides the model's template profile. With a
    transformers ``tokenizer`` and no ``template``, the tokenizer's own chat template renders.
    """
    check.counting_args("count_messages", model=model, family=family, template=template,
                        tokenizer=tokenizer, backend=backend)
    check.optional_flag(enable_thinking, "count_messages(enable_thinking=)")
    check.flag(high_resolution, "count_messages(high_resolution=)")
    check.flag(add_generation_prompt, "count_messages(add_generation_prompt=)")
    setup = _setup(model, family, template, tokenizer, backend)
    parsed = parse_messages(messages)
    tool_defs = parse_tools(tools)
    media = _Media(setup.spec.vision, high_resolution)
    chat_backend = setup.backend
    if isinstance(chat_backend, TransformersBackend) and template is None \
            and chat_backend.chat_template:
        text = _render_with_tokenizer(chat_backend, messages, parsed, tool_defs, media,
                                      enable_thinking)
        template_name = "tokenizer"
    else:
        text = render_prompt(parsed, setup.profile, tools=tool_defs,
                             enable_thinking=enable_thinking,
                             add_generation_prompt=add_generation_prompt,
                             media_text=media.placeholder)
        template_name = setup.profile.name
    rendered = _count_rendered(chat_backend, text)
    totals = media.totals()
    placeholders = sum(PLACEHOLDER_TOKENS[item.kind] for item in media.items)
    total = rendered - placeholders + sum(totals.values())
    notes = [item.note for item in media.items if item.note]
    if media.items and media.assumed_rule:
        notes.append(f"{setup.spec.name} has no media rule in the catalogue; defaults used")
    exact = chat_backend.exact and all(i.exact for i in media.items) and not (
        media.items and media.assumed_rule)
    return TokenCount(total, exact, chat_backend.name, chat_backend.family.name, template_name,
                      text_tokens=total - sum(totals.values()), image_tokens=totals["image"],
                      audio_tokens=totals["audio"], video_tokens=totals["video"],
                      notes=tuple(notes))


def _render_with_tokenizer(backend: TransformersBackend, raw: Iterable[Any],
                           parsed: tuple[Message, ...], tools: tuple[Mapping[str, Any], ...],
                           media: _Media, enable_thinking: bool | None) -> str:
    for message in parsed:
        for part in message.parts:
            if part.kind != "text":
                media.placeholder(part)
    plain = [dict(m) for m in (as_mapping(x) for x in raw) if m is not None]
    kwargs = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
    return backend.render_chat(plain, [dict(t) for t in tools] or None, **kwargs)


def count_completion(reply: str | Mapping[str, Any] | Any, model: str | None = None, *,
                     reasoning: str | None = None, tool_calls: Any = None,
                     enable_thinking: bool | None = None,
                     template: str | TemplateProfile | None = None,
                     family: str | None = None, tokenizer: PathLike | None = None,
                     backend: str | None = None) -> TokenCount:
    """Completion tokens of a reply, as DashScope bills them (``completion_tokens``).

    ``reply`` is the answer text, or an assistant message (dict or SDK object) whose
    ``content``, ``reasoning_content`` and ``tool_calls`` are used. For a stream that ended
    without usage, pass the joined deltas.
    """
    check.counting_args("count_completion", model=model, family=family, template=template,
                        tokenizer=tokenizer, backend=backend)
    check.optional_flag(enable_thinking, "count_completion(enable_thinking=)")
    if reasoning is not None:
        check.text(reasoning, "count_completion(reasoning=)", empty=True)
    setup = _setup(model, family, template, tokenizer, backend)
    if isinstance(reply, str) or reply is None:
        content = reply
    else:
        message = as_mapping(reply)
        if message is None:
            raise InvalidMessages(f"a reply must be text or a message, not {type(reply).__name__}")
        content = message.get("content")
        reasoning = reasoning if reasoning is not None else message.get("reasoning_content")
        tool_calls = tool_calls if tool_calls is not None else message.get("tool_calls")
        if content is not None and not isinstance(content, str):
            raise InvalidMessages("a reply's content must be a string")
        if reasoning is not None and not isinstance(reasoning, str):
            raise InvalidMessages("a reply's reasoning_content must be a string")
    text = render_completion(setup.profile, content=content, reasoning=reasoning,
                             tool_calls=parse_tool_calls(tool_calls),
                             enable_thinking=enable_thinking)
    n = setup.backend.count(text)
    return TokenCount(n, setup.backend.exact, setup.backend.name, setup.backend.family.name,
                      setup.profile.name, text_tokens=n)
