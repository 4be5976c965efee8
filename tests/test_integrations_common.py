"""The helpers every integration shares."""

from __future__ import annotations

import qwen_meter as qm
from qwen_meter.integrations import _common as c


class Slotted:
    __slots__ = ("x",)


class Plain:
    pass


def test_call_slot_works_with_and_without_a_dict():
    for make in (Plain, Slotted):
        slot, other = c.CallSlot("a"), c.CallSlot("a")
        call = make()
        slot.put(call, 1)
        other.put(call, 2)  # two observers never see each other's value
        assert (slot.get(call), other.get(call)) == (1, 2)
        assert slot.pop(call) == 1 and slot.pop(call) is None and other.get(call) == 2


def test_failures_and_operations():
    assert c.error_type(qm.UsageRecord(model="m")) is None
    assert c.error_type(qm.UsageRecord(model="m", status="dropped")) == "dropped"
    assert c.error_type(qm.UsageRecord(model="m", status="error",
                                       error_kind="ServerUnavailable")) == "ServerUnavailable"
    assert c.error_type(qm.UsageRecord(model="m", status="closed")) is None
    assert (c.operation("chat"), c.operation("embeddings")) == ("chat", "embeddings")


def test_record_time_round_trips():
    record = qm.UsageRecord(model="m", time="2026-12-03T10:00:00+00:00")
    assert c.end_time_ns(record) == 1_796_292_000 * 10**9
