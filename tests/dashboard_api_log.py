"""A usage log for the dashboard API tests, and sums over it worked out in plain Python."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import qwen_meter as qm

START = dt.datetime(2026, 11, 10, 0, 30, tzinfo=dt.timezone.utc)
SHANGHAI = ZoneInfo("Asia/Shanghai")
USERS = ("张三", "李四", "王五", None)
FEATURES = ("feature=智能客服", "feature=文档摘要", "feature=翻译")
HOSTILE = "feature=<img src=x onerror=alert(1)>"
BREAKOUT = "note=</script><script>window.__pwned=1</script>"
CORRUPT = '{"model": "qwen-plus", "prompt_tokens": -4, "time": "2026-11-10T01:00:00+00:00"}'


def records() -> list[qm.UsageRecord]:
    out = []
    for i in range(48):
        status = ("cancelled" if i == 20 else "lost" if i == 21 else
                  "error" if i % 11 == 5 else "refused" if i % 13 == 7 else "ok")
        billed = status not in ("error", "refused")
        intl = i % 5 == 4
        prompt, completion = 100 + 7 * i, 20 + 3 * i
        cost = str(Decimal(prompt * 8 + completion * 20) / Decimal(10**7)) if billed else None
        tags = [FEATURES[i % 3], f"key=team-{i % 2}"]
        if i == 9:
            tags.append(HOSTILE)
        if i == 10:
            tags.append(BREAKOUT)
        if i == 30:
            tags = []
        out.append(qm.UsageRecord(
            model="qwen-plus" if i % 3 else "qwen-flash",
            id=f"call-{i:02d}",
            # every 2h50m: the records cross local (UTC+8) and UTC midnights at different calls
            time=(START + dt.timedelta(minutes=170 * i)).isoformat(),
            region="intl" if intl else "cn", status=status,
            error="upstream said no" if status == "error" else None,
            prompt_tokens=prompt if billed else 0, completion_tokens=completion if billed else 0,
            total_tokens=prompt + completion if billed else 0,
            cost=cost, currency=None if cost is None else ("USD" if intl else "CNY"),
            usage_estimated=status in ("cancelled", "lost"),
            latency_ms=float(200 + i), tags=tuple(tags), user=USERS[i % 4]))
    return out


def write(path: Path, *, corrupt: bool = True) -> Path:
    lines = [r.to_json() for r in records()]
    if corrupt:
        lines.insert(3, CORRUPT)
        lines.insert(7, "not json at all")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def when(record: qm.UsageRecord) -> dt.datetime:
    return dt.datetime.fromisoformat(record.time)


def pick(rows: list[qm.UsageRecord], *, since: dt.datetime | None = None,
         until: dt.datetime | None = None, **match: object) -> list[qm.UsageRecord]:
    out = []
    for r in rows:
        if (since is not None and when(r) < since) or (until is not None and when(r) >= until):
            continue
        ok = True
        for k, v in match.items():
            values = v if isinstance(v, (list, tuple)) else [v]
            if k == "tag":
                ok = ok and any(t in r.tags for t in values)
            elif k == "key":
                ok = ok and any(f"key={x}" in r.tags for x in values)
            else:
                ok = ok and getattr(r, k) in values
        if ok:
            out.append(r)
    return out


def spend(rows: list[qm.UsageRecord]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for r in rows:
        if r.cost is not None:
            out[r.currency or "unpriced"] = out.get(r.currency or "unpriced",
                                                    Decimal(0)) + Decimal(r.cost)
    return out


def local_day(day: str, tz: dt.tzinfo = SHANGHAI) -> dt.datetime:
    d = dt.date.fromisoformat(day)
    return dt.datetime(d.year, d.month, d.day, tzinfo=tz)
