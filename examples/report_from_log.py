"""Job 3 — what did we spend? A cost report from the meter's usage log.

    python examples/report_from_log.py [usage.jsonl ...]

Without arguments it reads the meter's default log (``QWEN_METER_LOG`` or the user's data
folder). Needs the ``reports`` extra: ``pip install ".[reports]"``.
"""

from __future__ import annotations

import sys

import qwen_meter as qm
from qwen_meter.meter.config import default_log_path
from qwen_meter.report import build_report, load_usage, render


def main(argv: list[str]) -> int:
    paths = argv[1:] or [str(default_log_path())]
    try:
        report = build_report(load_usage(paths), by=["model", "day"])
    except qm.QwenMeterError as exc:  # no log yet, not a log: say which, in one line
        print(f"report_from_log.py: {exc}", file=sys.stderr)
        return 2
    print(render(report, "md"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
