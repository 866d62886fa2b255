-- Materialised classic daily retention: members of cohort_day's cohort (`kind` new or
-- active) active on cohort_day + day_offset (= at_day). Written by the close-out for
-- ended days; a commit that changes the total active or new set of a day deletes the
-- cells that read it, and the next close-out writes them again.
CREATE TABLE retention_cells (
    app_id     BIGINT  NOT NULL,
    kind       TEXT    NOT NULL,
    cohort_day BIGINT  NOT NULL,
    day_offset BIGINT  NOT NULL,
    at_day     BIGINT  NOT NULL,
    count      BIGINT  NOT NULL,
    PRIMARY KEY (app_id, kind, cohort_day, day_offset)
);
CREATE INDEX retention_cells_by_at_day ON retention_cells (app_id, at_day);

-- Moves on every write of a set's size: the close-out writes retention cells only if
-- the versions of the days it read did not move meanwhile.
ALTER TABLE set_sizes ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
