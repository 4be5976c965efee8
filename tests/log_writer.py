"""Writes usage records in a loop, printing each id once append() returned (kill -9 test)."""

from __future__ import annotations

import sys

from qwen_meter.log import JsonlLog, UsageRecord


def main(path: str) -> None:
    log = JsonlLog(path)
    n = 0
    while True:
        record = UsageRecord(model="qwen-plus", prompt_tokens=n, tags=("x" * (n % 300),))
        log.append(record)
        sys.stdout.write(record.id + "\n")
        sys.stdout.flush()
        n += 1


if __name__ == "__main__":
    main(sys.argv[1])
