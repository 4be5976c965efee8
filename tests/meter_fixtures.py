"""Fixtures shared by the meter, pipeline and integration tests (a pytest plugin, see conftest):
a local DashScope stand-in per module, and meters that log to the test's folder and retry
without sleeping."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import qwen_meter as qm
from qwen_meter.testing.dashscope import FakeDashScope


@pytest.fixture(scope="module")
def server() -> Iterator[FakeDashScope]:
    fake = FakeDashScope()
    yield fake
    fake.close()


@pytest.fixture
def make_meter(tmp_path: Path, server: FakeDashScope) -> Iterator[Any]:
    server.behaviours.clear()
    server.prompt_offset = 0
    created = []

    def make(**options: Any) -> qm.Meter:
        options.setdefault("log", tmp_path / "usage.jsonl")
        options.setdefault("retry", qm.RetryPolicy(base=0.001, sleep=lambda s: None))
        meter = qm.Meter(**options)
        created.append(meter)
        return meter

    yield make
    for meter in created:
        meter.close()


async def close_aio_sessions(dashscope: Any) -> None:
    """Close the aiohttp session dashscope's Aio* classes keep for the running event loop
    (dashscope 1.25+ shares one per loop and closes it only when asked, or at exit with a
    "Unclosed client session" report)."""
    close = getattr(dashscope, "close_shared_aio_session", None)
    if close is not None:
        await close()
