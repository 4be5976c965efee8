"""First come, first served: the queues that let a limiter's waiters try in arrival order,
one for threads and one for the asyncio tasks of one loop."""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio


class FifoGate:
    """Lets waiters try in arrival order (threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[threading.Event] = deque()

    @property
    def idle(self) -> bool:
        return not self._queue

    def enter(self) -> threading.Event:
        event = threading.Event()
        with self._lock:
            self._queue.append(event)
            if self._queue[0] is event:
                event.set()
        return event

    def leave(self, event: threading.Event) -> None:
        with self._lock:
            head = self._queue[0] is event
            self._queue.remove(event)
            if head and self._queue:
                self._queue[0].set()


class AsyncFifoGate:
    """Lets waiters try in arrival order (asyncio tasks of one loop)."""

    def __init__(self) -> None:
        self._queue: deque[asyncio.Future[None]] = deque()

    @property
    def idle(self) -> bool:
        return not self._queue

    def enter(self) -> asyncio.Future[None]:
        import asyncio

        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(future)
        if self._queue[0] is future:
            future.set_result(None)
        return future

    def leave(self, future: asyncio.Future[None]) -> None:
        head = self._queue[0] is future
        self._queue.remove(future)
        if head and self._queue and not self._queue[0].done():
            self._queue[0].set_result(None)
