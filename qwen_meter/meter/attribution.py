"""Per-call attribution: tags, user and free metadata for the calls made inside a block.

``with qwen_meter.attribute(tags=["feature=search"], user="李娜", metadata={"run": "42"}):``
applies to every metered call made in that block — in the same thread or asyncio task (a
:mod:`contextvars` variable, so concurrent tasks and threads each see their own). Blocks nest:
tags add up, an inner user wins, metadata merges.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Attribution:
    """What the enclosing :func:`attribute` blocks say about the calls made inside them."""

    tags: tuple[str, ...] = ()
    user: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


_EMPTY = Attribution()
_current: ContextVar[Attribution] = ContextVar("qwen_meter_attribution", default=_EMPTY)


def current_attribution() -> Attribution:
    """The attribution in force here (empty outside any :func:`attribute` block)."""
    return _current.get()


@contextmanager
def attribute(*, tags: Sequence[str] = (), user: str | None = None,
              metadata: Mapping[str, str] | None = None) -> Iterator[Attribution]:
    """Attribute the metered calls made inside the block (see the module docstring)."""
    outer = _current.get()
    inner = Attribution(tags=(*outer.tags, *tags), user=user if user is not None else outer.user,
                        metadata={**outer.metadata, **(metadata or {})})
    token = _current.set(inner)
    try:
        yield inner
    finally:
        _current.reset(token)
