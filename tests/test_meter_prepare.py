"""A Meter loads what its first call needs when it is created, never on an event loop.

Each case runs in a fresh process (nothing loaded, no warm-up by the user) that records every
catalogue / template YAML parse, rank-file load and tiktoken encoder build with the thread it
ran on, whether an event loop was running in that thread, and the phase of the program
(``creation``: inside ``Meter()`` before any loop; ``calls``: after the loop started).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

CHILD = textwrap.dedent('''
    import asyncio, json, os, sys, tempfile, threading
    from pathlib import Path

    import openai
    import tiktoken
    import yaml

    import qwen_meter as qm
    import qwen_meter.meter.pipeline as pipeline
    import qwen_meter.meter.prepare as prepare
    import qwen_meter.tokens.backends as backends

    case = sys.argv[1]
    phase = ["start"]
    loads = []

    def recorded(name, original):
        def wrapper(*args, **kwargs):
            on_loop = asyncio._get_running_loop() is not None
            loads.append((name, phase[0], threading.current_thread().name, on_loop))
            return original(*args, **kwargs)
        return wrapper

    if case == "not prepared":  # what the meter would do without its preparation
        prepare.start = lambda meter: None
    base_url = sys.argv[2]  # the stand-in runs in a process of its own: its loads are not here
    yaml.load = recorded("yaml", yaml.load)
    backends._load_ranks = recorded("ranks", backends._load_ranks)
    tiktoken.Encoding.__init__ = recorded("encoder", tiktoken.Encoding.__init__)

    folder = Path(tempfile.mkdtemp())
    messages = [{"role": "user", "content": "你好"}]

    limits = {"qwen-plus": (1000, 10**9)}
    if case == "limiter names":  # a model of another tokenizer family, named in the limiter
        limits["qwen3.5-plus"] = (1000, 10**9)

    def make_meter():
        return qm.Meter(log=folder / "usage.jsonl", budget=qm.Budget("10 CNY"),
                        limiter=qm.RateLimiter(limits=limits))

    if case != "in loop":
        phase[0] = "creation"
        meter = make_meter()
        client = meter.wrap(openai.AsyncOpenAI(api_key="sk-x", base_url=base_url))

    async def main():
        global meter, client
        phase[0] = "calls"
        if case == "in loop":
            meter = make_meter()
            client = meter.wrap(openai.AsyncOpenAI(api_key="sk-x", base_url=base_url))
        await client.chat.completions.create(model="qwen-plus", messages=messages)
        await client.chat.completions.create(model="qwen-plus", messages=messages)
        if case == "limiter names":
            await client.chat.completions.create(model="qwen3.5-plus", messages=messages)
        if case == "second family":
            phase[0] = "second family"
            await client.chat.completions.create(model="qwen3.5-plus", messages=messages)
        if case == "new catalogue":
            phase[0] = "new catalogue"
            override = folder / "override.yaml"
            override.write_text("models:\\n  qwen-plus:\\n    note: edited\\n")
            os.environ["QWEN_METER_CATALOGUE"] = str(override)
            pipeline.CATALOGUE_RECHECK = 0.0
            await client.chat.completions.create(model="qwen-plus", messages=messages)

    asyncio.run(main())
    meter.close()
    records = list(qm.read_usage(folder / "usage.jsonl"))
    print(json.dumps({"loads": loads, "records": len(records),
                      "statuses": sorted({r.status for r in records})}))
''')


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("QWEN_METER_CATALOGUE", None)
    return env


@pytest.fixture(scope="module")
def stand_in() -> Iterator[str]:
    """The DashScope stand-in in a process of its own; its compatible-mode base URL."""
    server = subprocess.Popen([sys.executable, "-m", "qwen_meter.testing"], env=_env(),
                              stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    try:
        for line in server.stdout:
            if "compatible mode:" in line:
                yield line.split("compatible mode:")[1].strip()
                break
        else:
            raise AssertionError("the stand-in did not start")
    finally:
        server.terminate()
        server.wait(timeout=30)


def run_child(case: str, base_url: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, case, base_url], capture_output=True,
                         text=True, timeout=180, env=_env())
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def kinds(loads: list, phase: str) -> set[str]:
    return {name for name, when, _, _ in loads if when == phase}


def test_a_meter_made_before_the_loop_loads_everything_while_it_is_made(stand_in):
    result = run_child("module level", stand_in)
    assert {"yaml", "ranks", "encoder"} <= kinds(result["loads"], "creation"), result
    # the first calls find it all loaded: nothing parsed or built once the loop runs
    assert kinds(result["loads"], "calls") == set(), result
    assert result["records"] == 2 and result["statuses"] == ["ok"]


def test_the_models_a_limiter_names_are_prepared_too(stand_in):
    result = run_child("limiter names", stand_in)
    built = [name for name, when, *_ in result["loads"] if when == "creation"]
    assert built.count("encoder") == 2, result  # qwen-plus's family and qwen3.5-plus's
    assert kinds(result["loads"], "calls") == set(), result
    assert result["records"] == 3 and result["statuses"] == ["ok"]


def test_without_the_preparation_the_first_call_does_the_loading(stand_in):
    # The control for the test above: the same program with the preparation switched off
    # loads on its first call (off the loop, in a worker thread, as before).
    result = run_child("not prepared", stand_in)
    assert kinds(result["loads"], "creation") == set(), result
    assert {"yaml", "ranks", "encoder"} <= kinds(result["loads"], "calls"), result
    assert not any(on_loop for *_, on_loop in result["loads"]), result


def test_a_meter_made_inside_the_loop_loads_in_its_own_thread(stand_in):
    result = run_child("in loop", stand_in)
    loads = result["loads"]
    assert {"yaml", "ranks", "encoder"} <= kinds(loads, "calls"), result
    assert {thread for *_, thread, _ in loads} == {"qwen-meter-prepare"}, result
    assert not any(on_loop for *_, on_loop in loads), result
    assert result["records"] == 2 and result["statuses"] == ["ok"]


def test_a_model_of_another_tokenizer_family_loads_off_the_loop(stand_in):
    result = run_child("second family", stand_in)
    later = [load for load in result["loads"] if load[1] == "second family"]
    assert {"ranks", "encoder"} <= {name for name, *_ in later}, result
    assert not any(on_loop for *_, on_loop in later), later
    assert result["records"] == 3


def test_a_new_catalogue_is_parsed_off_the_loop(stand_in):
    result = run_child("new catalogue", stand_in)
    later = [load for load in result["loads"] if load[1] == "new catalogue"]
    assert "yaml" in {name for name, *_ in later}, result
    assert not any(on_loop for *_, on_loop in later), later
    assert result["records"] == 3 and result["statuses"] == ["ok"]
