"""The SQLite store's refunds kept for its next transaction (see :mod:`.sqlite`).

A limiter's reconcile usually *refunds* tokens (the call used fewer than it reserved). Written
on its own, that refund is a second write transaction per call, about as costly as the acquire's
own. So :meth:`SQLiteStore.window_settle` keeps a refund here and the store's next transaction
(an acquire, a sum, an adjust) applies it first, inside its own ``BEGIN IMMEDIATE``; a timer
writes whatever is still waiting after ``delay`` seconds, and :meth:`SQLiteStore.close` and
interpreter exit write the rest.

Why a late refund is safe: until it lands, other processes count the tokens the call reserved
instead of the fewer it used, so they can only refuse more, never admit more. This process's
own acquires and sums apply every waiting refund before they read, so they see none late. A
process killed before its refunds land leaves them uncounted: the window over-counts until
their second leaves it (at most 61 s), as for any call of a crashed process. A forked child
drops the refunds it inherited (its parent writes them), so none is ever applied twice.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Protocol

from .sqlite_window import Refund

log = logging.getLogger("qwen_meter.store")


class _Flushes(Protocol):
    def flush(self) -> None: ...


class RefundQueue:
    """Refunds waiting for the store's next transaction.

    ``add`` only appends to a deque (atomic, no lock: it runs after every call); ``take``
    (under the store's lock, so one taker at a time) pops what is there and merges it by
    (key, second). The timer is armed by the first refund after a write: ``add`` appends
    *before* it looks at the timer and ``_fire`` forgets its timer *before* it writes, so a
    refund is either taken by that write or arms the next timer, never left waiting alone.
    """

    def __init__(self, delay: float, flush: Callable[[], None]) -> None:
        self.delay = delay
        self.pending: deque[Refund] = deque()
        self.closed = False
        self._flush = flush
        self._lock = threading.Lock()  # arms the timer (rare), never held by add's append
        self._timer: threading.Timer | None = None

    def add(self, key: str, bucket: int, delta: int) -> None:
        """Keep a refund; arm the timer if none is."""
        self.pending.append((delta, key, bucket))
        if self._timer is None:
            self._arm()

    def _arm(self) -> None:
        with self._lock:
            if self._timer is None and not self.closed:
                timer = self._timer = threading.Timer(self.delay, self._fire)
                timer.daemon = True  # interpreter exit writes the rest (atexit)
                timer.start()

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

    def give_back(self, refunds: list[Refund]) -> None:
        """Refunds whose transaction rolled back wait again (for the next one)."""
        if refunds:
            self.pending.extend(refunds)
            self._arm()

    def _fire(self) -> None:
        self._timer = None  # first: a refund added from now on arms a new timer
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
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def forget_in_child(self) -> None:
        """After ``fork``: the parent writes these refunds; the child starts empty (a new lock:
        the parent's may have been held by a thread the child does not have)."""
        self._lock = threading.Lock()
        self.pending = deque()
        self._timer = None


_stores: weakref.WeakSet[_Flushes] = weakref.WeakSet()
_queues: weakref.WeakSet[RefundQueue] = weakref.WeakSet()


def track(store: _Flushes, queue: RefundQueue) -> None:
    """Write ``store``'s refunds at interpreter exit; drop ``queue``'s in a forked child."""
    _stores.add(store)
    _queues.add(queue)


def _write_all_at_exit() -> None:
    from .base import StoreUnavailable

    for store in list(_stores):
        try:
            store.flush()
        except StoreUnavailable as exc:
            log.warning("refunds lost at exit (the window over-counts until they leave "
                        "it): %s", exc)


def _forget_all_in_child() -> None:
    for queue in list(_queues):
        queue.forget_in_child()


atexit.register(_write_all_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_all_in_child)
