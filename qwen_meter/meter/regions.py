"""Where a call goes: the region it is priced and limited in, and the limiter for that region
(a mixin of :class:`~qwen_meter.meter.pipeline.Meter`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ..catalogue.records import REGION_ENV
from ..catalogue.regions import region_for_url
from ..limits.limiter import RateLimiter

if TYPE_CHECKING:
    from ..catalogue.core import Catalogue

#: Names and endpoint URLs remembered per meter (resolved once per catalogue).
_MEMO_LIMIT = 1024

K = TypeVar("K")
V = TypeVar("V")


def memo_in(table: dict[K, tuple[Catalogue, V]], key: K, catalogue: Catalogue,
            work: Callable[[K, Catalogue], V]) -> V:
    """``work(key, catalogue)``, remembered in ``table`` while ``catalogue`` stays the one in
    use (a newer catalogue misses every entry); the table is emptied when it grows past
    :data:`_MEMO_LIMIT`."""
    memo = table.get(key)
    if memo is not None and memo[0] is catalogue:
        return memo[1]
    found = work(key, catalogue)
    if len(table) >= _MEMO_LIMIT:
        table.clear()
    table[key] = (catalogue, found)
    return found


class Placement:
    """The meter's regions and per-region limiters."""

    region: str | None
    limiter: RateLimiter | None
    _limiters: dict[str, RateLimiter]
    _url_regions: dict[str, tuple[Catalogue, str | None]]

    if TYPE_CHECKING:
        def _current_catalogue(self) -> Catalogue: ...

    def region_of(self, url: Any = None, region: str | None = None) -> str:
        """The region a call is priced and limited in (see the class docs)."""
        return self._regions(url, region)[0]

    def _regions(self, url: Any, region: str | None) -> tuple[str, str | None]:
        """(the call's region, ``$QWEN_METER_REGION``): the variable read once per call, for
        the call's region and the limiter's home region alike."""
        env = os.environ.get(REGION_ENV)
        return region or self.region or self._url_region(url) or env or "cn", env

    def _url_region(self, url: Any) -> str | None:
        if url is None:
            return None
        key = url if isinstance(url, str) else str(url)
        return memo_in(self._url_regions, key, self._current_catalogue(), region_for_url)

    def limiter_for(self, region: str) -> RateLimiter | None:
        """The limiter for calls in ``region``: the configured one, or — for a region other
        than the one it was set up for — a sibling on the same store with that region's
        catalogue limits, counted under its own account (``<account>@<region>``), since each
        region has its own quota."""
        return self._limiter_in(region, os.environ.get(REGION_ENV))

    def _limiter_in(self, region: str, env: str | None) -> RateLimiter | None:
        """:meth:`limiter_for`, ``$QWEN_METER_REGION`` (``env``) read by the caller."""
        limiter = self.limiter
        if limiter is None:
            return None
        home = limiter.region or env or "cn"
        if region == home:
            return limiter
        sibling = self._limiters.get(region)
        if sibling is None:
            sibling = RateLimiter(limiter.store, account=f"{limiter.account}@{region}",
                                  region=region, limits=limiter.overrides,
                                  default=limiter.default, smooth=limiter.smooth,
                                  on_store_error=limiter.on_store_error,
                                  catalogue=limiter.catalogue, clock=limiter.clock,
                                  sleep=limiter.sleep, async_sleep=limiter.async_sleep)
            sibling = self._limiters.setdefault(region, sibling)
        return sibling
