//! The timer driver and its worker pool.
//!
//! - [`spawn`] starts a driver task that owns a [`Wheel`](sundial_wheel::Wheel) and
//!   returns a [`TimerHandle`]. Schedules and cancels reach the task through a channel;
//!   the task sleeps until the wheel's next wakeup (no polling, no busy tick), reads
//!   time only from tokio's monotonic clock, and hands every expired timer to the
//!   [`WorkerPool`] without ever waiting on a job.
//! - The pool runs async jobs as tokio tasks and blocking jobs on the blocking pool,
//!   each kind with its own concurrency limit; when all workers are busy the
//!   [`SaturationPolicy`] decides between a bounded queue and dropping (counted).
//! - Repeating timers are [`Repeat::FixedRate`] (re-armed from the scheduled time, so
//!   they never drift) or [`Repeat::FixedDelay`] (re-armed from the run's completion).
//! - Tests run on tokio's paused clock (`#[tokio::test(start_paused = true)]`):
//!   days of timers run in milliseconds, because the driver only ever sleeps on
//!   tokio's clock.

mod clock;
mod driver;
mod pool;

pub use clock::TickClock;
pub use driver::{DriverConfig, DriverError, FireContext, Repeat, TimerHandle, TimerId, spawn};
pub use pool::{Job, PoolConfig, PoolMetrics, SaturationPolicy, WorkerPool};
