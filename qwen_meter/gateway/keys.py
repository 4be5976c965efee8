"""Virtual keys: made, hashed, looked up, and managed in the config file.

A key is ``sk-qm-`` and 32 random URL-safe characters (192 bits). Only its SHA-256 is kept: a
slow password hash buys nothing for a random 192-bit secret, and a fast one keeps the lookup
per request in microseconds. The ``sk-`` start means qwen_meter's log redaction masks a key
that ends up in an error text anyway.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..base.errors import GatewayConfigError
from ..ledger import hash_key as hash_key  # re-exported: the gateway hashes as the ledger stores
from .config import DEFAULT_UPSTREAM, KeyConfig, load_config, parse_config, read_file, write_file

PREFIX = "sk-qm-"


def new_key() -> str:
    """A fresh virtual key (shown once; only its hash is stored)."""
    return PREFIX + secrets.token_urlsafe(24)


def bearer(headers: Mapping[str, str]) -> str | None:
    """The key a client sent: ``Authorization: Bearer …`` (both SDKs), else ``X-Api-Key``."""
    value = headers.get("authorization")
    if value:
        scheme, _, token = value.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return headers.get("x-api-key") or None


class KeyTable:
    """Hash → tenant, for the keys that are not revoked."""

    def __init__(self, keys: Sequence[KeyConfig]) -> None:
        self._by_hash = {k.hash: k for k in keys if not k.revoked}

    def lookup(self, key: str | None) -> KeyConfig | None:
        if not key:
            return None
        return self._by_hash.get(hash_key(key))


# --- `qwen-meter serve keys add|list|revoke` ---------------------------------------------------

@dataclass(frozen=True)
class AddedKey:
    key: str
    config: KeyConfig


def _raw(path: str | os.PathLike[str]) -> dict[str, Any]:
    data = read_file(path) if os.path.exists(path) else None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise GatewayConfigError("must be a mapping", file=str(path))
    parse_config(data, str(path))  # refuse to edit a file that does not validate
    return data


def add_key(path: str | os.PathLike[str], name: str, *, user: str | None = None,
            tags: Sequence[str] = (), upstream: str | None = None, rpm: int | None = None,
            tpm: int | None = None, models: Sequence[str] | None = None,
            budgets: Sequence[Mapping[str, Any]] = ()) -> AddedKey:
    """Add a key to the config file (created if missing) and return it, in clear, once."""
    data = _raw(path)
    key = new_key()
    entry: dict[str, Any] = {"name": name, "hash": hash_key(key), "prefix": key[:10]}
    optional = {"user": user, "tags": list(tags) or None, "upstream": upstream, "rpm": rpm,
                "tpm": tpm, "models": list(models) if models else None,
                "budgets": [dict(b) for b in budgets] or None}
    entry.update({k: v for k, v in optional.items() if v is not None})
    entry["created"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    if not data.get("upstreams"):  # a virtual key needs the gateway's own DashScope key
        data["upstreams"] = {"default": {"url": DEFAULT_UPSTREAM,
                                         "api_key_env": "DASHSCOPE_API_KEY"}}
    keys = list(data.get("keys") or [])
    keys.append(entry)
    data["keys"] = keys
    config = parse_config(data, str(path))  # validates the new entry with the others
    write_file(path, data)
    return AddedKey(key, next(k for k in config.keys if k.name == name))


def list_keys(path: str | os.PathLike[str]) -> list[KeyConfig]:
    return list(load_config(path).keys)


def revoke_key(path: str | os.PathLike[str], name: str) -> KeyConfig:
    """Mark a key revoked (kept in the file, so its records stay attributable)."""
    data = _raw(path)
    for entry in data.get("keys") or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            entry["revoked"] = True
            config = parse_config(data, str(path))
            write_file(path, data)
            return next(k for k in config.keys if k.name == name)
    raise GatewayConfigError(f"no key named {name!r}", file=str(path), field="keys")
