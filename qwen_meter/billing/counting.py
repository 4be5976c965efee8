"""The counting API: tokens of text, of chat requests and of replies, for a named model."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ..base import checks as check
from ..base.errors import InvalidMessages, MediaError
from ..tokens.backends import TiktokenBackend, TokenizerBackend, TransformersBackend, load_backend
from ..tokens.chat import (
    IM_END,
    IM_START,
    is_tool_response,
    render_assistant,
    render_completion,
    render_prompt,
)
from ..tokens.files import file_tokens, register_file, split_references
from ..tokens.media import PLACEHOLDER_TOKENS, VISION_PLACEHOLDER, MediaTokens, VisionRule, measure
from ..tokens.messages import (
    Message,
    Part,
    as_mapping,
    parse_messages,
    parse_tool_calls,
    parse_tools,
)
from ..tokens.templates import TemplateProfile, features, get_profile
from .checks import counting_args
from .index import ModelInfo, lookup
from .request import Request

if TYPE_CHECKING:  # the catalogue loads only when the small index cannot answer
    from ..catalogue.core import Catalogue
    from ..catalogue.records import ModelSpec

#: catalogue.OVERRIDE_ENV, repeated so counting does not import the catalogue module.
_OVERRIDE_ENV = "QWEN_METER_CATALOGUE"

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


class _ChatMemo(NamedTuple):
    """Where a counted conversation's scan ended, so the same conversation with turns added
    resumes there instead of looking at every turn again."""

    #: copies of the messages scanned (a later list must equal them to resume)
    messages: list[dict[str, Any]]
    #: the sum of their turn counts, the index of the last user turn, and the counts of
    #: the turns after it
    total: int
    last_user: int
    since_user: tuple[int, ...]


@dataclass(frozen=True)
class _Setup:
    spec: ModelSpec | ModelInfo
    backend: TokenizerBackend
    profile: TemplateProfile
    #: qwen-mt: the server adds a translation prompt.
    translation: bool = False
    #: the model's template can keep earlier reasoning (``preserve_thinking``).
    preserve_capable: bool = False
    #: a partial prefix is billed closed, plus a generation prompt (``features:``).
    partial_billed_closed: bool = False
    #: turn counts by (role, content), for this backend and profile.
    turns: dict[tuple[Any, str], int] = field(default_factory=dict)
    #: the conversations counted last, by id of their list (and -1: the very last one).
    chats: dict[int, _ChatMemo] = field(default_factory=dict)

    @property
    def ordinary(self) -> bool:
        """Whether the backend's ordinary BPE path is the exact one (tiktoken)."""
        return isinstance(self.backend, TiktokenBackend)

    @property
    def special(self) -> bool:
        """Whether the request needs more than the plain renderer."""
        return self.translation or (isinstance(self.backend, TransformersBackend)
                                    and self.backend.chat_template is not None)


def _setup(model: str | None, family: str | None, template: str | TemplateProfile | None,
           tokenizer: PathLike | None, backend: str | None) -> _Setup:
    path = None if tokenizer is None else os.fspath(tokenizer)
    # With catalogue overrides the full catalogue decides; otherwise the small index does.
    if os.environ.get(_OVERRIDE_ENV):
        from ..catalogue.core import default_catalogue

        return _cached_setup(default_catalogue(), model or DEFAULT_MODEL, family, template,
                             path, backend)
    return _cached_setup(None, model or DEFAULT_MODEL,
                         family, template, path, backend)


@lru_cache(maxsize=256)
def _cached_setup(catalogue: Catalogue | None, model: str, family: str | None,
                  template: str | TemplateProfile | None, tokenizer: str | None,
                  backend: str | None) -> _Setup:
    # Keyed by the catalogue object, so overrides loaded later ($QWEN_METER_CATALOGUE) apply.
    spec: ModelSpec | ModelInfo | None = lookup(model) if catalogue is None else None
    if spec is None:  # not indexed: the catalogue resolves it or says why not
        from ..catalogue.core import default_catalogue

        spec = (catalogue or default_catalogue()).resolve(model)
    chosen = load_backend(family or spec.family, tokenizer=tokenizer, backend=backend)
    profile = get_profile(template or spec.template)
    if template is None and spec.thinking_default is not None \
            and spec.thinking_default != profile.thinking_default:
        profile = replace(profile, thinking_default=spec.thinking_default)
    rules = features()
    return _Setup(spec, chosen, profile,
                  translation=rules.translation.fullmatch(spec.name) is not None,
                  preserve_capable=rules.preserve_thinking.fullmatch(spec.name) is not None,
                  partial_billed_closed=rules.partial_billed_closed.fullmatch(spec.name)
                  is not None)


def _text_backend(model: str | None, family: str | None, tokenizer: PathLike | None,
                  backend: str | None) -> TokenizerBackend:
    return _setup(model, family, None, tokenizer, backend).backend


def get_tokenizer(model: str | None = None, *, family: str | None = None,
                  tokenizer: PathLike | None = None, backend: str | None = None
                  ) -> TokenizerBackend:
    """The tokenizer backend a model uses, for hot loops (``.count(text)``, ``.encode``)."""
    counting_args("get_tokenizer", model=model, family=family, tokenizer=tokenizer,
                        backend=backend)
    return _text_backend(model, family, tokenizer, backend)


def count_tokens(text: str, model: str | None = None, *, family: str | None = None,
                 tokenizer: PathLike | None = None, backend: str | None = None) -> TokenCount:
    """Tokens of plain ``text`` for ``model`` (default ``qwen-plus``).

    Added tokens written in the text (``<|im_start|>``, ``<think>`` ...) count as the single
    tokens the server sees.
    """
    check.text(text, "count_tokens(text=)", empty=True)
    counting_args("count_tokens", model=model, family=family, tokenizer=tokenizer,
                        backend=backend)
    chosen = _text_backend(model, family, tokenizer, backend)
    n = chosen.count(text)
    return TokenCount(n, chosen.exact, chosen.name, chosen.family.name, text_tokens=n)


def encode(text: str, model: str | None = None, *, family: str | None = None,
           tokenizer: PathLike | None = None, backend: str | None = None) -> list[int]:
    """Token ids of ``text`` for ``model``."""
    check.text(text, "encode(text=)", empty=True)
    counting_args("encode", model=model, family=family, tokenizer=tokenizer,
                        backend=backend)
    return _text_backend(model, family, tokenizer, backend).encode(text)


def decode(ids: Sequence[int], model: str | None = None, *, family: str | None = None,
           tokenizer: PathLike | None = None, backend: str | None = None) -> str:
    """Text of token ``ids`` for ``model``."""
    check.token_ids(ids, "decode(ids=)")
    counting_args("decode", model=model, family=family, tokenizer=tokenizer,
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
                    add_generation_prompt: bool = True,
                    preserve_thinking: bool | None = None) -> str:
    """The prompt text the model's template renders (one placeholder per media item).

    ``messages`` may also be a whole request (OpenAI or native DashScope body)."""
    counting_args("render_messages", model=model, template=template)
    check.optional_flag(enable_thinking, "render_messages(enable_thinking=)")
    check.flag(add_generation_prompt, "render_messages(add_generation_prompt=)")
    if isinstance(messages, Mapping):
        req = Request.of(messages, tools=tools, enable_thinking=enable_thinking)
        messages, tools, enable_thinking = req.subject, req.tools, req.enable_thinking
        model = model or req.model
        if preserve_thinking is None:
            preserve_thinking = req.preserve_thinking
    setup = _setup(model, None, template, None, None)
    spec, profile = setup.spec, setup.profile
    return render_prompt(parse_messages(messages), profile, tools=parse_tools(tools),
                         enable_thinking=enable_thinking,
                         add_generation_prompt=add_generation_prompt,
                         media_text=lambda part: VISION_PLACEHOLDER[part.kind],
                         preserve_thinking=_preserves(spec.name, preserve_thinking))


def _preserves(model: str, preserve_thinking: bool | None) -> bool:
    """Whether earlier reasoning stays in the prompt: only templates that support it keep it,
    and some do unasked."""
    rules = features()
    if not rules.preserve_thinking.fullmatch(model):
        return False
    if preserve_thinking is None:
        return rules.preserve_thinking_default.fullmatch(model) is not None
    return preserve_thinking


_PLAIN_KEYS = frozenset(("role", "content", "name"))
_PLAIN_ROLES = frozenset(("system", "user", "assistant"))
_CACHE_LIMIT = 1 << 16
_CHATS_LIMIT = 64
#: conversations of at least this many messages are remembered for a resumed re-count
_REMEMBER_FROM = 8


def _fast_count(messages: Any, setup: _Setup, enable_thinking: bool | None) -> int | None:
    """The prompt tokens of a plain text conversation without rendering it, or None when the
    request needs the full renderer (tools, media, reasoning, partial, tool turns ...).

    Each turn is ``<|im_start|>role\n{content}<|im_end|>\n``: three added tokens plus the
    ordinary BPE of ``role\n{content}``, since added tokens are never merged with their
    neighbours. Turn counts are remembered by (role, content), so a growing conversation
    re-encodes only its new turns. Exactly what :func:`render_prompt` and the backend give
    (``tests/test_fast_count.py`` checks it for every profile).
    """
    if (type(messages) is not list and type(messages) is not tuple) or not messages \
            or not setup.ordinary:
        return None
    profile = setup.profile
    reasoning = profile.reasoning != "none"
    strict = profile.strict
    trim = profile.trim_content
    backend = setup.backend
    cache = setup.turns
    ordinary = backend.count_ordinary
    total = 0
    last_user = -1
    since_user: list[int] = []  # counts of the turns after the last user turn
    # A conversation counted before, now with turns added: resume where that scan ended.
    # Comparing the earlier turns with copies of them (one C-level list comparison) is what
    # keeps a re-count close to the cost of encoding the new turn alone, and it is safe
    # when the caller edits a message in place. Short chats are not remembered: encoding a
    # few turns again costs less than keeping copies of them.
    chats = setup.chats
    start = 0
    remember = len(messages) >= _REMEMBER_FROM
    memo = (chats.get(id(messages)) or chats.get(-1)) if remember else None
    if memo is not None:
        seen = len(memo.messages)
        if seen <= len(messages) and (messages[:seen] if type(messages) is list
                                      else list(messages[:seen])) == memo.messages:
            start, total, last_user = seen, memo.total, memo.last_user
            since_user = list(memo.since_user)
    for i in range(start, len(messages)):
        m = messages[i]
        # Two keys that are role and content (checked below) are the common case: skip the
        # key-set comparison for them.
        if type(m) is not dict or (len(m) != 2 and not m.keys() <= _PLAIN_KEYS):
            return None
        role, content = m.get("role"), m.get("content")
        if type(content) is not str:
            return None
        key = (role, content)
        n = cache.get(key)
        if n is None:
            if role not in _PLAIN_ROLES:
                return None
            text = content.strip() if trim else content
            if "<" in text:  # may hold added tokens: the general path splits them off
                n = backend.count(f"{IM_START}{role}\n{text}{IM_END}\n")
            else:
                n = 3 + ordinary(f"{role}\n{text}")
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            cache[key] = n
        if role == "user" and not (reasoning and "<tool_response>" in content and
                                   is_tool_response(content.strip() if trim else content)):
            last_user = i
            since_user.clear()
        else:
            if role == "system" and ((i and strict) or "fileid://" in content):
                return None
            if reasoning and "</think>" in content:
                return None  # inline reasoning: the renderer splits it out
            since_user.append(n)
        total += n
    if reasoning and strict and last_user < 0:
        return None  # the template refuses a chat without a user turn
    if remember:
        if len(chats) >= _CHATS_LIMIT:
            chats.clear()
        scanned = (memo.messages if memo is not None and start else []) + [
            dict(m) for m in messages[start:]]
        chats[id(messages)] = chats[-1] = _ChatMemo(scanned, total, last_user,
                                                    tuple(since_user))
    if reasoning and 0 <= last_user < len(messages) - 1:
        # Assistant turns after the last query get their think block: render those alone.
        # (Without any user turn the renderer treats none as after it.)
        for i, n in zip(range(last_user + 1, len(messages)), since_user, strict=True):
            role, content = messages[i]["role"], messages[i]["content"]
            if role != "assistant":
                continue
            last = i == len(messages) - 1
            think_key = ("assistant\0last" if last else "assistant\0after", content)
            think = cache.get(think_key)
            if think is None:
                text = content.strip() if trim else content
                message = Message("assistant", (Part("text", text),), index=i)
                think = backend.count(render_assistant(message, text, True, last, profile))
                cache[think_key] = think
            total += think - n
    if messages[0]["role"] != "system" and profile.default_system is not None:
        total += backend.count_cached(f"{IM_START}system\n{profile.default_system}{IM_END}\n")
    return total + backend.count_cached(profile.generation_prompt(enable_thinking))


def count_messages(messages: Iterable[Any] | Mapping[str, Any], model: str | None = None, *,
                   tools: Any = None, enable_thinking: bool | None = None,
                   template: str | TemplateProfile | None = None,
                   family: str | None = None, tokenizer: PathLike | None = None,
                   backend: str | None = None, high_resolution: bool = False,
                   add_generation_prompt: bool = True, preserve_thinking: bool | None = None,
                   enable_search: bool = False,
                   translation_options: Mapping[str, Any] | None = None) -> TokenCount:
    """Prompt tokens of a chat request, as DashScope bills them (``prompt_tokens``).

    ``messages`` and ``tools`` are what the OpenAI-compatible or native API takes;
    ``messages`` may also be the whole request body (OpenAI-compatible, or native DashScope
    with ``input`` / ``parameters``), whose options then apply. ``enable_thinking`` and
    ``high_resolution`` (``vl_high_resolution_images``) are the request's switches.
    ``template`` overrides the model's template profile. With a transformers ``tokenizer``
    and no ``template``, the tokenizer's own chat template renders.

    The count is exact only when every part of the prompt is known locally: web search
    (``enable_search``) adds results server-side, qwen-mt adds a translation prompt, and a
    qwen-long ``fileid://`` reference counts only once its file is registered
    (:func:`register_file`, :func:`count_file`). ``notes`` says what was estimated.
    """
    counting_args("count_messages", model=model, family=family, template=template,
                        tokenizer=tokenizer, backend=backend)
    check.optional_flag(enable_thinking, "count_messages(enable_thinking=)")
    check.flag(high_resolution, "count_messages(high_resolution=)")
    check.flag(add_generation_prompt, "count_messages(add_generation_prompt=)")
    server_additions: tuple[str, ...] = ()
    if isinstance(messages, Mapping):
        req = Request.of(messages, tools=tools, enable_thinking=enable_thinking,
                         search=enable_search or None)
        messages, tools, enable_thinking = req.subject, req.tools, req.enable_thinking
        model = model or req.model
        high_resolution = high_resolution or req.high_resolution
        if preserve_thinking is None:
            preserve_thinking = req.preserve_thinking
        if translation_options is None:
            translation_options = req.translation_options
        server_additions = req.server_additions
    elif enable_search:
        server_additions = Request(messages, search=True).server_additions
    setup = _setup(model, family, template, tokenizer, backend)
    preserve = setup.preserve_capable and _preserves(setup.spec.name, preserve_thinking)
    if (tools is None and add_generation_prompt and not server_additions
            and not setup.special and not preserve):
        fast = _fast_count(messages, setup, enable_thinking)
        if fast is not None:
            return TokenCount(fast, setup.backend.exact, setup.backend.name,
                              setup.backend.family.name, setup.profile.name, text_tokens=fast)
    return _full_count(messages, setup, tools, enable_thinking, template, high_resolution,
                       add_generation_prompt, preserve, server_additions, translation_options)


def _full_count(messages: Any, setup: _Setup, tools: Any, enable_thinking: bool | None,
                template: str | TemplateProfile | None, high_resolution: bool,
                add_generation_prompt: bool, preserve_thinking: bool,
                server_additions: tuple[str, ...],
                translation_options: Mapping[str, Any] | None) -> TokenCount:
    parsed = parse_messages(messages)
    tool_defs = parse_tools(tools)
    media = _Media(setup.spec.vision, high_resolution)
    chat_backend = setup.backend
    notes: list[str] = []
    parsed, file_total, files_known = _resolve_files(parsed, notes)
    if isinstance(chat_backend, TransformersBackend) and template is None \
            and chat_backend.chat_template:
        text = _render_with_tokenizer(chat_backend, messages, parsed, tool_defs, media,
                                      enable_thinking)
        template_name = "tokenizer"
    else:
        text = render_prompt(parsed, setup.profile, tools=tool_defs,
                             enable_thinking=enable_thinking,
                             add_generation_prompt=add_generation_prompt,
                             media_text=media.placeholder, preserve_thinking=preserve_thinking)
        template_name = setup.profile.name
    rendered = _count_rendered(chat_backend, text) + file_total
    exact = chat_backend.exact and files_known
    if setup.translation:
        added = _translation_estimate(chat_backend, translation_options)
        rendered += added
        exact = False
        notes.append(f"{setup.spec.name}: the server wraps the text in a translation prompt "
                     f"that is not published; {added} tokens added as an estimate")
    if setup.partial_billed_closed and parsed and parsed[-1].partial:
        closing = chat_backend.count(f"{IM_END}\n"
                                     + setup.profile.generation_prompt(enable_thinking))
        rendered += closing
        exact = False
        notes.append(f"{setup.spec.name}: a partial prefix is billed as a closed turn plus a "
                     f"generation prompt in Alibaba's own example ({closing} tokens more than "
                     "the open prefix the model continues); counted that way, as an estimate")
    if server_additions:
        exact = False
        notes.extend(server_additions)
    totals = media.totals()
    placeholders = sum(PLACEHOLDER_TOKENS[item.kind] for item in media.items)
    total = rendered - placeholders + sum(totals.values())
    notes.extend(item.note for item in media.items if item.note)
    if media.items and media.assumed_rule:
        notes.append(f"{setup.spec.name} has no media rule in the catalogue; defaults used")
    exact = exact and all(i.exact for i in media.items) and not (
        media.items and media.assumed_rule)
    return TokenCount(total, exact, chat_backend.name, chat_backend.family.name, template_name,
                      text_tokens=total - sum(totals.values()), image_tokens=totals["image"],
                      audio_tokens=totals["audio"], video_tokens=totals["video"],
                      notes=tuple(notes))


def _resolve_files(parsed: tuple[Message, ...], notes: list[str]
                   ) -> tuple[tuple[Message, ...], int, bool]:
    """Messages with their ``fileid://`` references taken out, the registered files' tokens,
    and whether every referenced file was known."""
    total, known, changed = 0, True, False
    out = []
    for message in parsed:
        parts = []
        for part in message.parts:
            if part.kind == "text" and "fileid://" in part.text:
                rest, ids = split_references(part.text)
                for file_id in ids:
                    tokens = file_tokens(file_id)
                    if tokens is None:
                        known = False
                        notes.append(f"messages[{message.index}]: fileid://{file_id} is not "
                                     "registered; its content is not counted "
                                     "(register_file or count_file)")
                    else:
                        total += tokens
                part = replace(part, text=rest)
                changed = True
            parts.append(part)
        out.append(replace(message, parts=tuple(parts)) if changed else message)
    return (tuple(out) if changed else parsed), total, known


def _translation_estimate(backend: TokenizerBackend,
                          options: Mapping[str, Any] | None) -> int:
    added = features().translation_overhead
    if not options:
        return added
    # Terms, translation memory and domain hints are pasted into the server's prompt.
    for key in ("terms", "tm_list"):
        for item in options.get(key) or ():
            if isinstance(item, Mapping):
                added += sum(backend.count(str(v)) for v in item.values())
    domains = options.get("domains")
    if isinstance(domains, str):
        added += backend.count(domains)
    return added


def count_file(path: PathLike, model: str | None = None, *, file_id: str | None = None
               ) -> TokenCount:
    """Tokens of a local UTF-8 text file, as a qwen-long ``fileid://`` reference to it adds
    to the prompt; with ``file_id``, the count is also registered for that id."""
    try:
        text = Path(os.fspath(path)).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise MediaError(f"{os.fspath(path)} is not UTF-8 text (byte {exc.start}); register "
                         "the file's token count instead") from None
    except OSError as exc:
        raise MediaError(f"cannot read {os.fspath(path)}: {exc.strerror}") from None
    counted = count_tokens(text, model or "qwen-long")
    if file_id is not None:
        register_file(file_id, counted.tokens)
    return counted


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
    counting_args("count_completion", model=model, family=family, template=template,
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
