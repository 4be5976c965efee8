"""Which client headers go upstream: an allowlist, and account-level headers per key.

The gateway calls DashScope with the real account's key, so a header the client sends is sent
with the account's authority. Only the headers the openai and dashscope SDKs send to describe a
request are forwarded; anything else is dropped, so a header DashScope adds tomorrow cannot be
used through the gateway until it is listed here or in the config.

Account-level headers choose *which account or what extra service* a call is billed to:
``X-DashScope-WorkSpace`` (the workspace, hence whose bill), ``X-DashScope-Plugin`` (plugins
billed on their own), ``X-DashScope-EncryptionKey`` (an encrypted body the gateway could not
meter), ``X-DashScope-Uid``. A client may send them only when its key's config lists them
(``headers: [X-DashScope-WorkSpace]``) or the config's top-level ``headers`` does, or when the
gateway forwards the client's own key (no virtual keys, no real key configured): then the
account is the client's. Otherwise the call is refused with a 403 naming the header — dropping
it silently would bill the call to a workspace the client did not ask for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache

#: Forwarded for every client: what the openai SDK (``x-stainless-*``, ``OpenAI-Beta``,
#: ``Idempotency-Key``) and the dashscope SDK (``X-DashScope-SSE`` ...) send about a request.
FORWARDED = frozenset({
    "content-type", "accept", "accept-language", "user-agent", "x-request-id",
    "idempotency-key", "openai-beta", "traceparent", "tracestate",
    "x-dashscope-sse", "x-dashscope-async", "x-dashscope-datainspection",
    "x-dashscope-ossresourceresolve", "x-dashscope-sdk-client",
    "x-dashscope-sdk-session-id",
})  # and every ``x-stainless-*``: the openai SDK's platform, runtime and retry headers
#: Headers that choose the account, workspace or a separately billed service.
ACCOUNT = frozenset({"x-dashscope-workspace", "x-dashscope-plugin",
                     "x-dashscope-encryptionkey", "x-dashscope-uid"})

#: Never the client's to send (the config refuses to list them): the credential, and the
#: headers that describe one hop or the body's framing, which the relay sets itself.
SET_BY_GATEWAY = frozenset({
    "authorization", "x-api-key", "host", "content-length", "transfer-encoding",
    "connection", "keep-alive", "proxy-authorization", "proxy-authenticate", "te", "trailer",
    "upgrade", "accept-encoding", "content-encoding", "expect",
})


_NONE: frozenset[str] = frozenset()
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token
_CREDENTIAL = ("authorization", "x-api-key")


class HeaderRefused(Exception):
    """A client sent an account-level header its key may not send."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be in a config's ``headers`` list (None: it can)."""
    if not _TOKEN.fullmatch(name):
        return f"{name!r} is not an HTTP header name"
    if name.lower() in SET_BY_GATEWAY:
        return f"{name} is set by the gateway itself"
    return None


def normalise(names: Iterable[str]) -> frozenset[str]:
    """Header names as the comparisons here use them (lower case, trimmed)."""
    return frozenset(n.strip().lower() for n in names)


@lru_cache(maxsize=1024)
def _allowed(*lists: tuple[str, ...]) -> frozenset[str]:
    return normalise(name for names in lists for name in names)


def upstream(headers: Mapping[str, str], *allowed: tuple[str, ...],
             own_account: bool) -> dict[str, str]:
    """The headers to send upstream for a call: :func:`forwarded`, with the client's
    credential when it is the client's own key that goes upstream (``allowed``: the config's
    ``headers`` lists, as given)."""
    out = forwarded(headers, _allowed(*allowed) if any(allowed) else _NONE,
                    own_account=own_account)
    if own_account:
        out.update((k, v) for k, v in headers.items() if k in _CREDENTIAL)
    return out


def forwarded(headers: Mapping[str, str], allowed: frozenset[str], *,
              own_account: bool) -> dict[str, str]:
    """The client's headers that may go upstream (``headers`` with lower-case names).

    ``allowed``: extra names from the config (the key's and the top-level ``headers``);
    ``own_account``: the client's own key goes upstream, so account headers are its choice.
    Raises :class:`HeaderRefused` for an account-level header that is not allowed.
    """
    out = {}
    for name, value in headers.items():
        if name in FORWARDED or name.startswith("x-stainless-") or name in allowed:
            out[name] = value
        elif name in ACCOUNT:
            if not own_account:
                raise HeaderRefused(name)
            out[name] = value
    return out
