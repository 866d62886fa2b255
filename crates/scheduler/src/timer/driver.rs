//! The timer driver: one tokio task that owns the wheel.
//!
//! # Ground rules
//!
//! - Only the driver task touches the [`Wheel`]. Handles talk to it through an
//!   unbounded channel of small commands; a [`TimerId`] is allocated by the handle
//!   (an atomic counter), so scheduling never waits for the driver.
//! - The task sleeps until [`Wheel::next_wakeup`] or the next command, whichever comes
//!   first. With no timers it sleeps on the channel alone: no polling, no idle tick.
//! - Time comes only from `tokio::time::Instant` (monotonic) through a [`TickClock`];
//!   wall-clock jumps do not exist for it, and tokio's paused clock makes it virtual.
//! - Every expired timer becomes a pool [`Task`]; the driver never awaits a job.
//! - A [`Repeat::FixedRate`] timer is re-armed when it fires, from its *scheduled*
//!   instant (`scheduled + period`, skipping none), so lateness never accumulates. A
//!   [`Repeat::FixedDelay`] timer is re-armed by its run's completion hook, from the
//!   completion instant (or from the drop instant if the pool dropped the run).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sundial_wheel::{TimerKey, Wheel};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::clock::TickClock;
use super::pool::{Job, PoolConfig, Task, WorkerPool};

/// Identifies a timer scheduled through a [`TimerHandle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId(pub u64);

/// Whether and how a timer repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// Fire once.
    Once,
    /// Fire every `period` from the first scheduled instant: fire `n` is scheduled at
    /// `first + n × period` whatever the lateness or duration of earlier runs.
    FixedRate(Duration),
    /// Fire again `period` after the previous run completed.
    FixedDelay(Duration),
}

/// What a job learns about the fire that started it.
#[derive(Debug, Clone, Copy)]
pub struct FireContext {
    /// The timer.
    pub id: TimerId,
    /// The instant this fire was scheduled for (its nominal instant).
    pub scheduled: Instant,
    /// 0 for the first fire of the timer, then 1, 2, ….
    pub fire: u64,
}

/// Errors of the timer driver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The driver task has stopped (shut down, or its runtime is gone); permanent.
    #[error("the timer driver has stopped")]
    Stopped,
    /// A repeating timer was given a zero period.
    #[error("a repeating timer needs a period greater than zero")]
    ZeroPeriod,
}

/// Driver settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverConfig {
    /// Length of one wheel tick (default 1 ms; at least 1 µs).
    pub tick: Duration,
    /// The worker pool.
    pub pool: PoolConfig,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            tick: Duration::from_millis(1),
            pool: PoolConfig::default(),
        }
    }
}

enum Command {
    Schedule {
        id: TimerId,
        at: Instant,
        repeat: Repeat,
        job: Job,
    },
    Cancel(TimerId),
    /// A fixed-delay run finished: fire again at `at`.
    Rearm {
        id: TimerId,
        at: Instant,
    },
    Shutdown,
}

/// A handle to a running driver; cheap to clone. The driver stops when every handle
/// is dropped or [`TimerHandle::shutdown`] is called.
#[derive(Clone, Debug)]
pub struct TimerHandle {
    tx: mpsc::UnboundedSender<Command>,
    next_id: Arc<AtomicU64>,
    pool: WorkerPool,
}

impl TimerHandle {
    /// Schedules `job` at `at` (an instant in the past fires at once).
    ///
    /// # Errors
    ///
    /// [`DriverError::ZeroPeriod`] for a repeating timer with a zero period,
    /// [`DriverError::Stopped`] if the driver is gone.
    pub fn schedule(&self, at: Instant, repeat: Repeat, job: Job) -> Result<TimerId, DriverError> {
        if let Repeat::FixedRate(p) | Repeat::FixedDelay(p) = repeat
            && p.is_zero()
        {
            return Err(DriverError::ZeroPeriod);
        }
        let id = TimerId(self.next_id.fetch_add(1, Ordering::Relaxed));
        self.tx
            .send(Command::Schedule {
                id,
                at,
                repeat,
                job,
            })
            .map_err(|_| DriverError::Stopped)?;
        Ok(id)
    }

    /// Schedules `job` after `delay` from now.
    ///
    /// # Errors
    ///
    /// As [`TimerHandle::schedule`].
    pub fn schedule_after(
        &self,
        delay: Duration,
        repeat: Repeat,
        job: Job,
    ) -> Result<TimerId, DriverError> {
        let at = Instant::now().checked_add(delay).unwrap_or_else(far_future);
        self.schedule(at, repeat, job)
    }

    /// Cancels a timer: it will not fire again (a run already started is not stopped).
    /// Cancelling an unknown or finished timer does nothing.
    ///
    /// # Errors
    ///
    /// [`DriverError::Stopped`] if the driver is gone.
    pub fn cancel(&self, id: TimerId) -> Result<(), DriverError> {
        self.tx
            .send(Command::Cancel(id))
            .map_err(|_| DriverError::Stopped)
    }

    /// Asks the driver to stop; pending timers are dropped, running jobs continue.
    pub fn shutdown(&self) {
        let _ = self.tx.send(Command::Shutdown);
    }

    /// The worker pool (for its metrics).
    #[must_use]
    pub fn pool(&self) -> &WorkerPool {
        &self.pool
    }
}

fn far_future() -> Instant {
    // About 30 years: beyond any schedule, and representable on every platform.
    Instant::now() + Duration::from_secs(30 * 365 * 86_400)
}

/// Starts a driver task on the current tokio runtime.
///
/// # Panics
///
/// If called outside a tokio runtime (like `tokio::spawn`).
pub fn spawn(config: DriverConfig) -> (TimerHandle, JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let pool = WorkerPool::new(config.pool);
    let handle = TimerHandle {
        tx: tx.clone(),
        next_id: Arc::new(AtomicU64::new(1)),
        pool: pool.clone(),
    };
    let driver = Driver {
        clock: TickClock::new(Instant::now(), config.tick),
        wheel: Wheel::new(),
        timers: HashMap::new(),
        pool,
        rx,
        tx: tx.downgrade(),
        fired: Vec::new(),
    };
    (handle, tokio::spawn(driver.run()))
}

struct Registered {
    /// The wheel entry while armed; `None` while a fixed-delay run is in progress.
    key: Option<TimerKey>,
    scheduled: Instant,
    fire: u64,
    repeat: Repeat,
    job: Job,
}

struct Driver {
    clock: TickClock,
    wheel: Wheel<TimerId>,
    timers: HashMap<TimerId, Registered>,
    pool: WorkerPool,
    rx: mpsc::UnboundedReceiver<Command>,
    /// For completion hooks; weak so the driver does not keep itself alive.
    tx: mpsc::WeakUnboundedSender<Command>,
    fired: Vec<(TimerKey, TimerId)>,
}

impl Driver {
    async fn run(mut self) {
        let sleep = tokio::time::sleep_until(Instant::now());
        tokio::pin!(sleep);
        let mut batch = Vec::with_capacity(256);
        loop {
            self.expire();
            let wake = self.wheel.next_wakeup().and_then(|t| self.clock.instant(t));
            if let Some(at) = wake {
                sleep.as_mut().reset(at);
            }
            tokio::select! {
                biased;
                n = self.rx.recv_many(&mut batch, 256) => {
                    if n == 0 {
                        break; // every handle is gone
                    }
                    for cmd in batch.drain(..) {
                        if !self.apply(cmd) {
                            tracing::debug!("timer driver shut down");
                            return;
                        }
                    }
                }
                () = &mut sleep, if wake.is_some() => {}
            }
        }
    }

    /// Advances the wheel to the current tick and dispatches what expired.
    fn expire(&mut self) {
        let now = self.clock.tick_floor(Instant::now());
        self.wheel.advance_to(now, &mut self.fired);
        let mut fired = std::mem::take(&mut self.fired);
        for (_, id) in fired.drain(..) {
            self.fire(id);
        }
        self.fired = fired;
    }

    fn fire(&mut self, id: TimerId) {
        let Some(reg) = self.timers.get_mut(&id) else {
            return;
        };
        reg.key = None;
        let ctx = FireContext {
            id,
            scheduled: reg.scheduled,
            fire: reg.fire,
        };
        reg.fire += 1;
        let job = reg.job.clone();
        let mut on_done: Option<Box<dyn FnOnce() + Send>> = None;
        match reg.repeat {
            Repeat::Once => {
                self.timers.remove(&id);
            }
            Repeat::FixedRate(period) => {
                let next = reg.scheduled.checked_add(period).unwrap_or_else(far_future);
                reg.scheduled = next;
                let key = self.wheel.insert(self.clock.tick_ceil(next), id);
                reg.key = Some(key);
            }
            Repeat::FixedDelay(period) => {
                let tx = self.tx.clone();
                on_done = Some(Box::new(move || {
                    if let Some(tx) = tx.upgrade() {
                        let at = Instant::now()
                            .checked_add(period)
                            .unwrap_or_else(far_future);
                        let _ = tx.send(Command::Rearm { id, at });
                    }
                }));
            }
        }
        self.pool.dispatch(Task { job, ctx, on_done });
    }

    /// Applies a command; `false` means shut down.
    fn apply(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::Schedule {
                id,
                at,
                repeat,
                job,
            } => {
                let key = self.wheel.insert(self.clock.tick_ceil(at), id);
                self.timers.insert(
                    id,
                    Registered {
                        key: Some(key),
                        scheduled: at,
                        fire: 0,
                        repeat,
                        job,
                    },
                );
            }
            Command::Cancel(id) => {
                if let Some(reg) = self.timers.remove(&id)
                    && let Some(key) = reg.key
                {
                    self.wheel.cancel(key);
                }
            }
            Command::Rearm { id, at } => {
                if let Some(reg) = self.timers.get_mut(&id)
                    && reg.key.is_none()
                {
                    reg.scheduled = at;
                    reg.key = Some(self.wheel.insert(self.clock.tick_ceil(at), id));
                }
            }
            Command::Shutdown => return false,
        }
        true
    }
}
