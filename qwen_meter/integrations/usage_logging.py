"""Logging: one structured :mod:`logging` record per metered call, on ``qwen_meter.usage``.

    from qwen_meter.integrations.usage_logging import instrument
    instrument(meter)
    logging.basicConfig(level=logging.INFO)

Answered calls (``ok``, ``incomplete``, ``closed``) log at INFO; failures (``error``,
``dropped``), calls whose outcome is unknown (``unknown``: charged at the estimate, the
reason in ``error``) and refusals (``refused``: a budget, the limiter or pre-flight said no)
at WARNING, as does each retry. The message is one readable line; the data rides in ``extra``:
``record.qwen_meter`` holds the whole usage record (the JSONL log's fields) and its fields are
also flat attributes (``record.model``, ``record.cost``, ``record.prompt_tokens`` ...), except
names a :class:`logging.LogRecord` already has, which stay inside ``qwen_meter`` only. JSON
formatters (python-json-logger, structlog's stdlib bridge) pick the flat keys up as they are.
A disabled logger costs one ``isEnabledFor`` check per call.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..meter.observers import Observer

if TYPE_CHECKING:
    from ..meter.call import MeteredCall
    from ..meter.log import UsageRecord
    from ..meter.pipeline import Meter

LOGGER = "qwen_meter.usage"
# Attributes every LogRecord has (or that Formatter sets): flat keys must not shadow them.
_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message", "asctime", "qwen_meter"}
_WARN = frozenset({"error", "dropped", "refused", "unknown"})


def _money(record: UsageRecord) -> str:
    if record.cost is not None:
        return f"{record.cost} {record.currency}"
    return f"unpriced ({record.unpriced})" if record.unpriced else "no cost"


class UsageLoggingObserver(Observer):
    """Logs every call of the meters it observes (see the module docs)."""

    def __init__(self, logger: logging.Logger | str = LOGGER, *, level: int = logging.INFO,
                 warning_level: int = logging.WARNING) -> None:
        self.logger = logger if isinstance(logger, logging.Logger) else \
            logging.getLogger(logger)
        self.level = level
        self.warning_level = warning_level

    @staticmethod
    def extra(record: UsageRecord) -> dict[str, Any]:
        """The ``extra`` mapping logged for ``record``."""
        fields = record.to_dict()
        flat = {k: v for k, v in fields.items() if k not in _RESERVED}
        return {"qwen_meter": fields, **flat}

    def on_retry(self, call: MeteredCall, error: BaseException, delay: float) -> None:
        if not self.logger.isEnabledFor(self.warning_level):
            return
        kind = str(getattr(error, "kind", type(error).__name__))
        self.logger.log(self.warning_level,
                        "qwen_meter: %s %s attempt %d failed (%s), retrying in %.2fs",
                        call.model, call.endpoint, call.attempts, kind, delay,
                        extra={"qwen_meter": {"event": "retry", "model": call.model,
                                              "endpoint": call.endpoint,
                                              "attempt": call.attempts, "error_kind": kind,
                                              "delay": delay, "tags": list(call.tags),
                                              "user": call.user,
                                              "metadata": dict(call.metadata)}})

    def on_record(self, record: UsageRecord, call: MeteredCall | None) -> None:
        level = self.warning_level if record.status in _WARN else self.level
        if not self.logger.isEnabledFor(level):
            return
        if record.status in _WARN:
            detail = f"{record.error_kind or 'error'}: {record.error or ''}".rstrip(": ")
        else:
            detail = (f"{record.prompt_tokens}+{record.completion_tokens} tokens"
                      f"{' (estimated)' if record.usage_estimated else ''}, {_money(record)}")
        self.logger.log(level, "qwen_meter: %s %s %s %s, %.0f ms", record.model,
                        record.endpoint, record.status, detail, record.latency_ms or 0.0,
                        extra=self.extra(record))


def instrument(meter: Meter, logger: logging.Logger | str = LOGGER,
               **options: Any) -> UsageLoggingObserver:
    """Add a :class:`UsageLoggingObserver` to ``meter`` and return it."""
    observer = UsageLoggingObserver(logger, **options)
    meter.add_observer(observer)
    return observer
