"""The Meter's arguments: their checks and defaults (the default usage log's place).

``Meter()`` checks every argument with :func:`_check_meter_args` before using any, each error
naming the argument; ``log=`` defaults to :data:`DEFAULT_LOG`, which means
:func:`default_log_path`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..billing.unlisted import FallbackPrice
from ..limits.budget import Budget
from ..limits.limiter import RateLimiter
from .log import UsageLog
from .observers import Observer
from .server_errors import RetryPolicy

UNPRICED_POLICIES = ("refuse", "allow")


class _DefaultLog:
    """The meter's ``log`` when not given: see :func:`default_log_path`."""


DEFAULT_LOG = _DefaultLog()


def default_log_path() -> Path:
    """Where a meter logs when not told: $QWEN_METER_LOG, else the user's data folder
    (platformdirs: ``$XDG_DATA_HOME/qwen_meter`` or ``~/.local/share/qwen_meter`` on Linux,
    ``~/Library/Application Support/qwen_meter`` on macOS, ``%LOCALAPPDATA%\\qwen_meter`` on
    Windows)."""
    if os.environ.get("QWEN_METER_LOG"):
        return Path(os.environ["QWEN_METER_LOG"])
    from platformdirs import user_data_path  # imported here: only a default log needs it

    return user_data_path("qwen_meter", appauthor=False) / "usage.jsonl"


def _check_meter_args(*, region: Any, catalogue: Any, limiter: Any, budget: Any, log: Any,
                      flags: Mapping[str, Any], timeout: Any, retry: Any, tags: Any, user: Any,
                      observers: Any, unpriced: Any, fallback_price: Any) -> None:
    """Types and values of Meter()'s arguments, each error naming the argument."""
    from ..base import checks as check
    from ..catalogue.checks import catalogue_object
    from ..limits.store.base import check_seconds

    check.optional_text(region, "Meter(region=)")
    catalogue_object(catalogue, "Meter(catalogue=)")
    check.optional_instance(limiter, RateLimiter, "Meter(limiter=)", "a RateLimiter")
    if budget is not None and not isinstance(budget, Budget):
        check.sequence(budget, "Meter(budget=)")
        for n, item in enumerate(budget):
            check.instance(item, Budget, f"Meter(budget[{n}]=)", "a Budget")
    if log is not None and not isinstance(log, (str, os.PathLike, UsageLog, _DefaultLog)):
        raise check.type_error("Meter(log=)", "a path, a UsageLog or None", log)
    for name, value in flags.items():
        check.flag(value, f"Meter({name}=)")
    check_seconds(timeout, "Meter(timeout=)", allow_none=True)
    check.optional_instance(retry, RetryPolicy, "Meter(retry=)", "a RetryPolicy")
    check.sequence(tags, "Meter(tags=)")
    for n, tag in enumerate(tags):
        check.text(tag, f"Meter(tags[{n}]=)")
    check.optional_text(user, "Meter(user=)")
    check.sequence(observers, "Meter(observers=)")
    for n, observer in enumerate(observers):
        check.instance(observer, Observer, f"Meter(observers[{n}]=)", "an Observer")
    if unpriced not in UNPRICED_POLICIES:
        from ..base.errors import ConfigurationError

        raise ConfigurationError(f"Meter(unpriced=): must be 'refuse' or 'allow', not "
                                 f"{unpriced!r}")
    check.optional_instance(fallback_price, FallbackPrice, "Meter(fallback_price=)",
                            "a FallbackPrice")
