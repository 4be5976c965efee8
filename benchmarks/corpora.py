"""Deterministic benchmark corpora, built offline from text on this machine.

English prose comes from Python's own documentation topics (pydoc_data), code from the
standard library's sources, Chinese prose from sentences written for this benchmark, and the
mixed chat corpus interleaves all three as chat messages.
"""

from __future__ import annotations

import inspect
import random

_CHINESE = [
    "在阿里云百炼平台上调用通义千问模型时，账单按照输入和输出的词元数量计算。",
    "长文档摘要任务通常会消耗大量的输入词元，因此在发送请求之前先估算费用是很有必要的。",
    "如果对话历史越来越长，每一轮请求都会重新计费之前的所有消息。",
    "我们希望在本地精确地统计词元数量，而不是依赖每个汉字一个词元这样的粗略估计。",
    "限流策略同时限制每分钟的请求数和每分钟的词元数，超过任何一个都会被拒绝。",
    "上海今天多云转晴，气温在十八到二十五摄氏度之间，适合户外活动。",
    "这份报告按照模型、日期和标签汇总了本月的花费，并与预算进行了对比。",
    "工具调用的参数以JSON格式返回，调用结果需要作为工具消息再次发送给模型。",
    "图片会按照固定大小的图块切分，每个图块对应一个视觉词元。",
    "深度思考模式下，模型先输出推理过程，再给出最终的回答，推理部分同样按输出计费。",
]


def chinese(size: int, seed: int = 1) -> str:
    rng = random.Random(seed)
    out, total = [], 0
    while total < size:
        paragraph = "".join(rng.sample(_CHINESE, 5)) + "\n\n"
        out.append(paragraph)
        total += len(paragraph)
    return "".join(out)[:size]


def english(size: int) -> str:
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[k] for k in sorted(topics))
    return (text * (size // len(text) + 1))[:size]


def code(size: int) -> str:
    import argparse
    import collections
    import json
    import pathlib
    import typing

    text = "\n\n".join(inspect.getsource(m) for m in (argparse, collections, json, pathlib,
                                                        typing))
    return (text * (size // len(text) + 1))[:size]


def mixed_chat(requests: int, seed: int = 2) -> list[list[dict[str, str]]]:
    rng = random.Random(seed)
    zh, en, src = chinese(200_000), english(200_000), code(200_000)
    out = []
    for _ in range(requests):
        messages = [{"role": "system", "content": "You are a helpful assistant."}]
        for turn in range(rng.randint(1, 3)):
            pool = rng.choice((zh, en, src))
            start = rng.randrange(len(pool) - 400)
            messages.append({"role": "user", "content": pool[start:start + rng.randint(20, 300)]})
            if turn < 2 and rng.random() < 0.5:
                reply = zh[start % 1000:start % 1000 + 80]
                messages.append({"role": "assistant", "content": reply})
        if messages[-1]["role"] != "user":
            messages.append({"role": "user", "content": "继续"})
        out.append(messages)
    return out


CORPORA = {"chinese prose": chinese, "english prose": english, "code": code}
