"""The ledger on both backends (SQLite in the test's folder, PostgreSQL via ``postgres_url``):
records idempotent by id from several processes, keys, budgets, live changes seen by another
process, migrations applied once, spend summed exactly per currency, alerts claimed once, no
password in any error, and ``Meter(log=ledger)`` end to end with recovery."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import multiprocessing
import queue
from decimal import Decimal
from typing import Any

import ledger_workers
import pytest
from ledger_fixtures import rows

from qwen_meter.ledger import (
    BudgetSpec,
    KeyEntry,
    LedgerConflict,
    LedgerError,
    LedgerNotFound,
    ScopeBudget,
    hash_key,
    open_ledger,
)
from qwen_meter.meter.records import UsageRecord

SPAWN = multiprocessing.get_context("spawn")  # the pool's threads must not be forked
WAIT = 30  # seconds a test waits for another process before failing (never asserted on)


def record(**fields: Any) -> UsageRecord:
    fields.setdefault("model", "qwen-plus")
    return UsageRecord(**fields)


def run_all(processes: list[Any]) -> None:
    for p in processes:
        p.start()
    for p in processes:
        p.join(WAIT * 2)
        assert p.exitcode == 0, f"worker {p.name} ended with {p.exitcode}"


# --- records -----------------------------------------------------------------------------------

def test_a_record_written_twice_is_one_row_with_its_columns(ledger, ledger_url):
    r = record(cost="0.0012", currency="CNY", user="alice", region="cn-beijing",
               tags=("key=alice-laptop", "team=search", "proj"), prompt_tokens=12,
               completion_tokens=7, time="2026-05-01T10:00:00+08:00")
    ledger.append(r)
    ledger.append(r)  # a retried write
    assert ledger.append_many([r, record(id="other")]) == 1
    assert ledger.count() == 2
    (row,) = rows(ledger_url, "SELECT id, model, status, key_name, user_name, team, region, "
                              "currency, cost, prompt_tokens, completion_tokens, tags, record "
                              f"FROM records WHERE id = '{r.id}'")
    tags = row[11] if isinstance(row[11], list) else json.loads(row[11])
    assert row[:8] == (r.id, "qwen-plus", "ok", "alice-laptop", "alice", "search", "cn-beijing",
                       "CNY")
    assert Decimal(row[8]) == Decimal("0.0012") and not isinstance(row[8], float)
    assert (row[9], row[10], tags) == (12, 7, ["key=alice-laptop", "team=search", "proj"])
    assert row[12] == r.to_json()
    (time,) = rows(ledger_url, f"SELECT time FROM records WHERE id = '{r.id}'")[0]
    when = time if isinstance(time, dt.datetime) else dt.datetime.fromisoformat(time)
    assert when == dt.datetime(2026, 5, 1, 2, 0, tzinfo=dt.timezone.utc)
    assert sorted(x.id for x in ledger) == sorted([r.id, "other"])
    assert next(x for x in ledger if x.id == r.id) == r


def test_three_processes_write_every_record_once(ledger_url):
    open_ledger(ledger_url).close()  # the schema first: this test is about the records
    shared = [f"shared-{i}" for i in range(20)]
    barrier = SPAWN.Barrier(3)
    run_all([SPAWN.Process(daemon=True, target=ledger_workers.write_records,
                           args=(ledger_url, f"w{n}", 40, shared, barrier)) for n in range(3)])
    with open_ledger(ledger_url) as ledger:
        assert ledger.count() == 3 * 40 + 20
        ids = [r.id for r in ledger]
        assert len(ids) == len(set(ids)) == 140
        by_key = {row.group: (row.calls, row.cost) for row in ledger.spend("key")}
        assert by_key == {"w0": (40, Decimal("0.040")), "w1": (40, Decimal("0.040")),
                          "w2": (40, Decimal("0.040")), None: (20, Decimal("10.0"))}


def test_async_appends_are_written_and_awaited(ledger):
    async def main() -> None:
        await asyncio.gather(*(ledger.append_async(record(id=f"a{i}")) for i in range(30)))
        await ledger.append_intent_async({"journal": "intent", "id": "in-flight",
                                          "model": "qwen-plus", "time": "2026-01-01T00:00:00Z"})
        await ledger.append_async(record(id="a0"))  # again: still one

    asyncio.run(main())
    assert ledger.count() == 30
    assert [i["id"] for i in ledger.pending_intents()] == ["in-flight"]
    ledger.append(record(id="in-flight"))  # its outcome settles it
    assert ledger.pending_intents() == []
    ledger.append_intent({"journal": "intent", "id": "in-flight", "model": "qwen-plus"})
    assert ledger.pending_intents() == []  # a late retry of the intent does not revive it


def test_buffered_writes_are_all_there_after_flush(ledger_url):
    with open_ledger(ledger_url, durability="buffered") as ledger:
        for i in range(25):
            ledger.append(record(id=f"b{i}"))
        ledger.flush()
        assert ledger.count() == 25


# --- keys --------------------------------------------------------------------------------------

def test_keys_crud_conflicts_and_version(ledger):
    v0 = ledger.version()
    entry = KeyEntry(name="alice", hash=hash_key("sk-qm-alice"), prefix="sk-qm-al",
                     user="alice", team="search", tags=("proj",), rpm=60, models=("qwen-plus",),
                     budgets=(BudgetSpec("daily", "5 CNY", "day"),), headers=("X-DashScope-"
                                                                              "WorkSpace",))
    made = ledger.create_key(entry)
    assert (made.name, made.hash, made.budgets, made.models) == \
        ("alice", hash_key("sk-qm-alice"), entry.budgets, ("qwen-plus",))
    assert made.created and ledger.version() == v0 + 1
    assert ledger.get_key("alice") == made == ledger.key_by_hash(hash_key("sk-qm-alice"))
    assert ledger.key_by_hash(hash_key("sk-qm-other")) is None and ledger.get_key("x") is None
    with pytest.raises(LedgerConflict, match="alice"):
        ledger.create_key(KeyEntry(name="alice", hash=hash_key("sk-qm-2")))
    with pytest.raises(LedgerConflict, match="same secret"):
        ledger.create_key(KeyEntry(name="bob", hash=hash_key("sk-qm-alice")))
    assert ledger.version() == v0 + 1  # refused changes change nothing

    changed = ledger.update_key("alice", rpm=120, tags=["a", "b"], models=None,
                                budgets=[{"name": "m", "limit": "50 CNY", "per": "month"}])
    assert (changed.rpm, changed.tags, changed.models, changed.created) == \
        (120, ("a", "b"), None, made.created)
    assert changed.budgets == (BudgetSpec("m", "50 CNY", "month"),)
    assert ledger.get_key("alice") == changed and ledger.version() == v0 + 2
    with pytest.raises(LedgerError, match="hash"):
        ledger.update_key("alice", hash=hash_key("new"))
    with pytest.raises(LedgerError, match="rpm"):
        ledger.update_key("alice", rpm=-1)
    with pytest.raises(LedgerNotFound):
        ledger.update_key("nobody", rpm=1)
    with pytest.raises(LedgerNotFound):
        ledger.revoke_key("nobody")

    ledger.create_key(KeyEntry(name="bob", hash=hash_key("sk-qm-bob")))
    revoked = ledger.revoke_key("alice")
    assert revoked.revoked and ledger.get_key("alice").revoked
    assert [k.name for k in ledger.list_keys()] == ["alice", "bob"]
    assert [k.name for k in ledger.list_keys(revoked=False)] == ["bob"]
    with pytest.raises(LedgerConflict):  # a revoked key's name stays taken
        ledger.create_key(KeyEntry(name="alice", hash=hash_key("sk-qm-3")))
    assert ledger.version() == v0 + 4


def test_a_key_is_stored_hashed_only(ledger, ledger_url):
    with pytest.raises(LedgerError, match="sha256"):
        ledger.create_key(KeyEntry(name="raw", hash="sk-qm-plaintext-secret"))
    ledger.create_key(KeyEntry(name="k", hash=hash_key("sk-qm-secret-value")))
    dump = repr(rows(ledger_url, "SELECT * FROM keys"))
    assert "sk-qm-secret-value" not in dump and hash_key("sk-qm-secret-value") in dump


def test_scope_budgets(ledger):
    v0 = ledger.version()
    team = ScopeBudget("team", "search", BudgetSpec("monthly", "500 CNY", "month"))
    assert ledger.set_budget(team) == team
    ledger.set_budget(ScopeBudget("global", "*", BudgetSpec("all", "9000 CNY", "month")))
    ledger.set_budget(ScopeBudget("team", "search", BudgetSpec("monthly", "600 CNY", "month",
                                                               "soft")))
    assert ledger.list_budgets() == [
        ScopeBudget("global", "*", BudgetSpec("all", "9000 CNY", "month")),
        ScopeBudget("team", "search", BudgetSpec("monthly", "600 CNY", "month", "soft"))]
    ledger.delete_budget("global", "*", "all")
    with pytest.raises(LedgerNotFound):
        ledger.delete_budget("global", "*", "all")
    with pytest.raises(LedgerError, match="scope"):
        ledger.set_budget(ScopeBudget("planet", "x", BudgetSpec("b", "1 CNY")))
    assert ledger.version() == v0 + 4


def test_watch_in_another_process_sees_create_and_revoke(ledger, ledger_url):
    ready, stop, out = SPAWN.Event(), SPAWN.Event(), SPAWN.Queue()
    watcher = SPAWN.Process(daemon=True, target=ledger_workers.watch,
                            args=(ledger_url, "carol", ready, stop, out))
    watcher.start()
    try:
        assert ready.wait(WAIT)
        ledger.create_key(KeyEntry(name="carol", hash=hash_key("sk-qm-carol")))
        version, revoked = out.get(timeout=WAIT)
        assert (version, revoked) == (ledger.version(), False)
        ledger.revoke_key("carol")
        version, revoked = out.get(timeout=WAIT)
        assert (version, revoked) == (ledger.version(), True)
    finally:
        stop.set()
        watcher.join(WAIT)
    assert watcher.exitcode == 0


def test_watch_stops(ledger, monkeypatch):
    from qwen_meter.ledger import pg_watch

    monkeypatch.setattr(pg_watch, "CHECK_EVERY", 3600.0)  # only NOTIFY can tell it in time
    seen: queue.Queue[int] = queue.Queue()
    stop = ledger.watch(seen.put)
    ledger.create_key(KeyEntry(name="d", hash=hash_key("sk-qm-d")))
    assert seen.get(timeout=WAIT) == ledger.version()
    stop()
    ledger.revoke_key("d")
    with pytest.raises(queue.Empty):
        seen.get(timeout=1.5)  # three poll periods: a running watch would have called


# --- alerts ------------------------------------------------------------------------------------

def test_an_alert_is_claimed_once_across_processes(ledger_url):
    open_ledger(ledger_url).close()
    marks = [f"budget:team=search:80%:2026-12-{d:02d}" for d in range(1, 21)]
    barrier, out = SPAWN.Barrier(3), SPAWN.Queue()
    run_all([SPAWN.Process(daemon=True, target=ledger_workers.claim,
                           args=(ledger_url, marks, barrier, out)) for _ in range(3)])
    won = [mark for _ in range(3) for mark in out.get(timeout=WAIT)]
    assert sorted(won) == sorted(marks)  # each mark exactly once, whoever won it
    with open_ledger(ledger_url) as ledger:
        assert not ledger.claim_alert(marks[0]) and ledger.claim_alert("another")


def test_postgres_watch_reconnects_and_catches_up(postgres_url, monkeypatch):
    import time

    import psycopg

    from qwen_meter.ledger import pg_watch

    monkeypatch.setattr(pg_watch, "CHECK_EVERY", 3600.0)  # only the re-read on reconnecting

    seen: queue.Queue[int] = queue.Queue()
    with open_ledger(postgres_url) as ledger, psycopg.connect(postgres_url,
                                                              autocommit=True) as admin:
        stop = ledger.watch(seen.put)
        find = ("SELECT pid FROM pg_stat_activity WHERE application_name = "
                "'qwen_meter ledger watch' AND datname = current_database()")
        for _ in range(WAIT * 20):  # up to about WAIT s: a liveness bound
            if admin.execute(find).fetchall():
                break
            time.sleep(0.05)
        else:
            pytest.fail("the watch never connected")
        ledger.create_key(KeyEntry(name="before", hash=hash_key("sk-qm-before")))
        assert seen.get(timeout=WAIT) == ledger.version()
        admin.execute(f"SELECT pg_terminate_backend(pid) FROM ({find}) AS w")
        # Changed while the watch's connection is gone: its NOTIFY reaches nobody, the
        # re-read on reconnecting does.
        ledger.create_key(KeyEntry(name="during", hash=hash_key("sk-qm-during")))
        assert seen.get(timeout=WAIT) == ledger.version()
        assert stop.__self__.connections >= 2  # type: ignore[attr-defined]
        ledger.revoke_key("during")  # and it listens again
        assert seen.get(timeout=WAIT) == ledger.version()
        stop()


def test_a_record_the_ledger_cannot_write_is_a_usage_log_error(ledger_url):
    from qwen_meter.ledger import LedgerLogError
    from qwen_meter.meter.records import UsageLogError

    ledger = open_ledger(ledger_url)
    ledger.close()
    ledger.close()  # again: nothing
    with pytest.raises(UsageLogError, match="closed") as caught:
        ledger.append(record())
    assert isinstance(caught.value, LedgerLogError)
    with pytest.raises(LedgerError, match="closed"):
        ledger.version()


def test_sqlite_watch_of_a_deleted_file_makes_no_new_one(tmp_path):
    path = tmp_path / "ledger.db"
    with open_ledger(f"sqlite:///{path}") as ledger:
        stop = ledger.watch(lambda v: None)
        for suffix in ("", "-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        import time

        time.sleep(1.2)  # two polls: each must fail to open, not create the file
        stop()
    assert not path.exists()


def test_async_writes_leave_the_event_loop(ledger):
    import threading

    writers: set[int] = set()
    store = ledger._store

    def spy(rows: Any) -> int:
        writers.add(threading.get_ident())
        return store(rows)

    ledger._store = spy

    async def main() -> int:
        await ledger.append_intent_async({"journal": "intent", "id": "x", "model": "m"})
        await ledger.append_async(record(id="x"))
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert writers and loop_thread not in writers  # the database is waited on elsewhere
    assert [r.id for r in ledger] == ["x"] and ledger.pending_intents() == []
