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


def _model_ok(column: str) -> str:
    return f"({_plain_string(column)} AND trim({column}[2:-2]) <> '')"


def quick_file_sql(path: str, *, raw: bool = False) -> str:
    """The records of the JSONL file ``path``, as :func:`.sql.parse_sql` gives them, with
    ``problem`` NULL for a record the exact checks would accept too, else ``suspect``.

    ``raw``: model, currency and tags are left as their JSON text (and unchecked): the cube
    of these records must go through :func:`decoded_cube_sql`.
    """
    fields = {**_FIELDS, "tags": "JSON"} if raw else _FIELDS
    columns = "{" + ", ".join(f"{quote(k)}: {quote(v)}" for k, v in fields.items()) + "}"
    read = f"read_json({quote(path)}, format = 'newline_delimited', columns = {columns})"
    checks = [f"{SKIP} IS NULL", *(_whole(c) for c in TOKEN_COLUMNS),
              f'("user" IS NULL OR ({_plain_string(chr(34) + "user" + chr(34))}))',
              "(usage_estimated IS NULL OR usage_estimated IN ('true', 'false'))",
              "(cached_tokens_v IS NULL OR cached_tokens_v <= coalesce(prompt_tokens_v, 0))",
              "(cost IS NULL OR cost_v >= 0)", "(time IS NULL OR ts IS NOT NULL)"]
    if not raw:
        checks[1:1] = [_model_ok("model"),
                       f"(currency IS NULL OR ({_plain_string('currency')}))"]
    typed = ", ".join([
        "TRY_CAST(time AS TIMESTAMPTZ) AS ts",
        *(f"TRY_CAST({c} AS BIGINT) AS {c}_v" for c in TOKEN_COLUMNS),
        f"TRY_CAST(cost AS {MONEY_TYPE}) AS cost_v"])
    out = ", ".join([
        f"{quote(path)} AS source", "NULL::BIGINT AS line", "time", "ts",
        "model" if raw else "model[2:-2] AS model", "served_model", "region", "endpoint",
        "status", '"user"[2:-2] AS "user"',
        "tags" if raw else "coalesce(tags, []::VARCHAR[]) AS tags",
        *(f"{c}_v AS {c}" for c in TOKEN_COLUMNS),
        "usage_estimated = 'true' AS usage_estimated", "cost_v AS cost",
        "currency" if raw else "currency[2:-2] AS currency", "unpriced",
        f"CASE WHEN {' AND '.join(checks)} THEN NULL ELSE '{SUSPECT}' END AS problem"])
    # JSON text as plain text: a cast from JSON would read inside it ('"100"' to 100); raw
    # tags stay JSON (made a list from it).
    text = ", ".join(f'CAST("{k}" AS VARCHAR) AS "{k}"' for k, v in fields.items()
                     if v == "JSON" and k != "tags")
    return (f"SELECT {out} FROM (SELECT *, {typed} FROM (SELECT * REPLACE ({text}) "
            f"FROM {read} WHERE {NOT_INTENT}))")


def decoded_cube_sql(cube: str) -> str:
    """The cube of :func:`quick_file_sql` records with ``raw`` keys, its model, currency and
    tags checked and decoded (rows whose keys the checks cannot vouch for are ``suspect``).
    Two JSON texts of one value (escapes) stay two rows until the cube parts are merged."""
    model, currency = "model", "currency"  # JSON text, in VARCHAR
    tags = "TRY_CAST(tags AS VARCHAR[])"
    ok = " AND ".join([
        _model_ok(model), f"({currency} = '-' OR ({_plain_string(currency)}))",
        f"(tags IS NULL OR (starts_with(CAST(tags AS VARCHAR), '[') AND {tags} IS NOT NULL))"])
    return (f"SELECT * REPLACE ({model}[2:-2] AS model, "
            f"CASE WHEN {currency} = '-' THEN '-' ELSE {currency}[2:-2] END AS currency, "
            f"coalesce({tags}, []::VARCHAR[]) AS tags, "
            f"CASE WHEN problem IS NULL AND NOT coalesce({ok}, false) THEN '{SUSPECT}' "
            "ELSE problem END "
            f"AS problem) FROM ({cube})")
