"""Argument checks of the rate limiter: its constructor's arguments (once) and each call's
model, tokens and wait flag (before every request, so the common call is one line)."""

from __future__ import annotations

from collections.abc import Mapping

from ...base import checks as check
from ...base.errors import InvalidArgument
from ...catalogue.checks import catalogue_object
from ..store import Store
from .values import RateLimit

FAIL_POLICIES = ("closed", "open")


def check_limiter_args(*, store: object, account: object, region: object, limits: object,
                       default: object, smooth: object, catalogue: object,
                       clocks: tuple[tuple[str, object], ...], async_sleep: object
                       ) -> dict[str, RateLimit]:
    """Types of RateLimiter()'s arguments; returns ``limits`` as {model: RateLimit}."""
    if store is not None and not isinstance(store, (Store, str)) \
            and not type(store).__module__.startswith("redis"):
        raise check.type_error("RateLimiter(store=)", "a Store, a store URL or a Redis client",
                               store)
    check.text(account, "RateLimiter(account=)")
    check.optional_text(region, "RateLimiter(region=)")
    check.optional_instance(default, RateLimit, "RateLimiter(default=)", "a RateLimit")
    check.flag(smooth, "RateLimiter(smooth=)")
    catalogue_object(catalogue, "RateLimiter(catalogue=)")
    for name, fn in clocks:
        check.callable_(fn, f"RateLimiter({name}=)")
    check.callable_(async_sleep, "RateLimiter(async_sleep=)", optional=True)
    if limits is None:
        return {}
    if not isinstance(limits, Mapping):
        raise check.type_error("RateLimiter(limits=)",
                               "a mapping of model name to RateLimit or (rpm, tpm)", limits)
    parsed: dict[str, RateLimit] = {}
    for name, value in limits.items():
        where = f"RateLimiter(limits[{name!r}]=)"
        check.text(name, "RateLimiter(limits=) key")
        if isinstance(value, RateLimit):
            parsed[name] = value
        elif isinstance(value, (tuple, list)) and len(value) == 2:
            parsed[name] = RateLimit(check.optional_whole(value[0], where, minimum=1),
                                     check.optional_whole(value[1], where, minimum=1))
        else:
            raise check.type_error(where, "a RateLimit or (rpm, tpm)", value)
    return parsed


def check_call(model: object, tokens: object, wait: object, method: str) -> None:
    # The timeout is checked by RateLimiter._deadline (InvalidTimeout); these are the rest.
    if type(model) is str and type(tokens) is int and tokens >= 0 \
            and type(wait) is bool and model.strip():
        return  # the common call, checked in one line: this runs before every request
    where = f"RateLimiter.{method}"
    check.model_name(model, f"{where}(model=)")
    if model is None:
        raise InvalidArgument("a model is required", where=f"{where}(model=)")
    check.whole(tokens, f"{where}(tokens=)")
    check.flag(wait, f"{where}(wait=)")
