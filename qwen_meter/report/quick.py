"""The quick reading of a JSONL log: DuckDB's JSON reader with the report's fields, and checks
cheap enough to cost little next to the reading itself.

:func:`.sql.parse_sql` decides, for any line, whether it is usable and why not; doing that for
every record (``json_type`` on a dozen fields, casts through DOUBLE, the JSON of tags) costs
more than reading the file. Here a record is *accepted* only when a few string tests prove
that the exact checks would accept it and give the same values:

* a token count is the text of a JSON integer between 0 and 9e15 (the text its value prints
  as) — a string ``"123"``, ``true``, ``1.5`` or ``1e3`` is not;
* model, user and currency are JSON strings without escapes (their text between the quotes);
* ``usage_estimated`` is ``true`` / ``false``; ``cost`` (read as text, which for a JSON string
  or number is what ``cost->>'$'`` gives) a decimal >= 0; ``time`` a timestamp; tags are read
  as a list of text by the reader itself, which refuses anything but a list (the file is then
  read the exact way);
* no more cached tokens than prompt tokens, no skip mark.

Any other record is marked ``suspect``: the engine then reads the file again with the exact
checks (and, if a line is unusable, as numbered lines that name it), so a report never differs
by the road it took.
"""

from __future__ import annotations

from .sql import MONEY_TYPE, NOT_INTENT, SKIP, TOKEN_COLUMNS, quote

#: What the quick reading reads each field as.
_FIELDS = {
    "time": "VARCHAR", "model": "JSON", "served_model": "VARCHAR", "region": "VARCHAR",
    "endpoint": "VARCHAR", "status": "VARCHAR", "user": "JSON", "tags": "VARCHAR[]",
    **{c: "JSON" for c in TOKEN_COLUMNS}, "usage_estimated": "JSON", "cost": "VARCHAR",
    "currency": "JSON", "unpriced": "VARCHAR", SKIP: "VARCHAR", "journal": "VARCHAR"}
#: The problem of a record the quick checks cannot vouch for.
SUSPECT = "suspect"
_MAX_TOKENS = 9 * 10**15


def _plain_string(column: str) -> str:
    """``column`` (JSON text) is a JSON string without escapes."""
    return f"starts_with({column}, '\"') AND NOT contains({column}, '\\')"


def _whole(column: str) -> str:
    """``column`` (JSON text) is a JSON integer in range (its value is ``{column}_v``): the
    text the value prints as, so not ``1.5`` (cast to 2), ``1e3``, ``"7"`` or ``true``."""
    return (f"({column} IS NULL OR ({column}_v BETWEEN 0 AND {_MAX_TOKENS} "
            f"AND CAST({column}_v AS VARCHAR) = {column}))")


def quick_file_sql(path: str) -> str:
    """The records of the JSONL file ``path``, as :func:`.sql.parse_sql` gives them, with
    ``problem`` NULL for a record the exact checks would accept too, else ``suspect``."""
    columns = "{" + ", ".join(f"{quote(k)}: {quote(v)}" for k, v in _FIELDS.items()) + "}"
    read = f"read_json({quote(path)}, format = 'newline_delimited', columns = {columns})"
    accepted = " AND ".join([
        f"{SKIP} IS NULL", _plain_string("model"), "trim(model[2:-2]) <> ''",
        *(_whole(c) for c in TOKEN_COLUMNS),
        f'("user" IS NULL OR ({_plain_string(chr(34) + "user" + chr(34))}))',
        f"(currency IS NULL OR ({_plain_string('currency')}))",
        "(usage_estimated IS NULL OR usage_estimated IN ('true', 'false'))",
        "(cached_tokens_v IS NULL OR cached_tokens_v <= coalesce(prompt_tokens_v, 0))",
        "(cost IS NULL OR cost_v >= 0)", "(time IS NULL OR ts IS NOT NULL)"])
    typed = ", ".join([
        "TRY_CAST(time AS TIMESTAMPTZ) AS ts",
        *(f"TRY_CAST({c} AS BIGINT) AS {c}_v" for c in TOKEN_COLUMNS),
        f"TRY_CAST(cost AS {MONEY_TYPE}) AS cost_v"])
    out = ", ".join([
        f"{quote(path)} AS source", "NULL::BIGINT AS line", "time", "ts",
        "model[2:-2] AS model", "served_model", "region", "endpoint", "status",
        '"user"[2:-2] AS "user"', "coalesce(tags, []::VARCHAR[]) AS tags",
        *(f"{c}_v AS {c}" for c in TOKEN_COLUMNS),
        "usage_estimated = 'true' AS usage_estimated", "cost_v AS cost",
        "currency[2:-2] AS currency", "unpriced",
        f"CASE WHEN {accepted} THEN NULL ELSE '{SUSPECT}' END AS problem"])
    # JSON text as plain text: a cast from JSON would read inside it ('"100"' to 100)
    text = ", ".join(f'CAST("{k}" AS VARCHAR) AS "{k}"' for k, v in _FIELDS.items()
                     if v == "JSON")
    return (f"SELECT {out} FROM (SELECT *, {typed} FROM (SELECT * REPLACE ({text}) "
            f"FROM {read} WHERE {NOT_INTENT}))")
