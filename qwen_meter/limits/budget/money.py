"""Amounts of money as budgets take them: ``"50 CNY"``, ``Decimal("50")`` or ``50``, within
what the stores can hold.

People write money the way they read it, so the usual spellings of the two currencies DashScope
bills in are read too: ``"50 RMB"``, ``"50 元"``, ``"¥50"``, ``"$5"``, ``"5 usd"``. Any other
currency word is passed on as it is written (upper-cased) for the caller to refuse.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from ...base.errors import ConfigurationError

#: Largest amount of money a budget, a reservation or a cost may be (9.2e9 fits int64 units).
MAX_AMOUNT = Decimal(10) ** 9

#: Other spellings of the currencies, as users type them (keys upper-cased).
CURRENCY_ALIASES = {"CNY": "CNY", "RMB": "CNY", "元": "CNY", "¥": "CNY", "￥": "CNY",
                    "USD": "USD", "$": "USD", "US$": "USD"}

# A number with a currency before or after it ("¥50", "50元", "CNY 50", "50 usd").
_WITH_UNIT = re.compile(r"^\s*(?:(?P<pre>US\$|[$¥￥]|[^\W\d_]+)\s*)?"
                        r"(?P<num>[+-]?(?:\d[\d_]*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)"
                        r"\s*(?P<post>US\$|[$¥￥]|[^\W\d_]+)?\s*$")


def normalize_currency(currency: str) -> str:
    """``"rmb"``, ``"元"``, ``"¥"`` → ``"CNY"``; ``"usd"``, ``"$"`` → ``"USD"``; any other
    word upper-cased (the caller decides whether it knows it)."""
    text = currency.strip().upper()
    return CURRENCY_ALIASES.get(text, text)


def parse_money(value: Any, currency: str | None = None) -> tuple[Decimal, str | None]:
    """``"50 CNY"``, ``"¥50"``, ``"50 元"``, ``"$5"``, ``Decimal("50")``, ``50`` →
    (amount, currency); the currency is None when neither ``value`` nor ``currency`` names one.
    """
    if isinstance(currency, str):
        currency = normalize_currency(currency)
    if isinstance(value, str):
        match = _WITH_UNIT.match(value)
        units = {normalize_currency(u) for u in (match["pre"], match["post"]) if u} \
            if match else set()
        if len(units) > 1:  # "¥50 CNY" (how costs print) is fine, "$50 CNY" is not
            raise ConfigurationError(f"{value!r} names two currencies")
        if match and units:
            named = units.pop()
            if currency is not None and currency != named:
                raise ConfigurationError(f"{value!r} is in {named}, but "
                                         f"currency={currency!r} was given")
            value, currency = match["num"], named
    if isinstance(value, bool):
        raise ConfigurationError(f"not an amount of money: {value!r}")
    try:
        amount = Decimal(str(value).strip() if isinstance(value, str) else str(value))
    except InvalidOperation:
        raise ConfigurationError(f"not an amount of money: {value!r}") from None
    if not amount.is_finite():
        raise ConfigurationError(f"not an amount of money: {value!r}")
    if abs(amount) > MAX_AMOUNT:  # the stores keep money as 64-bit units of 1e-9
        raise ConfigurationError(f"{value!r} is beyond the largest amount a budget can hold "
                                 f"({MAX_AMOUNT})")
    return amount, currency
