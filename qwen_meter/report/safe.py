"""Names from logs (tags, users, models) made harmless for each output format, and money made
readable.

A log is written by whoever calls the API: a tag can hold a terminal escape sequence, a
spreadsheet formula or a ``<script>``. Every renderer passes every text cell through one of
these.
"""

from __future__ import annotations

import html
import re
from decimal import Decimal
from typing import Any

from ..billing.pricing import CURRENCY_SYMBOLS

# C0 / C1 controls (ESC starts terminal sequences), DEL, and the bidirectional overrides that
# can make text display in another order than it is stored.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_FORMULA = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
_MARKDOWN = re.compile(r"([\\`*_\[\]|~])")


def plain(text: Any) -> str:
    """``text`` with control characters shown as ``\\xNN`` instead of acting."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256
                        else f"\\u{ord(m.group()):04x}", str(text))


def csv_text(text: Any) -> str:
    """A CSV text cell that no spreadsheet runs as a formula (a leading ``'`` if needed)."""
    value = plain(text)
    return "'" + value if value.startswith(_FORMULA) else value


def markdown_text(text: Any) -> str:
    """Markdown text that renders as the same characters: HTML escaped, markup escaped."""
    return _MARKDOWN.sub(r"\\\1", html.escape(plain(text), quote=True))


def html_text(text: Any) -> str:
    """HTML text (element content or a quoted attribute)."""
    return html.escape(plain(text), quote=True)


def money(amount: Decimal | None, currency: str | None) -> str:
    """``¥1,234.57``, ``$0.0123``, ``¥0.000012``: the symbol and sensible precision (exact
    values are in CSV and JSON)."""
    if amount is None:
        return "-"
    symbol = CURRENCY_SYMBOLS.get(currency or "", "")
    prefix = symbol if symbol else (f"{currency} " if currency and currency != "-" else "")
    sign = "-" if amount < 0 else ""
    value = abs(amount)
    if value >= 1 or value == 0:
        text = f"{value:,.2f}"
    elif value >= Decimal("0.01"):
        text = f"{value:.4f}"
    else:  # small amounts: four significant digits
        text = f"{value:.{max(4, -value.adjusted() + 3)}f}".rstrip("0")
    return f"{sign}{prefix}{text}"
