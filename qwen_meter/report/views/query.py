"""A view's query string, checked: the range (``since`` / ``until`` in ``tz``), the filters,
and the SQL condition they make. A bad value is a :class:`BadParam` naming the parameter (the
web app answers it with HTTP 400); an unknown filter value is not an error but a notice.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ...base.errors import QwenMeterError
from ..sql import quote
from .store import DIMS

#: How many days the range covers when ``since`` is not given.
DEFAULT_DAYS = 30


class BadParam(QwenMeterError):
    """A query parameter of a dashboard view that is not valid (``param`` names it)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.detail = message


Params = Mapping[str, Sequence[str]]


def one(params: Params, name: str, default: str | None = None) -> str | None:
    """The single value of ``name`` (the last one when repeated), or ``default``."""
    values = params.get(name) or ()
    return values[-1] if values else default


def choice(params: Params, name: str, options: Sequence[str], default: str) -> str:
    value = one(params, name, default) or default
    if value not in options:
        raise BadParam(name, f"must be one of {', '.join(options)}, not {value!r}")
    return value


def whole(params: Params, name: str, default: int, low: int, high: int) -> int:
    text = one(params, name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadParam(name, f"not a whole number: {text!r}") from None
    if not low <= value <= high:
        raise BadParam(name, f"must be between {low} and {high}, not {value}")
    return value


def zone(name: str, param: str = "tz") -> zoneinfo.ZoneInfo:
    try:
        if not name or name != name.strip() or ".." in name:
            raise ValueError(name)
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise BadParam(param, f"unknown time zone {name!r} (an IANA name such as "
                              "Asia/Shanghai or UTC)") from None


def instant(text: str, tz: dt.tzinfo, param: str) -> dt.datetime:
    """An ISO date (midnight in ``tz``) or datetime (no offset: in ``tz``) as an aware time."""
    text = text.strip()
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            return dt.datetime(day.year, day.month, day.day, tzinfo=tz)
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadParam(param, f"not an ISO date or time (2026-11-01, 2026-11-01T08:00): "
                              f"{text!r}") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=tz)


def ts_literal(value: dt.datetime) -> str:
    return f"TIMESTAMPTZ {quote(value.astimezone(dt.timezone.utc).isoformat())}"


@dataclass
class Query:
    """What a view is asked about: records in ``[since, until)`` matching ``filters``."""

    tz_name: str
    tz: zoneinfo.ZoneInfo
    since: dt.datetime
    until: dt.datetime
    filters: dict[str, list[str]]
    notices: list[str] = field(default_factory=list)
    defaulted: bool = False
    #: The column money is summed from (the store's ``cost_column``).
    cost: str = "cost"

    def where(self, *, dims: bool = True, since: dt.datetime | None = None,
              until: dt.datetime | None = None, clamp: bool = True) -> str:
        """The SQL condition: range and filters. ``since`` / ``until`` narrow the range (a
        clicked bucket), or replace it with ``clamp=False`` (today, this month)."""
        low, high = since or self.since, until or self.until
        if clamp:
            low, high = max(self.since, low), min(self.until, high)
        parts = [f"ts >= {ts_literal(low)}", f"ts < {ts_literal(high)}"]
        for dim, values in self.filters.items() if dims else ():
            if dim == "tag":  # list_contains is several times faster than list_has_any
                any_of = [f"list_contains(tags, {quote(v)})" for v in values if v != "(none)"]
                if "(none)" in values:
                    any_of.append("len(tags) = 0")
                parts.append(f"({' OR '.join(any_of)})")
            else:
                parts.append(f'"{dim}" IN ({", ".join(quote(v) for v in values)})')
        return " AND ".join(parts)

    def fixed_offset(self) -> int | None:
        """The zone's offset in seconds when it is the same over the whole range (no DST
        change in it): local days and hours are then whole divisions of epoch seconds."""
        offsets = set()
        moment = self.since
        while True:
            offsets.add((moment.astimezone(self.tz).utcoffset() or dt.timedelta())
                        .total_seconds())
            if moment >= self.until or len(offsets) > 1:
                break
            moment = min(moment + dt.timedelta(days=1), self.until)
        return int(offsets.pop()) if len(offsets) == 1 else None

    def key(self) -> tuple[object, ...]:
        return (self.tz_name, self.since, self.until,
                tuple(sorted((k, tuple(sorted(v))) for k, v in self.filters.items())))


def parse_query(params: Params, *, default_tz: str, last: dt.datetime | None,
                known: Mapping[str, set[str]], now: dt.datetime | None = None) -> Query:
    """The range and filters of ``params``; ``last``: the newest record's time (a default
    range with no call in the last 30 days ends at it instead, with a notice)."""
    tz_name = one(params, "tz") or default_tz
    tz = zone(tz_name)
    now = (now or dt.datetime.now(dt.timezone.utc)).astimezone(tz)
    since_text, until_text = one(params, "since"), one(params, "until")
    notices: list[str] = []
    until = instant(until_text, tz, "until") if until_text else None
    since = instant(since_text, tz, "since") if since_text else None
    defaulted = since is None and until is None
    if until is None:
        anchor = now
        if since is None and last is not None and last < now - dt.timedelta(days=DEFAULT_DAYS):
            anchor = last.astimezone(tz)
            notices.append(f"no calls in the last {DEFAULT_DAYS} days: showing the "
                           f"{DEFAULT_DAYS} days up to the last call ({anchor.date()})")
        day = anchor.date() + dt.timedelta(days=1)
        until = dt.datetime(day.year, day.month, day.day, tzinfo=tz)
        if since is not None and since >= until:
            until = since + dt.timedelta(days=1)
    if since is None:
        start = (until.astimezone(tz) - dt.timedelta(days=DEFAULT_DAYS)).date()
        since = dt.datetime(start.year, start.month, start.day, tzinfo=tz)
    if since >= until:
        raise BadParam("until", f"must be after since ({since.isoformat()})")
    filters: dict[str, list[str]] = {}
    for dim in DIMS:
        values = [v for v in params.get(dim) or () if v != ""]
        if values:
            filters[dim] = list(dict.fromkeys(values))
            for value in filters[dim]:
                if value not in known.get(dim, set()):
                    notices.append(f"no calls match {dim}={value}")
    return Query(tz_name, tz, since, until, filters, notices, defaulted)
