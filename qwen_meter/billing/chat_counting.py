"""Chat counting: prompt tokens of a chat request and completion tokens of a reply.

:func:`count_messages` takes the fast per-turn path (:mod:`.fast_count`) when it can and
otherwise renders the prompt with the model's template (media, ``fileid://`` files,
translation and server-side additions included); :func:`render_messages` gives that prompt
text, :func:`count_completion` counts a reply as DashScope bills it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from ..base import checks as check
from ..base.errors import InvalidMessages
from ..tokens.backends import TokenizerBackend, TransformersBackend
from ..tokens.chat import IM_END, IM_START, render_completion, render_prompt
from ..tokens.files import file_tokens, split_references
from ..tokens.media import PLACEHOLDER_TOKENS, VISION_PLACEHOLDER, MediaTokens, VisionRule, measure
from ..tokens.messages import (
    Message,
    Part,
    as_mapping,
    parse_messages,
    parse_tool_calls,
    parse_tools,
)
from ..tokens.templates import TemplateProfile, features
from .checks import counting_args
from .fast_count import _fast_count
from .model_setup import PathLike, TokenCount, _Setup, _setup
from .request import Request


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
    if (type(messages) is list and tools is None and high_resolution is False
            and add_generation_prompt is True and enable_search is False
            and template is None and family is None and tokenizer is None and backend is None
            and (enable_thinking is None or enable_thinking is True or enable_thinking is False)
            and (model is None or (type(model) is str and model.strip()))):
        # The common call — a list of messages, a model name, no options: its arguments are
        # checked by the test above, so the fixed cost per request stays a few lookups.
        setup = _setup(model, None, None, None, None)
        if not setup.special and not (setup.preserve_capable
                                and _preserves(setup.spec.name, preserve_thinking)):
            fast = _fast_count(messages, setup, enable_thinking)
            if fast is not None:
                return setup.counted(fast)
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
            return setup.counted(fast)
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
    if setup.estimate_note:  # an unlisted model: its tokenizer and template are a guess
        exact = False
        notes.insert(0, setup.estimate_note)
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
