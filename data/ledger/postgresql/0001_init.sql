-- qwen_meter ledger, schema version 1 (PostgreSQL). Applied once, in one transaction holding
-- pg_advisory_xact_lock, by qwen_meter.ledger.migrations; its version is then written to
-- schema_migrations.

-- One row per settled call. `record` is the UsageRecord's JSON exactly as the meter wrote it;
-- the other columns are copies for SQL (cost: NUMERIC, exact).
CREATE TABLE records (
    id TEXT PRIMARY KEY,
    time TIMESTAMPTZ NOT NULL,
    model TEXT,
    status TEXT,
    key_name TEXT,
    user_name TEXT,
    team TEXT,
    region TEXT,
    currency TEXT,
    cost NUMERIC,
    prompt_tokens BIGINT,
    completion_tokens BIGINT,
    tags TEXT[],
    record TEXT NOT NULL
);
CREATE INDEX records_time ON records (time);

-- Calls sent but not settled (the meter's write-ahead journal); deleted with their outcome.
CREATE TABLE intents (
    id TEXT PRIMARY KEY,
    time TIMESTAMPTZ,
    record TEXT NOT NULL
);

-- Virtual keys: only their SHA-256 ("sha256:<hex>").
CREATE TABLE keys (
    name TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL DEFAULT '',
    user_name TEXT,
    team TEXT,
    tags TEXT[] NOT NULL DEFAULT '{}',
    upstream TEXT NOT NULL DEFAULT 'default',
    rpm BIGINT,
    tpm BIGINT,
    models TEXT[],
    budgets JSONB NOT NULL DEFAULT '[]',
    headers TEXT[] NOT NULL DEFAULT '{}',
    revoked BOOLEAN NOT NULL DEFAULT FALSE,
    created TIMESTAMPTZ NOT NULL,
    updated TIMESTAMPTZ NOT NULL
);

-- Budgets of a user, a team or everything (scope 'global', subject '*').
CREATE TABLE budgets (
    scope TEXT NOT NULL,
    subject TEXT NOT NULL,
    name TEXT NOT NULL,
    lim TEXT NOT NULL,
    per TEXT,
    mode TEXT NOT NULL DEFAULT 'hard',
    updated TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (scope, subject, name)
);

-- Grows with every change of a key or a budget (in the same transaction, which also sends
-- NOTIFY qwen_meter_ledger): replicas watch it.
CREATE TABLE ledger_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO ledger_state (id, version) VALUES (1, 0);

-- One row per alert sent (its kind, threshold and period in `mark`).
CREATE TABLE alert_marks (
    mark TEXT PRIMARY KEY,
    claimed_at TIMESTAMPTZ NOT NULL
);
