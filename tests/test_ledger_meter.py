"""``Meter(log=ledger)`` end to end against the DashScope stand-in, on both backends: each call
the stand-in billed is one record in the ledger (sync and asyncio), and the call of a process
that died after sending is settled ``lost`` by the next meter, once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from unittest import mock

import httpx
import openai

import qwen_meter as qm
from qwen_meter.ledger import open_ledger
from qwen_meter.meter import journal

KEY = "sk-ledgerTESTkey0123456789"
REQUEST = {"model": "qwen-plus", "messages": [{"role": "user", "content": "hello"}],
           "max_tokens": 40}


@contextmanager
def doomed_process() -> Iterator[None]:
    """Intents written inside are a process's whose pid is gone (it died after sending)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = {"host": journal.writer_identity()["host"], "pid": int(done.stdout),
            "start": "a process that is gone"}
    with mock.patch.object(journal, "writer_identity", return_value=dead):
        yield


def test_a_metered_call_is_one_record_in_the_ledger(server, make_meter, ledger_url):
    ledger = open_ledger(ledger_url)
    meter = make_meter(log=ledger)
    client = meter.wrap(openai.OpenAI(api_key=KEY, base_url=server.compatible,
                                      http_client=httpx.Client(transport=server.transport())))
    before = len(server.billed)
    for _ in range(3):
        client.chat.completions.create(**REQUEST)
    billed = len(server.billed) - before
    records = list(ledger)
    assert len(records) == billed == 3 == ledger.count()
    assert all(r.status == "ok" and r.cost is not None for r in records)
    assert ledger.pending_intents() == []
    (row,) = ledger.spend("model")
    assert (row.group, row.currency, row.calls) == ("qwen-plus", "CNY", 3)
    assert row.cost == sum(Decimal(r.cost) for r in records)


def test_an_async_metered_call_is_recorded(server, make_meter, ledger_url):
    ledger = open_ledger(ledger_url)
    meter = make_meter(log=ledger)
    client = meter.wrap(openai.AsyncOpenAI(
        api_key=KEY, base_url=server.compatible,
        http_client=httpx.AsyncClient(transport=server.transport(asynchronous=True))))

    async def main() -> None:
        await asyncio.gather(*(client.chat.completions.create(**REQUEST) for _ in range(4)))

    asyncio.run(main())
    assert [r.status for r in ledger] == ["ok"] * 4


def test_a_dead_process_call_is_settled_lost_once(server, ledger_url):
    budget = qm.Budget("5 CNY")
    with doomed_process():
        dead = qm.Meter(log=open_ledger(ledger_url), budget=budget)
        call = dead.begin(REQUEST)
        httpx.post(f"{server.compatible}/chat/completions", json=REQUEST, timeout=10)
    with open_ledger(ledger_url) as reader:
        assert [r.status for r in reader] == ["pending"]
        assert [i["id"] for i in reader.pending_intents()] == [call.id]

    restarted = qm.Meter(log=open_ledger(ledger_url), budget=budget)  # recovery runs here
    (record,) = list(restarted.log or ())
    assert (record.id, record.status, record.usage_estimated) == (call.id, "lost", True)
    assert Decimal(record.cost) == call.estimate.high.amount
    restarted.close()
    again = qm.Meter(log=open_ledger(ledger_url), budget=budget)  # and again: nothing changes
    assert list(again.log or ()) == [record]
    assert again.log.pending_intents() == []  # type: ignore[union-attr]
    again.close()
    dead.close()


def test_recovery_lock_is_exclusive_between_ledgers(ledger_url):
    import threading

    first, second = open_ledger(ledger_url), open_ledger(ledger_url)
    order: list[str] = []
    inside = threading.Event()

    def other() -> None:
        with second.recovery_lock():
            order.append("second")

    with first.recovery_lock():
        thread = threading.Thread(target=other)
        thread.start()
        inside.wait(1.0)  # give the other a chance to (wrongly) get in
        order.append("first")
    thread.join(30)
    assert order == ["first", "second"]
    first.close()
    second.close()


