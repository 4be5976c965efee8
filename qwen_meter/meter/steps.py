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
the blocking method in a worker thread (``asyncio.to_thread``; the usage log's write). Objects
on the in-memory store never block and run inline.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, TypeVar

from ..limits.store import MemoryStore

T = TypeVar("T")


class Op:
    """Call ``target.name(*args, **kwargs)`` (or its ``_async`` twin).

    A plain slotted class: five are made per call, and a frozen dataclass's ``__init__``
    costs several times as much."""

    __slots__ = ("args", "kwargs", "name", "target")

    def __init__(self, target: Any, name: str, args: tuple[Any, ...] = (),
                 kwargs: dict[str, Any] | None = None) -> None:
        self.target = target
        self.name = name
        self.args = args
        self.kwargs = {} if kwargs is None else kwargs

    def __repr__(self) -> str:
        return f"Op({self.target!r}, {self.name!r}, {self.args!r}, {self.kwargs!r})"

    def __call__(self) -> Any:
        return getattr(self.target, self.name)(*self.args, **self.kwargs)


Step = Generator[Op, Any, T]


def op(target: Any, name: str, *args: Any, **kwargs: Any) -> Op:
    return Op(target, name, args, kwargs)


def run(step: Step[T]) -> T:
    """Drive ``step`` in this thread."""
    result: Any = None
    error: BaseException | None = None
    while True:
        try:
            pending = step.throw(error) if error is not None else step.send(result)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        try:
            result, error = pending(), None
        except BaseException as exc:  # handed to the step, which decides
            result, error = None, exc


async def run_async(step: Step[T]) -> T:
    """Drive ``step`` on the event loop, each op off it (see :func:`offload`)."""
    result: Any = None
    error: BaseException | None = None
    while True:
        try:
            pending = step.throw(error) if error is not None else step.send(result)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        try:
            result, error = await offload(pending), None
        except BaseException as exc:
            result, error = None, exc


def _in_memory(target: Any) -> bool:
    return isinstance(getattr(target, "store", None), MemoryStore)


async def offload(pending: Op) -> Any:
    """The one place that decides how a blocking op runs under asyncio."""
    native = getattr(pending.target, pending.name + "_async", None)
    if native is not None:
        return await native(*pending.args, **pending.kwargs)
    if _in_memory(pending.target):
        return pending()
    import asyncio

    return await asyncio.to_thread(pending)
