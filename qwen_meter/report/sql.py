"""The report as SQL (DuckDB dialect): one text for every input, so the report can be run as it
is on any engine that reads the Parquet layout of ``qwen-meter log compact``.

Three stages:

1. :func:`parse_sql` — JSON lines ``(source, line, text)`` into typed *records*, each with the
   ``problem`` that makes it unusable (NULL when it is fine). The same checks apply to every
   input (JSONL, SQLite, raw responses); Parquet records get :func:`check_sql`.
2. :func:`cube_sql` — records into a *cube*: one row per combination of the report's keys
   (local day, model, currency, tags, the ``by`` keys, the re-priced currency), with every sum
   the report needs. Costs stay exact: logged costs as ``DECIMAL(38,18)``, re-priced costs and
   cache savings as integer femto-units (1e-15 of a currency unit per token, see
   :mod:`.prices`). Cubes of several chunks combine with :func:`merge_sql`.
3. :func:`sections_sql` — the report's tables from the cube (small).
"""

from __future__ import annotations

from collections.abc import Sequence

#: A key a reader sets on a line it already knows is unusable, with the reason.
SKIP = "__qwen_meter_skip"
#: Record fields as both JSON readers (DuckDB's file reader, and json_transform for numbered
#: lines) type them — the same types, so both apply the same checks. The fields a bad line
#: could carry with the wrong JSON type are read as JSON, so that ``"prompt_tokens": "123"``,
#: ``"model": 123``, ``"tags": "a"`` or ``"usage_estimated": "yes"`` is a problem with its
#: field named (as the Python reader names it), not a value cast into shape. A token count is
#: valid only as a JSON number that is a whole number >= 0 (not 1.5, -3, true or "123").
_STRUCT = {
    "time": "VARCHAR", "model": "JSON", "served_model": "VARCHAR",
    "region": "VARCHAR", "endpoint": "VARCHAR", "status": "VARCHAR", "user": "JSON",
    "tags": "JSON", "prompt_tokens": "JSON", "completion_tokens": "JSON",
    "cached_tokens": "JSON", "reasoning_tokens": "JSON", "usage_estimated": "JSON",
    "estimated_prompt_tokens": "JSON",
    "cost": "JSON", "currency": "JSON", "unpriced": "VARCHAR", SKIP: "VARCHAR",
    "journal": "VARCHAR"}
#: Journal intents (a call in flight, written before it was sent) are not calls: the call is
#: its outcome record, written when it settled (or ``lost``, by recovery). Readers drop them.
NOT_INTENT = "journal IS NULL"
_NUMBER = "('UBIGINT', 'BIGINT', 'DOUBLE')"
TOKEN_COLUMNS = ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens",
                 "estimated_prompt_tokens")
TEXT_COLUMNS = ("time", "model", "served_model", "region", "endpoint", "status", "user",
                "currency", "unpriced")
MONEY_TYPE = "DECIMAL(38,18)"
#: Femto-units (1e-15) per currency unit: re-priced costs are sums of whole femto-units.
FEMTO = 10**15
#: The keys a cube can be grouped by, beyond the ones it always has.
DIMENSIONS = ("user", "region", "status", "served_model", "endpoint")
REPORT_TOKENS = ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens")


def quote(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


#: Fields the report does not need but the dashboard's drill-down shows (read as JSON so that a
#: field of an odd type never makes a record unusable).
DETAIL = {"id": "JSON", "error": "JSON", "latency_ms": "JSON"}


def _struct(detail: bool = False) -> str:
    fields = {**_STRUCT, **DETAIL} if detail else _STRUCT
    return "{" + ", ".join(f'"{k}": "{v}"' for k, v in fields.items()) + "}"


def lines_sql(lines: str, detail: bool = False) -> str:
    """A relation of JSON lines ``(source, line, text)`` as the fields :func:`parse_sql` reads
    (``detail``: with the fields of :data:`DETAIL` too)."""
    return (f"(SELECT * FROM (SELECT source, line, text, "
            f"unnest(try(json_transform(text, {quote(_struct(detail))}))) FROM {lines}) "
            f"WHERE {NOT_INTENT})")


def json_file_sql(path: str, detail: bool = False) -> str:
    """A JSONL file read by DuckDB itself (fast, but it names no lines and stops at the first
    malformed one: the engine then reads the file as lines)."""
    fields = {**_STRUCT, **DETAIL} if detail else _STRUCT
    columns = "{" + ", ".join(f"{quote(k)}: {quote(v)}" for k, v in fields.items()) + "}"
    return (f"(SELECT {quote(path)} AS source, NULL::BIGINT AS line, '{{}}' AS text, * "
            f"FROM read_json({quote(path)}, format = 'newline_delimited', columns = {columns}) "
            f"WHERE {NOT_INTENT})")


#: Statuses of records that billed nothing: the call failed (an error answer, no connection) or
#: the meter refused it before it was sent. Their missing cost is not "unpriced". Every other
#: status — ``ok``, ``incomplete``, ``closed``, ``dropped``, and the estimated ``cancelled``,
#: ``unknown`` and ``lost`` — is a billed call: counted, priced, its estimate flagged.
UNBILLED_STATUSES = ("error", "refused")
_UNBILLED = ", ".join(f"'{s}'" for s in UNBILLED_STATUSES)


def unpriced_ids_sql(path: str, since: str | None, until: str | None, limit: int) -> str:
    """The ids of the first ``limit`` records of a JSONL file that have no cost (DuckDB's
    reader names no lines: the records are named by their id)."""
    columns = {"id": "VARCHAR", "model": "VARCHAR", "cost": "VARCHAR", "status": "VARCHAR",
               "unpriced": "VARCHAR", "time": "VARCHAR", "journal": "VARCHAR"}
    spec = "{" + ", ".join(f"{quote(k)}: {quote(v)}" for k, v in columns.items()) + "}"
    dates = " ".join(filter(None, [since and f"AND ts >= {since}", until and f"AND ts < {until}"]))
    return (f"SELECT coalesce(id, '?'), model, coalesce(unpriced, 'no cost') FROM ("
            f"SELECT *, TRY_CAST(time AS TIMESTAMPTZ) AS ts FROM read_json({quote(path)}, "
            f"format = 'newline_delimited', columns = {spec})) WHERE model IS NOT NULL "
            f"AND {NOT_INTENT} AND cost IS NULL "
            f"AND coalesce(status, 'ok') NOT IN ({_UNBILLED}) {dates} "
            f"LIMIT {int(limit)}")


def parse_sql(fields: str, detail: bool = False) -> str:
    """Typed records (with ``problem``) from :func:`lines_sql` or :func:`json_file_sql`.

    A token count must be a JSON integer >= 0, a cost a decimal (string or number), a time
    ISO 8601 (no offset = UTC), tags a list. ``detail``: also the fields of :data:`DETAIL`
    (``fields`` must hold them: :func:`lines_sql` with ``detail``).
    """
    tokens = ",\n    ".join(
        f"CASE WHEN json_type({c}) IN {_NUMBER} THEN TRY_CAST({c} AS DOUBLE) END AS {c}_number, "
        f"CASE WHEN json_type({c}) <> 'NULL' THEN {c} END AS {c}_raw"
        for c in TOKEN_COLUMNS)
    problems = "\n    ".join(
        f"WHEN {c}_raw IS NOT NULL AND ({c}_number IS NULL OR {c}_number < 0 "
        f"OR {c}_number <> floor({c}_number) OR {c}_number > 9e15) THEN 'bad {c}'"
        for c in TOKEN_COLUMNS)
    kinds = "\n    ".join(
        f"WHEN json_type({name}_json) NOT IN ({', '.join(map(quote, ok))}) THEN 'bad {name}'"
        for name, ok in (("user", ("VARCHAR", "NULL")), ("currency", ("VARCHAR", "NULL")),
                         ("tags", ("ARRAY", "NULL")),
                         ("usage_estimated", ("BOOLEAN", "NULL"))))
    columns = ", ".join(["source", "line", "time", "ts", "model", "served_model", "region",
                         "endpoint", "status", '"user"', "tags",
                         *(f"TRY_CAST({c}_number AS BIGINT) AS {c}" for c in TOKEN_COLUMNS),
                         "usage_estimated", "cost", "currency", "unpriced"])
    extra = ""
    if detail:
        columns += ", id, error, latency_ms"
        extra = (",\n    CASE WHEN json_type(id) IN ('VARCHAR', 'UBIGINT', 'BIGINT') "
                 "THEN id->>'$' END AS id,\n    CASE WHEN json_type(error) = 'VARCHAR' "
                 "THEN error->>'$' WHEN json_type(error) <> 'NULL' THEN error::VARCHAR END "
                 f"AS error,\n    CASE WHEN json_type(latency_ms) IN {_NUMBER} "
                 "THEN TRY_CAST(latency_ms AS DOUBLE) END AS latency_ms")
    return f"""SELECT {columns},
  CASE
    WHEN model_json IS NOT NULL AND json_type(model_json) NOT IN ('VARCHAR', 'NULL')
      AND skip IS NULL THEN 'bad model'
    WHEN model IS NULL THEN
      CASE WHEN skip IS NOT NULL THEN skip
           WHEN trim(text, ' \t\r\n') = '' THEN ''
           WHEN NOT json_valid(text) THEN 'not JSON'
           WHEN NOT starts_with(ltrim(text), '{{') THEN 'not a JSON object'
           ELSE 'no model' END
    WHEN skip IS NOT NULL THEN skip
    WHEN trim(model) = '' THEN 'no model'
    {problems}
    {kinds}
    WHEN tags_json IS NOT NULL AND json_type(tags_json) = 'ARRAY'
      AND TRY_CAST(tags_json AS VARCHAR[]) IS NULL THEN 'bad tags'
    WHEN cached_tokens_number > coalesce(prompt_tokens_number, 0)
      THEN 'bad cached_tokens (more than prompt_tokens)'
    WHEN raw_cost IS NOT NULL AND (cost IS NULL OR cost < 0) THEN 'bad cost'
    WHEN time IS NOT NULL AND ts IS NULL THEN 'bad time'
  END AS problem
FROM (
  SELECT source, line, text, {SKIP} AS skip, time, TRY_CAST(time AS TIMESTAMPTZ) AS ts,
    model AS model_json,
    CASE WHEN json_type(model) = 'VARCHAR' THEN model->>'$' END AS model,
    served_model, region, endpoint, status,
    "user" AS user_json,
    CASE WHEN json_type("user") = 'VARCHAR' THEN "user"->>'$' END AS "user",
    tags AS tags_json,
    coalesce(CASE WHEN json_type(tags) = 'ARRAY' THEN TRY_CAST(tags AS VARCHAR[]) END,
             []::VARCHAR[]) AS tags,
    {tokens},
    usage_estimated AS usage_estimated_json,
    CASE WHEN json_type(usage_estimated) = 'BOOLEAN' THEN usage_estimated::BOOLEAN END
      AS usage_estimated,
    CASE WHEN json_type(cost) <> 'NULL' THEN cost END AS raw_cost,
    CASE WHEN json_type(cost) IN ('VARCHAR', 'UBIGINT', 'BIGINT', 'DOUBLE')
      THEN TRY_CAST(cost->>'$' AS {MONEY_TYPE}) END AS cost,
    currency AS currency_json,
    CASE WHEN json_type(currency) = 'VARCHAR' THEN currency->>'$' END AS currency,
    unpriced{extra}
  FROM {fields})"""


def check_sql(records: str) -> str:
    """The same checks for records that are typed already (Parquet)."""
    negative = "\n    ".join(f"WHEN {c} < 0 THEN 'bad {c}'" for c in TOKEN_COLUMNS)
    negative += "\n    WHEN cost < 0 THEN 'bad cost'"
    return f"""SELECT *, CASE
    WHEN model IS NULL OR trim(model) = '' THEN 'no model'
    {negative}
    WHEN cached_tokens > coalesce(prompt_tokens, 0)
      THEN 'bad cached_tokens (more than prompt_tokens)'
  END AS problem
FROM {records}"""


def _local(tz: str) -> str:
    if tz == "UTC":  # the session's zone: no conversion
        return "CAST(ts AS DATE)"
    return f"CAST(timezone({quote(tz)}, ts) AS DATE)"


def kept_where(since: str | None, until: str | None) -> str:
    """The condition a usable record meets to be counted (within the dates)."""
    where = ["problem IS NULL"]
    if since:
        where.append(f"ts >= {since}")
    if until:
        where.append(f"ts < {until}")
    return " AND ".join(where)


def cube_keys(by: Sequence[str]) -> list[str]:
    """The cube's key columns for a report grouped ``by`` (day, week, month come from day).

    Besides the report's keys, a cube row is homogeneous in what prices it — the pricing
    region, the request-size ``bucket``, thinking or not, whether it has cached / output
    tokens — so its cost on any model is its token sums times one set of prices.
    """
    keys = ["day", "model", "currency", "tags"]
    keys += [k for k in DIMENSIONS if k in by]
    return [*keys, "price_region", "bucket", "thinking", "has_cached", "has_completion"]


def bucket_sql(thresholds: Sequence[int]) -> str:
    """The request-size bucket of a record: how many tier boundaries its prompt is above."""
    size = "greatest(coalesce(k.prompt_tokens, 0), 1)"
    if not thresholds:
        return "0"
    return " + ".join(f"({size} > {int(t)})::INTEGER" for t in thresholds)


def cube_sql(records: str, *, by: Sequence[str], tz: str, thresholds: Sequence[int] = (),
             since: str | None = None, until: str | None = None, lists: bool = True) -> str:
    """The cube of ``records`` (the output of :func:`parse_sql` / :func:`check_sql`).

    Unusable records are kept too, grouped under their ``problem`` with the list of their
    lines in ``bad``; ``unpriced_list`` lists the records without a cost — so one pass (one
    parse) gives the report and what it left out. ``since`` / ``until`` are SQL expressions
    of type TIMESTAMPTZ. No prices are looked up per record: see :func:`priced_sql`.
    """
    dims = "".join(f", coalesce(k.{k}, '-') AS {k}" for k in DIMENSIONS if k in by)
    estimate = "abs(estimated_prompt_tokens - prompt_tokens) / prompt_tokens"
    keys = ", ".join(cube_keys(by))
    unpriced = f"problem IS NULL AND cost IS NULL AND status_ NOT IN ({_UNBILLED})"
    return f"""WITH rows AS (
  SELECT {_local(tz)} AS day, k.model, coalesce(k.currency, '-') AS currency,
    k.tags{dims}, coalesce(k.region, 'cn') AS price_region,
    {bucket_sql(thresholds)} AS bucket,
    coalesce(k.reasoning_tokens, 0) > 0 AS thinking,
    coalesce(k.cached_tokens, 0) > 0 AS has_cached,
    coalesce(k.completion_tokens, 0) > 0 AS has_completion,
    k.problem, k.source, k.line, k.unpriced,
    k.prompt_tokens, k.completion_tokens, k.cached_tokens, k.reasoning_tokens,
    k.estimated_prompt_tokens, k.usage_estimated, k.cost, coalesce(k.status, 'ok') AS status_,
    k.ts
  FROM {records} k{_dates(since, until)}
)
SELECT {keys}, problem,
  count(*) AS calls,
  {', '.join(f'coalesce(sum({c}), 0) AS {c}' for c in REPORT_TOKENS)},
  sum(cost) AS cost,
  coalesce(sum(cached_tokens) FILTER (cost IS NOT NULL), 0) AS priced_cached_tokens,
  count(*) FILTER ({unpriced}) AS unpriced_calls,
  count(*) FILTER (coalesce(usage_estimated, false)) AS estimated_calls,
  count(*) FILTER (status_ = 'error') AS failed_calls,
  sum({estimate}) FILTER (estimated_prompt_tokens IS NOT NULL AND prompt_tokens > 0)
    AS estimate_error_sum,
  count(*) FILTER (estimated_prompt_tokens IS NOT NULL AND prompt_tokens > 0)
    AS estimate_error_n,
  min(ts) AS first, max(ts) AS last{_lists(unpriced) if lists else ""}
FROM rows GROUP BY {keys}, problem"""


def _dates(since: str | None, until: str | None) -> str:
    """Records outside the dates are left out; unusable ones are kept (to be named), and the
    CASE that finds them is evaluated only for records outside the dates."""
    if not since and not until:
        return ""
    within = " AND ".join(filter(None, [since and f"k.ts >= {since}",
                                        until and f"k.ts < {until}"]))
    return f"\n  WHERE ({within}) OR k.problem IS NOT NULL"


def _lists(unpriced: str) -> str:
    return f""",
  list({{'source': source, 'line': line, 'reason': problem}} ORDER BY source, line)
    FILTER (problem IS NOT NULL) AS bad,
  list({{'source': source, 'line': line,
         'reason': model || ': ' || coalesce(unpriced, 'no cost')}} ORDER BY source, line)
    FILTER ({unpriced}) AS unpriced_list"""


_SUMS = ("calls", *REPORT_TOKENS, "cost", "priced_cached_tokens", "unpriced_calls",
         "estimated_calls", "failed_calls", "estimate_error_sum", "estimate_error_n")


def merge_sql(parts: str, keys: Sequence[str]) -> str:
    """Cubes (of several chunks) combined into one."""
    aggs = ", ".join(f"sum({c}) AS {c}" for c in _SUMS)
    return (f"SELECT {', '.join(keys)}, {aggs}, min(first) AS first, max(last) AS last "
            f"FROM {parts} GROUP BY {', '.join(keys)}")


def priced_sql(cube: str, *, repricing: bool = False, target_model: int | None = None,
               target_region: str | None = None) -> str:
    """The cube with cache savings and re-priced costs (femto-units), from the ``names`` and
    ``prices`` / ``target_prices`` tables (rows per model key, region and bucket).

    Re-pricing uses ``target_model`` (a key of ``names``; None keeps each row's model) in
    ``target_region`` (None keeps each row's region).
    """
    joins = """LEFT JOIN names n ON n.name = c.model
LEFT JOIN prices own ON own.key = n.key AND own.region = c.price_region
  AND own.bucket = c.bucket"""
    columns = """,
  CASE WHEN c.priced_cached_tokens > 0 AND own.input IS NOT NULL AND own.hit IS NOT NULL
       THEN c.priced_cached_tokens * (own.input - own.hit) END AS saved_femto"""
    if repricing:
        model = "n.key" if target_model is None else str(int(target_model))
        region = "c.price_region" if target_region is None else quote(target_region)
        joins += f"""
LEFT JOIN target_prices t ON t.key = {model} AND t.region = {region} AND t.bucket = c.bucket"""
        out = "CASE WHEN c.thinking OR t.thinking_only THEN t.thinking ELSE t.output END"
        missing = (f"t.key IS NULL OR t.input IS NULL OR (c.has_cached AND t.hit IS NULL) "
                   f"OR (c.has_completion AND ({out}) IS NULL)")
        columns += f""",
  t.currency AS repriced_currency,
  CASE WHEN {missing} THEN NULL
       ELSE (c.prompt_tokens - c.cached_tokens) * t.input
            + c.cached_tokens * coalesce(t.hit, 0)
            + c.completion_tokens * coalesce({out}, 0) END AS repriced_femto,
  CASE WHEN {missing} THEN c.calls ELSE 0 END AS repriced_unpriced_calls"""
    return f"SELECT c.*{columns}\nFROM {cube} c\n{joins}"


def group_expr(key: str) -> str:
    """A report key as a cube expression."""
    if key == "day":
        return "coalesce(strftime(day, '%Y-%m-%d'), 'unknown')"
    if key == "week":
        return "coalesce(strftime(day, '%G-W%V'), 'unknown')"
    if key == "month":
        return "coalesce(strftime(day, '%Y-%m'), 'unknown')"
    if key == "model":
        return "coalesce(model, '-')"
    return key


def sections_sql(cube: str, keys: Sequence[str], *, repriced: bool = False) -> str:
    """One table of the report: the cube grouped by ``keys`` (report keys, e.g. tag, day)."""
    source = cube
    if "tag" in keys:
        source = (f"(SELECT *, unnest(CASE WHEN len(tags) = 0 THEN ['(none)'] "
                  f"ELSE list_distinct(tags) END) "
                  f"AS tag FROM {cube})")
    exprs = [f"{group_expr(k)} AS {k}" for k in keys if k != "tag"]
    if "tag" in keys:
        exprs.insert(list(keys).index("tag"), "tag")
    aggs = [f"sum({c})::BIGINT AS {c}" for c in ("calls", *REPORT_TOKENS)]
    aggs += ["sum(cost) AS cost", "CAST(sum(saved_femto) AS DECIMAL(38,0)) AS saved_femto",
             *(f"sum({c})::BIGINT AS {c}" for c in ("unpriced_calls", "estimated_calls",
                                                    "failed_calls")),
             "sum(estimate_error_sum) / nullif(sum(estimate_error_n), 0) "
             "AS prompt_estimate_error", "min(first) AS first", "max(last) AS last"]
    if repriced:
        aggs += ["CAST(sum(repriced_femto) AS DECIMAL(38,0)) AS repriced_femto",
                 "sum(repriced_unpriced_calls)::BIGINT AS repriced_unpriced_calls"]
    order = ", ".join(str(i + 1) for i in range(len(keys)))
    return (f"SELECT {', '.join(exprs)}, {', '.join(aggs)} FROM {source} "
            f"GROUP BY ALL ORDER BY {order}")
