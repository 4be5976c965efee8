"""PostgreSQL for the ledger tests: a fresh database per test on the server named by
$QWEN_METER_TEST_POSTGRES_URL (``.ci/run`` starts one as the ``postgres`` user)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

SERVER_URL = os.environ.get("QWEN_METER_TEST_POSTGRES_URL")
REQUIRED = bool(os.environ.get("QWEN_METER_REQUIRE_POSTGRES"))


def _with_database(url: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@contextmanager
def fresh_database(url: str) -> Iterator[str]:
    """A new, empty database on the server at ``url`` (dropped afterwards); yields its URL."""
    import psycopg

    name = "qm_test_" + uuid.uuid4().hex[:12]
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(url, name)
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
