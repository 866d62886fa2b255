//! The bounded worker pool that runs expired timers' jobs.
//!
//! # Ground rules
//!
//! - [`WorkerPool::dispatch`] never waits: it starts the job, queues it, or drops it,
//!   and returns. The timer driver calls it from its own task, so a slow or stuck job
//!   can delay other jobs but never the timer.
//! - Async jobs and blocking jobs have separate *lanes*, each with its own worker limit
//!   and queue: blocking jobs run on tokio's blocking pool (`spawn_blocking`), async
//!   jobs inline in a worker task. A panicking job is counted; its worker's guard
//!   releases the permit and hands the queue to a fresh worker.
//! - A worker owns a permit of its lane's semaphore while it runs jobs; after its last
//!   job it releases the permit and then looks at the queue once more, so a job queued
//!   in between is never stranded.
//! - A dropped or finished job always calls its completion hook (fixed-delay timers
//!   re-arm from it), so no timer silently stops because its run was dropped.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::driver::FireContext;

type AsyncFn = dyn Fn(FireContext) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync;
type BlockingFn = dyn Fn(FireContext) + Send + Sync;

/// What a timer runs when it fires. Cheap to clone (an `Arc`).
#[derive(Clone)]
pub enum Job {
    /// An async function, run as a tokio task.
    Async(Arc<AsyncFn>),
    /// A blocking function, run on tokio's blocking pool.
    Blocking(Arc<BlockingFn>),
}

impl Job {
    /// An async job from a closure returning a future.
    pub fn from_async<F, Fut>(f: F) -> Self
    where
        F: Fn(FireContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self::Async(Arc::new(move |ctx| Box::pin(f(ctx))))
    }

    /// A blocking job from a closure.
    pub fn from_blocking<F>(f: F) -> Self
    where
        F: Fn(FireContext) + Send + Sync + 'static,
    {
        Self::Blocking(Arc::new(f))
    }

    fn is_blocking(&self) -> bool {
        matches!(self, Self::Blocking(_))
    }
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Async(_) => "Job::Async",
            Self::Blocking(_) => "Job::Blocking",
        })
    }
}

/// What happens to a job that expires while every worker of its lane is busy.
///
/// There is deliberately no "wait" policy: the timer driver must never block on a
/// job. "Wait for a free worker" is `QueueUpTo` with a queue as deep as you can
/// afford.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaturationPolicy {
    /// Queue up to this many jobs per lane (first in, first out); drop beyond that.
    QueueUpTo(usize),
    /// Drop the job at once, counting it in [`PoolMetrics::dropped`].
    Drop,
}

/// Worker pool sizing and policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Maximum async jobs running at once (at least 1).
    pub async_workers: usize,
    /// Maximum blocking jobs running at once (at least 1).
    pub blocking_workers: usize,
    /// Policy when a lane is saturated.
    pub saturation: SaturationPolicy,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            async_workers: 256,
            blocking_workers: 16,
            saturation: SaturationPolicy::QueueUpTo(10_000),
        }
    }
}

/// Counters of a pool (monotonic, read with [`WorkerPool::metrics`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolMetrics {
    /// Jobs handed to the pool.
    pub dispatched: u64,
    /// Jobs that had to wait in a queue.
    pub queued: u64,
    /// Jobs dropped by the saturation policy.
    pub dropped: u64,
    /// Jobs that finished (including those that panicked).
    pub completed: u64,
    /// Jobs that panicked.
    pub panicked: u64,
}

#[derive(Debug, Default)]
struct Counters {
    dispatched: AtomicU64,
    queued: AtomicU64,
    dropped: AtomicU64,
    completed: AtomicU64,
    panicked: AtomicU64,
}

/// A job ready to run: the job, its context and a completion hook.
pub(crate) struct Task {
    pub(crate) job: Job,
    pub(crate) ctx: FireContext,
    pub(crate) on_done: Option<Box<dyn FnOnce() + Send>>,
}

impl Task {
    /// Runs the completion hook (for a dropped task).
    fn done(&mut self) {
        if let Some(f) = self.on_done.take() {
            f();
        }
    }
}

struct Lane {
    permits: Arc<Semaphore>,
    queue: Mutex<VecDeque<Task>>,
    limit: usize,
}

struct Shared {
    lanes: [Lane; 2],
    counters: Counters,
}

/// A bounded pool of workers; cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct WorkerPool {
    shared: Arc<Shared>,
}

impl fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerPool")
            .field("metrics", &self.metrics())
            .finish_non_exhaustive()
    }
}

/// How [`WorkerPool::dispatch`] disposed of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dispatch {
    Started,
    Queued,
    Dropped,
}

impl WorkerPool {
    /// A pool with `config` (worker counts below 1 are raised to 1).
    #[must_use]
    pub fn new(config: PoolConfig) -> Self {
        let limit = match config.saturation {
            SaturationPolicy::QueueUpTo(n) => n,
            SaturationPolicy::Drop => 0,
        };
        let lane = |workers: usize| Lane {
            permits: Arc::new(Semaphore::new(workers.max(1))),
            queue: Mutex::new(VecDeque::new()),
            limit,
        };
        Self {
            shared: Arc::new(Shared {
                lanes: [lane(config.async_workers), lane(config.blocking_workers)],
                counters: Counters::default(),
            }),
        }
    }

    /// A snapshot of the counters.
    #[must_use]
    pub fn metrics(&self) -> PoolMetrics {
        let c = &self.shared.counters;
        PoolMetrics {
            dispatched: c.dispatched.load(Ordering::Relaxed),
            queued: c.queued.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            completed: c.completed.load(Ordering::Relaxed),
            panicked: c.panicked.load(Ordering::Relaxed),
        }
    }

    /// Starts, queues or drops `task` without waiting. Must run inside a tokio runtime.
    pub(crate) fn dispatch(&self, mut task: Task) -> Dispatch {
        let shared = &self.shared;
        shared.counters.dispatched.fetch_add(1, Ordering::Relaxed);
        let lane_no = usize::from(task.job.is_blocking());
        let lane = &shared.lanes[lane_no];
        if let Ok(permit) = lane.permits.clone().try_acquire_owned() {
            self.spawn_worker(lane_no, permit, task);
            return Dispatch::Started;
        }
        {
            let mut queue = lane.queue.lock().unwrap_or_else(PoisonError::into_inner);
            if queue.len() >= lane.limit {
                drop(queue);
                shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(timer = task.ctx.id.0, "worker pool saturated: job dropped");
                task.done();
                return Dispatch::Dropped;
            }
            queue.push_back(task);
        }
        shared.counters.queued.fetch_add(1, Ordering::Relaxed);
        // A worker may have released its permit after our failed acquire.
        self.kick(lane_no);
        Dispatch::Queued
    }

    /// Starts a worker for the lane's queue if a permit is free.
    fn kick(&self, lane_no: usize) {
        let lane = &self.shared.lanes[lane_no];
        if let Ok(permit) = lane.permits.clone().try_acquire_owned() {
            let next = lane
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop_front();
            match next {
                Some(task) => self.spawn_worker(lane_no, permit, task),
                None => drop(permit),
            }
        }
    }

    fn spawn_worker(&self, lane_no: usize, permit: OwnedSemaphorePermit, first: Task) {
        let mut guard = WorkerGuard {
            pool: self.clone(),
            lane_no,
            permit: Some(permit),
            on_done: None,
        };
        tokio::spawn(async move {
            let mut task = first;
            loop {
                guard.on_done = task.on_done.take();
                guard.pool.run(task.job, task.ctx).await;
                guard
                    .pool
                    .shared
                    .counters
                    .completed
                    .fetch_add(1, Ordering::Relaxed);
                if let Some(f) = guard.on_done.take() {
                    f();
                }
                let next = guard.pool.shared.lanes[lane_no]
                    .queue
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .pop_front();
                match next {
                    Some(t) => task = t,
                    None => break,
                }
            }
            // Dropping the guard releases the permit and re-checks the queue.
        });
    }

    /// Runs one job to completion. An async job runs inline in the worker task (a
    /// panic unwinds into the [`WorkerGuard`]); a blocking job on the blocking pool.
    async fn run(&self, job: Job, ctx: FireContext) {
        match job {
            Job::Async(f) => f(ctx).await,
            Job::Blocking(f) => {
                if let Err(err) = tokio::task::spawn_blocking(move || f(ctx)).await {
                    self.shared
                        .counters
                        .panicked
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::error!(timer = ctx.id.0, error = %err, "blocking timer job failed");
                }
            }
        }
    }
}

/// Owned by a worker task: on exit, normal or by a panicking job, it counts the
/// panic, runs the pending completion hook, releases the permit and lets another
/// worker take over the queue.
struct WorkerGuard {
    pool: WorkerPool,
    lane_no: usize,
    permit: Option<OwnedSemaphorePermit>,
    on_done: Option<Box<dyn FnOnce() + Send>>,
}

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let counters = &self.pool.shared.counters;
            counters.panicked.fetch_add(1, Ordering::Relaxed);
            counters.completed.fetch_add(1, Ordering::Relaxed);
            tracing::error!("async timer job panicked");
        }
        if let Some(f) = self.on_done.take() {
            f();
        }
        drop(self.permit.take());
        self.pool.kick(self.lane_no);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timer::TimerId;
    use tokio::sync::Notify;
    use tokio::time::Instant;

    fn task(job: Job) -> Task {
        let now = Instant::now();
        Task {
            job,
            ctx: FireContext {
                id: TimerId(1),
                scheduled: now,
                fire: 0,
            },
            on_done: None,
        }
    }

    #[tokio::test]
    async fn saturation_queues_then_drops() {
        let pool = WorkerPool::new(PoolConfig {
            async_workers: 1,
            blocking_workers: 1,
            saturation: SaturationPolicy::QueueUpTo(1),
        });
        let gate = Arc::new(Notify::new());
        let ran = Arc::new(AtomicU64::new(0));
        let job = {
            let (gate, ran) = (gate.clone(), ran.clone());
            Job::from_async(move |_| {
                let (gate, ran) = (gate.clone(), ran.clone());
                async move {
                    gate.notified().await;
                    ran.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        assert_eq!(pool.dispatch(task(job.clone())), Dispatch::Started);
        assert_eq!(pool.dispatch(task(job.clone())), Dispatch::Queued);
        assert_eq!(pool.dispatch(task(job.clone())), Dispatch::Dropped);
        while ran.load(Ordering::SeqCst) < 2 {
            gate.notify_one();
            tokio::task::yield_now().await;
        }
        let m = pool.metrics();
        assert_eq!((m.dispatched, m.queued, m.dropped), (3, 1, 1));
    }

    #[tokio::test]
    async fn drop_policy_runs_the_completion_hook() {
        let pool = WorkerPool::new(PoolConfig {
            async_workers: 1,
            blocking_workers: 1,
            saturation: SaturationPolicy::Drop,
        });
        let gate = Arc::new(Notify::new());
        let g = gate.clone();
        let slow = Job::from_async(move |_| {
            let g = g.clone();
            async move { g.notified().await }
        });
        assert_eq!(pool.dispatch(task(slow.clone())), Dispatch::Started);
        let hooked = Arc::new(AtomicU64::new(0));
        let h = hooked.clone();
        let mut t = task(slow);
        t.on_done = Some(Box::new(move || {
            h.fetch_add(1, Ordering::SeqCst);
        }));
        assert_eq!(pool.dispatch(t), Dispatch::Dropped);
        assert_eq!(hooked.load(Ordering::SeqCst), 1);
        gate.notify_one();
    }

    #[tokio::test]
    async fn panicking_jobs_are_counted_and_workers_survive() {
        let pool = WorkerPool::new(PoolConfig {
            async_workers: 1,
            blocking_workers: 1,
            saturation: SaturationPolicy::QueueUpTo(8),
        });
        let boom = Job::from_blocking(|_| panic!("job panics on purpose"));
        let async_boom = Job::from_async(|_| async { panic!("async job panics on purpose") });
        let ok = Arc::new(AtomicU64::new(0));
        let o = ok.clone();
        let fine = Job::from_blocking(move |_| {
            o.fetch_add(1, Ordering::SeqCst);
        });
        let o = ok.clone();
        let async_fine = Job::from_async(move |_| {
            o.fetch_add(1, Ordering::SeqCst);
            async {}
        });
        pool.dispatch(task(boom));
        pool.dispatch(task(fine.clone()));
        pool.dispatch(task(fine));
        pool.dispatch(task(async_boom));
        pool.dispatch(task(async_fine.clone()));
        pool.dispatch(task(async_fine));
        while pool.metrics().completed < 6 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert_eq!(pool.metrics().panicked, 2);
        assert_eq!(ok.load(Ordering::SeqCst), 4);
    }
}
