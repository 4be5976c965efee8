"""Observers: code that wants to see every metered call as it happens.

An :class:`Observer` gets three events from a :class:`~qwen_meter.meter.Meter`: a call has begun
(everything before sending passed), an attempt is being retried, and a usage record was written
(for every call, refused, failed or ok). Integrations (OpenTelemetry spans, Prometheus metrics,
``logging``) are observers; the meter itself knows nothing about them.

Observers must be cheap and must not raise: an exception from one is logged and swallowed, so a
broken exporter can never lose the caller's response or the usage record.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .call import MeteredCall
    from .log import UsageRecord

log = logging.getLogger("qwen_meter.observers")


class Observer:
    """Base class: override the events you need; each default does nothing."""

    def on_begin(self, call: MeteredCall) -> None:
        """A call passed pre-flight, budgets and the limiter and is about to be sent."""

    def on_retry(self, call: MeteredCall, error: BaseException, delay: float) -> None:
        """An attempt failed with ``error`` and will be tried again after ``delay`` seconds."""

    def on_record(self, record: UsageRecord, call: MeteredCall | None) -> None:
        """A usage record was written. ``call`` is None for a call refused before it began."""


def notify(observers: Sequence[Observer], event: str, *args: Any) -> None:
    """Call ``event`` on every observer, never letting one's failure escape."""
    for observer in observers:
        try:
            getattr(observer, event)(*args)
        except Exception:  # an exporter's fault must not break the metered call
            log.exception("observer %r failed in %s", observer, event)
