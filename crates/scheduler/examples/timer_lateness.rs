//! End-to-end lateness of the timer driver on the real clock (issue 4's benchmark).
//!
//! 10^6 timers stay pending (one hour or more ahead) while 5 × 10^5 more expire at
//! 10^5 per second over five seconds, at instants with sub-millisecond parts. Each job
//! records the lateness from its scheduled instant to the moment it starts on the
//! worker pool; the example prints p50 / p99 / p99.9 / max.
//!
//! Run: `cargo run --release -p sundial-scheduler --example timer_lateness`
//! (`-- --pending N --per-second R --seconds S` to change the load).

#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sundial_scheduler::timer::{DriverConfig, Job, PoolConfig, Repeat, SaturationPolicy, spawn};
use tokio::time::Instant;

/// Lateness histogram: 10 µs buckets up to 1 s, then one overflow bucket.
struct Histogram {
    buckets: Vec<AtomicU64>,
    max_ns: AtomicU64,
}

const BUCKET_NS: u64 = 10_000;
const BUCKETS: usize = 100_000;

impl Histogram {
    fn new() -> Self {
        Self {
            buckets: (0..=BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max_ns: AtomicU64::new(0),
        }
    }
    fn record(&self, late: Duration) {
        let ns = u64::try_from(late.as_nanos()).unwrap_or(u64::MAX);
        let i = usize::try_from(ns / BUCKET_NS)
            .unwrap_or(BUCKETS)
            .min(BUCKETS);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.max_ns.fetch_max(ns, Ordering::Relaxed);
    }
    fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }
    /// Upper bound of the bucket holding quantile `q`, in µs.
    fn quantile_us(&self, q: f64) -> f64 {
        let total = self.count();
        let want = ((total as f64) * q).ceil() as u64;
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= want.max(1) {
                return ((i as u64 + 1) * BUCKET_NS) as f64 / 1_000.0;
            }
        }
        f64::INFINITY
    }
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pending = arg("--pending", 1_000_000);
    let per_second = arg("--per-second", 100_000);
    let seconds = arg("--seconds", 5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let (timers, _driver) = spawn(DriverConfig {
            pool: PoolConfig {
                async_workers: 256,
                blocking_workers: 16,
                saturation: SaturationPolicy::QueueUpTo(1_000_000),
            },
            ..DriverConfig::default()
        });
        let hist = Arc::new(Histogram::new());
        let job = {
            let hist = hist.clone();
            Job::from_async(move |ctx| {
                let late = Instant::now().saturating_duration_since(ctx.scheduled);
                hist.record(late);
                async {}
            })
        };
        let idle = Job::from_blocking(|_| {});
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut rand = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let t0 = Instant::now();
        for _ in 0..pending {
            let at =
                t0 + Duration::from_secs(3_600) + Duration::from_nanos(rand() % 3_600_000_000_000);
            timers.schedule(at, Repeat::Once, idle.clone())?;
        }
        let expiring = per_second * seconds;
        // Expiry starts after the bulk load has certainly been absorbed by the driver
        // (on a loaded 2-core machine that takes a few seconds): we measure the steady
        // state with 10^6 pending, not the initial load.
        let start = t0 + Duration::from_secs(6);
        let span_ns = seconds * 1_000_000_000;
        for _ in 0..expiring {
            let at = start + Duration::from_nanos(rand() % span_ns);
            timers.schedule(at, Repeat::Once, job.clone())?;
        }
        let scheduled_in = t0.elapsed();
        tokio::time::sleep_until(start + Duration::from_secs(seconds) + Duration::from_millis(500))
            .await;
        let m = timers.pool().metrics();
        println!(
            "driver lateness: {pending} pending, {per_second}/s expiring for {seconds} s \
             (scheduling took {:.0} ms)",
            scheduled_in.as_secs_f64() * 1e3
        );
        println!(
            "fired {} of {expiring}; dropped {}; lateness deadline -> job start: \
             p50 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs, max {:.0} µs",
            hist.count(),
            m.dropped,
            hist.quantile_us(0.5),
            hist.quantile_us(0.99),
            hist.quantile_us(0.999),
            hist.max_ns.load(Ordering::Relaxed) as f64 / 1_000.0
        );
        timers.shutdown();
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}
