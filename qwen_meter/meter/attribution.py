"""Per-call attribution: tags, user and free metadata for the calls made inside a block.

``with qwen_meter.attribute(tags=["feature=search"], user="李娜", metadata={"run": "42"}):``
applies to every metered call made in that block — in the same thread or asyncio task (a
:mod:`contextvars` variable, so concurrent tasks and threads each see their own). Blocks nest:
tags add up, an inner user wins, metadata merges.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Attribution:
    """What the enclosing :func:`attribute` blocks say about the calls made inside them."""

    tags: tuple[str, ...] = ()
    user: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


_EMPTY = Attribution()


class Scope:
    """An attribution opened in one context and possibly closed from another.

    LangChain (async) starts a run in the caller's task and may end it in a copy of that
    task's context, where the caller's variable cannot be reset; a plain ``ContextVar`` value
    would then outlive the run and tag every later call in the task. A scope is closed by a
    flag every reader checks, so once :meth:`close` runs, no context sees it any more.
    """

    __slots__ = ("_token", "open")

    def __init__(self, tags: Sequence[str] = (), user: str | None = None,
                 metadata: Mapping[str, str] | None = None) -> None:
        self.open = True
        self._token = _push(tags, user, metadata, self)

    def close(self) -> None:
        """End the scope everywhere; drop it from this context's chain if it is on top."""
        self.open = False
        layer = _current.get()
        if layer is not None and layer.scope is self:
            _current.set(_live(layer))


@dataclass(frozen=True)
class _Layer:
    """One open block: what it adds, the blocks outside it, and the merged view."""

    tags: tuple[str, ...]
    user: str | None
    metadata: Mapping[str, str]
    parent: _Layer | None
    scope: Scope | None
    merged: Attribution


_current: ContextVar[_Layer | None] = ContextVar("qwen_meter_attribution", default=None)


def _dead(layer: _Layer) -> bool:
    return layer.scope is not None and not layer.scope.open


def _live(layer: _Layer | None) -> _Layer | None:
    """The innermost layer at or outside ``layer`` whose scope is still open."""
    while layer is not None and _dead(layer):
        layer = layer.parent
    return layer


def _merge(outer: Attribution, tags: Sequence[str], user: str | None,
           metadata: Mapping[str, str]) -> Attribution:
    return Attribution(tags=(*outer.tags, *tags), user=user if user is not None else outer.user,
                       metadata={**outer.metadata, **metadata})


def _push(tags: Sequence[str], user: str | None, metadata: Mapping[str, str] | None,
          scope: Scope | None) -> Token[_Layer | None]:
    parent = _live(_current.get())
    outer = _EMPTY if parent is None else _read(parent)
    extra = dict(metadata or {})
    return _current.set(_Layer(tuple(tags), user, extra, parent, scope,
                               _merge(outer, tags, user, extra)))


def _read(layer: _Layer | None) -> Attribution:
    chain: list[_Layer] = []
    stale = False
    while layer is not None:
        if _dead(layer):
            stale = True
        else:
            chain.append(layer)
        layer = layer.parent
    if not chain:
        return _EMPTY
    if not stale:
        return chain[0].merged
    # A scope inside the chain was closed elsewhere: merge again without it.
    view = _EMPTY
    for live in reversed(chain):
        view = _merge(view, live.tags, live.user, live.metadata)
    return view


def current_attribution() -> Attribution:
    """The attribution in force here (empty outside any :func:`attribute` block)."""
    return _read(_current.get())


@contextmanager
def attribute(*, tags: Sequence[str] = (), user: str | None = None,
              metadata: Mapping[str, str] | None = None) -> Iterator[Attribution]:
    """Attribute the metered calls made inside the block (see the module docstring)."""
    token = _push(tags, user, metadata, None)
    try:
        yield _read(_current.get())
    finally:
        _current.reset(token)
