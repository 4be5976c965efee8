"""Amounts of money as budgets take them: ``"50 CNY"``, ``Decimal("50")`` or ``50``, within
what the stores can hold."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from ...base.errors import ConfigurationError

#: Largest amount of money a budget, a reservation or a cost may be (9.2e9 fits int64 units).
MAX_AMOUNT = Decimal(10) ** 9


def parse_money(value: Any, currency: str | None = None) -> tuple[Decimal, str | None]:
    """``"50 CNY"``, ``Decimal("50")``, ``50`` → (amount, currency)."""
    if isinstance(value, str):
        parts = value.split()
        if len(parts) == 2 and parts[1].isalpha():
            if currency is not None and str(currency).upper() != parts[1].upper():
                raise ConfigurationError(f"{value!r} is in {parts[1].upper()}, but "
                                         f"currency={currency!r} was given")
            value, currency = parts[0], parts[1].upper()
    if isinstance(value, bool):
        raise ConfigurationError(f"not an amount of money: {value!r}")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ConfigurationError(f"not an amount of money: {value!r}") from None
    if not amount.is_finite():
        raise ConfigurationError(f"not an amount of money: {value!r}")
    if abs(amount) > MAX_AMOUNT:  # the stores keep money as 64-bit units of 1e-9
        raise ConfigurationError(f"{value!r} is beyond the largest amount a budget can hold "
                                 f"({MAX_AMOUNT})")
    return amount, currency
