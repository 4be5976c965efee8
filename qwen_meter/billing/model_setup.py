"""What counting needs of one model, built once: the setup behind every counting function.

:func:`_setup` resolves a model name (the small model index, or the catalogue when the index
cannot answer or ``$QWEN_METER_CATALOGUE`` overrides it) to its tokenizer backend, template
profile and feature flags, cached per (model, options); the setup also holds the turn caches
of the fast chat count (:mod:`.fast_count`). :class:`TokenCount` is what every counting
function returns.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ..tokens.backends import TiktokenBackend, TokenizerBackend, TransformersBackend, load_backend
from ..tokens.templates import TemplateProfile, features, get_profile
from .index import ModelInfo, lookup, rule_note

if TYPE_CHECKING:  # the catalogue loads only when the small index cannot answer
    from ..catalogue.core import Catalogue
    from ..catalogue.records import ModelSpec
    from .fast_count import _ChatMemo

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
    #: why counts are a guess: the model is unlisted (a name rule's or a newer snapshot's)
    estimate_note: str | None = None
    #: turn counts by (role, content), for this backend and profile.
    turns: dict[tuple[Any, str], int] = field(default_factory=dict)
    #: the conversations counted last, by id of their list (and -1: the very last one).
    chats: dict[int, _ChatMemo] = field(default_factory=dict)
    #: the template's own text, counted once: the generation prompt by ``enable_thinking``
    #: and the default system turn ("system") — constants of the setup, not a cache of
    #: what requests said, so they are not emptied with ``turns``.
    fixed: dict[bool | str | None, int] = field(default_factory=dict)

    #: whether the backend's ordinary BPE path is the exact one (tiktoken)
    ordinary: bool = field(init=False)
    #: whether requests need more than the plain renderer
    special: bool = field(init=False)
    _count_fields: dict[str, Any] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Worked out once per setup, not per request: counting short chats is a hot loop.
        backend = self.backend
        special = self.translation or (isinstance(backend, TransformersBackend)
                                       and backend.chat_template is not None)
        object.__setattr__(self, "ordinary", isinstance(backend, TiktokenBackend))
        object.__setattr__(self, "special", special)
        # A name the catalogue does not list is counted as a guess, and says so.
        note = self.estimate_note
        object.__setattr__(self, "_count_fields", {
            "tokens": 0, "exact": backend.exact and note is None, "backend": backend.name,
            "family": backend.family.name, "template": self.profile.name, "text_tokens": 0,
            "image_tokens": 0, "audio_tokens": 0, "video_tokens": 0,
            "notes": (note,) if note else ()})

    def counted(self, tokens: int) -> TokenCount:
        """The :class:`TokenCount` of a plain text prompt of ``tokens`` (all text)."""
        count = object.__new__(TokenCount)
        # A frozen dataclass sets each field through object.__setattr__; the fields every
        # fast-path count shares are copied from one dict made with the setup, and the two
        # that vary set after, for the count every fast-path request returns.
        fields = count.__dict__
        fields.update(self._count_fields)
        fields["tokens"] = fields["text_tokens"] = tokens
        return count


def _setup(model: str | None, family: str | None, template: str | TemplateProfile | None,
           tokenizer: PathLike | None, backend: str | None) -> _Setup:
    path = None if tokenizer is None else os.fspath(tokenizer)
    # With catalogue overrides the full catalogue decides; otherwise the small index does.
    if _overridden():
        from ..catalogue.core import default_catalogue

        return _cached_setup(default_catalogue(), model or DEFAULT_MODEL, family, template,
                             path, backend)
    return _cached_setup(None, model or DEFAULT_MODEL,
                         family, template, path, backend)


def _overridden() -> bool:
    """Whether $QWEN_METER_CATALOGUE is set (and not empty).

    ``os.environ.get`` of a name that is not set raises and catches a KeyError inside it:
    1.3-1.6 µs, a fifth of counting a short chat from its cached turns. The mapping's own
    dict (what ``os.environ`` reads and writes through) answers in a lookup."""
    data = getattr(os.environ, "_data", None)
    if data is None or _ENV_KEY is None:  # os.environ is not the stdlib's os._Environ
        return bool(os.environ.get(_OVERRIDE_ENV))
    return bool(data.get(_ENV_KEY))


_ENV_KEY = os.environ.encodekey(_OVERRIDE_ENV) if hasattr(os.environ, "encodekey") else None


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
    return _Setup(spec, chosen, profile, estimate_note=None if family and template
                  else _estimate_note(spec),
                  translation=rules.translation.fullmatch(spec.name) is not None,
                  preserve_capable=rules.preserve_thinking.fullmatch(spec.name) is not None,
                  partial_billed_closed=rules.partial_billed_closed.fullmatch(spec.name)
                  is not None)


def _estimate_note(spec: ModelSpec | ModelInfo) -> str | None:
    """Why counting this model is a guess, or None when the catalogue lists it."""
    if isinstance(spec, ModelInfo):
        return spec.estimate_note
    if spec.matched_rule is None:
        return None
    if spec.matched_rule.startswith("newer snapshot of "):
        return spec.note
    return rule_note(spec.name, spec.matched_rule)
