"""Budget truth: a commit above its hold charges the real cost and says when the budget is
overspent; the ``open`` store policy marks records degraded; reports count, price and flag
the estimated ``cancelled`` / ``unknown`` calls and do not call refusals unpriced."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

import qwen_meter as qm
from qwen_meter.limits.store import MemoryStore, StoreUnavailable
from qwen_meter.meter.log import JsonlLog
from qwen_meter.report import build_report, load_usage

HELLO = [{"role": "user", "content": "你好，你是谁？"}]
REQUEST = {"model": "qwen-plus", "messages": HELLO, "max_tokens": 10}


def test_commit_above_the_hold_is_charged_and_overspent_is_told():
    events: list[qm.ThresholdEvent] = []
    budget = qm.Budget("10 CNY", on_overspent=events.append)
    r1, r2 = budget.reserve(1), budget.reserve(9)
    budget.commit(r2, 9)
    status = budget.commit(r1, 5)
    assert status.committed == Decimal(14)  # the real cost, not the hold
    assert status.overspent == Decimal(4) and budget.status().overspent == Decimal(4)
    assert [(e.overspent, e.committed) for e in events] == [(Decimal(4), Decimal(14))]
    with pytest.raises(qm.BudgetExceeded):  # nothing fits until the period resets
        budget.reserve(0)
    assert budget.status().reserved == 0


def test_within_the_limit_is_not_overspent():
    events: list[qm.ThresholdEvent] = []
    budget = qm.Budget("10 CNY", on_overspent=events.append)
    budget.commit(budget.reserve(3), 10)
    assert budget.status().overspent == 0 and not events


def test_a_call_costing_more_than_its_hold_warns_in_its_record(make_meter, server):
    """The server's usage is past the call's estimate: the record says the budget overspent."""
    events: list[qm.ThresholdEvent] = []
    meter = make_meter(budget=qm.Budget("0.0001 CNY", on_overspent=events.append))
    call = meter.begin(REQUEST)
    record = call.finish({"prompt_tokens": 200_000, "completion_tokens": 100})
    assert any("overspent" in w for w in record.warnings), record.warnings
    assert meter.budgets[0].status().committed == Decimal(record.cost)
    assert events and events[0].overspent > 0


class DyingStore(MemoryStore):
    """A store that goes away after the calls were admitted (between begin and finish)."""

    dead = False

    def _check(self) -> None:
        if self.dead:
            raise StoreUnavailable("connection refused (the store went away)")

    def ledger_commit(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return super().ledger_commit(*args, **kwargs)

    def ledger_release(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return super().ledger_release(*args, **kwargs)

    def ledger_reserve(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return super().ledger_reserve(*args, **kwargs)


@pytest.mark.parametrize("when", ["between begin and finish", "before begin"])
@pytest.mark.parametrize("outcome", ["finish", "fail"])
def test_open_policy_marks_the_record_degraded(make_meter, server, when, outcome):
    store = DyingStore()
    meter = make_meter(budget=qm.Budget("10 CNY", store=store, on_store_error="open"))
    store.dead = when == "before begin"
    with pytest.warns(RuntimeWarning):
        call = meter.begin(REQUEST)
        store.dead = True
        if outcome == "finish":
            record = call.finish({"prompt_tokens": 22, "completion_tokens": 16})
        else:
            record = call.fail(RuntimeError("boom"))
    assert record.degraded
    assert any("store was unavailable" in w for w in record.warnings), record.warnings


def test_report_counts_and_prices_cancelled_and_unknown_calls(make_meter, server, tmp_path):
    meter = make_meter(budget=qm.Budget("0.01 CNY"))
    meter.begin(REQUEST).finish({"prompt_tokens": 22, "completion_tokens": 16})
    meter.begin(REQUEST).finish_unknown("unknown", TimeoutError("read timed out"))

    async def cancelled() -> None:
        call = await meter.begin_async(REQUEST)
        await call.finish_unknown_async("cancelled", asyncio.CancelledError())

    asyncio.run(cancelled())
    with pytest.raises(qm.BudgetExceeded):  # refused: never sent, nothing billed
        meter.begin({**REQUEST, "max_tokens": 30_000})
    recs = list(JsonlLog(meter.log.path))
    assert [r.status for r in recs] == ["ok", "unknown", "cancelled", "refused"]
    report = build_report(load_usage(meter.log.path), by=["status"])
    rows = {row.status: row for row in report.breakdown.itertuples()}
    for status in ("unknown", "cancelled"):
        assert rows[status].calls == 1
        assert rows[status].cost == Decimal(next(r.cost for r in recs if r.status == status))
        assert rows[status].cost > 0
    assert report.unpriced_count == 0, report.unpriced  # the refusal is not "unpriced"
    assert meter.budgets[0].status().committed == sum(Decimal(r.cost) for r in recs[:3])
