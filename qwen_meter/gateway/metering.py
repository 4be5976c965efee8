"""Every call the gateway makes into the meter's pipeline, in one place.

The meter's async twins (``begin_async``, ``finish_async``, ``fail_async``) are awaited, so
the event loop never blocks on the store's network round trips. With ``inline`` (a memory
store: no I/O but an appended log line) the sync methods run on the loop: the twins' thread
hop for the log write would cost as much as the work itself. ``settle_now`` is for paths
where awaiting is no longer safe (a task being cancelled): it settles synchronously.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..meter.call import MeteredCall
from ..meter.log import UsageRecord
from ..meter.pipeline import Meter


async def begin(meter: Meter, request: Mapping[str, Any], *, endpoint: str,
                tags: Sequence[str] = (), user: str | None = None,
                inline: bool = False) -> MeteredCall:
    """Pre-flight, budgets and limiter; raises (a qwen_meter error) if the call may not go."""
    if inline:
        return meter.begin(request, endpoint=endpoint, tags=tags, user=user)
    return await meter.begin_async(request, endpoint=endpoint, tags=tags, user=user)


async def finish(call: MeteredCall, usage: Any, *, inline: bool = False,
                 **details: Any) -> UsageRecord:
    """Settle a call that was answered (usage None: estimated from ``reply``)."""
    if inline:
        return call.finish(usage, **details)
    return await call.finish_async(usage, **details)


async def fail(call: MeteredCall, error: BaseException, *, inline: bool = False,
               **details: Any) -> UsageRecord:
    """Settle a call that failed: release its holds, record the error."""
    if inline:
        return call.fail(error, **details)
    return await call.fail_async(error, **details)


async def interrupted(call: MeteredCall, exc: BaseException, phase: str, *,
                      inline: bool = False, **seen: Any) -> UsageRecord:
    """Settle a call an exception or a cancellation cut short (see
    :meth:`MeteredCall.interrupted <qwen_meter.meter.call.MeteredCall.interrupted>`)."""
    if inline:
        return call.interrupted(exc, phase, **seen)
    return await call.interrupted_async(exc, phase, **seen)


def settle_now(call: MeteredCall, usage: Any, **details: Any) -> UsageRecord | None:
    """Settle synchronously, once (for cancellation paths)."""
    if call.settled:
        return None
    return call.finish(usage, **details)
