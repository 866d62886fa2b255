-- Aggregates written by the aggregator (see docs/storage.md). Days are calendar days in
-- the app's time zone, as days since 1970-01-01. No foreign keys to `apps`: deleting an
-- app deletes its rows explicitly, and the aggregator must never stall on a constraint.

-- The first bus position each consumer has not applied yet; written in the same
-- transaction as the aggregates it covers.
CREATE TABLE consumer_positions (
    consumer      TEXT    PRIMARY KEY,
    next_position BIGINT  NOT NULL
);

-- Dense per-app device numbers, and each device's first-seen instant and day.
CREATE TABLE devices (
    app_id      BIGINT  NOT NULL,
    device_no   BIGINT  NOT NULL,
    device_id   TEXT    NOT NULL,
    first_ts_ms BIGINT  NOT NULL,
    first_day   BIGINT  NOT NULL,
    PRIMARY KEY (app_id, device_no),
    UNIQUE (app_id, device_id)
);
CREATE INDEX devices_by_first_day ON devices (app_id, first_day);

-- Distinct user ids (registered users).
CREATE TABLE app_users (
    app_id      BIGINT  NOT NULL,
    user_id     TEXT    NOT NULL,
    first_ts_ms BIGINT  NOT NULL,
    PRIMARY KEY (app_id, user_id)
);

-- Unique-device sets as roaring bitmaps of device numbers: a base row and delta rows,
-- applied in `seq` order as (set | added) - removed.
CREATE TABLE day_sets (
    app_id  BIGINT  NOT NULL,
    day     BIGINT  NOT NULL,
    kind    TEXT    NOT NULL,
    dim     TEXT    NOT NULL,
    value   TEXT    NOT NULL,
    seq     BIGINT  NOT NULL,
    added   BYTEA   NOT NULL,
    removed BYTEA,
    PRIMARY KEY (app_id, day, kind, dim, value, seq)
);

-- Launches and usage per day, in total (dim = '') and per breakdown dimension value
-- (value = '' when the events did not report it).
CREATE TABLE day_counters (
    app_id        BIGINT  NOT NULL,
    day           BIGINT  NOT NULL,
    dim           TEXT    NOT NULL,
    value         TEXT    NOT NULL,
    launches      BIGINT  NOT NULL,
    usage_secs    DOUBLE PRECISION NOT NULL,
    usage_reports BIGINT  NOT NULL,
    PRIMARY KEY (app_id, day, dim, value)
);

-- Launches and new users per hour of day (app zone).
CREATE TABLE hour_counters (
    app_id    BIGINT  NOT NULL,
    day       BIGINT  NOT NULL,
    hour      BIGINT  NOT NULL,
    launches  BIGINT  NOT NULL,
    new_users BIGINT  NOT NULL,
    PRIMARY KEY (app_id, day, hour)
);

-- Custom events per day and name, in total (seg_key = '') and per segment value.
CREATE TABLE event_counters (
    app_id    BIGINT  NOT NULL,
    day       BIGINT  NOT NULL,
    name      TEXT    NOT NULL,
    seg_key   TEXT    NOT NULL,
    seg_value TEXT    NOT NULL,
    count     BIGINT  NOT NULL,
    sum       DOUBLE PRECISION NOT NULL,
    dur_secs  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (app_id, day, name, seg_key, seg_value)
);

-- Event ids already counted (SDK retries are accepted but counted once).
CREATE TABLE event_ids (
    app_id   BIGINT  NOT NULL,
    event_id TEXT    NOT NULL,
    ts_ms    BIGINT  NOT NULL,
    PRIMARY KEY (app_id, event_id)
);
