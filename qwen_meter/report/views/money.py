"""Money as the views answer it: exact decimal strings keyed by currency, never summed across
currencies (records without a currency are keyed ``unpriced``)."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

UNPRICED = "unpriced"


def amount_text(value: Decimal | int | None) -> str:
    """``12.345600000000000000`` → ``"12.3456"``; whole amounts keep no point (``"5"``)."""
    if value is None:
        return "0"
    value = Decimal(value)
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def money(rows: Iterable[tuple[Any, Any]]) -> dict[str, str]:
    """``{currency: amount}`` from (currency, amount) rows (amounts of one currency added)."""
    sums: dict[str, Decimal] = {}
    for currency, amount in rows:
        if amount is None:
            continue
        key = currency or UNPRICED
        sums[key] = sums.get(key, Decimal(0)) + Decimal(amount)
    return {k: amount_text(v) for k, v in sorted(sums.items())}
