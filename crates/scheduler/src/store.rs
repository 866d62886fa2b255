//! The `JobStore` trait: job specs and the run ledger, and [`MemoryJobStore`].
//!
//! A store keeps three things:
//!
//! - **job specs** ([`JobSpec`]), saved on add/update/pause and loaded at start-up, so
//!   jobs created at run time survive a restart and re-bind to handlers by name;
//! - **the run ledger**: one [`RunRecord`] per fire that started, unique on the fire
//!   (job id, nominal instant). [`JobStore::insert_run`] refuses a second record for a
//!   fire ([`StoreError::DuplicateFire`]): that is the restart-safety guard, a fire that
//!   was recorded is never run again. [`JobStore::update_run`] is fenced: a write
//!   carrying an older fencing token than the stored one is refused
//!   ([`StoreError::Fenced`]);
//! - **fire marks**: per job, the latest nominal instant handled (run, skipped or
//!   missed) and how many fires were handled. Catch-up after a restart starts from the
//!   mark, which retention never prunes (the ledger's rows may be pruned).
//!
//! Implementations must make `insert_run` atomic with respect to the fire's
//! uniqueness (a unique index in SQL).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;

use crate::job::{Fire, JobId, JobSpec, RunId, RunRecord};

/// Errors of a [`JobStore`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A run is already recorded for this fire (it must not run again).
    #[error("a run is already recorded for job `{}` at {}", .0.job_id, .0.nominal)]
    DuplicateFire(Fire),
    /// The write carries an older fencing token than the stored run.
    #[error("run {0} was claimed again with a newer fencing token")]
    Fenced(RunId),
    /// The run does not exist.
    #[error("run {0} not found")]
    RunNotFound(RunId),
    /// A stored value could not be decoded.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// The backend failed (connection, I/O, SQL).
    #[error("job store backend: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The per-job fire mark: the latest nominal instant handled and how many fires were.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FireMark {
    /// Latest nominal instant handled (run, skipped or counted missed).
    pub last_nominal: Timestamp,
    /// Fires handled in all (for `max_fires`).
    pub fires: u64,
}

/// What run records to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    /// Keep at most this many finished runs per job (newest by nominal instant).
    pub keep_last: Option<usize>,
    /// Drop finished runs whose nominal instant is older than this.
    pub max_age: Option<Duration>,
}

/// Job specs, the run ledger and fire marks. See the module docs for the invariants.
#[async_trait]
pub trait JobStore: Send + Sync + std::fmt::Debug + 'static {
    /// Saves (inserts or replaces) a job spec.
    async fn save_job(&self, spec: &JobSpec) -> Result<(), StoreError>;

    /// Every saved job spec, ordered by id.
    async fn load_jobs(&self) -> Result<Vec<JobSpec>, StoreError>;

    /// Deletes a job spec (its runs and mark stay, for history); `true` if it existed.
    async fn delete_job(&self, id: &JobId) -> Result<bool, StoreError>;

    /// Records a new run. Fails with [`StoreError::DuplicateFire`] if its fire has one.
    async fn insert_run(&self, run: &RunRecord) -> Result<(), StoreError>;

    /// Replaces a run's mutable fields (state, attempt, times, statuses, output, error).
    /// Fails with [`StoreError::Fenced`] if the stored token is newer.
    async fn update_run(&self, run: &RunRecord) -> Result<(), StoreError>;

    /// One run by id.
    async fn get_run(&self, id: RunId) -> Result<Option<RunRecord>, StoreError>;

    /// True if a run is recorded for `fire`.
    async fn was_recorded(&self, fire: &Fire) -> Result<bool, StoreError>;

    /// The newest `limit` runs of a job, newest nominal instant first.
    async fn runs(&self, job: &JobId, limit: usize) -> Result<Vec<RunRecord>, StoreError>;

    /// Runs of `node_id` still `scheduled` or `running` (after a crash: lost).
    async fn unfinished_runs(&self, node_id: &str) -> Result<Vec<RunRecord>, StoreError>;

    /// Moves the job's fire mark to `nominal` (if later) and adds `count` fires.
    async fn note_fires(
        &self,
        job: &JobId,
        nominal: Timestamp,
        count: u64,
    ) -> Result<(), StoreError>;

    /// The job's fire mark, if it ever fired.
    async fn fire_mark(&self, job: &JobId) -> Result<Option<FireMark>, StoreError>;

    /// Deletes finished runs beyond `retention`; returns how many.
    async fn prune_runs(&self, retention: Retention, now: Timestamp) -> Result<u64, StoreError>;
}

#[derive(Debug, Default)]
struct MemState {
    jobs: BTreeMap<JobId, JobSpec>,
    runs: BTreeMap<(JobId, Timestamp), RunRecord>,
    by_id: HashMap<RunId, (JobId, Timestamp)>,
    marks: HashMap<JobId, FireMark>,
}

/// A [`JobStore`] in memory: for tests, and for a scheduler that needs no persistence.
/// Clones share the same data (so a test can "restart" a scheduler on the same store).
#[derive(Debug, Default, Clone)]
pub struct MemoryJobStore {
    state: std::sync::Arc<Mutex<MemState>>,
}

impl MemoryJobStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every run recorded (any job), ordered by job and nominal instant.
    pub fn all_runs(&self) -> Vec<RunRecord> {
        self.lock().runs.values().cloned().collect()
    }
}

#[async_trait]
impl JobStore for MemoryJobStore {
    async fn save_job(&self, spec: &JobSpec) -> Result<(), StoreError> {
        self.lock().jobs.insert(spec.id.clone(), spec.clone());
        Ok(())
    }

    async fn load_jobs(&self) -> Result<Vec<JobSpec>, StoreError> {
        Ok(self.lock().jobs.values().cloned().collect())
    }

    async fn delete_job(&self, id: &JobId) -> Result<bool, StoreError> {
        Ok(self.lock().jobs.remove(id).is_some())
    }

    async fn insert_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        let mut s = self.lock();
        let key = (run.job_id.clone(), run.nominal);
        if s.runs.contains_key(&key) {
            return Err(StoreError::DuplicateFire(run.fire()));
        }
        s.by_id.insert(run.run_id, key.clone());
        s.runs.insert(key, run.clone());
        Ok(())
    }

    async fn update_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        let mut s = self.lock();
        let key = s
            .by_id
            .get(&run.run_id)
            .cloned()
            .ok_or(StoreError::RunNotFound(run.run_id))?;
        let stored = s
            .runs
            .get_mut(&key)
            .ok_or(StoreError::RunNotFound(run.run_id))?;
        if stored.fencing_token > run.fencing_token {
            return Err(StoreError::Fenced(run.run_id));
        }
        *stored = run.clone();
        Ok(())
    }

    async fn get_run(&self, id: RunId) -> Result<Option<RunRecord>, StoreError> {
        let s = self.lock();
        Ok(s.by_id.get(&id).and_then(|k| s.runs.get(k)).cloned())
    }

    async fn was_recorded(&self, fire: &Fire) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .runs
            .contains_key(&(fire.job_id.clone(), fire.nominal)))
    }

    async fn runs(&self, job: &JobId, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        let s = self.lock();
        Ok(s.runs
            .range((job.clone(), Timestamp::MIN)..=(job.clone(), Timestamp::MAX))
            .rev()
            .take(limit)
            .map(|(_, r)| r.clone())
            .collect())
    }

    async fn unfinished_runs(&self, node_id: &str) -> Result<Vec<RunRecord>, StoreError> {
        Ok(self
            .lock()
            .runs
            .values()
            .filter(|r| r.node_id == node_id && !r.state.is_final())
            .cloned()
            .collect())
    }

    async fn note_fires(
        &self,
        job: &JobId,
        nominal: Timestamp,
        count: u64,
    ) -> Result<(), StoreError> {
        let mut s = self.lock();
        let mark = s.marks.entry(job.clone()).or_insert(FireMark {
            last_nominal: nominal,
            fires: 0,
        });
        mark.last_nominal = mark.last_nominal.max(nominal);
        mark.fires += count;
        Ok(())
    }

    async fn fire_mark(&self, job: &JobId) -> Result<Option<FireMark>, StoreError> {
        Ok(self.lock().marks.get(job).copied())
    }

    async fn prune_runs(&self, retention: Retention, now: Timestamp) -> Result<u64, StoreError> {
        let mut s = self.lock();
        let cutoff = retention.max_age.and_then(|age| now.checked_sub(age).ok());
        let mut doomed = Vec::new();
        let mut per_job: HashMap<&JobId, usize> = HashMap::new();
        for ((job, nominal), run) in s.runs.iter().rev() {
            if !run.state.is_final() {
                continue;
            }
            let kept = per_job.entry(job).or_insert(0);
            let too_many = retention.keep_last.is_some_and(|n| *kept >= n);
            let too_old = cutoff.is_some_and(|c| *nominal < c);
            if too_many || too_old {
                doomed.push(((job.clone(), *nominal), run.run_id));
            } else {
                *kept += 1;
            }
        }
        for (key, id) in &doomed {
            s.runs.remove(key);
            s.by_id.remove(id);
        }
        Ok(doomed.len() as u64)
    }
}
