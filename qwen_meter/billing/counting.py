"""The counting API: tokens of text, of chat requests and of replies, for a named model.

Text counting lives here (:func:`count_tokens`, :func:`encode`, :func:`decode`,
:func:`get_tokenizer`, :func:`count_file`); chat counting (:func:`count_messages`,
:func:`render_messages`, :func:`count_completion`) lives in :mod:`.chat_counting` and the
per-model setup with :class:`TokenCount` in :mod:`.model_setup`. Both are re-exported here, so
``qwen_meter.billing.counting`` (and its 0.2 path ``qwen_meter.counting``) still offers the
whole API.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..base import checks as check
from ..base.errors import MediaError
from ..tokens.backends import TokenizerBackend
from ..tokens.files import register_file
from .chat_counting import count_completion, count_messages, render_messages
from .checks import counting_args
from .model_setup import DEFAULT_MODEL, PathLike, TokenCount, _setup

__all__ = ["DEFAULT_MODEL", "PathLike", "TokenCount", "count_completion", "count_file",
           "count_messages", "count_tokens", "decode", "encode", "get_tokenizer",
           "register_file", "render_messages"]


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
