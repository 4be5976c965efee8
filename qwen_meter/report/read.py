"""Usage inputs for reports: qwen_meter logs (JSONL, SQLite), their Parquet form
(``qwen-meter log compact``), ledgers (``postgresql://…``, ``sqlite:///…``) and JSONL files of
raw API responses, combined.

Nothing is read here: :func:`load_usage` checks the inputs and says how each is read; the
report reads them in one streaming pass (:mod:`.engine`). Every input gets the same checks:
a bad line is skipped and named with its file and line, whatever else the file holds.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..catalogue.core import Catalogue
from ..ledger.base import Ledger
from ..ledger.common import mask_url
from .duck import check_zone, system_zone
from .engine import run
from .ledger_source import is_ledger_url, sqlite_path
from .plan import Plan, Scan, Skipped
from .sources import ReportInputError, Source, sniff

__all__ = ["ReportInputError", "Skipped", "UsageData", "load_usage"]


@dataclass
class UsageData:
    """The inputs of a report and how to read them (nothing is loaded until asked).

    ``len(data)``, :attr:`skipped` and :attr:`unpriced` cost one streaming pass (done once);
    :attr:`table` loads every usable record into memory — for your own analysis of logs that
    fit, not needed by reports.
    """

    sources: list[Source]
    since: dt.date | dt.datetime | None = None
    until: dt.date | dt.datetime | None = None
    tz: str = "UTC"
    default_model: str | None = None
    region: str | None = None
    catalogue: Catalogue | None = None
    progress: bool = False
    _scan: Scan | None = field(default=None, repr=False)
    _table: pa.Table | None = field(default=None, repr=False)

    def _counted(self) -> Scan:
        if self._scan is None:
            collected: list[pa.Table] = []
            plan = Plan(by=("model",), tz=self.tz, since=self.since, until=self.until)
            self._scan = run(self.sources, plan, catalogue=self.catalogue,
                             default_model=self.default_model, region=self.region,
                             progress=self.progress,
                             collect=collected if self._want_table else None)
            self._scan.db.close()
            if self._want_table:
                self._table = pa.concat_tables(collected) if collected else None
        return self._scan

    _want_table = False

    @property
    def skipped(self) -> list[Skipped]:
        """Lines that could not be used, with file, line and reason (the first 1,000)."""
        return self._counted().skipped

    @property
    def unpriced(self) -> list[Skipped]:
        """Records without a cost (unknown model, no price), with file and line."""
        return self._counted().unpriced

    @property
    def table(self) -> pa.Table:
        """Every usable record as an Arrow table (costs as exact decimals)."""
        if self._table is None:
            self._want_table, self._scan = True, None
            self._counted()
        assert self._table is not None
        return self._table

    def to_pandas(self) -> Any:
        """The records as a pandas DataFrame (costs as ``decimal.Decimal``)."""
        return self.table.to_pandas()

    def __len__(self) -> int:
        return self._counted().records


def default_source() -> Path:
    """The meter's default log (see :func:`qwen_meter.meter.default_log_path`)."""
    from ..meter.config import default_log_path

    return default_log_path()


def load_usage(sources: str | os.PathLike[str] | Ledger
               | Sequence[str | os.PathLike[str] | Ledger] | None = None,
               *, since: dt.date | dt.datetime | None = None,
               until: dt.date | dt.datetime | None = None, tz: str | None = None,
               default_model: str | None = None, region: str | None = None,
               catalogue: Catalogue | None = None, progress: bool = False) -> UsageData:
    """Usage from qwen_meter logs (JSONL / SQLite / Parquet files or folders), ledgers
    (``postgresql://user@host/db``, ``sqlite:///ledger.db``, or an open
    :class:`~qwen_meter.ledger.Ledger`) and raw-response JSONL files; ``None`` reads the meter's
    default log.

    ``since`` / ``until`` keep records in ``[since, until)``; dates are whole days in ``tz``
    (an IANA zone; default: the system's), as are the report's days, weeks and months.
    """
    if sources is None:
        sources = [default_source()]
    paths = [sources] if isinstance(sources, (str, os.PathLike, Ledger)) else list(sources)
    if not paths:
        raise ReportInputError("no usage logs given")
    found: list[Source] = []
    for item in paths:
        if isinstance(item, Ledger):  # an open ledger: read by its URL, like any other reader
            item = item.url
        if isinstance(item, str) and is_ledger_url(item):
            if item.split("://", 1)[0].lower() == "sqlite" and not sqlite_path(item).is_file():
                raise ReportInputError(f"{mask_url(item)}: no such ledger file "
                                       f"({sqlite_path(item)})")
            found.append(Source(Path(), "ledger", url=item))
            continue
        path = Path(item)
        if not path.exists():
            raise ReportInputError(f"{path}: no such file")
        found.append(Source(path, sniff(path)))
    zone = check_zone(tz) if tz else system_zone()
    return UsageData(found, since=since, until=until, tz=zone, default_model=default_model,
                     region=region, catalogue=catalogue, progress=progress)
