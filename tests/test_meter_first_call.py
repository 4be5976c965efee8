"""The first async call of a fresh process loads nothing on the event loop.

A new process (nothing cached, no warm-up by the user) wraps an AsyncOpenAI client and makes
its first calls; every catalogue / template YAML parse and tokenizer load is recorded with the
thread it ran on. They must happen (or the test would prove nothing), and none on the loop's
thread: the loop keeps serving other tasks while a model is first prepared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent('''
    import asyncio, json, sys, tempfile, threading
    from pathlib import Path

    import openai
    import tiktoken
    import yaml

    import qwen_meter as qm
    import qwen_meter.tokens.backends as backends
    from qwen_meter.testing.dashscope import FakeDashScope

    loads = []
    loop_thread = []

    def recorded(name, original):
        def wrapper(*args, **kwargs):
            loads.append((name, threading.get_ident() in loop_thread))
            return original(*args, **kwargs)
        return wrapper

    yaml.load = recorded("yaml", yaml.load)
    backends._load_ranks = recorded("ranks", backends._load_ranks)
    tiktoken.Encoding.__init__ = recorded("encoding", tiktoken.Encoding.__init__)

    server = FakeDashScope()
    folder = tempfile.mkdtemp()
    meter = qm.Meter(log=Path(folder) / "usage.jsonl", budget=qm.Budget("10 CNY"),
                     limiter=qm.RateLimiter(limits={"qwen-plus": (1000, 10**9)}))
    client = meter.wrap(openai.AsyncOpenAI(api_key="sk-x", base_url=server.compatible))
    messages = [{"role": "user", "content": "你好"}]

    async def main():
        loop_thread.append(threading.get_ident())
        for model in ("qwen-plus", "qwen-plus", sys.argv[1]):
            await client.chat.completions.create(model=model, messages=messages)
        call = await meter.begin_async({"model": "qwen-plus", "messages": messages})
        await call.finish_async({"prompt_tokens": 10, "completion_tokens": 2})

    asyncio.run(main())
    meter.close()
    server.close()
    records = list(qm.read_usage(Path(folder) / "usage.jsonl"))
    print(json.dumps({"loads": loads, "records": len(records)}))
''')


def run_child(second_model: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, second_model], capture_output=True,
                         text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_first_async_calls_parse_and_load_nothing_on_the_loop():
    # qwen3-max: a second model after the first, with a template of its own
    result = run_child("qwen3-max")
    kinds = {name for name, _ in result["loads"]}
    assert {"yaml", "ranks"} <= kinds, result  # the loads did happen, in this process
    on_loop = [name for name, on in result["loads"] if on]
    assert on_loop == [], f"loaded on the event loop: {on_loop}"
    assert result["records"] == 4  # and every call was metered
