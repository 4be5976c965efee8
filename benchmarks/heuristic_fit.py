"""How far the heuristic backend's estimate is from the exact count, per corpus.

Run:  python benchmarks/heuristic_fit.py
The rates in HeuristicBackend (1.45 CJK characters and 4.2 other characters per token) were
chosen from these corpora; the printed ratio is estimate / exact.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import corpora

import qwen_meter as qm
from qwen_meter.tokens.backends import _is_cjk


def main() -> None:
    rows = []
    for name, make in corpora.CORPORA.items():
        text = make(200_000)
        cjk = sum(map(_is_cjk, text))
        exact = qm.count_tokens(text, "qwen-plus").tokens
        estimate = qm.count_tokens(text, "qwen-plus", backend="heuristic").tokens
        rows.append({"corpus": name, "cjk chars": cjk, "other chars": len(text) - cjk,
                     "exact": exact, "estimate": estimate,
                     "estimate / exact": round(estimate / exact, 3)})
    print(json.dumps(rows, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
