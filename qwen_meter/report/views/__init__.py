"""The dashboard's data side: usage sources loaded once into DuckDB with the report's own
checks (:mod:`.store`; kept between runs in a cache file, :mod:`.cache`, when asked), and the
JSON answers of the dashboard's API over them (:mod:`.core`) — so the page, its snapshot (the
HTML report) and ``qwen-meter report`` give the same numbers.

    views = open_views("usage.jsonl", tz="Asia/Shanghai")
    views.answer("overview", {"since": ["2026-11-01"], "tag": ["feature=智能客服"]})
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from .budgets import BudgetSpec, LimiterSpec
from .core import Views
from .query import BadParam
from .store import DIMS, RecordStore

__all__ = ["DIMS", "BadParam", "BudgetSpec", "LimiterSpec", "RecordStore", "Views",
           "open_views", "prepare_views"]


def open_views(sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
               *, tz: str | None = None, title: str | None = None,
               budgets: Sequence[BudgetSpec] = (), store: Any = None,
               limiters: Sequence[LimiterSpec] = (),
               refresh_seconds: int | None = 10, default_model: str | None = None,
               region: str | None = None, catalogue: Any = None,
               cache: bool | str | os.PathLike[str] | None = None) -> Views:
    """Views over usage sources, opened as ``qwen-meter report`` opens them (JSONL / SQLite
    logs, a folder of logs, Parquet ...; None: the meter's default log). ``cache``: True (the
    user's cache folder) or a folder to keep the loaded records in, so that the next opening
    reads only what the sources gained (see :mod:`.cache`)."""
    return prepare_views(sources, tz=tz, title=title, budgets=budgets, store=store,
                         limiters=limiters, refresh_seconds=refresh_seconds,
                         default_model=default_model,
                         region=region, catalogue=catalogue, cache=cache)()


def prepare_views(sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None
                  = None, *, tz: str | None = None, title: str | None = None,
                  budgets: Sequence[BudgetSpec] = (), store: Any = None,
                  limiters: Sequence[LimiterSpec] = (),
                  refresh_seconds: int | None = 10, default_model: str | None = None,
                  region: str | None = None, catalogue: Any = None,
                  cache: bool | str | os.PathLike[str] | None = None) -> Opener:
    """:func:`open_views` in two steps: the sources are found and named now (a missing file
    raises here), the records are loaded when the returned function is called (with an
    optional ``progress`` dict that the load reports into: ``done`` / ``total`` bytes)."""
    from ..read import load_usage

    if sources is not None:
        sources = logs_in_folders(sources)
    data = load_usage(sources, tz=tz, default_model=default_model, region=region,
                      catalogue=catalogue)
    label = None if sources is None or isinstance(sources, (str, os.PathLike)) else \
        ", ".join(map(str, sources))

    def load(progress: dict[str, Any] | None = None) -> Views:
        records = RecordStore(data.sources, label=name, catalogue=catalogue,
                              default_model=default_model, region=region, cache=cache,
                              progress=progress)
        views = Views(records, tz=data.tz, title=title, budgets=budgets, store=store,
                      limiters=limiters, refresh_seconds=refresh_seconds)
        views.query({})  # counts the dimensions' values now, not on the first page's request
        return views

    name = label or ", ".join(s.name for s in data.sources)
    return Opener(load, name)


class Opener:
    """Loads the views when called (``progress``: a dict the load reports into); ``label``
    names the sources."""

    def __init__(self, load: Callable[[dict[str, Any] | None], Views], label: str) -> None:
        self._load = load
        self.label = label

    def __call__(self, progress: dict[str, Any] | None = None) -> Views:
        return self._load(progress)


_LOG_SUFFIXES = (".jsonl", ".db", ".sqlite", ".sqlite3")


def logs_in_folders(sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]
                    ) -> list[str]:
    """``sources`` with each folder that holds no Parquet (not a ``log compact`` folder)
    replaced by the logs in it (``*.jsonl``, ``*.db`` ..., rotated ones too), by name."""
    from pathlib import Path

    items = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    out: list[str] = []
    for item in items:
        path = Path(item)
        if path.is_dir() and not any(path.rglob("*.parquet")):
            logs = sorted(str(p) for p in path.iterdir() if p.is_file()
                          and (p.suffix in _LOG_SUFFIXES or ".jsonl." in p.name))
            if logs:
                out += logs
                continue
        out.append(str(item))
    return out
