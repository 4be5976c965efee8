"""A usage log for the dashboard's browser tests: Chinese tags and users, two currencies, a
hostile tag, problem calls and (optionally) a corrupt line, with the numbers a test needs to
check the page against worked out by hand here."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from qwen_meter.meter.records import UsageRecord

HOSTILE_TAG = "feature=<img src=x onerror=window.__pwned=1>"
USERS = ("张三", "李四", "王五")
FEATURES = ("feature=智能客服", "feature=文档摘要")


@dataclass
class Generated:
    path: Path
    records: list[UsageRecord] = field(default_factory=list)
    corrupt_line: int | None = None

    def spend(self, **match: str) -> dict[str, Decimal]:
        """Spend per currency of the records whose fields (``tag`` = one of the tags) match."""
        out: dict[str, Decimal] = {}
        for r in self.select(**match):
            if r.cost is not None and r.currency is not None:
                out[r.currency] = out.get(r.currency, Decimal(0)) + Decimal(r.cost)
        return out

    def select(self, **match: str) -> list[UsageRecord]:
        def ok(r: UsageRecord) -> bool:
            for k, v in match.items():
                if k == "tag":
                    if v not in r.tags:
                        return False
                elif getattr(r, k) != v:
                    return False
            return True

        return [r for r in self.records if ok(r)]


def write_log(path: Path, *, corrupt: bool = False, now: dt.datetime | None = None) -> Generated:
    """Writes 60 records over the last six days (so the dashboard's default 30 days hold all)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    start = (now - dt.timedelta(days=6)).replace(minute=0, second=0, microsecond=0)
    out = Generated(path)
    lines: list[str] = []
    for i in range(60):
        intl = i % 4 == 3
        status = "ok"
        if i % 13 == 5:
            status = "error"
        elif i % 17 == 7:
            status = "refused"
        prompt, completion = 100 + 7 * i, 20 + 3 * i
        price = Decimal(prompt * 8 + completion * 20) / Decimal(10**7)
        cost = None if status != "ok" else str(price)
        tags = [FEATURES[i % 2], f"team={'客服部' if i % 3 else '研发部'}"]
        if i == 11:
            tags.append(HOSTILE_TAG)
        record = UsageRecord(
            model="qwen-plus" if i % 3 else "qwen-flash",
            time=(start + dt.timedelta(hours=2 * i + 1)).isoformat(),
            region="intl" if intl else "cn",
            status=status,
            error="upstream said no" if status != "ok" else None,
            prompt_tokens=prompt if status == "ok" else 0,
            completion_tokens=completion if status == "ok" else 0,
            total_tokens=prompt + completion if status == "ok" else 0,
            cost=cost,
            currency=None if cost is None else ("USD" if intl else "CNY"),
            latency_ms=float(200 + i),
            tags=tuple(tags),
            user=USERS[i % 3],
            usage_estimated=i == 20,
        )
        out.records.append(record)
        lines.append(record.to_json())
        if corrupt and i == 30:
            lines.append('{"model": "qwen-plus", "prompt_tokens": -4}')
            out.corrupt_line = len(lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


if __name__ == "__main__":  # a log to look at by hand: python tests/dashboard_log.py FILE
    import sys

    g = write_log(Path(sys.argv[1]), corrupt=len(sys.argv) > 2)
    print(json.dumps({k: str(v) for k, v in g.spend().items()}))
