//! Shared helpers of the engine's integration tests: instants, a scheduler on virtual
//! time, and a recorder of what handlers saw.

#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use sundial_scheduler::engine::{Clock, Scheduler, TokioClock};
use sundial_scheduler::job::{ActionSpec, JobSpec, RunContext, TriggerSpec};
use sundial_scheduler::store::MemoryJobStore;

pub(crate) fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

pub(crate) fn mins(n: u64) -> Duration {
    Duration::from_secs(60 * n)
}

/// A scheduler on tokio's (paused) clock, reading `start` now, on `store`; and its clock.
pub(crate) fn scheduler_at(
    start: &str,
    store: &MemoryJobStore,
    node: &str,
) -> (Scheduler, Arc<dyn Clock>) {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(ts(start)));
    let s = Scheduler::builder()
        .node_id(node)
        .store(Arc::new(store.clone()))
        .clock(clock.clone())
        .build();
    (s, clock)
}

/// What a handler saw: (nominal, started at, attempt).
#[derive(Clone, Default)]
pub(crate) struct Recorder {
    pub(crate) seen: Arc<Mutex<Vec<(Timestamp, Timestamp, u32)>>>,
}

impl Recorder {
    pub(crate) fn push(&self, ctx: &RunContext, now: Timestamp) {
        self.seen
            .lock()
            .expect("lock")
            .push((ctx.nominal, now, ctx.attempt));
    }

    pub(crate) fn nominals(&self) -> Vec<Timestamp> {
        self.seen
            .lock()
            .expect("lock")
            .iter()
            .map(|s| s.0)
            .collect()
    }

    pub(crate) fn all(&self) -> Vec<(Timestamp, Timestamp, u32)> {
        self.seen.lock().expect("lock").clone()
    }
}

/// Registers `name`: records each run, then sleeps `busy` (virtual) unless cancelled
/// (cooperative: returns an error when its cancellation token fires).
pub(crate) fn register_sleeper(
    s: &Scheduler,
    name: &str,
    clock: Arc<dyn Clock>,
    busy: Duration,
) -> Recorder {
    let rec = Recorder::default();
    let r = rec.clone();
    s.register_async(name, move |ctx| {
        let r = r.clone();
        let clock = clock.clone();
        async move {
            r.push(&ctx, clock.now());
            tokio::select! {
                () = tokio::time::sleep(busy) => Ok(()),
                () = ctx.cancel.cancelled() => Err(sundial_scheduler::engine::HandlerError::msg("cancelled")),
            }
        }
    });
    rec
}

/// A handler job spec.
pub(crate) fn handler_job(id: &str, trigger: TriggerSpec, handler: &str) -> JobSpec {
    JobSpec::new(id, trigger, ActionSpec::handler(handler))
}
