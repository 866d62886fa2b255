-- The scheduler's JobStore: job specs, the run ledger, fire marks.
-- Instants are nanoseconds since the Unix epoch (exact round trip of nominal instants).
CREATE TABLE scheduler_jobs (
    id            TEXT   PRIMARY KEY,
    spec          TEXT   NOT NULL,   -- JobSpec as JSON
    updated_at_ms BIGINT NOT NULL
);

-- One row per fire that started; unique on the fire (job, nominal instant): a fire
-- recorded once is never run again.
CREATE TABLE scheduler_runs (
    run_id          TEXT    PRIMARY KEY,
    job_id          TEXT    NOT NULL,
    nominal_ns      BIGINT  NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('scheduled', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled', 'lost')),
    attempt         INTEGER NOT NULL,
    node_id         TEXT    NOT NULL,
    fencing_token   BIGINT  NOT NULL,
    scheduled_at_ns BIGINT  NOT NULL,
    started_at_ns   BIGINT,
    finished_at_ns  BIGINT,
    exit_code       INTEGER,
    http_status     INTEGER,
    output          TEXT    NOT NULL,
    error           TEXT,
    UNIQUE (job_id, nominal_ns)
);
CREATE INDEX scheduler_runs_unfinished ON scheduler_runs (node_id)
    WHERE state IN ('scheduled', 'running');

-- Per job: the latest nominal instant handled and how many fires were (never pruned).
CREATE TABLE scheduler_fire_marks (
    job_id          TEXT   PRIMARY KEY,
    last_nominal_ns BIGINT NOT NULL,
    fires           BIGINT NOT NULL
);
