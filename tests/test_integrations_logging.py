"""One structured logging record per call, checked with caplog."""

from __future__ import annotations

import json
import logging

import openai
import pytest
from integration_support import HELLO, openai_client, refused_record

import qwen_meter as qm
from qwen_meter.integrations.usage_logging import UsageLoggingObserver, instrument


def usage_records(caplog):
    return [r for r in caplog.records if r.name == "qwen_meter.usage"]


def test_one_info_record_per_call_with_the_fields_as_extra(make_meter, server, caplog):
    caplog.set_level(logging.INFO, logger="qwen_meter.usage")
    meter = make_meter()
    instrument(meter)
    with qm.attribute(tags=["feature=search"], user="李娜", metadata={"run": "1"}):
        openai_client(meter, server).chat.completions.create(model="qwen-plus",
                                                             messages=HELLO)
    (logged,) = usage_records(caplog)
    (record,) = list(meter.log)
    assert logged.levelno == logging.INFO
    assert logged.qwen_meter == json.loads(record.to_json())
    assert (logged.model, logged.status, logged.cost, logged.currency) == (
        "qwen-plus", "ok", "0.0000496", "CNY")
    assert (logged.prompt_tokens, logged.completion_tokens) == (22, 16)
    assert logged.user == "李娜" and logged.tags == ["feature=search"]
    assert logged.metadata == {"run": "1"}
    assert "22+16 tokens" in logged.getMessage() and "0.0000496 CNY" in logged.getMessage()
    # nothing shadows LogRecord's own attributes
    assert logged.name == "qwen_meter.usage" and isinstance(logged.created, float)


def test_retries_and_failures_at_warning(make_meter, server, caplog):
    caplog.set_level(logging.INFO, logger="qwen_meter.usage")
    meter = make_meter()
    instrument(meter)
    server.push(*[{"status": 500, "code": "InternalError", "message": "oops"}] * 3)
    with pytest.raises(openai.InternalServerError):
        openai_client(meter, server).with_options(max_retries=0).chat.completions.create(
            model="qwen-plus", messages=HELLO)
    logged = usage_records(caplog)
    (record,) = list(meter.log)
    assert [r.levelno for r in logged] == [logging.WARNING] * record.attempts
    retries, final = logged[:-1], logged[-1]
    assert all(r.qwen_meter["event"] == "retry" for r in retries)
    assert final.status == "error" and final.error_kind == record.error_kind


def test_refusal_at_warning(caplog):
    caplog.set_level(logging.INFO, logger="qwen_meter.usage")
    UsageLoggingObserver().on_record(refused_record(), None)
    (logged,) = usage_records(caplog)
    assert logged.levelno == logging.WARNING and logged.status == "refused"
    assert "BudgetExceeded" in logged.getMessage()


def test_disabled_logger_builds_nothing(monkeypatch):
    observer = UsageLoggingObserver(logging.getLogger("qwen_meter.usage.test-off"))
    observer.logger.setLevel(logging.ERROR)

    def boom(record):
        raise AssertionError("extra built for a disabled logger")

    monkeypatch.setattr(observer, "extra", boom)
    observer.on_record(qm.UsageRecord(model="qwen-plus"), None)
    observer.on_record(refused_record(), None)


def test_a_reserved_name_never_clashes():
    extra = UsageLoggingObserver.extra(qm.UsageRecord(model="qwen-plus"))
    logging.getLogger("qwen_meter.usage.test").makeRecord(
        "x", logging.INFO, "f", 1, "m", None, None, extra=extra)  # raises on a clash
