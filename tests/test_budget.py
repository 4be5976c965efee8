"""Budgets: no overshoot under any interleaving, threads or processes; periods; thresholds."""

from __future__ import annotations

import contextlib
import datetime as dt
import multiprocessing
import threading
import uuid
import warnings
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import qwen_meter as qm
from qwen_meter.limits.budget.core import Budget
from qwen_meter.limits.budget.periods import period_bounds
from qwen_meter.limits.budget.values import BudgetWarning
from qwen_meter.limits.store import MemoryStore

ops = st.lists(st.tuples(st.sampled_from(["reserve", "commit", "release"]),
                         st.integers(0, 400), st.integers(0, 10)), max_size=60)


def exercise(budget: Budget, sequence) -> None:
    live = []
    for op, cents, k in sequence:
        if op == "reserve":
            with contextlib.suppress(qm.BudgetExceeded):
                live.append(budget.reserve(Decimal(cents) / 100))
        elif live:
            reservation = live.pop(cents % len(live))
            if op == "commit":
                budget.commit(reservation, reservation.amount * k / 10)
            else:
                budget.release(reservation)
        status = budget.status()
        assert status.committed + status.reserved <= status.limit


@given(ops)
def test_committed_plus_reserved_never_exceeds_the_limit(sequence):
    exercise(Budget("10 CNY", store=MemoryStore()), sequence)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(sequence=ops)
def test_no_overshoot_on_every_store(make_store, sequence):
    exercise(Budget("10 CNY", store=make_store(), name=uuid.uuid4().hex), sequence)


def test_threads_cannot_overshoot(make_store):
    budget = Budget("3 CNY", store=make_store(), name=uuid.uuid4().hex)
    commits: list[Decimal] = []
    lock = threading.Lock()

    def worker(seed: int) -> None:
        import random

        rng = random.Random(seed)
        for _ in range(40):
            worst = Decimal(rng.randint(1, 30)) / 100
            try:
                reservation = budget.reserve(worst)
            except qm.BudgetExceeded:
                continue
            real = worst * Decimal(rng.randint(1, 10)) / 10
            budget.commit(reservation, real)
            with lock:
                commits.append(real)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    status = budget.status()
    assert status.committed == sum(commits)
    assert status.committed <= status.limit and status.reserved == 0


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_processes_cannot_overshoot(kind, tmp_path, request):
    from budget_worker import spend

    url = f"sqlite:///{tmp_path / 'shared.db'}" if kind == "sqlite" \
        else request.getfixturevalue("redis_url")
    name = uuid.uuid4().hex
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        results = pool.starmap(spend, [(url, name, seed, 60) for seed in range(4)])
    from qwen_meter.limits.store import open_store

    store = open_store(url, **({"server_time": False} if kind == "redis" else {}))
    status = Budget("5 CNY", name=name, store=store).status()
    assert status.committed == sum(Decimal(r) for r in results)
    assert status.committed <= Decimal(5)
    assert status.reserved == 0


def test_spend_survives_a_restart(tmp_path):
    path = tmp_path / "spend.db"
    first = Budget("1 CNY", store=f"sqlite:///{path}", per="month")
    first.commit(first.reserve("0.4"), "0.3")
    again = Budget("1 CNY", store=f"sqlite:///{path}", per="month")
    assert again.status().committed == Decimal("0.3")


def test_scopes_are_separate():
    budget = Budget("1 CNY", scope="user", store=MemoryStore())
    budget.reserve("0.9", key="alice")
    budget.reserve("0.9", key="bob")
    with pytest.raises(qm.BudgetExceeded, match="user=alice"):
        budget.reserve("0.2", key="alice")
    with pytest.raises(qm.ConfigurationError, match="pass key="):
        budget.reserve("0.1")


def test_periods_roll_over_in_the_time_zone():
    clock = [dt.datetime(2026, 11, 22, 23, 30, tzinfo=dt.timezone.utc).timestamp()]
    budget = Budget("1 CNY", per="day", tz="Asia/Shanghai", store=MemoryStore(),
                    clock=lambda: clock[0])
    # 23:30 UTC is 07:30 on the 23rd in Shanghai.
    assert budget.status().period == "2026-11-23"
    budget.commit(budget.reserve("1"), "1")
    with pytest.raises(qm.BudgetExceeded):
        budget.reserve("0.01")
    clock[0] += 17 * 3600  # 00:30 on the 24th in Shanghai
    assert budget.reserve("0.5").amount == Decimal("0.5")


@pytest.mark.parametrize(("per", "when", "label", "hours"), [
    ("hour", dt.datetime(2026, 3, 8, 1, 15), "2026-03-08T01", 1),
    ("day", dt.datetime(2026, 3, 8, 12, 0), "2026-03-08", 23),  # DST starts in New York
    ("week", dt.datetime(2026, 11, 22, 9, 0), "2026-W47", 168),
    ("month", dt.datetime(2026, 12, 31, 23, 0), "2026-12", None),
])
def test_period_bounds(per, when, label, hours):
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("America/New_York")
    now = when.replace(tzinfo=tz).timestamp()
    got, end = period_bounds(per, now, tz)
    assert got == label and end > now
    if hours:
        start = end - hours * 3600
        assert start <= now
    assert period_bounds(None, now, tz) == ("all", None)


def test_thresholds_fire_once_per_crossing():
    seen = []
    budget = Budget("10 CNY", store=MemoryStore(), on_threshold=seen.append)
    for amount in ("3", "3", "3", "1"):
        budget.commit(budget.reserve(amount), amount)
    assert [e.threshold for e in seen] == [0.5, 0.8, 1.0]
    assert seen[-1].committed == Decimal(10)


def test_soft_mode_warns_and_goes_ahead():
    budget = Budget("1 CNY", mode="soft", store=MemoryStore())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        budget.reserve("0.8")
        budget.reserve("0.8")
    assert any(issubclass(w.category, BudgetWarning) for w in caught)
    assert budget.status().reserved == Decimal("1.6")


def test_costs_and_estimates_as_amounts():
    budget = Budget("1 CNY", store=MemoryStore())
    estimate = qm.estimate_cost([{"role": "user", "content": "你好"}], "qwen-plus",
                                max_tokens=100)
    reservation = budget.reserve(estimate)
    assert reservation.amount == estimate.high.amount
    real = qm.cost({"prompt_tokens": 9, "completion_tokens": 20}, "qwen-plus")
    status = budget.commit(reservation, real)
    assert status.committed == real.amount and status.reserved == 0
    with pytest.raises(qm.ConfigurationError, match="USD"):
        budget.reserve(qm.cost({"prompt_tokens": 9, "completion_tokens": 20}, "qwen-plus",
                               region="intl"))
    unpriced = qm.cost({"prompt_tokens": 9, "completion_tokens": 20}, "qwen-max-latest",
                       region="intl")
    usd = Budget("1 USD", store=MemoryStore())
    with pytest.raises(qm.BudgetExceeded, match="unpriced"):
        usd.reserve(unpriced)


@pytest.mark.parametrize(("args", "match"), [
    (("-1 CNY",), "negative"), (("5",), "currency"), (("5 EUR",), "currency"),
    (("ten CNY",), "not an amount"),
])
def test_bad_budgets(args, match):
    with pytest.raises(qm.ConfigurationError, match=match):
        Budget(*args)
    with pytest.raises(qm.ConfigurationError):
        Budget("5 CNY", per="fortnight")
    with pytest.raises(qm.ConfigurationError, match="time zone"):
        Budget("5 CNY", per="day", tz="Mars/Olympus")


def test_store_down_policies():
    pytest.importorskip("redis")
    from test_limiter import dead_redis

    closed = Budget("1 CNY", store=dead_redis())
    with pytest.raises(qm.StoreUnavailable):
        closed.reserve("0.1")
    opened = Budget("1 CNY", store=dead_redis(), on_store_error="open")
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        reservation = opened.reserve("0.1")
        assert reservation.degraded
        opened.commit(reservation, "0.05")


# --- issue #11: the ledger is exactly-once and checked ------------------------------------


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_misuse_is_a_typed_error_and_never_double_counts(make_store):
    clock = Clock()
    budget = Budget("10 CNY", store=make_store(), name=uuid.uuid4().hex, clock=clock, lease=60)
    first = budget.reserve("4")
    assert budget.commit(first, "3").committed == Decimal(3)
    with pytest.raises(qm.ReservationSettled) as twice:
        budget.commit(first, "3")
    assert twice.value.state == "committed" and twice.value.reservation == first.id
    assert budget.release(first).committed == Decimal(3)  # no-op: the commit stands
    second = budget.reserve("2")
    budget.release(second)
    budget.release(second)  # idempotent
    with pytest.raises(qm.ReservationSettled, match="released"):
        budget.commit(second, "2")
    stranger = Budget("10 CNY", store=MemoryStore(), name="other").reserve("1")
    with pytest.raises(qm.ReservationUnknown):
        budget.commit(stranger)
    status = budget.status()
    assert (status.committed, status.reserved) == (Decimal(3), Decimal(0))
    assert issubclass(qm.ReservationError, qm.QwenMeterError)


def test_commit_after_the_lease_expired_cannot_overshoot(make_store):
    """The reported case: a lease ran out, its room was reserved again, then the late commit
    came; it used to take committed to 16 against a limit of 10."""
    clock = Clock()
    budget = Budget("10 CNY", store=make_store(), name=uuid.uuid4().hex, clock=clock, lease=30)
    slow = budget.reserve("8")
    clock.now += 31  # the caller was stuck past its lease; its hold is gone
    quick = budget.reserve("8")
    budget.commit(quick, "8")
    with pytest.raises(qm.ReservationExpired, match="lease"):
        budget.commit(slow, "8")
    assert budget.release(slow).committed == Decimal(8)  # releasing it is a no-op
    assert budget.status().committed == Decimal(8) <= budget.limit


def test_degraded_reservation_commits_once_when_the_store_is_back():
    store = MemoryStore()
    budget = Budget("10 CNY", store=store, name="d", on_store_error="open")
    from qwen_meter.limits.budget.values import Reservation

    held = budget.reserve("2")
    degraded = Reservation(held.id + "x", held.budget, held.key, held.scope_value,
                           held.amount, held.units, held.expire_at, degraded=True)
    assert budget.commit(degraded, "1").committed == Decimal(1)  # spend without a hold
    with pytest.raises(qm.ReservationSettled):
        budget.commit(degraded, "1")


def test_async_twins_match_the_sync_cycle(make_store):
    import asyncio

    store = make_store()
    budget = Budget("1 CNY", store=store, name=uuid.uuid4().hex)

    async def main():
        held = await budget.reserve_async("0.6")
        with pytest.raises(qm.BudgetExceeded):
            await budget.reserve_async("0.6")
        status = await budget.commit_async(held, "0.5")
        with pytest.raises(qm.ReservationSettled):
            await budget.commit_async(held, "0.5")
        other = await budget.reserve_async("0.2")
        released = await budget.release_async(other)
        if hasattr(store, "aclose"):
            await store.aclose()
        return status, released

    status, released = asyncio.run(main())
    assert status.committed == Decimal("0.5") and released.reserved == 0
    assert budget.status().committed == Decimal("0.5")


@pytest.mark.parametrize("lease", [float("nan"), -1, 0, float("inf"), "10"])
def test_bad_leases(lease):
    with pytest.raises(qm.InvalidTimeout):
        Budget("1 CNY", lease=lease)
