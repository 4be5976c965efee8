"""What the admin API accepts and answers: key and budget bodies checked field by field (a
bad one is a 400 naming it), and keys, budgets and spend as JSON rows.

A key's row never holds its secret or its hash: only its name, its prefix (the first 10
characters, as ``serve keys list`` shows them) and its settings.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from ..base.errors import GatewayConfigError
from ..ledger.base import BUDGET_SCOPES, SPEND_GROUPS, BudgetSpec, KeyEntry, ScopeBudget, SpendRow
from .config import BudgetConfig, UpstreamConfig, _budget, _Fields

#: a key's name: what ``key=<name>`` tags and reports show; no slash (it is in URLs)
NAME = re.compile(r"[^\s/\\]{1,128}")
#: a header name (RFC 9110 token)
HEADER = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
KEY_FIELDS = ("name", "budget", "budgets", "rpm", "tpm", "models", "user", "team", "tags",
              "headers", "upstream")


class BadField(Exception):
    """A request the admin API refuses: HTTP ``status`` with a message naming ``field``."""

    def __init__(self, message: str, field: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status


def check_name(name: Any, field: str = "name") -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise BadField(f"{field} must be 1 to 128 characters without spaces or slashes, not "
                       f"{name!r}", field)
    return name


# --- budgets --------------------------------------------------------------------------------

def budget_spec(value: Any, field: str, default_name: str) -> BudgetSpec:
    """One budget: ``"5 CNY/day"`` or ``{"name", "limit", "per", "mode"}``."""
    if isinstance(value, str):
        amount, _, period = value.partition("/")
        value = {"limit": amount.strip(), **({"per": period.strip()} if period.strip() else {})}
    try:
        checked: BudgetConfig = _budget(value, field, None, default_name)
    except GatewayConfigError as exc:
        raise BadField(_reason(exc), exc.field or field) from None
    return BudgetSpec(checked.name, checked.limit, checked.per, checked.mode)


def budget_specs(value: Any, field: str, key_name: str) -> tuple[BudgetSpec, ...]:
    """A key's budgets: one budget or a list of them (``null``: none)."""
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    specs = tuple(budget_spec(item, f"{field}[{n}]" if isinstance(value, list) else field,
                              f"{key_name}-{n}") for n, item in enumerate(items))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise BadField("two budgets with one name", field)
    return specs


def _reason(exc: GatewayConfigError) -> str:
    text = str(exc)
    return text.split(": ", 1)[1] if exc.field and text.startswith(exc.field) else text


# --- keys ------------------------------------------------------------------------------------

def key_fields(body: Any, upstreams: Mapping[str, UpstreamConfig], *, name: str,
               partial: bool) -> dict[str, Any]:
    """The KeyEntry fields a POST (``partial`` False) or PATCH body sets, checked."""
    if not isinstance(body, dict):
        raise BadField("the body must be a JSON object")
    for field in body:
        if field not in KEY_FIELDS:
            raise BadField(f"unknown field (known: {', '.join(KEY_FIELDS)})", str(field))
    if partial and "name" in body and body["name"] != name:
        raise BadField("a key's name cannot change (create a new key instead)", "name")
    if "budget" in body and "budgets" in body:
        raise BadField("give budget or budgets, not both", "budgets")
    f = _Fields(body, "", None)
    out: dict[str, Any] = {}
    try:
        for field in ("user", "team", "upstream"):
            if field in body:
                out[field] = f.text(field)
        for field in ("rpm", "tpm"):
            if field in body:
                out[field] = f.whole(field, None)
        for field in ("models", "tags", "headers"):
            if field in body:
                out[field] = f.strings(field)
    except GatewayConfigError as exc:
        raise BadField(_reason(exc), exc.field) from None
    for field in ("budget", "budgets"):
        if field in body:
            out["budgets"] = budget_specs(body[field], field, name)
    if out.get("upstream") is not None and out["upstream"] not in upstreams:
        raise BadField(f"names no upstream of the gateway (known: {', '.join(upstreams)})",
                       "upstream")
    if "upstream" in out and out["upstream"] is None:
        out["upstream"] = "default"
    for tag in out.get("tags") or ():
        if tag.startswith("key="):
            raise BadField("the tag key= is the gateway's own (the key's name)", "tags")
    for header in out.get("headers") or ():
        if not HEADER.fullmatch(header):
            raise BadField(f"not a header name: {header!r}", "headers")
    if out.get("headers") is not None:
        out["headers"] = tuple(h.lower() for h in out["headers"])
    for field in ("tags", "headers"):
        if field in out and out[field] is None:
            out[field] = ()
    return out


def new_entry(body: Any, upstreams: Mapping[str, UpstreamConfig]) -> tuple[str, KeyEntry]:
    """A new key from a POST body (or ``serve keys add``): its secret, shown once, and what
    the ledger stores (the secret's hash, never the secret)."""
    from .keys import hash_key, new_key

    name = check_name(body.get("name") if isinstance(body, dict) else None)
    fields = key_fields(body, upstreams, name=name, partial=False)
    secret = new_key()
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return secret, KeyEntry(name=name, hash=hash_key(secret), prefix=secret[:10],
                            created=now, updated=now, **fields)


def key_row(key: KeyEntry) -> dict[str, Any]:
    """A key as the admin API shows it: settings, never the secret or its hash."""
    return {"name": key.name, "prefix": key.prefix, "user": key.user, "team": key.team,
            "tags": list(key.tags), "upstream": key.upstream, "rpm": key.rpm, "tpm": key.tpm,
            "models": None if key.models is None else list(key.models),
            "budgets": [budget_row(b) for b in key.budgets], "headers": list(key.headers),
            "revoked": key.revoked, "created": key.created, "updated": key.updated}


def budget_row(spec: BudgetSpec) -> dict[str, Any]:
    return {"name": spec.name, "limit": spec.limit, "per": spec.per, "mode": spec.mode}


def scope_budget_row(budget: ScopeBudget) -> dict[str, Any]:
    return {"scope": budget.scope, "subject": budget.subject, **budget_row(budget.budget)}


def scope_of(scope: str, subject: str) -> tuple[str, str]:
    """A budget's owner from the URL: ``user/alice``, ``team/search``, ``global/*``."""
    if scope not in BUDGET_SCOPES:
        raise BadField(f"scope must be one of {', '.join(BUDGET_SCOPES)}, not {scope!r}",
                       "scope", 404)
    if scope == "global" and subject != "*":
        raise BadField("a global budget's subject is '*' (/admin/budgets/global/*/NAME)",
                       "subject", 404)
    return scope, check_name(subject, "subject")


def scope_budget_body(body: Any, scope: str, subject: str, name: str) -> ScopeBudget:
    """A PUT body: ``{"limit": "5 CNY", "per": "day", "mode": "hard"}`` or
    ``{"budget": "5 CNY/day"}``."""
    if not isinstance(body, dict):
        raise BadField("the body must be a JSON object")
    if "budget" in body:
        extra = [k for k in body if k != "budget"]
        if extra:
            raise BadField("give budget alone, or limit / per / mode", extra[0])
        spec = budget_spec(body["budget"], "budget", name)
    else:
        if body.get("name", name) != name:
            raise BadField("the name is the URL's", "name")
        spec = budget_spec({**body, "name": name}, "", name)
    return ScopeBudget(scope, subject, BudgetSpec(name, spec.limit, spec.per, spec.mode))


# --- spend -----------------------------------------------------------------------------------

def spend_query(query: Mapping[str, str]) -> tuple[str, dt.datetime | None,
                                                   dt.datetime | None, dt.tzinfo]:
    """``by``, ``since`` (inclusive), ``until`` (exclusive) and ``tz`` of ``GET /admin/spend``.
    A date or a time without an offset is read in ``tz`` (default UTC)."""
    for field in query:
        if field not in ("by", "since", "until", "tz"):
            raise BadField("unknown parameter (known: by, since, until, tz)", field)
    by = query.get("by", "key")
    if by not in SPEND_GROUPS:
        raise BadField(f"by must be one of {', '.join(SPEND_GROUPS)}, not {by!r}", "by")
    tz: dt.tzinfo = dt.timezone.utc
    if query.get("tz"):
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            tz = ZoneInfo(query["tz"])
        except (ZoneInfoNotFoundError, ValueError):
            raise BadField(f"unknown time zone {query['tz']!r} (e.g. Asia/Shanghai)",
                           "tz") from None
    return by, _when(query.get("since"), "since", tz), _when(query.get("until"), "until", tz), tz


def _when(text: str | None, field: str, tz: dt.tzinfo) -> dt.datetime | None:
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadField(f"must be a date or an ISO 8601 time (2026-12-01, "
                       f"2026-12-01T08:00:00+08:00), not {text!r}", field) from None
    return value.replace(tzinfo=tz) if value.tzinfo is None else value


def spend_row(row: SpendRow, by: str) -> dict[str, Any]:
    """One group and currency; money as a decimal string, never a float."""
    return {by: row.group, "currency": row.currency, "cost": decimal_text(row.cost),
            "calls": row.calls, "prompt_tokens": row.prompt_tokens,
            "completion_tokens": row.completion_tokens,
            **{str(k): v for k, v in row.extra.items()}}


def decimal_text(value: Decimal) -> str:
    """``0.0000012``, never ``1.2E-6``."""
    return format(value, "f")
