"""One exception tree for everything qwen_meter raises on purpose.

Catch :class:`QwenMeterError` to handle all of them; each subclass says what
went wrong and, where it can, where (file, model, field, message index).
"""

from __future__ import annotations

from collections.abc import Sequence


class QwenMeterError(Exception):
    """Base class of every error qwen_meter raises deliberately."""


class QwenMeterWarning(Warning):
    """Base class of every warning qwen_meter issues: filter on it to see or silence them all
    (``-W error::qwen_meter.QwenMeterWarning`` turns them into errors, as the test suite
    does). Each subclass also derives from the standard category it had before."""


class CalibrationWarning(QwenMeterWarning, RuntimeWarning):
    """The server counted a prompt differently from qwen_meter (once per request shape): a
    stale catalogue template or tokenizer, or a server-side change."""


class StoreUnavailableWarning(QwenMeterWarning, RuntimeWarning):
    """A budget or limiter with ``on_store_error="open"`` went ahead without its store."""


class MovedWarning(QwenMeterWarning, DeprecationWarning):
    """A module imported by its 0.2 path (it still works, until 0.4)."""


class UnknownModel(QwenMeterError, KeyError):
    """A model name that the catalogue cannot resolve."""

    def __init__(self, name: str, suggestions: Sequence[str] = ()) -> None:
        self.name = name
        self.suggestions = tuple(suggestions)
        hint = f"; did you mean {', '.join(self.suggestions)}?" if self.suggestions else ""
        super().__init__(f"unknown model {name!r}{hint}")

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0])


class NotOffered(QwenMeterError, KeyError):
    """A model that exists, but not in the requested region (or without the needed data)."""

    def __init__(self, model: str, region: str, offered: Sequence[str]) -> None:
        self.model = model
        self.region = region
        self.offered = tuple(offered)
        where = f"; offered in: {', '.join(self.offered)}" if self.offered else \
            "; the catalogue has no region data for it"
        super().__init__(f"{model} is not offered in region {region!r}{where}")

    def __str__(self) -> str:
        return str(self.args[0])


class UnknownFamily(QwenMeterError, KeyError):
    """A tokenizer family or template profile name that does not exist."""

    def __init__(self, kind: str, name: str, known: Sequence[str]) -> None:
        self.kind = kind
        self.name = name
        self.known = tuple(known)
        super().__init__(f"unknown {kind} {name!r}; known: {', '.join(self.known)}")

    def __str__(self) -> str:
        return str(self.args[0])


class CatalogueError(QwenMeterError):
    """A data file (catalogue, family table) that is malformed."""

    def __init__(self, message: str, *, file: str | None = None, model: str | None = None,
                 field: str | None = None) -> None:
        self.reason = message  # what was wrong, without the where
        self.file = file
        self.model = model
        self.field = field
        where = ", ".join(
            f"{k} {v!r}" for k, v in (("file", file), ("model", model), ("field", field)) if v
        )
        super().__init__(f"{message} ({where})" if where else message)


class TokenizerUnavailable(QwenMeterError):
    """No tokenizer backend could be loaded for the requested family or path."""


class InvalidMessages(QwenMeterError, ValueError):
    """Chat messages that are not messages the API would accept.

    ``index`` is the message index and ``part`` the content-part index, when known.
    """

    def __init__(self, reason: str, *, index: int | None = None, part: int | None = None) -> None:
        self.reason = reason
        self.index = index
        self.part = part
        where = ""
        if index is not None:
            where = f"messages[{index}]"
            if part is not None:
                where += f".content[{part}]"
            where += ": "
        super().__init__(f"{where}{reason}")


class MediaError(QwenMeterError, ValueError):
    """Image, audio or video input that cannot be measured (unreadable, malformed)."""


class InputDecodeError(QwenMeterError, ValueError):
    """A text file that is not valid UTF-8."""


class UsageParseError(QwenMeterError, ValueError):
    """A usage record with missing or negative counts."""


class LimitExceeded(QwenMeterError):
    """A request that does not fit the model; the numbers are attributes."""

    def __init__(self, message: str, *, prompt_tokens: int, max_input: int | None,
                 context_window: int | None, requested_output: int | None,
                 max_output: int | None, model: str, region: str, thinking: bool) -> None:
        self.prompt_tokens = prompt_tokens
        self.max_input = max_input
        self.context_window = context_window
        self.requested_output = requested_output
        self.max_output = max_output
        self.model = model
        self.region = region
        self.thinking = thinking
        super().__init__(message)


class ContextLimitExceeded(LimitExceeded):
    """The prompt (plus requested output) does not fit the model's input or context limit."""


class OutputLimitExceeded(LimitExceeded):
    """The requested output length is above what the model can produce."""


class BudgetExceeded(QwenMeterError):
    """Spending this much would take a budget over its limit."""


class ConfigurationError(QwenMeterError, ValueError):
    """A setting that cannot work: a negative budget, an unknown time zone or currency."""


class RateLimited(QwenMeterError):
    """The client-side limiter refused the call; ``retry_after`` is in seconds (``inf`` when
    the call can never fit the limit)."""

    def __init__(self, message: str, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(message)


# --- issue #10 (pipeline) -----------------------------------------------------------------

class UnpricedCall(BudgetExceeded):
    """A hard budget is in force and the call cannot be priced (a model the catalogue does
    not list or does not offer in the region), so it cannot be checked against the budget.
    The message names the fixes: a catalogue override, ``Meter(fallback_price=...)``, or
    ``Meter(unpriced="allow")``."""


# --- issue #17: integrations ----------------------------------------------------------------

class MissingExtra(QwenMeterError, ImportError):
    """An integration's library is not installed; the message names the extra to install."""


# --- issue #11 [limits]: ledger misuse and bad waits ---------------------------------------


class InvalidTimeout(ConfigurationError, TypeError):
    """A timeout (or other wait in seconds) that is not a finite number >= 0: NaN, a negative
    number, infinity (use ``None`` to wait without bound) or not a number at all."""


class ReservationError(QwenMeterError, LookupError):
    """A budget reservation that cannot be committed; ``reservation`` is its id, ``budget``
    the budget's name. Nothing was counted."""

    def __init__(self, message: str, *, reservation: str, budget: str) -> None:
        self.reservation = reservation
        self.budget = budget
        super().__init__(message)


class ReservationUnknown(ReservationError):
    """The store holds no such reservation (never made there, or forgotten long ago)."""


class ReservationSettled(ReservationError):
    """The reservation was already committed or released; ``state`` says which."""

    def __init__(self, message: str, *, reservation: str, budget: str, state: str) -> None:
        self.state = state
        super().__init__(message, reservation=reservation, budget=budget)


class ReservationExpired(ReservationError):
    """The reservation's lease ran out before the commit (its hold was already freed for
    others), so committing it now could take the budget over its limit."""


# --- issue 16: gateway ----------------------------------------------------------------------

class GatewayConfigError(ConfigurationError):
    """A gateway configuration that cannot work; names the file and the field."""

    def __init__(self, message: str, *, file: str | None = None,
                 field: str | None = None) -> None:
        self.file = file
        self.field = field
        where = ": ".join(part for part in (file, field) if part)
        super().__init__(f"{where}: {message}" if where else message)


# --- issue #14 (hardening): invalid arguments at the public boundary ---------------------

class InvalidArgument(QwenMeterError, ValueError):
    """An argument of a public function with a value it cannot take (``where`` names the
    function and argument, e.g. ``cost(at=)``)."""

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class InvalidArgumentType(InvalidArgument, TypeError):
    """An argument of the wrong type (also a :class:`TypeError`, as Python users expect)."""


# --- issue #13 (request features) ---------------------------------------------------------


class InvalidRequest(InvalidMessages):
    """A request option DashScope would refuse (``n`` out of range, a bad ``thinking_budget``,
    a ``partial`` prefix that is not the last message...). ``field`` names the option."""

    def __init__(self, reason: str, *, field: str, index: int | None = None) -> None:
        self.field = field
        super().__init__(f"{field}: {reason}", index=index)
