-- Data upgrades that need Rust (bitmaps, time zones) and run once when a store is
-- opened: a row here says one is still to do. Only a store aggregated before migration
-- 0005 gets them; the row is deleted in the transaction that does the work.
CREATE TABLE pending_upgrades (
    name TEXT PRIMARY KEY
);
INSERT INTO pending_upgrades (name)
    SELECT 'fill_set_sizes'
    WHERE EXISTS (SELECT 1 FROM day_sets) AND NOT EXISTS (SELECT 1 FROM set_sizes);
INSERT INTO pending_upgrades (name)
    SELECT 'fill_registered'
    WHERE EXISTS (SELECT 1 FROM app_users)
      AND NOT EXISTS (SELECT 1 FROM day_counters WHERE new_registered <> 0);
