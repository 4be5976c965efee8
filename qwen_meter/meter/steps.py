"""One pipeline, two ways to wait: the meter's steps as generators of store operations.

A step of the pipeline (begin's holds, settlement, a retry) is written once, as a generator that
*yields* each operation that may block — a budget reservation, a limiter acquire, a log write —
as an :class:`Op`, and gets the operation's result (or its exception) sent back. The decisions
in between are plain code. :func:`run` executes the ops in the calling thread; :func:`run_async`
awaits them, so the same step serves ``Meter.begin`` and ``Meter.begin_async`` with no second
copy of its logic.

How an op runs off the event loop is decided in one place, :func:`offload`: an object's native
``<name>_async`` method when it has one (the limiter's ``acquire_async`` / ``reconcile_async`` /
``release_async``, the budget's ``reserve_async`` / ``commit_async`` / ``release_async``), else
the blocking method in a worker thread (``asyncio.to_thread``; a log of your own). Objects on
the in-memory store never block, nor does a log whose writes never wait (``runs_inline``: a
JSONL log's ``flush`` write is one ``write(2)`` into the page cache, ``buffered`` only queues):
their ops run inline, with no task, thread or suspension per op. :func:`run_shielded` drives a
settlement the same way and only starts a shielded task if an op must really be awaited.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

from ..limits.store import MemoryStore

T = TypeVar("T")


class Op:
    """Call ``target.name(*args, **kwargs)`` (or its ``_async`` twin).

    A plain slotted class: five are made per call, and a frozen dataclass's ``__init__``
    costs several times as much."""

    __slots__ = ("args", "cancellable", "kwargs", "name", "target")

    def __init__(self, target: Any, name: str, args: tuple[Any, ...] = (),
                 kwargs: dict[str, Any] | None = None, *, cancellable: bool = False) -> None:
        self.target = target
        self.name = name
        self.args = args
        self.kwargs = {} if kwargs is None else kwargs
        #: a wait the caller may give up on (the limiter's acquire); other ops always complete
        self.cancellable = cancellable

    def __repr__(self) -> str:
        return f"Op({self.target!r}, {self.name!r}, {self.args!r}, {self.kwargs!r})"

    def __call__(self) -> Any:
        return getattr(self.target, self.name)(*self.args, **self.kwargs)


Step = Generator[Op, Any, T]


def op(target: Any, name: str, *args: Any, **kwargs: Any) -> Op:
    return Op(target, name, args, kwargs)


def wait(target: Any, name: str, *args: Any, **kwargs: Any) -> Op:
    """An op the caller may cancel (see :func:`run_async`)."""
    return Op(target, name, args, kwargs, cancellable=True)


def run(step: Step[T]) -> T:
    """Drive ``step`` in this thread."""
    result: Any = None
    error: BaseException | None = None
    while True:
        try:
            pending = step.throw(error) if error is not None else step.send(result)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        try:  # the op's call spelled out: one frame less per op (six per call)
            result, error = getattr(pending.target, pending.name)(*pending.args,
                                                                  **pending.kwargs), None
        except BaseException as exc:  # handed to the step, which decides
            result, error = None, exc


async def run_async(step: Step[T],
                    on_cancel: Callable[[T], Awaitable[Any]] | None = None, *,
                    pending: Op | None = None) -> T:
    """Drive ``step`` on the event loop, each op off it (see :func:`offload`).

    Only a wait (an op marked ``cancellable``: the limiter's acquire) is cut short by a
    cancellation; the step gets the ``CancelledError`` there and cleans up. Any other op (a
    store write, a log append) is never cut half-way — a reservation the store took but the
    step never heard of would hold money for its whole lease: it completes, its result goes
    to the step, and a cancellation that arrived meanwhile is thrown in at the step's next
    op. A step that ended before it could be told gets ``on_cancel(value)`` to undo what it
    returned. Once cancelled, every remaining op runs shielded (:func:`uncancellable`), and
    the ``CancelledError`` propagates to the caller.

    ``pending``: the op ``step`` has just yielded (it was started elsewhere, see
    :func:`run_shielded`); it runs first.
    """
    result: Any = None
    error: BaseException | None = None
    cancelled: BaseException | None = None
    told = False  # the step has been handed the cancellation
    while True:
        try:
            if cancelled is not None and not told and error is None:
                told, error = True, cancelled
            if pending is None:
                pending = step.throw(error) if error is not None else step.send(result)
        except StopIteration as stop:
            if cancelled is not None and not told:
                if on_cancel is not None:
                    await uncancellable(on_cancel(stop.value))
                raise cancelled from None
            return stop.value  # type: ignore[no-any-return]
        this, pending = pending, None
        if this.cancellable and cancelled is None:
            try:
                result, error = await offload(this), None
            except BaseException as exc:
                result, error = None, exc
                if isinstance(exc, _cancel_error()):
                    cancelled, told = exc, True
            continue
        if _inline(this):  # no suspension point: nothing can interrupt it
            result, error = _attempt_now(this)
            continue
        (result, error), late = await uncancellable(_attempt(this))
        if late is not None and cancelled is None:
            cancelled = late


async def run_shielded(step: Step[T]) -> tuple[T, BaseException | None]:
    """Drive ``step`` to its end whatever cancellations arrive: (its value, the cancellation
    that arrived meanwhile, or None), like :func:`uncancellable` of :func:`run_async`.

    Its inline ops (in-memory stores, a log that never waits) run here, one after the other
    with no suspension point, so nothing can interrupt them and no task is needed; only when
    the step yields an op that must be awaited does the rest run in a shielded task. A
    settlement on the in-memory stores and a JSONL log thus costs no task, shield or thread."""
    result: Any = None
    error: BaseException | None = None
    while True:
        # An exception the step raises propagates, as from run_async.
        try:
            pending = step.throw(error) if error is not None else step.send(result)
        except StopIteration as stop:
            return stop.value, None
        if pending.cancellable or not _inline(pending):
            return await uncancellable(run_async(step, pending=pending))
        result, error = _attempt_now(pending)


def _attempt_now(pending: Op) -> tuple[Any, BaseException | None]:
    try:
        return pending(), None
    except BaseException as exc:
        return None, exc


async def _attempt(pending: Op) -> tuple[Any, BaseException | None]:
    try:
        return await offload(pending), None
    except BaseException as exc:
        return None, exc


def _cancel_error() -> type[BaseException]:
    import asyncio

    return asyncio.CancelledError


async def uncancellable(awaitable: Awaitable[T]) -> tuple[T, BaseException | None]:
    """Await ``awaitable`` to its end whatever cancellations arrive meanwhile (asyncio's
    ``task.cancel()``, ``wait_for``, anyio cancel scopes, which cancel again at every
    await): (its value, the cancellation that arrived, or None). The caller re-raises it."""
    import asyncio

    task = asyncio.ensure_future(awaitable)
    late: BaseException | None = None
    while True:
        try:
            return await asyncio.shield(task), late
        except asyncio.CancelledError as exc:
            if task.done() and not task.cancelled():
                return task.result(), exc
            late = exc

def _in_memory(target: Any) -> bool:
    return isinstance(getattr(target, "store", None), MemoryStore)


def _inline(pending: Op) -> bool:
    """An op on the in-memory store, or on a log whose writes never wait: run in place (it
    never suspends, so nothing interrupts it, and a task to shield it would cost more than
    the op)."""
    if pending.cancellable:
        return False
    target = pending.target
    return _in_memory(target) or bool(getattr(target, "runs_inline", False))


async def offload(pending: Op) -> Any:
    """The one place that decides how a blocking op runs under asyncio."""
    native = getattr(pending.target, pending.name + "_async", None)
    if native is not None:
        return await native(*pending.args, **pending.kwargs)
    if _in_memory(pending.target):
        return pending()
    import asyncio

    return await asyncio.to_thread(pending)
