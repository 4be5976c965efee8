"""Reading single fields of a catalogue file, with errors that name where they are.

:class:`_Ctx` carries the file and model being read, so every :class:`CatalogueError` names
the file, the model and the field; the readers here check dates, counts, prices, mappings,
known keys and references to a source. The ``parse_*`` modules build on them.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from ..base.errors import CatalogueError
from .records import Source


class _Ctx:
    """Where we are in a file, so every error can name it."""

    def __init__(self, file: str, model: str | None = None) -> None:
        self.file = file
        self.model = model

    def error(self, message: str, field: str | None = None) -> CatalogueError:
        return CatalogueError(message, file=self.file, model=self.model, field=field)


def _date(value: Any, ctx: _Ctx, where: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str) and _DATE.fullmatch(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise ctx.error(f"expected a date (YYYY-MM-DD), got {value!r}", where)


_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _count(value: Any, ctx: _Ctx, where: str, *, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_zero else 1):
        raise ctx.error("expected a positive whole number" if not allow_zero
                        else "expected a whole number >= 0", where)
    return value


def _money(value: Any, ctx: _Ctx, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ctx.error("expected a price (a number)", where)
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ctx.error("expected a price (a number)", where) from None
    if not amount.is_finite() or amount < 0:
        raise ctx.error("a price cannot be negative", where)
    return amount


def _mapping(value: Any, ctx: _Ctx, where: str | None) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ctx.error("expected a mapping", where)
    return value


def _known_keys(raw: Mapping[str, Any], allowed: Sequence[str], ctx: _Ctx, where: str) -> None:
    unknown = [k for k in raw if k not in allowed]
    if unknown:
        raise ctx.error(f"unknown key {unknown[0]!r}", f"{where}.{unknown[0]}" if where
                        else str(unknown[0]))


def _source(value: Any, sources: Mapping[str, Source], ctx: _Ctx, where: str) -> Source:
    if not isinstance(value, str) or value not in sources:
        raise ctx.error(f"unknown source {value!r}; known: {', '.join(sorted(sources))}", where)
    return sources[value]
