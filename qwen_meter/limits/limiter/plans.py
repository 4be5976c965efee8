"""What the limiter checks for a model: its limits (override, catalogue, default), its two
window keys, and the window checks built from them — each computed once per model and
cached by :class:`~qwen_meter.limits.limiter.core.RateLimiter`."""

from __future__ import annotations

import math
from collections.abc import Mapping

from ...base.errors import NotOffered
from ...catalogue.core import Catalogue, default_catalogue
from ..store import WindowCheck
from .values import RateLimit

#: (request check, token check template, tpm) of one model
Plan = tuple[WindowCheck | None, WindowCheck | None, int | None]


def resolve_limit(model: str, overrides: Mapping[str, RateLimit], catalogue: Catalogue | None,
                  region: str | None, default: RateLimit | None) -> RateLimit:
    """The limits that apply to ``model``: override, catalogue, then ``default``."""
    limit = overrides.get(model)
    if limit is None:
        spec = (catalogue or default_catalogue()).resolve(model)
        limit = overrides.get(spec.name)
        if limit is None:
            try:
                known = spec.offer(region).rate_limits
            except NotOffered:
                known = None
            limit = RateLimit(known.rpm, known.tpm, known.rps, known.tps) if known else \
                (default or RateLimit(None, None))
    return limit


def window_keys(account: str, model: str) -> tuple[str, str]:
    """The request and token window keys of (account, model)."""
    # One hash tag per (account, model): both windows of a model live in one Redis Cluster
    # slot (a script may only touch one slot) and share one memory-store lock stripe.
    base = f"rl:{{{account}:{model}}}"
    return f"{base}:req", f"{base}:tok"


def window_plan(limit: RateLimit, req_key: str, tok_key: str, smooth: bool) -> Plan:
    """(request check, token check template, tpm) for a model's limits and keys."""
    per_second = smooth
    requests = None if limit.rpm is None else WindowCheck(
        req_key, limit.rpm, 1, limit.rps or (math.ceil(limit.rpm / 60) if per_second
                                             else None))
    tokens = None if limit.tpm is None else WindowCheck(
        tok_key, limit.tpm, 0, limit.tps or (math.ceil(limit.tpm / 60) if per_second
                                             else None))
    return requests, tokens, limit.tpm
