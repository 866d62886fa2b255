//! The scheduler engine: jobs, their timers, their runs.
//!
//! [`Scheduler`] ties the pieces together: triggers say when, policies decide what a due
//! fire does, the [`Coordinator`] says whether this node runs it, the [`JobStore`]
//! remembers jobs and runs, and the timer driver wakes the engine.
//!
//! # Ground rules
//!
//! - **One timer per job**: a job has at most one armed wheel timer, for its next
//!   nominal fire (plus its deterministic jitter). When it fires, the engine handles the
//!   due fire(s) and arms the next one. No task sleeps per job; nothing polls.
//! - **A job's state is one mutex** (`JobEntry::state`), never held across an
//!   `.await`: timer callbacks and run completions take it briefly, then spawn the
//!   async work (store writes, runs) as tracked tasks.
//! - **Generations**: every change that re-arms a job (update, pause, resume, remove)
//!   bumps its generation; a timer callback carrying an older generation does nothing,
//!   so a cancelled timer that raced its cancellation cannot fire a stale schedule.
//! - **Once per fire**: a run starts only after the coordinator granted its fire and the
//!   ledger accepted its record (unique on the fire); a fire refused by either does not
//!   run. After a restart the ledger's unfinished runs of this node are marked lost and
//!   catch-up starts from each job's fire mark, so no fire runs twice and no missed
//!   fire is dropped silently: it is run or counted missed by the misfire policy.
//! - **Never early**: a timer that fires before its deadline by the wall clock (the
//!   clock was stepped back) is re-armed, not run.

mod clock;
mod handler;
mod metrics;
mod run;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use tokio::sync::{Semaphore, broadcast};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use clock::{Clock, OffsetClock, SystemClock, TokioClock};
pub use handler::{HandlerError, HandlerResult};
pub use metrics::{DURATION_BUCKETS, HistogramSnapshot, LATENESS_BUCKETS, SchedulerMetrics};

use crate::coordinator::{Coordinator, LocalCoordinator};
use crate::job::{ActionSpec, JobId, JobSpec, RunId, RunRecord, RunState, SpecError};
use crate::policy::OverlapPolicy;
use crate::store::{JobStore, MemoryJobStore, Retention, StoreError};
use crate::timer::{DriverConfig, TimerHandle, TimerId};
use crate::trigger::Trigger;
use handler::Handler;
use metrics::Metrics;

/// Errors of the engine's control API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// No job has this id.
    #[error("no job `{0}`")]
    NotFound(JobId),
    /// A job with this id exists already (use update).
    #[error("job `{0}` exists already")]
    AlreadyExists(JobId),
    /// The spec is invalid.
    #[error("job `{id}`: {source}")]
    Spec {
        /// The job.
        id: JobId,
        /// What is wrong.
        #[source]
        source: SpecError,
    },
    /// The job store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The scheduler is shutting down or its timer driver stopped.
    #[error("the scheduler is shut down")]
    ShutDown,
    /// A backfill range is empty or reversed.
    #[error("backfill range is empty: {from} .. {to}")]
    EmptyRange {
        /// Start.
        from: Timestamp,
        /// End.
        to: Timestamp,
    },
}

/// Something that happened, for alerting hooks ([`Scheduler::subscribe`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SchedulerEvent {
    /// A run started its first attempt.
    Started {
        /// The run as recorded.
        run: RunRecord,
    },
    /// A run ended successfully.
    Finished {
        /// The run as recorded.
        run: RunRecord,
    },
    /// A run ended failed, timed out or cancelled.
    Failed {
        /// The run as recorded.
        run: RunRecord,
    },
    /// Fires were missed (misfire policy, or the catch-up window).
    Missed {
        /// The job.
        job_id: JobId,
        /// Their nominal instants (the oldest may be summarised by `count`).
        nominal: Vec<Timestamp>,
        /// How many.
        count: u64,
    },
    /// A fire was skipped by the overlap policy.
    Skipped {
        /// The job.
        job_id: JobId,
        /// The fire's nominal instant.
        nominal: Timestamp,
    },
    /// A run was found lost at start-up (its node died while it ran).
    Lost {
        /// The run as recorded now.
        run: RunRecord,
    },
    /// A job was paused after repeated failures.
    PausedAfterFailures {
        /// The job.
        job_id: JobId,
        /// Consecutive failed fires.
        failures: u32,
    },
    /// A fire ran a handler name that is not registered.
    HandlerMissing {
        /// The job.
        job_id: JobId,
        /// The missing name.
        handler: String,
    },
}

/// What [`Scheduler::trigger_now`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerOutcome {
    /// A run was started (it may first wait for cancelled runs, a pool permit).
    Started(RunId),
    /// The fire waits behind the running run.
    Buffered,
    /// The overlap policy skipped it.
    Skipped,
}

/// What [`Scheduler::backfill`] will do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackfillReport {
    /// Fires in the range that will run (one after another, in order).
    pub queued: usize,
    /// Fires in the range already in the ledger (not run again).
    pub already_recorded: usize,
}

/// What [`Scheduler::reconcile`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Jobs added.
    pub added: Vec<JobId>,
    /// Jobs whose definition changed.
    pub updated: Vec<JobId>,
    /// Jobs removed (running runs continue).
    pub removed: Vec<JobId>,
    /// Jobs left as they were.
    pub unchanged: Vec<JobId>,
}

/// A job as the engine sees it now.
#[derive(Debug, Clone, PartialEq)]
pub struct JobInfo {
    /// Its spec.
    pub spec: JobSpec,
    /// The next nominal fire armed, if any.
    pub next_fire: Option<Timestamp>,
    /// Runs going now.
    pub running: usize,
    /// Fires waiting behind them (buffer policies).
    pub buffered: usize,
    /// Fires handled so far (for `max_fires`).
    pub fires: u64,
    /// Consecutive failed fires.
    pub consecutive_failures: u32,
    /// For a `handler` job: the handler name when none is registered under it.
    pub missing_handler: Option<String>,
}

/// What [`Scheduler::shutdown`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Runs that ended on their own within the grace period.
    pub drained: bool,
    /// Runs still going at the deadline, then cancelled.
    pub cancelled: usize,
}

/// A run going on: enough to cancel it and to wait for it.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) run_id: RunId,
    /// Set once the run's fire is claimed and recorded. Overlap policies count only
    /// such runs: a fire still waiting for its claim (a cluster's takeover delay, an
    /// etcd election) does not make the next fire of the job skip or queue, or a node
    /// that waits would let a fire go by that no node tries.
    pub(crate) claimed: Arc<std::sync::atomic::AtomicBool>,
    pub(crate) cancel: CancellationToken,
    pub(crate) kill: CancellationToken,
    /// Cancelled when the run has ended.
    pub(crate) done: CancellationToken,
}

/// Runs and buffered fires of a job; allocated only while there are some.
#[derive(Debug, Default)]
pub(crate) struct Active {
    pub(crate) running: Vec<Slot>,
    pub(crate) buffered: VecDeque<Timestamp>,
}

impl Active {
    /// (claimed runs, buffered fires), for overlap decisions.
    pub(crate) fn overlap_counts(&self) -> (u32, u32) {
        let claimed = self
            .running
            .iter()
            .filter(|s| s.claimed.load(std::sync::atomic::Ordering::Acquire))
            .count();
        (
            u32::try_from(claimed).unwrap_or(u32::MAX),
            u32::try_from(self.buffered.len()).unwrap_or(u32::MAX),
        )
    }
}

#[derive(Debug)]
pub(crate) struct JobState {
    pub(crate) spec: Arc<JobSpec>,
    pub(crate) trigger: Arc<Trigger>,
    pub(crate) generation: u64,
    pub(crate) timer: Option<TimerId>,
    /// The next nominal fire armed, and the jitter added to it.
    pub(crate) next: Option<(Timestamp, Duration)>,
    /// Fires handled (run, buffered, skipped, missed).
    pub(crate) fired: u64,
    /// The latest nominal instant handled.
    pub(crate) last: Option<Timestamp>,
    /// When the job was paused (catch-up origin if it never fired).
    pub(crate) paused_at: Option<Timestamp>,
    pub(crate) failures: u32,
    pub(crate) removed: bool,
    pub(crate) active: Option<Box<Active>>,
    /// A fire mark to write (latest nominal, count): handed to the next run started
    /// while handling due fires (it writes the mark before claiming), else written by
    /// a task of its own.
    pub(crate) mark: Option<(Timestamp, u64)>,
}

/// A job in the engine's table.
#[derive(Debug)]
pub(crate) struct JobEntry {
    pub(crate) id: JobId,
    pub(crate) state: Mutex<JobState>,
}

impl JobEntry {
    pub(crate) fn lock(&self) -> MutexGuard<'_, JobState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub(crate) struct Inner {
    pub(crate) node_id: Arc<str>,
    pub(crate) store: Arc<dyn JobStore>,
    pub(crate) coordinator: Arc<dyn Coordinator>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) default_zone: TimeZone,
    pub(crate) timer: TimerHandle,
    pub(crate) handlers: RwLock<HashMap<String, Handler>>,
    pub(crate) jobs: RwLock<HashMap<JobId, Arc<JobEntry>>>,
    pub(crate) pools: Mutex<HashMap<String, Arc<Semaphore>>>,
    pub(crate) pool_sizes: HashMap<String, usize>,
    pub(crate) default_pool_size: usize,
    pub(crate) catch_up_limit: usize,
    pub(crate) retention: Option<Retention>,
    /// Runs finished, for pruning every [`PRUNE_EVERY`].
    pub(crate) finished: std::sync::atomic::AtomicU64,
    pub(crate) tracker: TaskTracker,
    pub(crate) stopping: CancellationToken,
    pub(crate) metrics: Metrics,
    pub(crate) events: broadcast::Sender<SchedulerEvent>,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scheduler")
            .field("node_id", &self.node_id)
            .field("store", &self.store)
            .field("coordinator", &self.coordinator)
            .finish_non_exhaustive()
    }
}

impl Inner {
    pub(crate) fn emit(&self, event: SchedulerEvent) {
        // No subscriber is fine.
        let _ = self.events.send(event);
    }

    /// True when someone listens: events (and the record clones in them) are only
    /// built then.
    pub(crate) fn listened(&self) -> bool {
        self.events.receiver_count() > 0
    }

    pub(crate) fn pool(&self, name: &str) -> Arc<Semaphore> {
        let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(pool) = pools.get(name) {
            return pool.clone();
        }
        pools
            .entry(name.to_owned())
            .or_insert_with(|| {
                let size = self
                    .pool_sizes
                    .get(name)
                    .copied()
                    .unwrap_or(self.default_pool_size);
                Arc::new(Semaphore::new(size.clamp(1, Semaphore::MAX_PERMITS)))
            })
            .clone()
    }

    /// Every job's entry (a snapshot of the table).
    pub(crate) fn entries(&self) -> Vec<Arc<JobEntry>> {
        self.jobs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    pub(crate) fn entry(&self, id: &JobId) -> Result<Arc<JobEntry>, EngineError> {
        self.jobs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
            .ok_or_else(|| EngineError::NotFound(id.clone()))
    }

    pub(crate) fn handler(&self, name: &str) -> Option<Handler> {
        self.handlers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    fn build_trigger(&self, spec: &JobSpec) -> Result<Trigger, EngineError> {
        let mut spec = spec.clone();
        if let crate::job::TriggerKindSpec::Cron { timezone, .. } = &mut spec.trigger.kind
            && timezone.is_empty()
        {
            *timezone = self.default_zone.iana_name().unwrap_or("UTC").to_owned();
        }
        spec.validate().map_err(|source| EngineError::Spec {
            id: spec.id.clone(),
            source,
        })
    }
}

/// With [`SchedulerBuilder::retention`], the ledger is pruned after this many finished runs.
pub const PRUNE_EVERY: u64 = 256;

/// Builds a [`Scheduler`].
#[derive(Debug)]
pub struct SchedulerBuilder {
    node_id: String,
    store: Option<Arc<dyn JobStore>>,
    coordinator: Option<Arc<dyn Coordinator>>,
    clock: Arc<dyn Clock>,
    default_zone: TimeZone,
    driver: DriverConfig,
    pool_sizes: HashMap<String, usize>,
    default_pool_size: usize,
    catch_up_limit: usize,
    retention: Option<Retention>,
}

impl Default for SchedulerBuilder {
    fn default() -> Self {
        Self {
            node_id: "local".to_owned(),
            store: None,
            coordinator: None,
            clock: Arc::new(SystemClock),
            default_zone: TimeZone::UTC,
            driver: DriverConfig::default(),
            pool_sizes: HashMap::new(),
            default_pool_size: 1024,
            catch_up_limit: 10_000,
            retention: None,
        }
    }
}

impl SchedulerBuilder {
    /// This node's id (default `local`); recorded with every run.
    #[must_use]
    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.node_id = id.into();
        self
    }

    /// The job store (default: a fresh [`MemoryJobStore`]).
    #[must_use]
    pub fn store(mut self, store: Arc<dyn JobStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// The coordinator (default: a [`LocalCoordinator`] for the node id).
    #[must_use]
    pub fn coordinator(mut self, coordinator: Arc<dyn Coordinator>) -> Self {
        self.coordinator = Some(coordinator);
        self
    }

    /// The wall clock (default [`SystemClock`]; tests use [`TokioClock`]).
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The zone of cron jobs whose spec leaves the zone empty (default UTC).
    #[must_use]
    pub fn default_timezone(mut self, zone: TimeZone) -> Self {
        self.default_zone = zone;
        self
    }

    /// The timer driver's settings (tick, fire-dispatch pool).
    #[must_use]
    pub fn driver(mut self, config: DriverConfig) -> Self {
        self.driver = config;
        self
    }

    /// Runs of jobs in the named pool `name` at once, across jobs (default for pools
    /// not named here: [`SchedulerBuilder::default_pool_size`]).
    #[must_use]
    pub fn pool(mut self, name: impl Into<String>, size: usize) -> Self {
        self.pool_sizes.insert(name.into(), size);
        self
    }

    /// The size of pools not configured with [`SchedulerBuilder::pool`] (default 1024).
    #[must_use]
    pub fn default_pool_size(mut self, size: usize) -> Self {
        self.default_pool_size = size;
        self
    }

    /// The most overdue fires listed per job at catch-up (default 10,000); older ones
    /// are counted missed.
    #[must_use]
    pub fn catch_up_limit(mut self, n: usize) -> Self {
        self.catch_up_limit = n.max(1);
        self
    }

    /// Prunes the ledger to `retention` at start-up and then after every
    /// [`PRUNE_EVERY`] finished runs (default: never; see [`Scheduler::prune`]).
    #[must_use]
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = Some(retention);
        self
    }

    /// Builds the scheduler and starts its timer driver. Jobs in the store are not
    /// loaded yet: register handlers, then call [`Scheduler::start`].
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn build(self) -> Scheduler {
        let (timer, _driver) = crate::timer::spawn(self.driver);
        let coordinator = self
            .coordinator
            .unwrap_or_else(|| Arc::new(LocalCoordinator::new(&self.node_id)));
        let (events, _) = broadcast::channel(1024);
        Scheduler {
            inner: Arc::new(Inner {
                node_id: Arc::from(self.node_id.as_str()),
                store: self
                    .store
                    .unwrap_or_else(|| Arc::new(MemoryJobStore::new())),
                coordinator,
                clock: self.clock,
                default_zone: self.default_zone,
                timer,
                handlers: RwLock::new(HashMap::new()),
                jobs: RwLock::new(HashMap::new()),
                pools: Mutex::new(HashMap::new()),
                pool_sizes: self.pool_sizes,
                default_pool_size: self.default_pool_size,
                catch_up_limit: self.catch_up_limit,
                retention: self.retention,
                finished: std::sync::atomic::AtomicU64::new(0),
                tracker: TaskTracker::new(),
                stopping: CancellationToken::new(),
                metrics: Metrics::default(),
                events,
            }),
        }
    }
}

/// The scheduler engine. Cheap to clone; clones control the same engine.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::time::Duration;
/// use sundial_scheduler::engine::{Scheduler, TokioClock};
/// use sundial_scheduler::job::{ActionSpec, JobSpec, TriggerSpec};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let start = "2024-03-09T12:00:00Z".parse()?;
/// let scheduler = Scheduler::builder()
///     .node_id("docs")
///     .clock(Arc::new(TokioClock::starting_at(start)))
///     .build();
/// let runs = Arc::new(AtomicU32::new(0));
/// let counter = runs.clone();
/// scheduler.register_async("report", move |ctx| {
///     let counter = counter.clone();
///     async move {
///         assert_eq!(ctx.attempt, 1);
///         counter.fetch_add(1, Ordering::SeqCst);
///         Ok(())
///     }
/// });
/// scheduler.start().await?;
/// // 02:30 every day in New York; 2024-03-10 is a spring-forward day.
/// let spec = JobSpec::new(
///     "report",
///     TriggerSpec::cron("30 2 * * *", "America/New_York"),
///     ActionSpec::handler("report"),
/// );
/// scheduler.add(spec).await?;
/// tokio::time::sleep(Duration::from_secs(3 * 86_400)).await;
/// assert_eq!(runs.load(Ordering::SeqCst), 3, "once a day, DST day included");
/// scheduler.shutdown(Duration::from_secs(1)).await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

impl Scheduler {
    /// A builder with defaults (node `local`, memory store, local coordinator, system
    /// clock).
    pub fn builder() -> SchedulerBuilder {
        SchedulerBuilder::default()
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// Registers (or replaces) an async handler under `name`.
    pub fn register_async<F, Fut>(&self, name: impl Into<String>, f: F)
    where
        F: Fn(crate::job::RunContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.register(name.into(), Handler::from_async(f));
    }

    /// Registers (or replaces) a blocking handler under `name`; it runs on tokio's
    /// blocking pool.
    pub fn register_blocking<F>(&self, name: impl Into<String>, f: F)
    where
        F: Fn(crate::job::RunContext) -> HandlerResult + Send + Sync + 'static,
    {
        self.register(name.into(), Handler::from_blocking(f));
    }

    fn register(&self, name: String, handler: Handler) {
        self.inner
            .handlers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name, handler);
    }

    /// Starts the engine on what the store holds: runs of this node left unfinished by
    /// a previous process are marked lost, then every stored job is armed, its missed
    /// fires handled by its misfire policy from its fire mark.
    ///
    /// # Errors
    ///
    /// The store's errors; a stored job whose spec no longer builds is skipped with
    /// a warning (and listed by nothing), not an error.
    pub async fn start(&self) -> Result<(), EngineError> {
        run::mark_lost_runs(&self.inner).await?;
        run::reap_lost_claims(&self.inner).await?;
        if let Some(retention) = self.inner.retention {
            self.inner
                .store
                .prune_runs(retention, self.inner.clock.now())
                .await?;
        }
        for spec in self.inner.store.load_jobs().await? {
            let id = spec.id.clone();
            match self.insert(spec).await {
                Ok(()) => {}
                Err(EngineError::AlreadyExists(_)) => {}
                Err(e) => tracing::warn!(job_id = %id, error = %e, "stored job not loaded"),
            }
        }
        Ok(())
    }

    /// Asks the coordinator for claims lost with their node ([`Coordinator::lost_runs`])
    /// and marks their runs `lost` in the ledger (a `Lost` event each). Called at
    /// [`Scheduler::start`]; a cluster daemon calls it when its coordinator reports a
    /// node gone (no polling here). Returns the runs marked.
    ///
    /// # Errors
    ///
    /// Store errors (a coordinator error is logged and yields nothing).
    pub async fn reap_lost_runs(&self) -> Result<Vec<RunRecord>, EngineError> {
        run::reap_lost_claims(&self.inner).await
    }

    /// Adds a job and saves it in the store. For a new job, fires start after now (a
    /// one-shot whose instant has passed follows the misfire policy); for a job the
    /// ledger knows, missed fires since its fire mark follow the misfire policy.
    ///
    /// # Errors
    ///
    /// [`EngineError::AlreadyExists`], [`EngineError::Spec`], store errors.
    pub async fn add(&self, spec: JobSpec) -> Result<(), EngineError> {
        if self.inner.stopping.is_cancelled() {
            return Err(EngineError::ShutDown);
        }
        self.inner.build_trigger(&spec)?;
        if self
            .inner
            .jobs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(&spec.id)
        {
            return Err(EngineError::AlreadyExists(spec.id));
        }
        self.inner.store.save_job(&spec).await?;
        self.insert(spec).await
    }

    async fn insert(&self, spec: JobSpec) -> Result<(), EngineError> {
        let trigger = self.inner.build_trigger(&spec)?;
        let mark = self.inner.store.fire_mark(&spec.id).await?;
        run::insert_job(&self.inner, spec, trigger, mark)
    }

    /// Replaces a job's definition. Its running runs are not disturbed (they finish
    /// with the old definition); the next fire is computed from now (no catch-up).
    /// The paused flag of `spec` applies.
    ///
    /// # Errors
    ///
    /// [`EngineError::NotFound`], [`EngineError::Spec`], store errors.
    pub async fn update(&self, spec: JobSpec) -> Result<(), EngineError> {
        let trigger = self.inner.build_trigger(&spec)?;
        let entry = self.inner.entry(&spec.id)?;
        self.inner.store.save_job(&spec).await?;
        run::replace_spec(&self.inner, &entry, spec, trigger);
        Ok(())
    }

    /// Removes a job and deletes it from the store. Running runs finish; buffered fires
    /// are dropped. Its runs stay in the ledger.
    ///
    /// # Errors
    ///
    /// [`EngineError::NotFound`], store errors.
    pub async fn remove(&self, id: &JobId) -> Result<(), EngineError> {
        let entry = self
            .inner
            .jobs
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id)
            .ok_or_else(|| EngineError::NotFound(id.clone()))?;
        run::retire(&self.inner, &entry);
        self.inner.store.delete_job(id).await?;
        Ok(())
    }

    /// Pauses a job: no fire until [`Scheduler::resume`]. Running runs continue.
    ///
    /// # Errors
    ///
    /// [`EngineError::NotFound`], store errors.
    pub async fn pause(&self, id: &JobId) -> Result<(), EngineError> {
        let entry = self.inner.entry(id)?;
        let spec = run::set_paused(&self.inner, &entry, true);
        if let Some(spec) = spec {
            self.inner.store.save_job(&spec).await?;
        }
        Ok(())
    }

    /// Resumes a paused job: fires missed while paused follow its misfire policy.
    ///
    /// # Errors
    ///
    /// [`EngineError::NotFound`], store errors.
    pub async fn resume(&self, id: &JobId) -> Result<(), EngineError> {
        let entry = self.inner.entry(id)?;
        let spec = run::set_paused(&self.inner, &entry, false);
        if let Some(spec) = spec {
            self.inner.store.save_job(&spec).await?;
        }
        Ok(())
    }

    /// Fires a job now (nominal instant = now), deciding overlap with `overlap` instead
    /// of the job's own policy when given (`Some(OverlapPolicy::Allow)` forces a run
    /// beside the running ones, up to the job's concurrency limit).
    ///
    /// # Errors
    ///
    /// [`EngineError::NotFound`], [`EngineError::ShutDown`].
    pub fn trigger_now(
        &self,
        id: &JobId,
        overlap: Option<OverlapPolicy>,
    ) -> Result<TriggerOutcome, EngineError> {
        if self.inner.stopping.is_cancelled() {
            return Err(EngineError::ShutDown);
        }
        let entry = self.inner.entry(id)?;
        Ok(run::trigger_now(&self.inner, &entry, overlap))
    }

    /// Runs the job's nominal fires in `[from, to]` that the ledger does not have, one
    /// after another, oldest first, in the background (at most the catch-up limit).
    ///
    /// # Errors
    ///
    /// [`EngineError::NotFound`], [`EngineError::EmptyRange`], store errors.
    pub async fn backfill(
        &self,
        id: &JobId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<BackfillReport, EngineError> {
        if to < from {
            return Err(EngineError::EmptyRange { from, to });
        }
        let entry = self.inner.entry(id)?;
        run::backfill(&self.inner, &entry, from, to).await
    }

    /// The next `n` nominal fires of a job (the armed one first).
    ///
    /// # Errors
    ///
    /// [`EngineError::NotFound`].
    pub fn upcoming(&self, id: &JobId, n: usize) -> Result<Vec<Timestamp>, EngineError> {
        let entry = self.inner.entry(id)?;
        Ok(run::upcoming(&entry, n))
    }

    /// One job's current view.
    ///
    /// # Errors
    ///
    /// [`EngineError::NotFound`].
    pub fn get(&self, id: &JobId) -> Result<JobInfo, EngineError> {
        let entry = self.inner.entry(id)?;
        Ok(run::info(&self.inner, &entry))
    }

    /// Every job, ordered by id.
    pub fn list(&self) -> Vec<JobInfo> {
        let entries = self.inner.entries();
        let mut infos: Vec<JobInfo> = entries.iter().map(|e| run::info(&self.inner, e)).collect();
        infos.sort_by(|a, b| a.spec.id.cmp(&b.spec.id));
        infos
    }

    /// Jobs whose handler name is not registered: `(job, handler name)`.
    pub fn missing_handlers(&self) -> Vec<(JobId, String)> {
        self.list()
            .into_iter()
            .filter_map(|i| i.missing_handler.map(|h| (i.spec.id, h)))
            .collect()
    }

    /// Makes the job table match `desired` (e.g. a reloaded `jobs.toml`): adds new
    /// ids, updates changed definitions (running runs undisturbed), removes ids not in
    /// `desired`. A job whose definition is unchanged (trigger anchors aside) keeps its
    /// timer, anchors and paused flag.
    ///
    /// # Errors
    ///
    /// The first error; changes before it stay applied. Validate first (every spec's
    /// [`JobSpec::validate`]) to make it all-or-nothing.
    pub async fn reconcile(&self, desired: Vec<JobSpec>) -> Result<ReconcileReport, EngineError> {
        for spec in &desired {
            self.inner.build_trigger(spec)?;
        }
        let mut report = ReconcileReport::default();
        let wanted: std::collections::HashSet<JobId> =
            desired.iter().map(|s| s.id.clone()).collect();
        let existing: Vec<JobId> = self
            .inner
            .jobs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        for id in existing {
            if !wanted.contains(&id) {
                self.remove(&id).await?;
                report.removed.push(id);
            }
        }
        for spec in desired {
            let id = spec.id.clone();
            match self.inner.entry(&id) {
                Err(_) => {
                    self.add(spec).await?;
                    report.added.push(id);
                }
                Ok(entry) => {
                    let current = entry.lock().spec.clone();
                    if current.same_definition(&spec) {
                        report.unchanged.push(id);
                    } else {
                        let spec = JobSpec {
                            paused: current.paused,
                            ..spec
                        };
                        self.update(spec).await?;
                        report.updated.push(id);
                    }
                }
            }
        }
        report.added.sort();
        report.updated.sort();
        report.removed.sort();
        report.unchanged.sort();
        Ok(report)
    }

    /// The newest `limit` runs of a job from the ledger.
    ///
    /// # Errors
    ///
    /// Store errors.
    pub async fn runs(&self, id: &JobId, limit: usize) -> Result<Vec<RunRecord>, EngineError> {
        Ok(self.inner.store.runs(id, limit).await?)
    }

    /// Prunes the ledger to `retention`; returns the runs deleted.
    ///
    /// # Errors
    ///
    /// Store errors.
    pub async fn prune(&self, retention: Retention) -> Result<u64, EngineError> {
        Ok(self
            .inner
            .store
            .prune_runs(retention, self.inner.clock.now())
            .await?)
    }

    /// Cancels (cooperatively) the running runs of a job; returns how many.
    ///
    /// # Errors
    ///
    /// [`EngineError::NotFound`].
    pub fn cancel_runs(&self, id: &JobId) -> Result<usize, EngineError> {
        let entry = self.inner.entry(id)?;
        let st = entry.lock();
        let slots = st.active.as_ref().map_or(&[][..], |a| &a.running[..]);
        for slot in slots {
            slot.cancel.cancel();
        }
        Ok(slots.len())
    }

    /// Cancels every running run of every job at once and kills their command process
    /// groups, without waiting; returns how many runs were stopped. For fail-stop: a
    /// cluster node that lost its session must not keep running fires that other
    /// nodes may now take (their completions would be fenced out anyway). Runs still
    /// waiting for their claim are left alone: they claim under the next session, or
    /// not at all.
    pub fn abort_runs(&self) -> usize {
        let entries = self.inner.entries();
        let mut stopped = 0;
        for entry in &entries {
            let st = entry.lock();
            if let Some(active) = &st.active {
                for slot in &active.running {
                    if slot.claimed.load(std::sync::atomic::Ordering::Acquire) {
                        slot.cancel.cancel();
                        slot.kill.cancel();
                        stopped += 1;
                    }
                }
            }
        }
        stopped
    }

    /// A snapshot of the metrics.
    pub fn metrics(&self) -> SchedulerMetrics {
        self.inner
            .metrics
            .snapshot(self.inner.timer.pool().metrics())
    }

    /// Events from now on (run started / finished / failed, missed, skipped, lost, …).
    /// A receiver that lags loses the oldest events (tokio broadcast semantics).
    pub fn subscribe(&self) -> broadcast::Receiver<SchedulerEvent> {
        self.inner.events.subscribe()
    }

    /// The run ids going now for a job.
    ///
    /// # Errors
    ///
    /// [`EngineError::NotFound`].
    pub fn running(&self, id: &JobId) -> Result<Vec<RunId>, EngineError> {
        let entry = self.inner.entry(id)?;
        let st = entry.lock();
        Ok(st
            .active
            .as_ref()
            .map(|a| a.running.iter().map(|s| s.run_id).collect())
            .unwrap_or_default())
    }

    /// Stops firing, waits up to `grace` for running runs, then cancels them (and, after
    /// another `grace`, kills command process groups) and waits for them to end.
    pub async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        let inner = &self.inner;
        inner.stopping.cancel();
        inner.timer.shutdown();
        inner.tracker.close();
        if tokio::time::timeout(grace, inner.tracker.wait())
            .await
            .is_ok()
        {
            return ShutdownReport {
                drained: true,
                cancelled: 0,
            };
        }
        let entries = inner.entries();
        let mut cancelled = 0;
        let mut kills = Vec::new();
        for entry in &entries {
            let st = entry.lock();
            if let Some(active) = &st.active {
                for slot in &active.running {
                    slot.cancel.cancel();
                    kills.push(slot.kill.clone());
                    cancelled += 1;
                }
            }
        }
        if tokio::time::timeout(grace, inner.tracker.wait())
            .await
            .is_err()
        {
            for kill in kills {
                kill.cancel();
            }
            inner.tracker.wait().await;
        }
        ShutdownReport {
            drained: false,
            cancelled,
        }
    }
}

/// The examples of `docs/scheduler.md`, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../../../docs/scheduler.md")]
struct SchedulerGuideDocTests;

/// The action name shown for a spec (for logs).
pub(crate) fn action_kind(action: &ActionSpec) -> &'static str {
    match action {
        ActionSpec::Handler { .. } => "handler",
        ActionSpec::Command(_) => "command",
        ActionSpec::Http(_) => "http",
    }
}

/// The final state's metric counter.
pub(crate) fn count_outcome(m: &Metrics, state: RunState) {
    use metrics::inc;
    match state {
        RunState::Succeeded => inc(&m.succeeded),
        RunState::Failed => inc(&m.failed),
        RunState::TimedOut => inc(&m.timed_out),
        RunState::Cancelled => inc(&m.cancelled),
        RunState::Lost => inc(&m.lost),
        RunState::Scheduled | RunState::Running => {}
    }
}
