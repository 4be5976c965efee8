"""Alerts claimed through a shared ledger (SQLite file, PostgreSQL): several processes watching
one budget send each alert once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from webhook_receiver import Receiver

from qwen_meter.alerts import AlertObserver, Channel, LedgerClaims
from qwen_meter.billing.pricing import cost
from qwen_meter.ledger import open_ledger

HERE = Path(__file__).resolve().parent


def run_worker(*args: str) -> None:
    done = subprocess.run([sys.executable, str(HERE / "alert_worker.py"), *args],
                          capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": f"{HERE.parent}:{HERE}", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]


def test_processes_on_one_ledger_send_each_alert_once(ledger_url, tmp_path):
    hook = Receiver()
    try:
        one = cost({"prompt_tokens": 1000, "completion_tokens": 0}, "qwen-plus").amount
        store = f"sqlite:///{tmp_path / 'budget.db'}"
        args = (store, ledger_url, hook.url, str(one * 10))
        run_worker(*args, "5")  # 50 %: the first process sends it
        # The second sees 60 % ... 100 %: the 50 % alert is claimed already; 80 and 100 are
        # its own.
        run_worker(*args, "5")
        thresholds = [p.json["budget"]["threshold"] for p in hook.posts]
        assert thresholds == [50.0, 80.0, 100.0]
        ledger = open_ledger(ledger_url)
        try:  # the marks are in the ledger: a third process would send nothing again
            assert LedgerClaims(ledger).claim(hook.posts[0].json["mark"]) is False
            assert AlertObserver([Channel("x", "json", hook.url)], claims=ledger).sender \
                .claims.claim(hook.posts[1].json["mark"]) is False
        finally:
            ledger.close()
    finally:
        hook.close()


def test_without_a_shared_claim_each_process_would_send_its_own(tmp_path):
    """The control: the same two processes deciding alone send the 50 % alert twice — the
    ledger is what makes it once."""
    hook = Receiver()
    try:
        one = cost({"prompt_tokens": 1000, "completion_tokens": 0}, "qwen-plus").amount
        args = (f"sqlite:///{tmp_path / 'budget.db'}", "none", hook.url, str(one * 10))
        run_worker(*args, "5")
        run_worker(*args, "1")
        assert [p.json["budget"]["threshold"] for p in hook.posts] == [50.0, 50.0]
    finally:
        hook.close()
