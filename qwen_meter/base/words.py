"""Counts in the messages people read: "1 call", "2 calls", "1,000 records"."""

from __future__ import annotations


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``count`` and ``noun``, the noun in the plural unless the count is one (``many``: an
    irregular plural); thousands separated, as every count the CLI prints."""
    word = noun if count == 1 else (many or noun + "s")
    return f"{count:,} {word}"
