"""A budget's periods: none (a lifetime total), or a calendar hour, day, week or month in the
budget's time zone, each with an id (its ledger's name) and an end."""

from __future__ import annotations

import datetime as dt

#: the calendar periods (a budget's ``per``, an alert's ``repeat``)
CALENDAR_PERIODS = ("hour", "day", "week", "month")
PERIODS = (None, *CALENDAR_PERIODS)


def period_bounds(period: str | None, now: float, tz: dt.tzinfo
                  ) -> tuple[str, float | None]:
    """(period id, end timestamp) of the calendar period containing ``now``."""
    if period is None:
        return "all", None
    local = dt.datetime.fromtimestamp(now, tz)
    if period == "hour":
        start = local.replace(minute=0, second=0, microsecond=0)
        end_naive = start.replace(tzinfo=None) + dt.timedelta(hours=1)
        label = start.strftime("%Y-%m-%dT%H")
    elif period == "day":
        start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        end_naive = start.replace(tzinfo=None) + dt.timedelta(days=1)
        label = start.strftime("%Y-%m-%d")
    elif period == "week":
        start = (local - dt.timedelta(days=local.weekday())).replace(hour=0, minute=0, second=0,
                                                                      microsecond=0)
        end_naive = start.replace(tzinfo=None) + dt.timedelta(days=7)
        label = start.strftime("%G-W%V")
    else:
        start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end_naive = (start.replace(tzinfo=None) + dt.timedelta(days=32)).replace(day=1)
        label = start.strftime("%Y-%m")
    return label, end_naive.replace(tzinfo=tz).timestamp()
