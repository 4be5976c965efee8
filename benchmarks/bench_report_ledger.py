"""The report over a PostgreSQL ledger beside the same records as Parquet and as JSONL: 1M
records through ``load_usage`` + ``build_report(by=["model", "day"])``, one run each, each in a
fresh process (imports included). Printed: seconds and records/s side by side.

Also timed, to choose the ledger's reader: psycopg's ``COPY (SELECT id, record …) TO STDOUT``
with the lines cut by numpy (the alternative to ADBC), and each reader alone (no report).

Run:  pip install ".[bench,reports,postgres]"
      python benchmarks/bench_report_ledger.py --postgres-url postgresql://postgres@127.0.0.1:5433/postgres
The JSONL log is ``bench_report.py``'s (generated at --log if missing, ~0.4 GB per 1M records);
the records go into a new ledger database ``qm_bench_ledger_<n>`` with COPY (kept for later runs,
``--drop`` removes it), and into Parquet with ``qwen-meter log compact`` from that ledger.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from bench_report import generate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# JSON text never holds a raw control character, so with these as delimiter and quote a JSON
# line goes through CSV COPY untouched, both ways.
CSV = "(FORMAT csv, DELIMITER E'\\x1f', QUOTE E'\\x1e')"


def database_url(server: str, name: str) -> str:
    parts = urlsplit(server)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def load_ledger(server: str, name: str, log: Path) -> str:
    """The log's records into a new ledger by COPY: the schema is the ledger's own (opened once
    with ``open_ledger``, which applies its migrations), the raw lines go into a staging table
    and the columns are taken from their JSON in the server."""
    import psycopg

    from qwen_meter.ledger import open_ledger

    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = database_url(server, name)
    open_ledger(url).close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE UNLOGGED TABLE staging (line TEXT)")
        with conn.cursor() as cur, cur.copy(f"COPY staging FROM STDIN {CSV}") as copy, \
                log.open("rb") as handle:
            while block := handle.read(8 << 20):
                copy.write(block)
        conn.execute("""INSERT INTO records SELECT j->>'id', (j->>'time')::timestamptz,
            j->>'model', j->>'status', j->'metadata'->>'key', j->>'user', j->'metadata'->>'team',
            j->>'region', j->>'currency', (j->>'cost')::numeric,
            (j->>'prompt_tokens')::bigint, (j->>'completion_tokens')::bigint,
            ARRAY(SELECT jsonb_array_elements_text(j->'tags')), line
            FROM (SELECT line, line::jsonb AS j FROM staging) s""")
        conn.execute("DROP TABLE staging")
        conn.execute("VACUUM ANALYZE records")
    return url


def has_ledger(server: str, name: str) -> bool:
    import psycopg

    with psycopg.connect(server, autocommit=True) as admin:
        return admin.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                             (name,)).fetchone() is not None


REPORT = """
from qwen_meter.report import build_report, load_usage
report = build_report(load_usage(SOURCE, tz="UTC"{period}), by=["model", "day"])
rows = report.records
"""
# The alternative reader: psycopg COPY TO STDOUT, lines cut by numpy as a JSONL block is.
COPY_READER = """
import psycopg
import qwen_meter.report.engine as engine
from qwen_meter.report import sources
from qwen_meter.ledger.common import mask_url

def copy_chunks(url, progress, since=None, until=None):
    with psycopg.connect(url) as conn, conn.cursor() as cur, cur.copy(
            "COPY (SELECT record FROM records) TO STDOUT " + CSV) as copy:
        parts, size, line = [], 0, 1
        for data in copy:
            parts.append(bytes(data))
            size += len(data)
            if size >= sources.CHUNK_BYTES:
                table = sources._lines_table(mask_url(url), line, b"".join(parts))
                line += table.num_rows
                parts, size = [], 0
                yield table
        if parts:
            yield sources._lines_table(mask_url(url), line, b"".join(parts))

engine.ledger_chunks = copy_chunks
"""
ADBC_ONLY = """
import adbc_driver_postgresql.dbapi as adbc
with adbc.connect(SOURCE) as conn, conn.cursor() as cur:
    cur.adbc_statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(32 << 20)})
    cur.execute("SELECT id, record FROM records")
    rows = sum(len(b) for b in cur.fetch_record_batch())
"""
COPY_ONLY = """
import psycopg
with psycopg.connect(SOURCE) as conn, conn.cursor() as cur, cur.copy(
        "COPY (SELECT record FROM records) TO STDOUT " + CSV) as copy:
    rows = sum(1 for _ in copy)
"""

PROBE = """
import time
start = time.perf_counter()
SOURCE = {source!r}
CSV = {csv!r}
{body}
elapsed = time.perf_counter() - start
hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]
print(elapsed, int(hwm.split()[1]) / 1024, rows)
"""


def run(body: str, source: str) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(source=source, csv=CSV, body=body)],
        capture_output=True, text=True, env=env)
    if result.returncode != 0:
        return {"error": (result.stderr.strip().splitlines() or ["?"])[-1][:300]}
    seconds, rss, rows = result.stdout.strip().splitlines()[-1].split()
    return {"seconds": round(float(seconds), 2),
            "records/s": round(int(rows) / float(seconds)), "records": int(rows),
            "peak RSS MB": round(float(rss))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres-url", default=os.environ.get(
        "QWEN_METER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5433/postgres"),
        help="a server where a database may be created")
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--log", help="default /tmp/qwen-meter-bench-<records>.jsonl")
    parser.add_argument("--parquet", help="default /tmp/qwen-meter-bench-<records>-parquet")
    parser.add_argument("--drop", action="store_true", help="drop the ledger database after")
    args = parser.parse_args()
    log = Path(args.log or f"/tmp/qwen-meter-bench-{args.records}.jsonl")
    if not log.exists():
        generate(log, args.records)
    name = f"qm_bench_ledger_{args.records}"
    setup: dict[str, float] = {}
    if has_ledger(args.postgres_url, name):
        url = database_url(args.postgres_url, name)
    else:
        start = time.perf_counter()
        url = load_ledger(args.postgres_url, name, log)
        setup["COPY into PostgreSQL s"] = round(time.perf_counter() - start, 1)
    parquet = Path(args.parquet or f"/tmp/qwen-meter-bench-{args.records}-parquet")
    if not parquet.exists():
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "qwen_meter", "log", "compact", url, "--out",
                        str(parquet), "-q"], check=True, env={**os.environ,
                                                              "PYTHONPATH": str(ROOT)})
        setup["log compact (ledger → Parquet) s"] = round(time.perf_counter() - start, 1)
    month = ', since=__import__("datetime").date(2026, 3, 1), ' \
            'until=__import__("datetime").date(2026, 4, 1)'
    contenders = {
        "PostgreSQL ledger (ADBC)": (REPORT.format(period=""), url),
        "PostgreSQL ledger (psycopg COPY, numpy-cut lines)": (COPY_READER + REPORT.format(
            period=""), url),
        "Parquet (log compact)": (REPORT.format(period=""), str(parquet)),
        "JSONL": (REPORT.format(period=""), str(log)),
        "PostgreSQL ledger (ADBC), one month (period pushed down)": (
            REPORT.format(period=month), url),
        "JSONL, one month": (REPORT.format(period=month), str(log)),
        "read only: ADBC batches": (ADBC_ONLY, url),
        "read only: psycopg COPY rows": (COPY_ONLY, url),
    }
    results = {label: run(body, source) for label, (body, source) in contenders.items()}
    width = max(map(len, results))
    print(f"{'':{width}}  {'seconds':>8}  {'records/s':>10}  {'records':>8}  {'peak MB':>7}")
    for label, r in results.items():
        if "error" in r:
            print(f"{label:{width}}  error: {r['error']}")
            continue
        print(f"{label:{width}}  {r['seconds']:>8}  {r['records/s']:>10,}  {r['records']:>8}  "
              f"{r['peak RSS MB']:>7}")
    print(json.dumps({"records": args.records, "JSONL MB": round(log.stat().st_size / 1e6),
                      "cpus": os.cpu_count(), "setup": setup,
                      "load average": Path("/proc/loadavg").read_text().split()[:3]},
                     ensure_ascii=False))
    if args.drop:
        import psycopg

        with psycopg.connect(args.postgres_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
