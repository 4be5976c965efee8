"""What one pass of the report engine computes (:class:`Plan`) and what it gives back
(:class:`Scan`: the cube, and the lines or records left out, as :class:`Skipped`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

#: How many skipped lines and unpriced records are listed by name (all are counted).
LISTED = 1000


@dataclass(frozen=True)
class Skipped:
    """A line (or record) the report could not use, or could not price."""

    source: str
    line: int | None
    reason: str


@dataclass(frozen=True)
class Plan:
    """What to compute in the pass over the records."""

    by: tuple[str, ...]
    tz: str
    since: dt.date | dt.datetime | None = None
    until: dt.date | dt.datetime | None = None
    reprice_model: str | None = None
    reprice_region: str | None = None
    reprice_batch: bool = False

    @property
    def repricing(self) -> bool:
        return bool(self.reprice_model or self.reprice_region or self.reprice_batch)


@dataclass
class Scan:
    """The result of one pass: the cube (a table of ``db``) and what was left out."""

    db: Any
    plan: Plan
    records: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    skipped_count: int = 0
    unpriced: list[Skipped] = field(default_factory=list)
    unpriced_count: int = 0

    def query(self, text: str) -> pa.Table:
        return self.db.sql(text).to_arrow_table()
