-- What the metrics query path reads besides migration 0002's aggregates (see
-- docs/storage.md and docs/metrics.md).

-- The size of every unique-device set of day_sets, kept current by the aggregator in
-- the same transaction as the set's rows: totals and breakdowns read sizes without
-- decoding bitmaps.
CREATE TABLE set_sizes (
    app_id  BIGINT  NOT NULL,
    day     BIGINT  NOT NULL,
    kind    TEXT    NOT NULL,
    dim     TEXT    NOT NULL,
    value   TEXT    NOT NULL,
    size    BIGINT  NOT NULL,
    PRIMARY KEY (app_id, kind, dim, day, value)
);

-- The events the aggregator counted (duplicates of an earlier event_id left out), per
-- app and day of the app's zone, as JSON arrays of events: the input of the
-- distributions that need single events (session length, launches per device) and of
-- `sundial recompute`. Rows older than the raw-data retention are deleted.
CREATE TABLE raw_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id  BIGINT  NOT NULL,
    day     BIGINT  NOT NULL,
    events  BIGINT  NOT NULL,
    payload BLOB   NOT NULL
);
CREATE INDEX raw_events_by_day ON raw_events (app_id, day);

-- User ids whose earliest event is on the day (totals row, dim = ''): registered_users
-- is their running sum. Existing stores are filled in from app_users.
ALTER TABLE day_counters ADD COLUMN new_registered BIGINT NOT NULL DEFAULT 0;
