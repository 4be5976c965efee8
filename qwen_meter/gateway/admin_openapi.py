"""The OpenAPI 3.1 document of the admin API, served at ``GET /admin/openapi.json``.

Written by hand beside the routes (:data:`.admin.ROUTES`); a test checks that both list the
same paths and methods and that the document validates against the OpenAPI 3.1 schema.
"""

from __future__ import annotations

from typing import Any

from ..ledger.base import BUDGET_SCOPES, SPEND_GROUPS
from .config import PERIODS


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


_NULLABLE_TEXT = {"type": ["string", "null"]}
_TEXTS = {"type": ["array", "null"], "items": {"type": "string", "minLength": 1}}
_BUDGET_TEXT = {"type": "string", "examples": ["5 CNY/day", "100 USD/month", "20 CNY"],
                "description": "AMOUNT CURRENCY[/PERIOD], period one of "
                               + ", ".join(PERIODS)}
_BUDGETS_IN = {"oneOf": [{"type": "null"}, _BUDGET_TEXT, _ref("BudgetIn"),
                         {"type": "array", "items": {"oneOf": [_BUDGET_TEXT,
                                                               _ref("BudgetIn")]}}]}
_KEY_SETTINGS: dict[str, Any] = {
    "budget": {**_BUDGETS_IN, "description": "the key's own budgets: one or a list"},
    "budgets": {**_BUDGETS_IN, "description": "the same as budget (give one of the two)"},
    "rpm": {"type": ["integer", "null"], "minimum": 1,
            "description": "requests per minute, all models together"},
    "tpm": {"type": ["integer", "null"], "minimum": 1,
            "description": "tokens per minute, all models together"},
    "models": {**_TEXTS, "description": "the models the key may call (null: all)"},
    "user": {**_NULLABLE_TEXT, "description": "the user its calls are attributed to (and "
                                              "whose budgets apply)"},
    "team": {**_NULLABLE_TEXT, "description": "the team (tag team=TEAM; its budgets apply)"},
    "tags": {**_TEXTS, "description": "tags of its calls, e.g. project=search"},
    "headers": {**_TEXTS, "description": "account-level client headers the key may send "
                                         "upstream, e.g. X-DashScope-WorkSpace"},
    "upstream": {**_NULLABLE_TEXT, "description": "a named upstream of the config"},
}
_NAME = {"type": "string", "minLength": 1, "maxLength": 128, "pattern": r"^[^\s/\\]+$"}
_MONEY = {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$",
          "description": "a decimal amount, as text (never a float)"}

SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["message", "type"],
        "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                       "param": {"type": ["string", "null"],
                                 "description": "the field at fault"},
                       "code": {"type": "string"}}}}},
    "BudgetIn": {"type": "object", "required": ["limit"], "additionalProperties": False,
                 "properties": {"name": {"type": "string"},
                                "limit": {"type": "string", "examples": ["5 CNY"]},
                                "per": {"enum": [None, *PERIODS]},
                                "mode": {"enum": ["hard", "soft"]}}},
    "Budget": {"type": "object", "properties": {
        "name": {"type": "string"}, "limit": {"type": "string"},
        "per": {"enum": [None, *PERIODS]}, "mode": {"enum": ["hard", "soft"]}}},
    "KeyCreate": {"type": "object", "required": ["name"], "additionalProperties": False,
                  "properties": {"name": _NAME, **_KEY_SETTINGS}},
    "KeyPatch": {"type": "object", "additionalProperties": False,
                 "properties": {"name": {**_NAME, "description": "if given, the URL's"},
                                **_KEY_SETTINGS}},
    "Key": {"type": "object", "description": "a key's settings: never its secret or hash",
            "properties": {
                "name": {"type": "string"},
                "prefix": {"type": "string", "description": "the secret's first 10 "
                                                            "characters, to recognise it"},
                "user": _NULLABLE_TEXT, "team": _NULLABLE_TEXT,
                "tags": {"type": "array", "items": {"type": "string"}},
                "upstream": {"type": "string"},
                "rpm": {"type": ["integer", "null"]}, "tpm": {"type": ["integer", "null"]},
                "models": {"type": ["array", "null"], "items": {"type": "string"}},
                "budgets": {"type": "array", "items": _ref("Budget")},
                "headers": {"type": "array", "items": {"type": "string"}},
                "revoked": {"type": "boolean"}, "created": _NULLABLE_TEXT,
                "updated": _NULLABLE_TEXT}},
    "KeyCreated": {"allOf": [_ref("Key"), {
        "type": "object", "required": ["name", "key"],
        "properties": {"key": {"type": "string", "description": "the secret: shown in this "
                                                                "answer only"}}}]},
    "KeyList": {"type": "object", "properties": {"keys": {"type": "array",
                                                          "items": _ref("Key")}}},
    "ScopeBudgetIn": {"oneOf": [
        {"type": "object", "required": ["budget"], "additionalProperties": False,
         "properties": {"budget": _BUDGET_TEXT}}, _ref("BudgetIn")]},
    "ScopeBudget": {"type": "object", "properties": {
        "scope": {"enum": list(BUDGET_SCOPES)}, "subject": {"type": "string"},
        "name": {"type": "string"}, "limit": {"type": "string"},
        "per": {"enum": [None, *PERIODS]}, "mode": {"enum": ["hard", "soft"]},
        "period": {"type": "string", "description": "the current period"},
        "committed": _MONEY, "reserved": _MONEY, "remaining": _MONEY,
        "currency": {"type": "string"}}},
    "BudgetList": {"type": "object", "properties": {"budgets": {
        "type": "array", "items": _ref("ScopeBudget")}}},
    "Deleted": {"type": "object", "properties": {"deleted": {"const": True}}},
    "SpendRow": {"type": "object", "description": "one group in one currency; the group is "
                                                  "under the name of `by` (key, user ...)",
                 "properties": {"currency": {"type": ["string", "null"],
                                             "description": "null: calls with no price"},
                                "cost": _MONEY, "calls": {"type": "integer"},
                                "prompt_tokens": {"type": "integer"},
                                "completion_tokens": {"type": "integer"}},
                 "additionalProperties": True},
    "Spend": {"type": "object", "properties": {
        "by": {"enum": list(SPEND_GROUPS)}, "since": _NULLABLE_TEXT, "until": _NULLABLE_TEXT,
        "tz": {"type": "string"}, "rows": {"type": "array", "items": _ref("SpendRow")}}},
}

_PATH_PARAMS = {
    "name": {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
    "scope": {"name": "scope", "in": "path", "required": True,
              "schema": {"enum": list(BUDGET_SCOPES)}},
    "subject": {"name": "subject", "in": "path", "required": True,
                "description": "the user or team; * for global",
                "schema": {"type": "string"}},
}
_AUTH_ERRORS = {"401": _error("missing or wrong admin token")}


def _op(summary: str, responses: dict[str, Any], *, body: str | None = None,
        params: tuple[str, ...] = (), query: list[dict[str, Any]] | None = None
        ) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {**responses, **_AUTH_ERRORS}}
    parameters = [_PATH_PARAMS[p] for p in params] + (query or [])
    if parameters:
        op["parameters"] = parameters
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": _ref(body)}}}
    return op


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}


_BUDGET_PARAMS = ("scope", "subject", "name")


def document() -> dict[str, Any]:
    """The whole document (a fresh dict each time)."""
    bad = {"400": _error("a field is wrong (param names it)")}
    missing = {"404": _error("no such key or budget")}
    paths: dict[str, Any] = {
        "/admin/openapi.json": {"get": _op("This document", {"200": _json(
            {"type": "object"}, "the OpenAPI document")})},
        "/admin/keys": {
            "get": _op("List keys (no secrets, no hashes)",
                       {"200": _json(_ref("KeyList"), "every key, revoked ones included")},
                       query=[_query("revoked", "false: leave revoked keys out",
                                     {"type": "boolean"})]),
            "post": _op("Create a key; its secret is in this answer only", {
                "201": _json(_ref("KeyCreated"), "the key, with its secret"), **bad,
                "409": _error("a key of that name exists (revoked or not)")},
                body="KeyCreate")},
        "/admin/keys/{name}": {
            "get": _op("One key", {"200": _json(_ref("Key"), "the key"), **missing},
                       params=("name",)),
            "patch": _op("Change a key's settings (null clears one)", {
                "200": _json(_ref("Key"), "the key as changed"), **bad, **missing},
                body="KeyPatch", params=("name",)),
            "delete": _op("Revoke a key (kept, so its records stay attributable)", {
                "200": _json(_ref("Key"), "the key, revoked"), **missing},
                params=("name",))},
        "/admin/spend": {"get": _op("Spend grouped by key, user, team, model, tag or day", {
            "200": _json(_ref("Spend"), "one row per group and currency"), **bad},
            query=[_query("by", "how to group (default key)", {"enum": list(SPEND_GROUPS)}),
                   _query("since", "from (inclusive): a date or ISO 8601 time",
                          {"type": "string"}),
                   _query("until", "to (exclusive): a date or ISO 8601 time",
                          {"type": "string"}),
                   _query("tz", "IANA zone of dates, times without offset and of by=day "
                                "(default UTC)", {"type": "string"})])},
        "/admin/budgets": {"get": _op("Every user, team and global budget, with its spend", {
            "200": _json(_ref("BudgetList"), "the budgets")})},
        "/admin/budgets/{scope}/{subject}": {"get": _op(
            "The budgets of one user, team or of everything (global/*)",
            {"200": _json(_ref("BudgetList"), "the budgets"), **missing},
            params=("scope", "subject"))},
        "/admin/budgets/{scope}/{subject}/{name}": {
            "get": _op("One budget with its spend in the current period", {
                "200": _json(_ref("ScopeBudget"), "the budget"), **missing},
                params=_BUDGET_PARAMS),
            "put": _op("Create or replace a budget", {
                "200": _json(_ref("ScopeBudget"), "the budget"), **bad, **missing},
                body="ScopeBudgetIn", params=_BUDGET_PARAMS),
            "delete": _op("Delete a budget", {
                "200": _json(_ref("Deleted"), "the budget, deleted"), **missing},
                params=_BUDGET_PARAMS)},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "qwen-meter gateway admin API", "version": "1",
                 "description": "Keys, user / team / global budgets and spend of a "
                                "qwen-meter gateway fleet (the ledger). JSON only; every "
                                "path needs Authorization: Bearer <admin token>."},
        "servers": [{"url": "/"}],
        "security": [{"adminToken": []}],
        "paths": paths,
        "components": {"schemas": SCHEMAS, "securitySchemes": {
            "adminToken": {"type": "http", "scheme": "bearer",
                           "description": "the value of the environment variable named by "
                                          "admin_token_env"}}},
    }
