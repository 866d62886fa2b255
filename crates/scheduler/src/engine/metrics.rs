//! The engine's counters and histograms, as plain atomics a daemon can export.
//!
//! Counters only grow; `running` and `pool_waiting` are gauges. Histograms have fixed
//! buckets (upper bounds in seconds) and keep cumulative counts, the Prometheus shape:
//! a daemon renders [`SchedulerMetrics`] without any metrics library in this crate.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::timer::PoolMetrics;

/// Bucket upper bounds of the lateness histogram, in seconds.
pub const LATENESS_BUCKETS: [f64; 14] = [
    0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

/// Bucket upper bounds of the run duration histogram, in seconds.
pub const DURATION_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0, 1800.0, 3600.0,
];

#[derive(Debug)]
pub(crate) struct Histogram {
    bounds: &'static [f64],
    /// One per bound, plus +Inf.
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub(crate) fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(self.bounds.len());
        for (i, bound) in self.bounds.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            buckets.push((*bound, cumulative));
        }
        let count = cumulative + self.counts[self.bounds.len()].load(Ordering::Relaxed);
        HistogramSnapshot {
            buckets,
            count,
            sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// A histogram's state: cumulative counts per upper bound (seconds), total, sum.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HistogramSnapshot {
    /// `(upper bound in seconds, observations ≤ bound)`, ascending.
    pub buckets: Vec<(f64, u64)>,
    /// All observations (the `+Inf` bucket).
    pub count: u64,
    /// Sum of observations, seconds.
    pub sum_seconds: f64,
}

#[derive(Debug)]
pub(crate) struct Metrics {
    pub(crate) fires: AtomicU64,
    pub(crate) started: AtomicU64,
    pub(crate) succeeded: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) timed_out: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    pub(crate) lost: AtomicU64,
    pub(crate) missed: AtomicU64,
    pub(crate) skipped: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) not_claimed: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) store_errors: AtomicU64,
    pub(crate) running: AtomicI64,
    pub(crate) pool_waiting: AtomicI64,
    pub(crate) lateness: Histogram,
    pub(crate) duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            fires: AtomicU64::new(0),
            started: AtomicU64::new(0),
            succeeded: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            missed: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            not_claimed: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            store_errors: AtomicU64::new(0),
            running: AtomicI64::new(0),
            pool_waiting: AtomicI64::new(0),
            lateness: Histogram::new(&LATENESS_BUCKETS),
            duration: Histogram::new(&DURATION_BUCKETS),
        }
    }
}

pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    pub(crate) fn snapshot(&self, timer_pool: PoolMetrics) -> SchedulerMetrics {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SchedulerMetrics {
            fires: l(&self.fires),
            runs_started: l(&self.started),
            runs_succeeded: l(&self.succeeded),
            runs_failed: l(&self.failed),
            runs_timed_out: l(&self.timed_out),
            runs_cancelled: l(&self.cancelled),
            runs_lost: l(&self.lost),
            missed: l(&self.missed),
            skipped: l(&self.skipped),
            retries: l(&self.retries),
            not_claimed: l(&self.not_claimed),
            duplicates: l(&self.duplicates),
            store_errors: l(&self.store_errors),
            running: self.running.load(Ordering::Relaxed).max(0).unsigned_abs(),
            pool_waiting: self
                .pool_waiting
                .load(Ordering::Relaxed)
                .max(0)
                .unsigned_abs(),
            lateness: self.lateness.snapshot(),
            duration: self.duration.snapshot(),
            timer_pool,
        }
    }
}

/// A snapshot of the engine's metrics ([`Scheduler::metrics`](super::Scheduler::metrics)).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SchedulerMetrics {
    /// Fires that came due (run, buffered, skipped or missed).
    pub fires: u64,
    /// Runs that started their first attempt.
    pub runs_started: u64,
    /// Runs that ended succeeded.
    pub runs_succeeded: u64,
    /// Runs that ended failed (every attempt).
    pub runs_failed: u64,
    /// Runs whose last attempt timed out.
    pub runs_timed_out: u64,
    /// Runs cancelled (overlap policy, shutdown).
    pub runs_cancelled: u64,
    /// Runs found lost (their node died while they ran).
    pub runs_lost: u64,
    /// Fires not run because they were missed (downtime, pause, late wake).
    pub missed: u64,
    /// Fires not run because of the overlap policy.
    pub skipped: u64,
    /// Retry attempts made.
    pub retries: u64,
    /// Fires whose claim was refused (already claimed).
    pub not_claimed: u64,
    /// Fires already in the ledger (not run again).
    pub duplicates: u64,
    /// Ledger writes that failed.
    pub store_errors: u64,
    /// Runs going now.
    pub running: u64,
    /// Runs waiting for a permit of their named pool (saturation).
    pub pool_waiting: u64,
    /// Nominal instant → start of the first attempt.
    pub lateness: HistogramSnapshot,
    /// Run durations (first attempt start → end).
    pub duration: HistogramSnapshot,
    /// The timer driver's pool (fires dispatched, queued, dropped).
    pub timer_pool: PoolMetrics,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let h = Histogram::new(&LATENESS_BUCKETS);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(100));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.buckets[0], (0.001, 1));
        assert_eq!(s.buckets[2], (0.005, 2));
        assert_eq!(s.buckets.last().map(|b| b.1), Some(2));
        assert!((s.sum_seconds - 100.0035).abs() < 1e-6);
    }
}
