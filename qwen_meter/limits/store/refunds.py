"""Refunds a store keeps for its next operation: the limiter's reconciles, made cheap.

A limiter's reconcile usually *refunds* tokens (the call used fewer than it reserved). Written
on its own, a refund costs what the acquire costs: a second SQLite write transaction, a second
Redis round trip. So the SQLite and Redis stores' ``window_settle`` keep a refund here, and the
store's next operation applies it first — SQLite inside its next transaction (folded into the
acquire's own write when it can), Redis as a command written ahead of the next script on the
same socket. A timer writes whatever still waits after ``delay`` seconds (the store's
``refund_delay``, 0.05 s by default); ``close`` and interpreter exit write the rest.

Why a late refund is safe: until it lands, other processes count the tokens the call reserved
instead of the fewer it used, so they can only refuse more, never admit more. Only refunds
wait: a charge (a call that used more than it reserved) is written at once. The store's own
later operations (acquire, sum) apply every waiting refund before they read, so they see
none late. A refund is never applied twice: a forked child drops the refunds it inherited
(its parent writes them), and one whose write failed half-way is dropped, not retried. A
process killed before its refunds land leaves them uncounted: the window over-counts until
their second leaves it (at most 61 s), as for any call of a crashed process.
"""

from __future__ import annotations

import atexit
import heapq
import itertools
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("qwen_meter.store")

#: A refund as the adjust's arguments: (delta, key, bucket)
Refund = tuple[int, str, int]


class _Flushes(Protocol):
    def flush(self) -> None: ...


class RefundQueue:
    """Refunds waiting for the store's next operation.

    ``add`` only appends to a deque (atomic, no lock: it runs after every call); ``take`` pops
    what is there and merges it by (key, second), one taker at a time (SQLite takes under its
    store lock, Redis through :meth:`take_in_flight`'s). The timer is armed by the first
    refund after a write: ``add`` appends *before* it looks at the timer and ``_fire`` forgets
    its timer *before* it writes, so a refund is either taken by that write or arms the next
    timer, never left waiting alone.
    """

    def __init__(self, delay: float, flush: Callable[[], None]) -> None:
        self.delay = delay
        self.pending: deque[Refund] = deque()
        self.closed = False
        self._flush = flush
        self._lock = threading.Lock()  # arms the timer (rare), never held by add's append
        # Tickets of refunds taken and written but not yet known to have landed (Redis: sent
        # on one connection, replies not read yet): a read on another connection waits.
        self._sent = threading.Condition(threading.Lock())
        self._flying: set[int] = set()
        self._tickets = 0
        _queues.add(self)  # a forked child drops what it inherited
        self._armed = False  # whether the flusher thread will call _fire

    def add(self, key: str, bucket: int, delta: int) -> None:
        """Keep a refund; arm the timer if none is."""
        self.pending.append((delta, key, bucket))
        if not self._armed:
            self._arm()

    def _arm(self) -> None:
        with self._lock:
            if not self._armed and not self.closed:
                self._armed = True
                _flusher.call(self._fire, self.delay)

    def take(self) -> list[Refund]:
        """The waiting refunds, merged by (key, second), removed from the queue: the caller
        writes them in its transaction, or gives them back if it rolls back."""
        pending = self.pending
        if not pending:
            return []
        if len(pending) == 1:
            try:
                return [pending.popleft()]
            except IndexError:  # pragma: no cover - another taker: callers hold the lock
                return []
        merged: dict[tuple[str, int], int] = {}
        for _ in range(len(pending)):  # what arrives meanwhile waits for the next taker
            delta, key, bucket = pending.popleft()
            merged[key, bucket] = merged.get((key, bucket), 0) + delta
        return [(delta, key, bucket) for (key, bucket), delta in merged.items() if delta]

    def take_in_flight(self) -> tuple[list[Refund], int]:
        """:meth:`take`, for a store whose write of them may still be on its way when another
        thread reads (Redis: sent on one connection, read on another), with a ticket: pass it
        to :meth:`landed` once they have landed, or cannot any more."""
        with self._sent:
            ticket = self._tickets
            refunds = self.take()
            if refunds:
                self._tickets += 1
                self._flying.add(ticket)
        return refunds, ticket

    def landed(self, ticket: int) -> None:
        with self._sent:
            self._flying.discard(ticket)
            self._sent.notify_all()

    @property
    def in_flight(self) -> bool:
        return bool(self._flying)

    @property
    def next_ticket(self) -> int:
        """The ticket the next take will get: every refund taken so far is before it."""
        return self._tickets

    def wait_landed(self, ticket: int, timeout: float | None) -> None:
        """Wait (up to ``timeout``) until every refund taken before ``ticket`` (the one of the
        caller's own take, or :meth:`take_in_flight`'s next) has landed: then a read sees
        every refund settled before it began, whichever connection carried it."""
        if self._flying:
            with self._sent:
                self._sent.wait_for(lambda: all(t >= ticket for t in self._flying), timeout)

    def give_back(self, refunds: list[Refund]) -> None:
        """Refunds whose transaction rolled back wait again (for the next one)."""
        if refunds:
            self.pending.extend(refunds)
            self._arm()

    def _fire(self) -> None:
        self._armed = False  # first: a refund added from now on arms it again
        if not self.pending or self.closed:
            return
        from .base import StoreUnavailable

        try:
            self._flush()
        except StoreUnavailable as exc:  # the refunds were given back: try again later
            log.debug("refunds not written yet: %s", exc)
            if self.pending:
                self._arm()

    def close(self) -> None:
        """No more timers (the store writes what waits itself, then closes)."""
        with self._lock:
            self.closed = True
            self._armed = False  # the flusher finds the queue closed and does nothing

    def forget_in_child(self) -> None:
        """After ``fork``: the parent writes these refunds; the child starts empty (a new lock:
        the parent's may have been held by a thread the child does not have)."""
        self._lock = threading.Lock()
        self.pending = deque()
        self._armed = False
        self._sent = threading.Condition(threading.Lock())
        self._flying = set()


class _Flusher:
    """One daemon thread per process that calls each armed queue's ``_fire`` when its delay
    is up (a thread started per timer would block its caller until the new thread runs,
    milliseconds on a loaded machine)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._due: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def call(self, fn: Callable[[], None], delay: float) -> None:
        with self._cond:
            entry = (time.monotonic() + delay, next(self._order), fn)
            heapq.heappush(self._due, entry)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="qwen-meter-refunds",
                                                daemon=True)  # atexit writes the rest
                self._thread.start()
            elif self._due[0] is entry:  # sooner than what it waits for: wake it
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._due:
                    self._cond.wait()
                when, _, fn = self._due[0]
                wait = when - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._due)
            try:
                fn()
            except Exception:  # pragma: no cover - _fire handles the store's own errors
                log.exception("writing waiting refunds failed")


_flusher = _Flusher()
_stores: weakref.WeakSet[_Flushes] = weakref.WeakSet()
_queues: weakref.WeakSet[RefundQueue] = weakref.WeakSet()


def track(store: _Flushes) -> None:
    """Write ``store``'s refunds at interpreter exit."""
    _stores.add(store)


def _write_all_at_exit() -> None:
    from .base import StoreUnavailable

    for store in list(_stores):
        try:
            store.flush()
        except StoreUnavailable as exc:
            log.warning("refunds lost at exit (the window over-counts until they leave "
                        "it): %s", exc)


def _forget_all_in_child() -> None:
    global _flusher
    _flusher = _Flusher()  # the parent's thread is not in the child
    for queue in list(_queues):
        queue.forget_in_child()


atexit.register(_write_all_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_all_in_child)
