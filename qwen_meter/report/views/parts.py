"""What the dashboard's store knows of each source: where it was read up to and what it looked
like then (kept in the cache between runs), and the lines it skipped."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..plan import Skipped
from ..sources import Source


@dataclass
class Part:
    """One source and where it was read up to (kept in the cache between runs)."""

    source: Source
    index: int
    offset: int = 0  # JSONL: bytes of whole lines read; SQLite: the last rowid
    line: int = 1  # JSONL: the number of the next line
    size: int = -1  # the file's size when it was last read (-1: never read)
    mtime: int = 0
    ctime: int = 0
    ino: int = 0
    prints: list[str] = field(default_factory=list)  # see cache.log_prints / sqlite_prints
    fixed: str | None = None  # a source read once: how it looked (cache.fixed_print)
    skipped: int = 0
    examples: list[Skipped] = field(default_factory=list)

    @property
    def live(self) -> bool:
        return self.source.kind in ("log", "sqlite")

    def state(self) -> dict[str, Any]:
        return {"kind": self.source.kind, "offset": self.offset, "line": self.line,
                "size": self.size, "mtime": self.mtime, "ctime": self.ctime, "ino": self.ino,
                "prints": self.prints, "fixed": self.fixed, "skipped": self.skipped,
                "examples": [[e.source, e.line, e.reason] for e in self.examples]}

    def restore(self, state: dict[str, Any]) -> None:
        if state.get("kind") != self.source.kind:
            return
        for name in ("offset", "line", "size", "mtime", "ctime", "ino", "prints", "fixed",
                     "skipped"):
            setattr(self, name, state[name])
        self.examples = [Skipped(s, n, r) for s, n, r in state["examples"]]


@dataclass
class Skips:
    """Lines the report's checks refused: how many, and the first ones by name."""

    count: int = 0
    examples: list[Skipped] = field(default_factory=list)
