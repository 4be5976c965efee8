"""The fleet's ledger: PostgreSQL, shared by every gateway replica.

**Why psycopg 3 (with psycopg_pool), not asyncpg.** One driver serves both faces: the sync
API (the CLI, reports, ``Meter``) and asyncio (the gateway) use the same connection code, the
same type adaptation and the same SQL, so the two cannot drift — asyncpg is asyncio-only and
would need a second driver for everything sync. psycopg_pool keeps a bounded set of
connections warm and hands them out per transaction (thread-safe). psycopg exposes
LISTEN/NOTIFY on an ordinary connection (``Connection.notifies``), which is how a key revoked
by one replica reaches all the others in milliseconds. It speaks libpq, so every URL, TLS and
``PG*`` environment setting a DBA already uses works unchanged; and the ``binary`` wheel
needs no compiler.

Under asyncio, records go through the ledger's background writer thread (see :mod:`.core`):
the event loop never waits on the database, and what is queued is committed together.

Durability (``durability=``): ``"flush"`` (default) and ``"fsync"`` both return once the
server has committed; ``"fsync"`` forces ``synchronous_commit=on`` for the ledger's sessions
(the WAL is flushed to disk before the commit returns, whatever the server's default), while
``"flush"`` keeps the server's own setting (``on`` unless a DBA lowered it). ``"buffered"``
commits in batches from a background thread (a ``kill -9`` loses what was queued).

A change of a key or a budget bumps ``ledger_state.version`` and sends
``NOTIFY qwen_meter_ledger, '<version>'`` in the same transaction (delivered at commit).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar

from .common import fail, mask_url
from .core import INSERT_INTENT, INSERT_RECORD, Executor
from .migrations import PG_CREATE_TABLE, PG_MIGRATE_LOCK, PG_RECOVERY_LOCK, to_apply
from .pg_watch import CHANNEL, ListenWatch
from .spend import SpendQueries

#: An outcome inserted and its intent deleted in one statement (a data-modifying CTE).
_SETTLE_ONE = f"WITH settled AS (DELETE FROM intents WHERE id = ?) {INSERT_RECORD}"
#: Sent with every connection, so a DBA sees who holds it (``pg_stat_activity``).
APPLICATION = "qwen_meter ledger"


class _Exec(Executor):
    """A psycopg connection inside a transaction, taking the core's ``?`` placeholders."""

    _sql: ClassVar[dict[str, str]] = {}

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Iterable[Any] = ()) -> Any:
        text = self._sql.get(sql)
        if text is None:
            text = self._sql[sql] = sql.replace("%", "%%").replace("?", "%s")
        return self._conn.execute(text, tuple(params))


class PostgresLedger(SpendQueries):
    """A ledger in a PostgreSQL database (its schema created or migrated on open).

    ``min_size`` / ``max_size``: the connection pool's bounds; ``timeout``: seconds to wait
    for the server when opening and for a free connection of the pool."""

    dialect = "postgresql"
    _cost_sql = "sum(cost)"

    def __init__(self, url: str, *, durability: str = "flush", min_size: int = 1,
                 max_size: int = 8, timeout: float = 10.0) -> None:
        try:
            import psycopg
            import psycopg_pool
        except ImportError:
            from .base import LedgerError

            raise LedgerError(f"ledger {mask_url(url)}: PostgreSQL needs psycopg 3 and "
                              "psycopg_pool: pip install 'qwen-meter[postgres]'") from None
        self._psycopg = psycopg
        self._init_common(url, durability)
        self._errors = (psycopg.Error, psycopg_pool.PoolTimeout)
        self._timeout = timeout
        self._connect_kwargs: dict[str, Any] = {
            "application_name": APPLICATION, "connect_timeout": max(1, int(timeout))}
        pooled = {**self._connect_kwargs, "autocommit": True}
        self._migrate()
        self._pool = psycopg_pool.ConnectionPool(
            url, min_size=min_size, max_size=max_size, open=False, timeout=timeout,
            kwargs=pooled, configure=self._configure, name=APPLICATION,
            # A connection the server dropped (a restart, a failover, an idle timeout) is
            # replaced before use, not handed out to fail a record's write.
            check=psycopg_pool.ConnectionPool.check_connection)
        try:
            self._pool.open(wait=True, timeout=timeout)
        except psycopg_pool.PoolTimeout as exc:
            self._pool.close()
            raise fail(url, "cannot connect", exc) from None

    def _configure(self, conn: Any) -> None:
        if self.durability == "fsync":
            conn.execute("SET synchronous_commit = on")

    def connect(self, **extra: Any) -> Any:
        """A new connection of its own (not the pool's), errors naming the ledger."""
        try:
            return self._psycopg.connect(self.url, **{**self._connect_kwargs, **extra})
        except self._psycopg.Error as exc:
            raise fail(self.url, "cannot connect", exc) from None

    def _migrate(self) -> None:
        with self.connect() as conn, self._guard("cannot migrate the schema"), \
                conn.transaction():
            # Held until this transaction ends: replicas starting at once take turns.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (PG_MIGRATE_LOCK,))
            conn.execute(PG_CREATE_TABLE)
            applied = {int(r[0]) for r in conn.execute(
                "SELECT version FROM schema_migrations").fetchall()}
            for version, sql in to_apply("postgresql", applied, mask_url(self.url)):
                conn.execute(sql)
                conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)",
                             (version,))

    @contextlib.contextmanager
    def _tx(self, *, write: bool = True) -> Iterator[Executor]:
        # The pool's connections are in autocommit mode: a read (one statement each) needs
        # no BEGIN / COMMIT round trips; a write is one explicit transaction.
        with self._pool.connection() as conn:
            if not write:
                yield _Exec(conn)
                return
            with conn.transaction():
                yield _Exec(conn)

    def _store(self, rows: list[tuple[bool, tuple[Any, ...], str | None]]) -> int:
        if len(rows) != 1:
            return super()._store(rows)
        # One record (the common case of a flush-durable write): a single statement settles
        # its intent too, atomic on its own, one round trip instead of four.
        is_record, params, _ = rows[0]
        with self._pool.connection() as conn:
            if not is_record:
                _Exec(conn).execute(INSERT_INTENT, params)
                return 0
            cursor = _Exec(conn).execute(_SETTLE_ONE, (params[0], *params))
            return max(0, int(cursor.rowcount))

    def _json(self, text: str) -> Any:
        from psycopg.types.json import Jsonb

        return Jsonb(json.loads(text))

    def _changed(self, ex: Executor, version: int) -> None:
        ex.execute(f"SELECT pg_notify('{CHANNEL}', ?)", (str(version),))

    def _for_update(self) -> str:
        return " FOR UPDATE"

    def _release(self) -> None:
        self._pool.close()

    @contextlib.contextmanager
    def _recovery_lock(self) -> Iterator[None]:
        # A connection of its own: recovery writes through the pool meanwhile, and a session
        # lock on a pooled connection would outlive this block if the connection were reused.
        conn = self.connect(autocommit=True)
        try:
            with self._guard("cannot take the recovery lock"):
                conn.execute("SELECT pg_advisory_lock(%s)", (PG_RECOVERY_LOCK,))
            yield
        finally:
            with contextlib.suppress(Exception):
                conn.execute("SELECT pg_advisory_unlock(%s)", (PG_RECOVERY_LOCK,))
            conn.close()

    def recovery_lock(self) -> contextlib.AbstractContextManager[None]:
        """Held while recovering: one process of the fleet settles lost calls at a time
        (``pg_advisory_lock``, released if the holder's connection dies)."""
        return self._recovery_lock()

    def watch(self, callback: Callable[[int], None]) -> Callable[[], None]:
        watcher = ListenWatch(self.connect, self._read_version, callback,
                              start=self.version())
        self._watchers.append(watcher.stop)
        return watcher.stop

    @staticmethod
    def _read_version(conn: Any) -> int:
        return int(conn.execute("SELECT version FROM ledger_state WHERE id = 1").fetchone()[0])

    def _group_sql(self, by: str, tz: str) -> tuple[str, str, tuple[Any, ...]]:
        if by == "tag":
            return "t.tag", " LEFT JOIN LATERAL unnest(records.tags) AS t(tag) ON true", ()
        if by == "day":
            return "to_char(time AT TIME ZONE ?, 'YYYY-MM-DD')", "", (tz,)
        return {"key": "key_name", "user": "user_name", "team": "team", "model": "model"}[by], \
            "", ()
