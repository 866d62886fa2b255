-- Apps: the tenants of the analytics platform.
CREATE TABLE apps (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    name              TEXT    NOT NULL,
    timezone          TEXT    NOT NULL,
    app_key           TEXT    NOT NULL UNIQUE,
    app_secret        TEXT    NOT NULL,
    require_signature INTEGER NOT NULL DEFAULT 0 CHECK (require_signature IN (0, 1)),
    created_at_ms     INTEGER NOT NULL
);
