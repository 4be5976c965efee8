"""Dated snapshots newer than the catalogue: ``qwen-plus-2026-03-01`` when the newest
``qwen-plus`` snapshot the catalogue knows is older.

DashScope publishes a new dated snapshot of a stable name before any catalogue lists it. Such
a name is a snapshot of what the stable name serves now, so it is counted with the stable
name's current tokenizer family and template — not with a catch-all name rule written for
older snapshots (which picked the 2024 Qwen2.5 template for ``qwen-plus-2026-*``). It is
still a guess, so counts of it are marked inexact, and it has no prices or limits.

Both the catalogue's resolver and the counting index (``billing.index``) use this module, so
the two agree on which names are such snapshots. It lives in ``base`` because it is only the
shape of a dated name: the counting path must not import the catalogue.
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterable, Mapping

_DATED = re.compile(r"(?P<base>.+?)-(?P<date>(?:19|20)[0-9]{2}-[0-9]{2}-[0-9]{2})")


def latest_dates(names: Iterable[str]) -> dict[str, str]:
    """``{base: newest date}`` over the dated names among ``names`` (lower-case)."""
    latest: dict[str, str] = {}
    for name in names:
        m = _DATED.fullmatch(name)
        if m and m["date"] > latest.get(m["base"], ""):
            latest[m["base"]] = m["date"]
    return latest


def newer_snapshot_base(key: str, names: Container[str],
                        latest: Mapping[str, str]) -> str | None:
    """The listed name ``key`` (lower-case, itself unlisted) is a newer snapshot of, or None.

    ``key`` must be ``<base>-YYYY-MM-DD`` with ``base`` listed and the date later than every
    dated name of ``base`` the catalogue lists (an older unlisted date is left to the name
    rules, which know the eras: ``qwen-plus-2025-08-*`` is Qwen3, ``qwen-plus-2024-*`` is not).
    """
    m = _DATED.fullmatch(key)
    if m is None or m["base"] not in names:
        return None
    return m["base"] if m["date"] > latest.get(m["base"], "") else None


def newer_snapshot_note(key: str, base: str) -> str:
    """What a count of such a name says about itself."""
    return (f"{key} is not in the catalogue; as a snapshot newer than {base}'s it is counted "
            f"with {base}'s tokenizer and template, an estimate (prices and limits unknown)")
