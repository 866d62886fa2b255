-- One number that every change invalidating what a running aggregator caches about an
-- app moves (app data deleted, app deleted, time zone changed, aggregates recomputed).
-- Aggregators read it before each batch and drop their caches when it moved, in
-- whichever process they run.
CREATE TABLE data_generation (
    id         BIGINT  PRIMARY KEY,
    generation BIGINT  NOT NULL
);
INSERT INTO data_generation (id, generation) VALUES (1, 0);
