//! The scheduler's [`JobStore`] on both backends: job specs (JSON), the run ledger
//! (unique on the fire), fire marks.
//!
//! Invariants kept by the schema rather than by code: a fire has at most one run row
//! (`UNIQUE (job_id, nominal_ns)`, inserted with `ON CONFLICT DO NOTHING` so a
//! duplicate is reported, not raised), and a run row is only overwritten by a writer
//! holding at least its fencing token (`UPDATE … WHERE fencing_token <= $token`).
//! Instants are stored as nanoseconds since the epoch so nominal instants — the fire
//! identity — round-trip exactly.

use async_trait::async_trait;
use jiff::Timestamp;
use sundial_scheduler::job::{FencingToken, Fire, JobId, JobSpec, RunId, RunRecord, RunState};
use sundial_scheduler::store::{FireMark, JobStore, Retention, StoreError};

use crate::{Backend, SqlStore};

fn backend(e: sqlx::Error) -> StoreError {
    StoreError::Backend(Box::new(e))
}

fn ns(t: Timestamp) -> Result<i64, StoreError> {
    i64::try_from(t.as_nanosecond())
        .map_err(|_| StoreError::Corrupt(format!("instant {t} is out of the stored range")))
}

fn from_ns(v: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_nanosecond(i128::from(v))
        .map_err(|e| StoreError::Corrupt(format!("stored instant {v}: {e}")))
}

fn opt_ns(v: Option<i64>) -> Result<Option<Timestamp>, StoreError> {
    v.map(from_ns).transpose()
}

fn token(t: FencingToken) -> Result<i64, StoreError> {
    i64::try_from(t.0).map_err(|_| StoreError::Corrupt(format!("fencing token {} too large", t.0)))
}

#[derive(Debug, sqlx::FromRow)]
struct RunRow {
    run_id: String,
    job_id: String,
    nominal_ns: i64,
    state: String,
    attempt: i32,
    node_id: String,
    fencing_token: i64,
    scheduled_at_ns: i64,
    started_at_ns: Option<i64>,
    finished_at_ns: Option<i64>,
    exit_code: Option<i32>,
    http_status: Option<i32>,
    output: String,
    error: Option<String>,
}

impl RunRow {
    fn into_record(self) -> Result<RunRecord, StoreError> {
        Ok(RunRecord {
            run_id: self
                .run_id
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("run id `{}`", self.run_id)))?,
            job_id: JobId::new(&self.job_id),
            nominal: from_ns(self.nominal_ns)?,
            state: RunState::parse(&self.state)
                .ok_or_else(|| StoreError::Corrupt(format!("run state `{}`", self.state)))?,
            attempt: u32::try_from(self.attempt).unwrap_or(0),
            node_id: self.node_id,
            fencing_token: FencingToken(u64::try_from(self.fencing_token).unwrap_or(0)),
            scheduled_at: from_ns(self.scheduled_at_ns)?,
            started_at: opt_ns(self.started_at_ns)?,
            finished_at: opt_ns(self.finished_at_ns)?,
            exit_code: self.exit_code,
            http_status: self.http_status.and_then(|s| u16::try_from(s).ok()),
            output: self.output,
            error: self.error,
        })
    }
}

/// The columns of `scheduler_runs` in [`RunRow`] order.
macro_rules! run_columns {
    () => {
        "run_id, job_id, nominal_ns, state, attempt, node_id, fencing_token, scheduled_at_ns, \
         started_at_ns, finished_at_ns, exit_code, http_status, output, error"
    };
}

fn rows_to_records(rows: Vec<RunRow>) -> Result<Vec<RunRecord>, StoreError> {
    rows.into_iter().map(RunRow::into_record).collect()
}

#[async_trait]
impl JobStore for SqlStore {
    async fn save_job(&self, spec: &JobSpec) -> Result<(), StoreError> {
        let json = serde_json::to_string(spec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        const SQL: &str = "INSERT INTO scheduler_jobs (id, spec, updated_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET spec = excluded.spec, updated_at_ms = excluded.updated_at_ms";
        let now = Timestamp::now().as_millisecond();
        on_backend!(self, pool => sqlx::query(SQL)
            .bind(spec.id.as_str())
            .bind(&json)
            .bind(now)
            .execute(pool)
            .await
            .map_err(backend)?
            .rows_affected());
        Ok(())
    }

    async fn load_jobs(&self) -> Result<Vec<JobSpec>, StoreError> {
        const SQL: &str = "SELECT id, spec FROM scheduler_jobs ORDER BY id";
        let rows: Vec<(String, String)> = on_backend!(self, pool => sqlx::query_as(SQL)
            .fetch_all(pool)
            .await
            .map_err(backend)?);
        rows.into_iter()
            .map(|(id, json)| {
                serde_json::from_str(&json)
                    .map_err(|e| StoreError::Corrupt(format!("job `{id}`: {e}")))
            })
            .collect()
    }

    async fn delete_job(&self, id: &JobId) -> Result<bool, StoreError> {
        const SQL: &str = "DELETE FROM scheduler_jobs WHERE id = $1";
        let n = on_backend!(self, pool => sqlx::query(SQL)
            .bind(id.as_str())
            .execute(pool)
            .await
            .map_err(backend)?
            .rows_affected());
        Ok(n > 0)
    }

    async fn insert_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        const SQL: &str = concat!(
            "INSERT INTO scheduler_runs (",
            run_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ",
            "ON CONFLICT (job_id, nominal_ns) DO NOTHING"
        );
        let n = on_backend!(self, pool => sqlx::query(SQL)
            .bind(run.run_id.to_string())
            .bind(run.job_id.as_str())
            .bind(ns(run.nominal)?)
            .bind(run.state.as_str())
            .bind(i32::try_from(run.attempt).unwrap_or(i32::MAX))
            .bind(&run.node_id)
            .bind(token(run.fencing_token)?)
            .bind(ns(run.scheduled_at)?)
            .bind(run.started_at.map(ns).transpose()?)
            .bind(run.finished_at.map(ns).transpose()?)
            .bind(run.exit_code)
            .bind(run.http_status.map(i32::from))
            .bind(&run.output)
            .bind(run.error.as_deref())
            .execute(pool)
            .await
            .map_err(backend)?
            .rows_affected());
        if n == 0 {
            return Err(StoreError::DuplicateFire(run.fire()));
        }
        Ok(())
    }

    async fn update_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE scheduler_runs SET state = $2, attempt = $3, fencing_token = $4, \
             started_at_ns = $5, finished_at_ns = $6, exit_code = $7, http_status = $8, \
             output = $9, error = $10 WHERE run_id = $1 AND fencing_token <= $4";
        let n = on_backend!(self, pool => sqlx::query(SQL)
            .bind(run.run_id.to_string())
            .bind(run.state.as_str())
            .bind(i32::try_from(run.attempt).unwrap_or(i32::MAX))
            .bind(token(run.fencing_token)?)
            .bind(run.started_at.map(ns).transpose()?)
            .bind(run.finished_at.map(ns).transpose()?)
            .bind(run.exit_code)
            .bind(run.http_status.map(i32::from))
            .bind(&run.output)
            .bind(run.error.as_deref())
            .execute(pool)
            .await
            .map_err(backend)?
            .rows_affected());
        if n == 0 {
            return Err(match self.get_run(run.run_id).await? {
                Some(_) => StoreError::Fenced(run.run_id),
                None => StoreError::RunNotFound(run.run_id),
            });
        }
        Ok(())
    }

    async fn get_run(&self, id: RunId) -> Result<Option<RunRecord>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            run_columns!(),
            " FROM scheduler_runs WHERE run_id = $1"
        );
        let row: Option<RunRow> = on_backend!(self, pool => sqlx::query_as(SQL)
            .bind(id.to_string())
            .fetch_optional(pool)
            .await
            .map_err(backend)?);
        row.map(RunRow::into_record).transpose()
    }

    async fn was_recorded(&self, fire: &Fire) -> Result<bool, StoreError> {
        const SQL: &str = "SELECT 1 FROM scheduler_runs WHERE job_id = $1 AND nominal_ns = $2";
        let row: Option<(i32,)> = on_backend!(self, pool => sqlx::query_as(SQL)
            .bind(fire.job_id.as_str())
            .bind(ns(fire.nominal)?)
            .fetch_optional(pool)
            .await
            .map_err(backend)?);
        Ok(row.is_some())
    }

    async fn runs(&self, job: &JobId, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            run_columns!(),
            " FROM scheduler_runs WHERE job_id = $1 ORDER BY nominal_ns DESC LIMIT $2"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<RunRow> = on_backend!(self, pool => sqlx::query_as(SQL)
            .bind(job.as_str())
            .bind(limit)
            .fetch_all(pool)
            .await
            .map_err(backend)?);
        rows_to_records(rows)
    }

    async fn unfinished_runs(&self, node_id: &str) -> Result<Vec<RunRecord>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            run_columns!(),
            " FROM scheduler_runs WHERE node_id = $1 AND state IN ('scheduled', 'running') ",
            "ORDER BY job_id, nominal_ns"
        );
        let rows: Vec<RunRow> = on_backend!(self, pool => sqlx::query_as(SQL)
            .bind(node_id)
            .fetch_all(pool)
            .await
            .map_err(backend)?);
        rows_to_records(rows)
    }

    async fn note_fires(
        &self,
        job: &JobId,
        nominal: Timestamp,
        count: u64,
    ) -> Result<(), StoreError> {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        let nominal = ns(nominal)?;
        match &self.backend {
            Backend::Sqlite(pool) => {
                const SQL: &str = "INSERT INTO scheduler_fire_marks (job_id, last_nominal_ns, fires) \
                     VALUES ($1, $2, $3) ON CONFLICT (job_id) DO UPDATE SET \
                     last_nominal_ns = MAX(scheduler_fire_marks.last_nominal_ns, excluded.last_nominal_ns), \
                     fires = scheduler_fire_marks.fires + excluded.fires";
                sqlx::query(SQL)
                    .bind(job.as_str())
                    .bind(nominal)
                    .bind(count)
                    .execute(pool)
                    .await
                    .map_err(backend)?;
            }
            Backend::Postgres(pool) => {
                const SQL: &str = "INSERT INTO scheduler_fire_marks (job_id, last_nominal_ns, fires) \
                     VALUES ($1, $2, $3) ON CONFLICT (job_id) DO UPDATE SET \
                     last_nominal_ns = GREATEST(scheduler_fire_marks.last_nominal_ns, excluded.last_nominal_ns), \
                     fires = scheduler_fire_marks.fires + excluded.fires";
                sqlx::query(SQL)
                    .bind(job.as_str())
                    .bind(nominal)
                    .bind(count)
                    .execute(pool)
                    .await
                    .map_err(backend)?;
            }
        }
        Ok(())
    }

    async fn fire_mark(&self, job: &JobId) -> Result<Option<FireMark>, StoreError> {
        const SQL: &str =
            "SELECT last_nominal_ns, fires FROM scheduler_fire_marks WHERE job_id = $1";
        let row: Option<(i64, i64)> = on_backend!(self, pool => sqlx::query_as(SQL)
            .bind(job.as_str())
            .fetch_optional(pool)
            .await
            .map_err(backend)?);
        row.map(|(last, fires)| {
            Ok(FireMark {
                last_nominal: from_ns(last)?,
                fires: u64::try_from(fires).unwrap_or(0),
            })
        })
        .transpose()
    }

    async fn prune_runs(&self, retention: Retention, now: Timestamp) -> Result<u64, StoreError> {
        const SQL: &str = "DELETE FROM scheduler_runs WHERE run_id IN ( \
             SELECT run_id FROM ( \
               SELECT run_id, nominal_ns, \
                 ROW_NUMBER() OVER (PARTITION BY job_id ORDER BY nominal_ns DESC) AS rn \
               FROM scheduler_runs WHERE state NOT IN ('scheduled', 'running') \
             ) ranked WHERE rn > $1 OR nominal_ns < $2)";
        let keep = retention
            .keep_last
            .map_or(i64::MAX, |n| i64::try_from(n).unwrap_or(i64::MAX));
        let cutoff = match retention.max_age {
            Some(age) => now.checked_sub(age).map_or(Ok(i64::MIN), ns)?,
            None => i64::MIN,
        };
        let n = on_backend!(self, pool => sqlx::query(SQL)
            .bind(keep)
            .bind(cutoff)
            .execute(pool)
            .await
            .map_err(backend)?
            .rows_affected());
        Ok(n)
    }
}
