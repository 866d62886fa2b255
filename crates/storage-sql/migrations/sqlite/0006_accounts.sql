-- Accounts, app grants, sessions and API tokens, the audit log (issue #9), and the
-- per-app ingest rate limit. Passwords are Argon2id PHC strings; tokens are stored
-- only as the hex SHA-256 of the token.
ALTER TABLE apps ADD COLUMN rate_limit_per_sec INTEGER CHECK (rate_limit_per_sec > 0);

CREATE TABLE accounts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT    NOT NULL UNIQUE,
    role          TEXT    NOT NULL CHECK (role IN ('admin', 'viewer')),
    -- 1: every app; 0: only the apps in account_grants (possibly none).
    all_apps      INTEGER NOT NULL DEFAULT 1 CHECK (all_apps IN (0, 1)),
    password_hash TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE account_grants (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    app_id     INTEGER NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    PRIMARY KEY (account_id, app_id)
) WITHOUT ROWID;

CREATE TABLE auth_tokens (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id    INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kind          TEXT    NOT NULL CHECK (kind IN ('session', 'api')),
    name          TEXT    NOT NULL,
    token_hash    TEXT    NOT NULL UNIQUE,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER
);
CREATE INDEX auth_tokens_by_account ON auth_tokens (account_id);

CREATE TABLE audit_log (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms  INTEGER NOT NULL,
    actor  TEXT    NOT NULL,
    action TEXT    NOT NULL,
    target TEXT    NOT NULL,
    detail TEXT    NOT NULL,
    ip     TEXT
);
