"""The rate limiter's values: :class:`RateLimit` (what a model may do per minute and per
second) and :class:`Permit` (what one admitted call holds), with the permit id counter."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import NamedTuple

from ...base.errors import InvalidArgument


@dataclass(frozen=True)
class RateLimit:
    """Requests and tokens per minute (None: not limited)."""

    rpm: int | None
    tpm: int | None
    #: published per-second limits (embeddings): enforced per second even without smoothing
    rps: int | None = None
    tps: int | None = None

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm", "rps", "tps"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise InvalidArgument(f"must be a positive whole number or None, got "
                                      f"{value!r}", where=f"RateLimit({name}=)")


class Permit(NamedTuple):
    """One admitted call: what it holds in the window until reconciled or released."""

    id: int
    account: str
    model: str
    bucket: int
    tokens: int
    degraded: bool = False


permit_ids = itertools.count(1)
