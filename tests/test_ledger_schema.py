"""Opening a ledger: URL forms, errors that never show a password, versioned migrations
applied once when replicas start together, and a schema newer than the code refused."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import ledger_workers
import pytest
from ledger_fixtures import rows

from qwen_meter.ledger import Ledger, LedgerError, open_ledger
from qwen_meter.ledger.migrations import latest, migrations
from qwen_meter.ledger.sqlite import SQLiteLedger

SPAWN = multiprocessing.get_context("spawn")
SECRET = "zebra-Hunter2-pw"


def test_sqlite_urls_relative_and_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    with open_ledger("sqlite:///rel.db") as ledger:
        assert isinstance(ledger, SQLiteLedger) and ledger.url == "sqlite:///rel.db"
    assert (tmp_path / "rel.db").is_file()
    absolute = tmp_path / "sub" / "abs.db"
    absolute.parent.mkdir()
    monkeypatch.chdir("/")
    with open_ledger(f"sqlite:///{absolute}") as ledger:  # sqlite:////tmp/…/abs.db
        ledger.claim_alert("x")
    assert absolute.is_file()
    ledger = open_ledger(f"sqlite:///{absolute}")
    assert open_ledger(ledger) is ledger  # a ledger passes through
    ledger.close()


@pytest.mark.parametrize("url", [f"mysql://root:{SECRET}@db/x", f"redis://:{SECRET}@h/0",
                                 "sqlite:///", "", f"http://u:{SECRET}@h/?password={SECRET}"])
def test_an_unknown_url_is_named_with_its_password_masked(url: str):
    with pytest.raises(LedgerError, match="unknown ledger URL") as caught:
        open_ledger(url)
    assert SECRET not in str(caught.value)
    if url.startswith("mysql"):
        assert "mysql://root:***@db/x" in str(caught.value)


def test_a_url_that_is_not_text():
    with pytest.raises(LedgerError, match="string"):
        open_ledger(42)


def test_no_password_in_postgres_errors(postgres_url: str):
    from urllib.parse import urlsplit

    server = urlsplit(postgres_url)
    # refused: nothing listens on port 1
    with pytest.raises(LedgerError) as refused:
        open_ledger(f"postgresql://meter:{SECRET}@127.0.0.1:1/meter", timeout=2)
    # a server's message that quotes the password (here: as the database's name)
    with pytest.raises(LedgerError) as quoted:
        open_ledger(f"postgres://{server.username}:{SECRET}@{server.hostname}:{server.port}/"
                    f"{SECRET}", timeout=5)
    for caught in (refused, quoted):
        text = str(caught.value)
        assert SECRET not in text and "***" in text and "cannot connect" in text
    assert "does not exist" in str(quoted.value)


def test_migrations_are_applied_once_when_three_open_at_once(ledger_url: str,
                                                             tmp_path: Path):
    # SQLite: several rounds on fresh files, to give a race every chance to show.
    urls = [ledger_url] if not ledger_url.startswith("sqlite") else \
        [f"sqlite:///{tmp_path}/round{i}.db" for i in range(8)]
    barrier = SPAWN.Barrier(3)
    processes = [SPAWN.Process(daemon=True, target=ledger_workers.open_each, args=(urls, barrier))
                 for _ in range(3)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(120)
        assert p.exitcode == 0
    dialect = "sqlite" if ledger_url.startswith("sqlite") else "postgresql"
    for url in urls:
        versions = [r[0] for r in rows(url, "SELECT version FROM schema_migrations")]
        assert sorted(versions) == [v for v, _ in migrations(dialect)]
        assert rows(url, "SELECT count(*) FROM ledger_state") == [(1,)]
    with open_ledger(urls[0]) as ledger:  # and once more, later: nothing to do
        assert ledger.version() == 0
    assert len(rows(urls[0], "SELECT version FROM schema_migrations")) == len(migrations(dialect))


def test_a_newer_schema_is_refused(ledger: Ledger, ledger_url: str):
    ledger.claim_alert("kept")
    ledger.close()
    newer = latest("sqlite") + 7
    if ledger_url.startswith("sqlite"):
        import sqlite3

        db = sqlite3.connect(ledger_url[len("sqlite:///"):])
        db.execute("INSERT INTO schema_migrations VALUES (?, 'later')", (newer,))
        db.commit()
        db.close()
    else:
        import psycopg

        with psycopg.connect(ledger_url) as conn:
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (newer,))
    with pytest.raises(LedgerError, match=f"version {newer}, newer than this qwen_meter"):
        open_ledger(ledger_url)
    assert rows(ledger_url, "SELECT mark FROM alert_marks") == [("kept",)]  # left untouched


def test_every_migration_file_is_split_into_whole_statements():
    from qwen_meter.ledger.sqlite import statements

    for _, sql in migrations("sqlite"):
        parts = list(statements(sql))
        assert all(p.endswith(";") for p in parts)
        assert any(p.startswith("CREATE TABLE records") for p in parts)
    with pytest.raises(LedgerError, match="inside a statement"):
        list(statements("CREATE TABLE x (a TEXT"))


def test_a_file_that_is_no_database_and_a_missing_folder(tmp_path: Path):
    junk = tmp_path / "notes.db"
    junk.write_text("these are my notes, not a database\n" * 40)
    with pytest.raises(LedgerError, match=r"notes\.db"):
        open_ledger(f"sqlite:///{junk}")
    with pytest.raises(LedgerError, match="cannot open"):
        open_ledger(f"sqlite:///{tmp_path}/no/such/folder/ledger.db")


def test_the_pool_replaces_connections_the_server_dropped(postgres_url: str):
    import psycopg

    from qwen_meter.meter.records import UsageRecord

    with open_ledger(postgres_url, min_size=2) as ledger, \
            psycopg.connect(postgres_url, autocommit=True) as admin:
        ledger.append(UsageRecord(model="qwen-plus", id="before"))
        dropped = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = "
            "'qwen_meter ledger' AND datname = current_database()").fetchall()
        assert dropped  # the pool's idle connections are gone
        ledger.append(UsageRecord(model="qwen-plus", id="after"))  # a billed call's record
        assert sorted(r.id for r in ledger) == ["after", "before"]


def test_sqlite_reads_do_not_wait_for_another_processes_writer(tmp_path: Path):
    import sqlite3
    import threading

    url = f"sqlite:///{tmp_path}/ledger.db"
    with open_ledger(url) as ledger:
        ledger.claim_alert("seen")
        other = sqlite3.connect(tmp_path / "ledger.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
        other.execute("INSERT INTO alert_marks VALUES ('pending', 'now')")
        answers: list[object] = []
        reader = threading.Thread(target=lambda: answers.extend(
            [ledger.version(), ledger.get_key("x"), ledger.count()]))
        reader.start()
        reader.join(20)  # a read queued behind the writer would wait its 30 s busy timeout
        assert answers == [0, None, 0]
        other.execute("ROLLBACK")
        other.close()


def test_a_url_given_as_a_meter_log_is_refused_not_made_a_folder(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch):
    import qwen_meter as qm
    from qwen_meter.meter.records import UsageLogError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageLogError, match="open_ledger") as caught:
        qm.Meter(log=f"postgresql://meter:{SECRET}@db/meter")
    assert SECRET not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_a_forked_child_is_told_to_open_its_own(ledger_url: str):
    import os

    ledger = open_ledger(ledger_url)
    ledger.claim_alert("parent")
    pid = os.fork()
    if pid == 0:  # the child: refused, and closing it leaves the parent's connections alone
        code = 1
        try:
            ledger.claim_alert("child")
        except LedgerError as exc:
            code = 0 if "open it again in this one" in str(exc) else 2
        ledger.close()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert ledger.claim_alert("parent again")  # the parent's connection still works
    ledger.close()
