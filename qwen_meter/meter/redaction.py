"""Secret masking for anything that reaches a record, an error or a log message.

:func:`redact` masks keys by value (those registered with :func:`register_secret` and
``$DASHSCOPE_API_KEY`` / ``$OPENAI_API_KEY``) and by shape (``sk-...``, ``Authorization:``
values, bearer tokens, ``api_key=...``, JWTs).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

#: Environment variables whose values are API keys (masked wherever they appear).
KEY_ENV = ("DASHSCOPE_API_KEY", "OPENAI_API_KEY")
MASK = "***"

# By shape. Each pattern keeps its first group (the label) and masks the rest.
_SHAPES = re.compile(
    r"((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token|apikey)\s+)?)"
    r"[^\s\"',;]+"
    r"|(bearer\s+)[A-Za-z0-9._~+/=-]+"
    r"|((?:x-)?(?:dashscope-)?api[_-]?key[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&]+"
    r"|((?:access[_-]?token|secret|password)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&]+"
    r"|(?<![A-Za-z0-9])(sk-[A-Za-z0-9_\-]{2})[A-Za-z0-9_\-]+"
    r"|()\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",
    re.IGNORECASE)
_registered: set[str] = set()
_registered_lock = threading.Lock()
#: Values shorter than this are not masked by value (they would mask ordinary words).
MIN_SECRET_LENGTH = 8


def register_secret(value: Any) -> None:
    """Mask ``value`` (an API key the meter's client is configured with) in every record,
    error and log message from now on. Short or non-string values are ignored."""
    if isinstance(value, str) and len(value.strip()) >= MIN_SECRET_LENGTH:
        with _registered_lock:
            _registered.add(value.strip())


def register_client_secrets(client: Any) -> None:
    """Register the key a client object is configured with (``api_key``, or its
    ``Authorization`` header) — called when a meter wraps the client."""
    register_secret(getattr(client, "api_key", None))
    owner = client if isinstance(client, type) else type(client)
    if owner.__module__.startswith("dashscope"):  # the SDK keeps its key on the module
        import sys

        register_secret(getattr(sys.modules.get("dashscope"), "api_key", None))
    headers = getattr(client, "headers", None)
    if isinstance(headers, Mapping) or hasattr(headers, "get"):
        with contextlib.suppress(Exception):
            auth = headers.get("authorization")  # type: ignore[union-attr]
            if isinstance(auth, str):
                register_secret(auth.split()[-1] if auth.split() else None)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with API keys and tokens masked: ``secrets`` and the registered keys by value,
    then anything shaped like a key, an ``Authorization`` value or a bearer token."""
    if not isinstance(text, str):
        text = str(text)
    with _registered_lock:
        values = set(_registered)
    values.update(s for s in secrets if isinstance(s, str) and s)
    values.update(v for v in (os.environ.get(name) for name in KEY_ENV)
                  if v and len(v) >= MIN_SECRET_LENGTH)
    if values:
        text = _by_value(tuple(sorted(values, key=len, reverse=True))).sub(MASK, text)
    return _SHAPES.sub(_mask_shape, text)


@functools.lru_cache(maxsize=32)
def _by_value(values: tuple[str, ...]) -> re.Pattern[str]:
    # Longest first (no partial leftovers); any case, since servers and proxies echo a key
    # upper- or lower-cased (an error text quoting the header, a case-folding log).
    return re.compile("|".join(map(re.escape, values)), re.IGNORECASE)


def _mask_shape(match: re.Match[str]) -> str:
    label = next((g for g in match.groups() if g is not None), "")
    return label + MASK
