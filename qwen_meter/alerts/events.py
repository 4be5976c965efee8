"""What an alert says: one :class:`Alert` (its kind, the mark that makes it go out once, its
facts) and the words for it in English or Chinese.

The facts are typed (money as :class:`~decimal.Decimal` with its currency, counts as ints), so
every format renders the same numbers; the wording lives here once, not in each format.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..base.errors import QwenMeterWarning
from ..billing.pricing import CURRENCY_SYMBOLS

KINDS = ("budget", "limiter", "errors")
LANGS = ("en", "zh")


class AlertDeliveryWarning(QwenMeterWarning, RuntimeWarning):
    """An alert could not be delivered to a webhook after every retry (or was dropped because
    the alert queue was full). The calls it was about were not affected."""


@dataclass(frozen=True)
class Alert:
    """One alert. ``mark`` names it with its threshold and period
    (``budget:key=search:daily:2026-12-07:80``): it is claimed once, so it is sent once."""

    kind: str  # budget | limiter | errors
    mark: str
    level: str  # warning | critical
    facts: Mapping[str, Any] = field(default_factory=dict)
    time: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc)
                      .isoformat(timespec="seconds"))
    #: who noticed it (a gateway replica's host:pid, or a name given to the observer)
    source: str | None = None


def money(amount: Decimal, currency: str) -> str:
    """``¥8.10``, ``$0.0123``: the currency's symbol and cents (more digits below one unit),
    one amount in one currency — never a sum across currencies."""
    symbol = CURRENCY_SYMBOLS.get(currency, "")
    value = abs(amount)
    if value >= 1 or value == 0:
        text = f"{value:,.2f}"
    else:
        text = f"{value:.{max(4, -value.adjusted() + 3)}f}".rstrip("0")
    sign = "-" if amount < 0 else ""
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text} {currency}"


def _pct(value: Any) -> str:
    number = float(value)
    return f"{number:.0f} %" if number == int(number) else f"{number:.1f} %"


def _who(facts: Mapping[str, Any], lang: str) -> str:
    scope, subject = facts.get("scope", "global"), facts.get("subject", "global")
    if scope == "global":
        return "全局" if lang == "zh" else "global"
    names = {"key": ("key", "密钥"), "user": ("user", "用户"), "team": ("team", "团队")}
    en, zh = names.get(str(scope), (str(scope), str(scope)))
    return f"{zh} {subject}" if lang == "zh" else f"{en} {subject}"


def title(alert: Alert, lang: str) -> str:
    """One line: what happened, to whom."""
    f = alert.facts
    zh = lang == "zh"
    if alert.kind == "budget":
        if zh:
            return f"预算 {f['name']}（{_who(f, lang)}）已用 {_pct(f['threshold'])}"
        return f"Budget {f['name']} ({_who(f, lang)}) reached {_pct(f['threshold'])}"
    if alert.kind == "limiter":
        if f.get("window") == "refused":
            return (f"限流器拒绝了 {f['key']} 的请求" if zh
                    else f"Rate limiter refused calls of {f['key']}")
        what = str(f["window"]).upper()
        return (f"{f['key']} 的 {what} 已用 {_pct(f['threshold'])}" if zh
                else f"{f['key']} used {_pct(f['threshold'])} of its {what}")
    if zh:
        return f"上游错误率 {_pct(f['rate'])}（{f['upstream']}）"
    return f"Upstream error rate {_pct(f['rate'])} ({f['upstream']})"


def lines(alert: Alert, lang: str) -> list[tuple[str, str]]:
    """The facts as (label, value) pairs, in ``lang``."""
    f = alert.facts
    zh = lang == "zh"
    out: list[tuple[str, str]] = []
    if alert.kind == "budget":
        currency = str(f["currency"])
        out = [("已用" if zh else "Spent", money(Decimal(f["spent"]), currency)),
               ("限额" if zh else "Limit", money(Decimal(f["limit"]), currency)),
               ("比例" if zh else "Used", _pct(f["percent"])),
               ("周期" if zh else "Period", str(f["period"]))]
        if f.get("mode") == "hard" and Decimal(f["spent"]) >= Decimal(f["limit"]):
            out.append(("说明" if zh else "Note",
                        "硬预算已用完，本周期内的新请求将被拒绝" if zh else
                        "hard budget used up: new calls are refused until the period ends"))
    elif alert.kind == "limiter":
        if f.get("window") == "refused":
            out = [("拒绝次数" if zh else "Refused", str(f["refused"])),
                   ("时段" if zh else "Period", str(f["period"]))]
            if f.get("reason"):
                out.append(("原因" if zh else "Reason", str(f["reason"])))
        else:
            out = [("已用" if zh else "Used", f"{f['used']} / {f['limit']}"),
                   ("窗口" if zh else "Window", "1 min"),
                   ("时段" if zh else "Period", str(f["period"]))]
    else:
        out = [("失败" if zh else "Failed", f"{f['failures']} / {f['calls']}"),
               ("窗口" if zh else "Window",
                f"{f['window_calls']} 次调用 / {f['window_seconds']} 秒" if zh else
                f"last {f['window_calls']} calls / {f['window_seconds']} s"),
               ("时段" if zh else "Period", str(f["period"]))]
        if f.get("last_error"):
            out.append(("最近错误" if zh else "Last error", str(f["last_error"])))
    if alert.source:
        out.append(("来源" if zh else "Source", alert.source))
    return out


def plain_text(alert: Alert, lang: str) -> str:
    """Title and facts as plain text (for formats without markdown)."""
    return "\n".join([title(alert, lang), *(f"{k}: {v}" for k, v in lines(alert, lang))])
