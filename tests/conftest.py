from __future__ import annotations

import gc
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).parent))

# The local DashScope stand-in and the meter factory, shared by every test module.
pytest_plugins = ("meter_fixtures", "otel_fixtures", "ledger_fixtures")

settings.register_profile("default", deadline=None, max_examples=60,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", deadline=None, max_examples=120,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if "CI" in __import__("os").environ else "default")

# issue #12: never read (or write) a catalogue installed in the real user's config folder.
__import__("os").environ["QWEN_METER_CONFIG_DIR"] = __import__("tempfile").mkdtemp(
    prefix="qwen-meter-config-")

ORACLES = Path(__file__).parent / "oracle_templates"


# --- the suite's own output stays clean ---------------------------------------------------

def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A run that leaves an aiohttp session open fails, naming who opened it: Python would
    report it only at exit, as "Unclosed client session" lines after the summary. (dashscope's
    AioGeneration keeps one session per event loop until ``close_shared_aio_session()``; the
    gateway closes its own at lifespan shutdown.)"""
    aiohttp = sys.modules.get("aiohttp")
    if aiohttp is None:
        return
    gc.collect()
    left = [o for o in gc.get_objects()
            if isinstance(o, aiohttp.ClientSession) and not o.closed]
    if left:
        print(f"\n{len(left)} aiohttp session(s) left open at the end of the run",
              file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


#: (oracle template, a model whose family and profile should reproduce it exactly)
ORACLE_MODELS = {
    "qwen2.5": "qwen2.5-7b-instruct",
    "qwen3": "qwen3-8b",
    "qwen3.5": "qwen3.5-27b",
}


@pytest.fixture(scope="session")
def hf_folder(tmp_path_factory: pytest.TempPathFactory):
    """A function (template name) -> a local HF tokenizer folder with that official template."""
    pytest.importorskip("transformers")
    import hf_tokenizer

    from qwen_meter import resolve
    from qwen_meter.tokens.families import get_family

    built: dict[str, Path] = {}

    def make(template: str) -> Path:
        if template not in built:
            family = get_family(resolve(ORACLE_MODELS[template]).family)
            folder = tmp_path_factory.mktemp(f"hf-{template}")
            built[template] = hf_tokenizer.build(
                family, folder, (ORACLES / f"{template}.jinja").read_text(encoding="utf-8"))
        return built[template]

    return make


# --- shared stores ------------------------------------------------------------------------

REDIS_REQUIRED = bool(__import__("os").environ.get("QWEN_METER_REQUIRE_REDIS"))


@pytest.fixture
def postgres_url():
    """The URL of a fresh, empty PostgreSQL database (dropped after the test), on the server of
    $QWEN_METER_TEST_POSTGRES_URL; skipped without one unless $QWEN_METER_REQUIRE_POSTGRES."""
    from pg_server import REQUIRED, SERVER_URL, fresh_database

    if not SERVER_URL:
        if REQUIRED:
            pytest.fail("PostgreSQL is required (QWEN_METER_REQUIRE_POSTGRES) but "
                        "QWEN_METER_TEST_POSTGRES_URL is not set")
        pytest.skip("no PostgreSQL server: set QWEN_METER_TEST_POSTGRES_URL")
    pytest.importorskip("psycopg") if not REQUIRED else __import__("psycopg")
    with fresh_database(SERVER_URL) as url:
        yield url


@pytest.fixture(scope="session")
def redis_url():
    """A real redis-server on 127.0.0.1: $QWEN_METER_TEST_REDIS_URL, or one started here."""
    import os

    from redis_server import running_redis

    pytest.importorskip("redis") if not REDIS_REQUIRED else __import__("redis")
    url = os.environ.get("QWEN_METER_TEST_REDIS_URL")
    if url:
        yield url
        return
    with running_redis() as started:
        if started is None:
            if REDIS_REQUIRED:
                pytest.fail("redis-server is required (QWEN_METER_REQUIRE_REDIS) but not "
                            "installed")
            pytest.skip("redis-server is not installed; the Redis store tests need it")
        yield started


@pytest.fixture(scope="session")
def redis_cluster_url():
    """A real 3-master Redis Cluster on 127.0.0.1: $QWEN_METER_TEST_REDIS_CLUSTER_URL, or one
    started here (``redis+cluster://host:port``)."""
    import os

    from redis_server import running_redis_cluster

    pytest.importorskip("redis") if not REDIS_REQUIRED else __import__("redis")
    url = os.environ.get("QWEN_METER_TEST_REDIS_CLUSTER_URL")
    if url:
        yield url
        return
    with running_redis_cluster() as started:
        if started is None:
            if REDIS_REQUIRED:
                pytest.fail("redis-server and redis-cli are required (QWEN_METER_REQUIRE_REDIS)")
            pytest.skip("redis-server is not installed; the Redis Cluster tests need it")
        yield started


@pytest.fixture(params=["memory", "sqlite", "redis", "cluster"])
def store_kind(request):
    return request.param


@pytest.fixture
def make_store(store_kind, tmp_path, request):
    """A function returning a fresh store of the parametrized kind (same data on each call)."""
    import uuid

    from qwen_meter.limits.store import MemoryStore

    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    memory = MemoryStore()
    opened = []

    def make():
        if store_kind == "memory":
            return memory
        if store_kind == "sqlite":
            from qwen_meter.limits.store.sqlite import SQLiteStore

            store = SQLiteStore(tmp_path / "qm.db")
        else:
            from qwen_meter.limits.store.redis import RedisStore

            url = request.getfixturevalue("redis_url" if store_kind == "redis"
                                          else "redis_cluster_url")
            store = RedisStore(url, prefix=prefix, server_time=False)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()
