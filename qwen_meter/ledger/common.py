"""What both ledger backends share and that touches no database: key hashing, URL masking,
the columns of a record row, the checks of a key entry and a budget, time and zone handling.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import unquote, urlsplit

from .base import BUDGET_SCOPES, BudgetSpec, KeyEntry, LedgerError, ScopeBudget

UTC = dt.timezone.utc
#: The form every stored key hash has.
HASH_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
#: What ``update_key`` may change (``name`` and ``hash`` name the key; times are the ledger's).
CHANGEABLE = ("prefix", "user", "team", "tags", "upstream", "rpm", "tpm", "models", "budgets",
              "headers", "revoked")
#: The columns of ``records`` in the order :func:`record_row` gives them.
RECORD_COLUMNS = ("id", "time", "model", "status", "key_name", "user_name", "team", "region",
                  "currency", "cost", "prompt_tokens", "completion_tokens", "tags", "record")
#: The columns of ``keys`` in the order :func:`key_row` gives them.
KEY_COLUMNS = ("name", "hash", "prefix", "user_name", "team", "tags", "upstream", "rpm", "tpm",
               "models", "budgets", "headers", "revoked", "created", "updated")


def hash_key(key: str) -> str:
    """What the ledger stores of a virtual key: ``sha256:`` and its SHA-256 in hex.

    A slow password hash buys nothing for a random 192-bit secret; a fast one keeps the lookup
    per request in microseconds."""
    if not isinstance(key, str) or not key:
        raise LedgerError("a virtual key must be a non-empty string")
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


# --- URLs and error texts ----------------------------------------------------------------------

def url_password(url: str) -> str | None:
    """The password a database URL carries (in its user part or as ``?password=``)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return None
    if password:
        return unquote(password)
    found = re.search(r"(?:^|[?&])password=([^&]*)", parts.query)
    return unquote(found.group(1)) if found and found.group(1) else None


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` wherever it appears (fit for an error text
    or a log): in the user part, as ``?password=``, and anywhere else in the URL."""
    text = re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", str(url))
    text = re.sub(r"([?&]password=)[^&]*", r"\1***", text)
    return scrub(text, url)


def scrub(text: str, url: str) -> str:
    """``text`` (a driver's message) with the URL's password masked wherever it appears
    (one or two characters are left: masking them would only mangle the text)."""
    text = str(text)
    password = url_password(url)
    if password and len(password) >= 3:
        text = text.replace(password, "***")
    return text


def fail(url: str, what: str, exc: BaseException | str, cls: type[LedgerError] = LedgerError,
         ) -> LedgerError:
    """A :class:`LedgerError` naming the ledger (its password masked) and what failed."""
    reason = scrub(str(exc).strip() or type(exc).__name__, url).replace(url, mask_url(url))
    return cls(f"ledger {mask_url(url)}: {what}: {reason}")


# --- times -------------------------------------------------------------------------------------

def parse_time(value: Any, where: str) -> dt.datetime:
    """An aware UTC datetime from an ISO-8601 text or a datetime (naive ones taken as UTC)."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise LedgerError(f"{where}: not an ISO-8601 time: {value[:40]!r}") from None
    if not isinstance(value, dt.datetime):
        raise LedgerError(f"{where}: expected a datetime, not {type(value).__name__}")
    when: dt.datetime = value if value.tzinfo else value.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def iso_utc(value: dt.datetime) -> str:
    """A fixed-width UTC text (microseconds, ``+00:00``): text order is time order."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def now() -> dt.datetime:
    return dt.datetime.now(UTC)


def check_zone(tz: Any) -> str:
    """An IANA zone name that this Python knows (``UTC``, ``Asia/Shanghai`` …)."""
    import zoneinfo

    if not isinstance(tz, str) or not tz:
        raise LedgerError(f"spend(tz=): expected an IANA time zone name, not {tz!r}")
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise LedgerError(f"spend(tz=): unknown time zone {tz!r}") from None
    return tz


def bounds(since: Any, until: Any) -> tuple[dt.datetime | None, dt.datetime | None]:
    out = (None if since is None else parse_time(since, "spend(since=)"),
           None if until is None else parse_time(until, "spend(until=)"))
    return out


# --- records -----------------------------------------------------------------------------------

def tag_value(tags: tuple[str, ...], name: str) -> str | None:
    """The value of the first ``name=<value>`` tag (the gateway tags calls ``key=<name>``)."""
    prefix = name + "="
    return next((t[len(prefix):] for t in tags if t.startswith(prefix)), None)


def record_row(record: Any) -> tuple[Any, ...]:
    """The values of :data:`RECORD_COLUMNS` for a record (time aware UTC, cost a Decimal)."""
    cost: Decimal | None = None
    if record.cost is not None:
        try:
            cost = Decimal(str(record.cost))
        except InvalidOperation:
            raise LedgerError(f"record {record.id}: cost {record.cost!r} is not a decimal "
                              "number") from None
        if not cost.is_finite():
            raise LedgerError(f"record {record.id}: cost {record.cost!r} is not finite")
    tags = tuple(record.tags)
    return (record.id, parse_time(record.time, f"record {record.id}: time"), record.model,
            record.status, tag_value(tags, "key"), record.user, tag_value(tags, "team"),
            record.region, record.currency, cost, record.prompt_tokens,
            record.completion_tokens, list(tags), record.to_json())


def intent_time(intent: Mapping[str, Any]) -> dt.datetime | None:
    try:
        return parse_time(intent.get("time"), "intent time")
    except LedgerError:
        return None


# --- keys and budgets --------------------------------------------------------------------------

def _texts(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) \
            or not all(isinstance(v, str) for v in value):
        raise LedgerError(f"{where}: expected a list of strings, not {value!r}")
    return tuple(value)


def _optional_text(value: Any, where: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise LedgerError(f"{where}: expected a string, not {value!r}")
    return value


def _limit(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise LedgerError(f"{where}: expected a positive whole number, not {value!r}")
    return value


def check_budget(value: Any, where: str) -> BudgetSpec:
    """A :class:`BudgetSpec` from itself or a mapping ``{name, limit, per, mode}``."""
    if isinstance(value, Mapping):
        unknown = set(value) - {"name", "limit", "per", "mode"}
        if unknown:
            raise LedgerError(f"{where}: unknown budget field(s) {sorted(unknown)}")
        try:
            value = BudgetSpec(**value)
        except TypeError as exc:
            raise LedgerError(f"{where}: {exc}") from None
    if not isinstance(value, BudgetSpec):
        raise LedgerError(f"{where}: expected a BudgetSpec, not {type(value).__name__}")
    for name in ("name", "limit", "mode"):
        if not isinstance(getattr(value, name), str) or not getattr(value, name):
            raise LedgerError(f"{where}: budget {name} must be a non-empty string")
    _optional_text(value.per, f"{where} per")
    return value


def check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > 200 \
            or any(ord(c) < 32 for c in name):
        raise LedgerError(f"{what} name must be 1-200 printable characters, not {name!r}")
    return name


def check_key(entry: Any) -> KeyEntry:
    """``entry`` with lists as tuples, every field checked (:class:`LedgerError` names it)."""
    if not isinstance(entry, KeyEntry):
        raise LedgerError(f"expected a KeyEntry, not {type(entry).__name__}")
    name = check_name(entry.name, "key")
    at = f"key {name!r}"
    if not isinstance(entry.hash, str) or not HASH_RE.match(entry.hash):
        raise LedgerError(f"{at}: hash must be 'sha256:' and 64 hex digits (hash_key(secret)), "
                          "never the key itself")
    if not isinstance(entry.revoked, bool):
        raise LedgerError(f"{at}: revoked must be true or false")
    return dataclasses.replace(
        entry, prefix=_optional_text(entry.prefix, f"{at} prefix") or "",
        user=_optional_text(entry.user, f"{at} user"),
        team=_optional_text(entry.team, f"{at} team"),
        tags=_texts(entry.tags, f"{at} tags"),
        upstream=_optional_text(entry.upstream, f"{at} upstream") or "default",
        rpm=_limit(entry.rpm, f"{at} rpm"), tpm=_limit(entry.tpm, f"{at} tpm"),
        models=None if entry.models is None else _texts(entry.models, f"{at} models"),
        budgets=tuple(check_budget(b, f"{at} budget")
                      for b in _sequence(entry.budgets, f"{at} budgets")),
        headers=_texts(entry.headers, f"{at} headers"))


def _sequence(value: Any, where: str) -> tuple[Any, ...]:
    if not isinstance(value, (list, tuple)):
        raise LedgerError(f"{where}: expected a list, not {value!r}")
    return tuple(value)


def changed_key(entry: KeyEntry, changes: Mapping[str, Any]) -> KeyEntry:
    """``entry`` with ``changes`` applied (only :data:`CHANGEABLE` fields), checked."""
    unknown = sorted(set(changes) - set(CHANGEABLE))
    if unknown:
        raise LedgerError(f"key {entry.name!r}: cannot change {', '.join(unknown)} (changeable: "
                          f"{', '.join(CHANGEABLE)})")
    return check_key(dataclasses.replace(entry, **changes))


def budgets_json(budgets: tuple[BudgetSpec, ...]) -> str:
    return json.dumps([dataclasses.asdict(b) for b in budgets], separators=(",", ":"))


def budgets_from(value: Any) -> tuple[BudgetSpec, ...]:
    data = json.loads(value) if isinstance(value, str) else value
    return tuple(BudgetSpec(**b) for b in data or ())


def check_scope_budget(budget: Any) -> ScopeBudget:
    if not isinstance(budget, ScopeBudget):
        raise LedgerError(f"expected a ScopeBudget, not {type(budget).__name__}")
    scope_of(budget.scope)
    subject = check_name(budget.subject, f"{budget.scope} budget subject")
    if budget.scope == "global" and subject != "*":
        raise LedgerError(f"a global budget's subject is '*', not {subject!r}")
    return dataclasses.replace(budget, budget=check_budget(budget.budget, "budget"))


def scope_of(scope: Any) -> str:
    if scope not in BUDGET_SCOPES:
        raise LedgerError(f"budget scope must be one of {', '.join(BUDGET_SCOPES)}, not "
                          f"{scope!r}")
    return str(scope)
