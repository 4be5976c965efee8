"""Writes usage records in a loop, printing each id once append() returned (kill -9 test).

``log_writer.py PATH [SIZE]``: each record carries about SIZE bytes (default: small, varied).
"""

from __future__ import annotations

import sys

from qwen_meter.meter.log import JsonlLog, UsageRecord


def main(path: str, size: int | None = None) -> None:
    log = JsonlLog(path)
    n = 0
    while True:
        padding = "x" * (n % 300) if size is None else "x" * size
        record = UsageRecord(model="qwen-plus", prompt_tokens=n, user=padding)
        log.append(record)
        sys.stdout.write(record.id + "\n")
        sys.stdout.flush()
        n += 1


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else None)
