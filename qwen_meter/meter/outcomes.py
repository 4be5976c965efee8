"""How a metered call ends when its outcome was not seen: the caller gave up (``cancelled``),
the connection timed out or broke after the request left (``unknown``), or the call was given
up before it left (:meth:`~Outcomes.abandon`).

A request that left may have been billed, so those calls are charged, not forgiven: the usage
seen so far or the estimate, marked estimated, committed to the budgets. :func:`was_sent` tells
the two kinds of transport failure apart: one that happened before the request left (no
connection made: nothing billed, the holds are released) and one after (the outcome is
unknown). :func:`settled_shielded` runs a settlement to its end through any cancellation.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..limits.budget import Budget, BudgetStatus, Reservation
from ..limits.limiter import Permit
from . import steps
from .log import UsageRecord, redact

if TYPE_CHECKING:
    from ..limits.limiter import RateLimiter

#: Transport errors raised before the request left (httpx, aiohttp, requests / urllib3 and the
#: OS): no connection, so nothing can have been billed.
NOT_SENT = frozenset({
    "ConnectError", "ConnectTimeout", "PoolTimeout", "UnsupportedProtocol", "LocalProtocolError",
    "InvalidURL", "ProxyError", "ClientConnectorError", "ClientConnectorDNSError",
    "ClientConnectorSSLError", "ClientConnectorCertificateError", "ConnectionTimeoutError",
    "NewConnectionError", "ConnectTimeoutError", "NameResolutionError", "ConnectionRefusedError",
    "MissingSchema", "InvalidSchema", "gaierror"})
#: Transport failures in general: one that is not in :data:`NOT_SENT` happened (or may have
#: happened) after the request left — a read timeout, a dropped connection.
TRANSPORT = frozenset({
    "TransportError", "TimeoutException", "ClientError", "RequestException", "HTTPError",
    "TimeoutError", "OSError", "ConnectionError", "ServerTimeoutError"})


def _names(exc: BaseException) -> set[str]:
    names: set[str] = set()
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        item = todo.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        names.update(cls.__name__ for cls in type(item).__mro__)
        todo += [item.__cause__, item.__context__, getattr(item, "reason", None),
                 *(a for a in item.args[:1] if isinstance(a, BaseException))]
    return names


def was_sent(exc: BaseException) -> bool:
    """True if a client's ``exc`` means the request may have reached DashScope (a read
    timeout, a connection lost while waiting): its outcome is unknown. False for a failure
    to connect (or any error that is not a transport failure: raised before sending)."""
    names = _names(exc)
    return not names & NOT_SENT and bool(names & TRANSPORT)


class Flag:
    """Set once, waited on by any number of threads: what ``threading.Event`` offers, for the
    one a call needs (a second settlement waits for the first one's record). An ``Event``
    builds a ``Condition`` in Python and takes it again to be set — more than the rest of
    making a call; this is one lock, held until the flag is set."""

    __slots__ = ("_done", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._done = False

    def set(self) -> None:
        if not self._done:
            self._done = True
            with contextlib.suppress(RuntimeError):  # set twice at once: released already
                self._lock.release()

    def is_set(self) -> bool:
        return self._done

    def wait(self, timeout: float | None = None) -> bool:
        """True once set; False if ``timeout`` seconds passed first."""
        if self._done:
            return True
        if self._lock.acquire(timeout=-1 if timeout is None else timeout):
            with contextlib.suppress(RuntimeError):  # a second set() released it meanwhile
                self._lock.release()  # let the next waiter through
            return True
        return self._done


class Outcomes:
    """:class:`~qwen_meter.meter.call.MeteredCall`'s settlements for an unseen outcome."""

    if TYPE_CHECKING:
        reservations: list[tuple[Budget, Reservation]]
        permit: Permit | None
        limiter: RateLimiter | None
        recorded: Flag

        def _claim(self) -> bool: ...

        def _fail_steps(self, error: BaseException, *, http_status: int | None,
                        request_id: str | None, status: str) -> steps.Step[UsageRecord]: ...

        def _finish_steps(self, usage: Any, served_model: str | None, request_id: str | None,
                          reply: Any, http_status: int | None, status: str,
                          error: tuple[str, str] | None = None) -> steps.Step[UsageRecord]: ...

    def finish_unknown(self, status: str, reason: BaseException | str, *,
                       usage_so_far: Any = None, reply: Any = None,
                       served_model: str | None = None, request_id: str | None = None,
                       http_status: int | None = None) -> UsageRecord:
        """Settle a call that was sent but whose outcome the caller never saw: ``cancelled``
        (the caller gave up), ``unknown`` (a timeout or a lost connection after sending).
        DashScope may well have billed it, so it is charged, not forgiven: the usage seen so
        far (a stream's cumulative usage, the reply's text counted) or the estimate, marked
        estimated, committed to the budgets and reconciled with the limiter; ``error`` says
        why. Never raises."""
        return steps.run(self._unknown_steps(status, reason, usage_so_far, reply, served_model,
                                             request_id, http_status))

    async def finish_unknown_async(self, status: str, reason: BaseException | str, *,
                                   usage_so_far: Any = None, reply: Any = None,
                                   served_model: str | None = None,
                                   request_id: str | None = None,
                                   http_status: int | None = None) -> UsageRecord:
        """:meth:`finish_unknown` for asyncio (shielded like :meth:`finish_async`)."""
        return await settled_shielded(self._unknown_steps(status, reason, usage_so_far, reply,
                                                   served_model, request_id, http_status))

    def _unknown_steps(self, status: str, reason: BaseException | str, usage: Any, reply: Any,
                       served_model: str | None, request_id: str | None,
                       http_status: int | None) -> steps.Step[UsageRecord]:
        if isinstance(reason, BaseException):
            kind = type(reason).__name__
            text = str(reason) or kind
        else:
            kind, text = status, reason
        return self._finish_steps(usage, served_model, request_id, reply, http_status, status,
                                  error=(redact(text), kind))

    def interrupted(self, exc: BaseException, phase: str, **seen: Any) -> UsageRecord:
        """Settle a call an exception cut short, by what was under way (``phase``):
        ``send`` (sending and waiting for the answer: a failure to connect releases the
        holds; a timeout or lost connection is ``unknown``; a cancellation, Ctrl-C, is
        ``cancelled``, both charged), ``body`` / ``stream`` (an answer was arriving: a
        cancellation is ``cancelled``, an error ``dropped``, charged with what was ``seen``),
        ``refused`` (DashScope had answered with an error: nothing billed)."""
        return steps.run(self._interrupted_steps(exc, phase, seen))

    async def interrupted_async(self, exc: BaseException, phase: str,
                                **seen: Any) -> UsageRecord:
        """:meth:`interrupted` for asyncio (shielded like :meth:`finish_async`)."""
        return await settled_shielded(self._interrupted_steps(exc, phase, seen))

    def _interrupted_steps(self, exc: BaseException, phase: str, seen: dict[str, Any]
                           ) -> steps.Step[UsageRecord]:
        error = isinstance(exc, Exception)
        if phase == "refused" or (phase == "send" and error and not was_sent(exc)):
            return self._fail_steps(exc, http_status=seen.get("http_status"),
                                    request_id=seen.get("request_id"), status="error")
        if phase != "send" and error:  # the answer was arriving when the connection failed
            return self._finish_steps(seen.get("usage"), seen.get("served_model"),
                                      seen.get("request_id"), seen.get("reply"),
                                      seen.get("http_status", 200), "dropped")
        return self._unknown_steps("unknown" if error else "cancelled", exc,
                                   seen.get("usage"), seen.get("reply"),
                                   seen.get("served_model"), seen.get("request_id"),
                                   seen.get("http_status"))

    def abandon(self) -> None:
        """Release every hold, with no record: the call never left (cancelled while it was
        being admitted). Nothing happens if it was settled."""
        steps.run(self._abandon_steps())

    async def abandon_async(self) -> None:
        """:meth:`abandon` for asyncio."""
        await steps.run_shielded(self._abandon_steps())

    def _abandon_steps(self) -> steps.Step[None]:
        if not self._claim():
            return
        self.recorded.set()  # no record will come
        for budget, reservation in self.reservations:
            with contextlib.suppress(Exception):  # the hold expires with its lease
                yield steps.op(budget, "release", reservation)
        if self.permit is not None and self.limiter is not None:
            with contextlib.suppress(Exception):  # the slot frees itself with its window
                yield steps.op(self.limiter, "release", self.permit)


async def settled_shielded(step: steps.Step[UsageRecord]) -> UsageRecord:
    """Run a settlement to its end even if the caller is cancelled (again) meanwhile; the
    cancellation is raised once the record is written."""
    record, cancelled = await steps.run_shielded(step)
    if cancelled is not None:
        raise cancelled
    return record


def held_note(budget: Budget, reservation: Reservation, state: Any, notes: list[str],
              cost: Decimal | None = None) -> bool:
    """Note what a budget's answer says about this call's hold; True if it was degraded (the
    store could not be reached under ``on_store_error="open"``, at reserve time or now)."""
    degraded = False
    if reservation.degraded:
        degraded = True
        notes.append(f"budget {budget.name!r}: the store was unavailable when the call was "
                     "admitted; it was not held there")
    if isinstance(state, BudgetStatus):
        if state.degraded:
            degraded = True
            notes.append(f"budget {budget.name!r}: the store was unavailable at settlement; "
                         "the total there misses this call")
        elif state.overspent > 0 and cost is not None and cost > reservation.amount:
            # This call cost more than it held, and the budget is now past its limit.
            notes.append(f"budget {budget.name!r} overspent: the call cost {cost} "
                         f"{state.currency}, {reservation.amount} was held; {state.committed} "
                         f"of {state.limit} committed ({state.overspent} over)")
    return degraded


def permit_note(permit: Permit, notes: list[str]) -> bool:
    if permit.degraded:
        notes.append("limiter: the store was unavailable when the call was admitted; "
                     "it was not counted there")
    return permit.degraded


class OpenStreams:
    """The streams a meter handed out that have not settled yet.

    A stream settles when it ends, on ``aclose()`` / ``close()`` (``async with`` does it),
    when its response is closed, and when Python frees it. One dropped unfinished may sit in
    a reference cycle (the openai SDK's streams are) until the garbage collector runs, so the
    meter keeps each open stream's call here, with a weak reference to the stream: its next
    ``begin`` settles those whose stream is gone, and :meth:`Meter.close` settles every one
    still open — status ``closed``, with the usage and reply seen so far.
    """

    def __init__(self) -> None:
        self._open: dict[int, tuple[weakref.ref[Any], Any, Callable[[], dict[str, Any]]]] = {}
        self._lock = threading.Lock()

    def add(self, stream: Any, call: Any, seen: Callable[[], dict[str, Any]]) -> None:
        """Track ``stream`` (what the caller holds) of ``call``; ``seen()`` gives the finish
        arguments for what was received so far (it must not refer to ``stream``)."""
        with self._lock:
            self._open[id(call)] = (weakref.ref(stream), call, seen)

    def _due(self, everything: bool) -> list[tuple[Any, Callable[[], dict[str, Any]]]]:
        if not self._open:
            return []
        due = []
        with self._lock:
            for key, (ref, call, seen) in list(self._open.items()):
                if call.settled or everything or ref() is None:
                    del self._open[key]
                    if not call.settled:
                        due.append((call, seen))
        return due

    def settle(self, *, everything: bool = False) -> None:
        """Settle the calls whose stream was dropped (all of them with ``everything``)."""
        for call, seen in self._due(everything):
            call.finish(**{**seen(), "status": "closed"})

    async def settle_async(self, *, everything: bool = False) -> None:
        """:meth:`settle` for asyncio."""
        for call, seen in self._due(everything):
            await call.finish_async(**{**seen(), "status": "closed"})
