"""Spend from the ledger: grouped in SQL, per currency, and equal to the same records summed by
hand with Decimals — by key, user, team, model, tag and day (in UTC and in another zone),
within ``since`` / ``until``."""

from __future__ import annotations

import datetime as dt
import random
import zoneinfo
from collections import defaultdict
from decimal import Decimal
from typing import Any

import pytest

from qwen_meter.ledger import SPEND_GROUPS, Ledger, LedgerError, SpendRow
from qwen_meter.meter.records import UsageRecord

START = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)


def sample(n: int, seed: int = 7) -> list[UsageRecord]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        currency = rnd.choice(["CNY", "CNY", "USD", None])
        cost = None if currency is None or rnd.random() < 0.1 else \
            str(Decimal(rnd.randrange(0, 10**9)) / Decimal(10**rnd.randrange(3, 12)))
        tags = [t for t in (rnd.choice([None, "key=k1", "key=k2", "key=k3"]),
                            rnd.choice([None, "team=search", "team=ads"]),
                            rnd.choice([None, "proj=x", "batch"])) if t]
        when = START + dt.timedelta(minutes=rnd.randrange(0, 60 * 24 * 6))
        out.append(UsageRecord(
            model=rnd.choice(["qwen-plus", "qwen-max", "qwen-turbo"]), id=f"r{i}",
            time=when.astimezone(zoneinfo.ZoneInfo(rnd.choice(["UTC", "Asia/Shanghai"])))
            .isoformat(), cost=cost, currency=currency, tags=tuple(tags),
            user=rnd.choice([None, "alice", "bob"]), prompt_tokens=rnd.randrange(0, 5000),
            completion_tokens=rnd.randrange(0, 2000)))
    return out


def by_hand(records: list[UsageRecord], by: str, tz: str = "UTC",
            since: dt.datetime | None = None,
            until: dt.datetime | None = None) -> set[tuple[Any, ...]]:
    sums: dict[tuple[Any, Any], list[Any]] = defaultdict(lambda: [Decimal(0), 0, 0, 0])

    def groups(r: UsageRecord) -> list[str | None]:
        tag = {t.split("=")[0]: t.split("=", 1)[1] for t in r.tags if "=" in t}
        when = dt.datetime.fromisoformat(r.time)
        return {"key": [tag.get("key")], "user": [r.user], "team": [tag.get("team")],
                "model": [r.model], "tag": list(r.tags) or [None],
                "day": [when.astimezone(zoneinfo.ZoneInfo(tz)).date().isoformat()]}[by]

    for r in records:
        when = dt.datetime.fromisoformat(r.time)
        if (since and when < since) or (until and when >= until):
            continue
        for group in groups(r):
            row = sums[(group, r.currency)]
            row[0] += Decimal(r.cost) if r.cost is not None else 0
            row[1] += 1
            row[2] += r.prompt_tokens
            row[3] += r.completion_tokens
    return {(g, c, *v) for (g, c), v in sums.items()}


def as_set(rows: list[SpendRow]) -> set[tuple[Any, ...]]:
    assert all(isinstance(r.cost, Decimal) for r in rows)  # never a float
    return {(r.group, r.currency, r.cost, r.calls, r.prompt_tokens, r.completion_tokens)
            for r in rows}


@pytest.fixture
def filled(ledger: Ledger) -> tuple[Ledger, list[UsageRecord]]:
    records = sample(400)
    assert ledger.append_many(records) == 400
    return ledger, records


@pytest.mark.parametrize("by", SPEND_GROUPS)
def test_spend_equals_the_records_summed_by_hand(filled, by: str):
    ledger, records = filled
    got = ledger.spend(by)
    assert as_set(got) == by_hand(records, by)
    assert len({(r.group, r.currency) for r in got}) == len(got)  # one row per currency
    if by != "tag":  # every call counted once: totals per currency match the records
        for currency in ("CNY", "USD"):
            assert sum(r.cost for r in got if r.currency == currency) == \
                sum(Decimal(r.cost) for r in records if r.currency == currency and r.cost)


def test_spend_between_since_and_until(filled):
    ledger, records = filled
    since = START + dt.timedelta(days=1, hours=3)
    until = START + dt.timedelta(days=3, minutes=17)
    got = ledger.spend("model", since=since, until=until)
    assert as_set(got) == by_hand(records, "model", since=since, until=until)
    assert sum(r.calls for r in got) < len(records)
    naive = ledger.spend("model", since=since.replace(tzinfo=None),
                         until=until.replace(tzinfo=None))
    assert naive == got  # a naive datetime is UTC
    edge = records[0]  # since is inclusive, until exclusive
    at = dt.datetime.fromisoformat(edge.time)
    (only,) = [r for r in ledger.spend("model", since=at, until=at + dt.timedelta(minutes=1))
               if r.group == edge.model and r.currency == edge.currency]
    assert only.calls >= 1
    assert ledger.spend("model", since=at, until=at) == []


@pytest.mark.parametrize("tz", ["UTC", "Asia/Shanghai", "America/Los_Angeles"])
def test_spend_by_day_in_a_zone(filled, tz: str):
    ledger, records = filled
    assert as_set(ledger.spend("day", tz=tz)) == by_hand(records, "day", tz=tz)


def test_a_day_is_the_zones_calendar_day(ledger):
    ledger.append(UsageRecord(model="qwen-plus", time="2026-01-01T20:00:00+00:00", cost="1",
                              currency="CNY"))
    assert [r.group for r in ledger.spend("day")] == ["2026-01-01"]
    assert [r.group for r in ledger.spend("day", tz="Asia/Shanghai")] == ["2026-01-02"]


def test_spend_of_an_empty_ledger_and_bad_arguments(ledger):
    assert ledger.spend("key") == []
    with pytest.raises(LedgerError, match="by="):
        ledger.spend("colour")
    with pytest.raises(LedgerError, match="time zone"):
        ledger.spend("day", tz="Mars/Olympus")
    with pytest.raises(LedgerError, match="since"):
        ledger.spend("day", since="yesterday")
