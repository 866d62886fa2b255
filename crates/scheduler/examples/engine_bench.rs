//! The scheduler engine's benchmark, with `tokio-cron-scheduler` on the same workload in
//! the same run.
//!
//! Run with `cargo run --release -p sundial-scheduler --example engine_bench -- [--secs 60]
//! [--jobs 100000] [--active 60000] [--oneshots 1000000] [--peer-oneshots 100000]`.
//!
//! Each phase runs in a fresh child process (this binary with `--phase NAME`), so its
//! resident-memory delta is its own; the parent prints a Markdown table.
//!
//! - `sundial-cron` / `tcs-cron`: register `--jobs` cron jobs (`--active` of them fire
//!   once a minute at second `i % 60` — 1,000 fires/s for 60,000 — the rest once a year),
//!   then record the lateness of every fire (nominal instant → handler start) for
//!   `--secs` seconds.
//! - `sundial-oneshot` / `sundial-oneshot-nostore` / `timer-oneshot` / `tcs-oneshot`:
//!   register pending one-shot jobs due in a day and report bytes per job.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jiff::Timestamp;
use sundial_scheduler::engine::Scheduler;
use sundial_scheduler::job::{ActionSpec, Fire, JobId, JobSpec, RunId, RunRecord, TriggerSpec};
use sundial_scheduler::store::{FireMark, JobStore, Retention, StoreError};
use sundial_scheduler::timer::{DriverConfig, Job, Repeat};

#[derive(Debug, Clone)]
struct Args {
    phase: Option<String>,
    secs: u64,
    jobs: usize,
    active: usize,
    oneshots: usize,
    peer_oneshots: usize,
}

fn args() -> Args {
    let mut a = Args {
        phase: None,
        secs: 60,
        jobs: 100_000,
        active: 60_000,
        oneshots: 1_000_000,
        peer_oneshots: 100_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_default();
        match flag.as_str() {
            "--phase" => a.phase = Some(value()),
            "--secs" => a.secs = value().parse().unwrap_or(a.secs),
            "--jobs" => a.jobs = value().parse().unwrap_or(a.jobs),
            "--active" => a.active = value().parse().unwrap_or(a.active),
            "--oneshots" => a.oneshots = value().parse().unwrap_or(a.oneshots),
            "--peer-oneshots" => a.peer_oneshots = value().parse().unwrap_or(a.peer_oneshots),
            other => eprintln!("ignoring unknown argument {other}"),
        }
    }
    a
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Lateness samples in microseconds, recorded only while `on`.
#[derive(Default)]
struct Samples {
    on: AtomicBool,
    micros: Mutex<Vec<u64>>,
    count: AtomicU64,
}

impl Samples {
    fn record(&self, late: jiff::SignedDuration) {
        if self.on.load(Ordering::Relaxed) {
            let us = u64::try_from(late.as_micros().max(0)).unwrap_or(u64::MAX);
            self.micros.lock().expect("samples").push(us);
            self.count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `(count, p50, p99, max)` in microseconds.
    fn summary(&self) -> (usize, u64, u64, u64) {
        let mut v = self.micros.lock().expect("samples").clone();
        v.sort_unstable();
        if v.is_empty() {
            return (0, 0, 0, 0);
        }
        let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
        (v.len(), q(0.5), q(0.99), *v.last().unwrap_or(&0))
    }
}

/// The cron expression of job `i`: active ones fire at second `i % 60` of every minute.
fn expr(i: usize, active: usize) -> String {
    if i < active {
        format!("{} * * * * *", i % 60)
    } else {
        "0 0 3 1 1 *".to_owned()
    }
}

/// Waits for the next whole second, records for `secs`, prints the result line.
async fn measure(samples: &Samples, secs: u64) -> String {
    let now = Timestamp::now();
    let frac = now.subsec_nanosecond();
    tokio::time::sleep(Duration::from_nanos(
        1_000_000_000 - frac as u64 + 100_000_000,
    ))
    .await;
    let load_before = loadavg();
    samples.on.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(secs)).await;
    samples.on.store(false, Ordering::SeqCst);
    let (n, p50, p99, max) = samples.summary();
    format!(
        "fires={n} fires_per_s={:.0} p50_us={p50} p99_us={p99} max_us={max} load_before=\"{load_before}\" load_after=\"{}\"",
        n as f64 / secs as f64,
        loadavg()
    )
}

async fn sundial_cron(a: &Args) -> String {
    let s = Scheduler::builder().node_id("bench").build();
    let samples = Arc::new(Samples::default());
    let smp = samples.clone();
    s.register_async("tick", move |ctx| {
        let smp = smp.clone();
        async move {
            smp.record(Timestamp::now().duration_since(ctx.nominal));
            Ok(())
        }
    });
    s.start().await.expect("start");
    let rss0 = rss_bytes();
    let t0 = Instant::now();
    for i in 0..a.jobs {
        let spec = JobSpec::new(
            format!("job-{i}").as_str(),
            TriggerSpec::cron(expr(i, a.active), "UTC"),
            ActionSpec::handler("tick"),
        );
        s.add(spec).await.expect("add");
    }
    let reg = t0.elapsed();
    let rss1 = rss_bytes();
    let line = measure(&samples, a.secs).await;
    let m = s.metrics();
    s.shutdown(Duration::from_secs(1)).await;
    format!(
        "registered={} reg_ms={} jobs_per_s={:.0} bytes_per_job={} {line} skipped={} timer_dropped={}",
        a.jobs,
        reg.as_millis(),
        a.jobs as f64 / reg.as_secs_f64(),
        (rss1.saturating_sub(rss0)) / a.jobs as u64,
        m.skipped,
        m.timer_pool.dropped,
    )
}

/// A store that keeps nothing: the engine's own memory, as with a database store whose
/// specs and ledger live on disk.
#[derive(Debug)]
struct NullStore;

#[async_trait]
impl JobStore for NullStore {
    async fn save_job(&self, _: &JobSpec) -> Result<(), StoreError> {
        Ok(())
    }
    async fn load_jobs(&self) -> Result<Vec<JobSpec>, StoreError> {
        Ok(Vec::new())
    }
    async fn delete_job(&self, _: &JobId) -> Result<bool, StoreError> {
        Ok(false)
    }
    async fn insert_run(&self, _: &RunRecord) -> Result<(), StoreError> {
        Ok(())
    }
    async fn update_run(&self, _: &RunRecord) -> Result<(), StoreError> {
        Ok(())
    }
    async fn get_run(&self, _: RunId) -> Result<Option<RunRecord>, StoreError> {
        Ok(None)
    }
    async fn was_recorded(&self, _: &Fire) -> Result<bool, StoreError> {
        Ok(false)
    }
    async fn runs(&self, _: &JobId, _: usize) -> Result<Vec<RunRecord>, StoreError> {
        Ok(Vec::new())
    }
    async fn unfinished_runs(&self, _: &str) -> Result<Vec<RunRecord>, StoreError> {
        Ok(Vec::new())
    }
    async fn note_fires(&self, _: &JobId, _: Timestamp, _: u64) -> Result<(), StoreError> {
        Ok(())
    }
    async fn fire_mark(&self, _: &JobId) -> Result<Option<FireMark>, StoreError> {
        Ok(None)
    }
    async fn prune_runs(&self, _: Retention, _: Timestamp) -> Result<u64, StoreError> {
        Ok(0)
    }
}

async fn sundial_oneshot(a: &Args, null_store: bool) -> String {
    let mut b = Scheduler::builder().node_id("bench");
    if null_store {
        b = b.store(Arc::new(NullStore));
    }
    let s = b.build();
    s.register_async("tick", |_ctx| async { Ok(()) });
    s.start().await.expect("start");
    let at = Timestamp::now() + jiff::SignedDuration::from_hours(24);
    let rss0 = rss_bytes();
    let t0 = Instant::now();
    for i in 0..a.oneshots {
        let spec = JobSpec::new(
            format!("o-{i}").as_str(),
            TriggerSpec::at(at),
            ActionSpec::handler("tick"),
        );
        s.add(spec).await.expect("add");
    }
    let reg = t0.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await; // the driver drains its queue
    let rss1 = rss_bytes();
    format!(
        "registered={} reg_ms={} jobs_per_s={:.0} bytes_per_job={}",
        a.oneshots,
        reg.as_millis(),
        a.oneshots as f64 / reg.as_secs_f64(),
        (rss1.saturating_sub(rss0)) / a.oneshots as u64
    )
}

async fn timer_oneshot(a: &Args) -> String {
    let (timer, _driver) = sundial_scheduler::timer::spawn(DriverConfig::default());
    let job = Job::from_async(|_| async {});
    let at = tokio::time::Instant::now() + Duration::from_secs(86_400);
    let rss0 = rss_bytes();
    let t0 = Instant::now();
    for _ in 0..a.oneshots {
        timer
            .schedule(at, Repeat::Once, job.clone())
            .expect("schedule");
    }
    let reg = t0.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss1 = rss_bytes();
    format!(
        "registered={} reg_ms={} jobs_per_s={:.0} bytes_per_job={}",
        a.oneshots,
        reg.as_millis(),
        a.oneshots as f64 / reg.as_secs_f64(),
        (rss1.saturating_sub(rss0)) / a.oneshots as u64
    )
}

async fn tcs_cron(a: &Args) -> String {
    use tokio_cron_scheduler::{Job as TJob, JobScheduler};
    let sched = JobScheduler::new().await.expect("tcs");
    let samples = Arc::new(Samples::default());
    let rss0 = rss_bytes();
    let t0 = Instant::now();
    for i in 0..a.jobs {
        let smp = samples.clone();
        let second = (i % 60) as i64;
        let job = TJob::new_async(expr(i, a.active).as_str(), move |_id, _l| {
            let smp = smp.clone();
            Box::pin(async move {
                // The nominal fire: the latest instant at or before now whose second is
                // this job's.
                let now = Timestamp::now();
                let s = now.as_second();
                let back = (s - second).rem_euclid(60);
                let nominal = Timestamp::from_second(s - back).expect("in range");
                smp.record(now.duration_since(nominal));
            })
        })
        .expect("job");
        sched.add(job).await.expect("add");
    }
    let reg = t0.elapsed();
    let rss1 = rss_bytes();
    sched.start().await.expect("start");
    let line = measure(&samples, a.secs).await;
    format!(
        "registered={} reg_ms={} jobs_per_s={:.0} bytes_per_job={} {line}",
        a.jobs,
        reg.as_millis(),
        a.jobs as f64 / reg.as_secs_f64(),
        (rss1.saturating_sub(rss0)) / a.jobs as u64,
    )
}

async fn tcs_oneshot(a: &Args) -> String {
    use tokio_cron_scheduler::{Job as TJob, JobScheduler};
    let sched = JobScheduler::new().await.expect("tcs");
    let rss0 = rss_bytes();
    let t0 = Instant::now();
    for _ in 0..a.peer_oneshots {
        let job =
            TJob::new_one_shot_async(Duration::from_secs(86_400), |_id, _l| Box::pin(async {}))
                .expect("job");
        sched.add(job).await.expect("add");
    }
    let reg = t0.elapsed();
    sched.start().await.expect("start");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss1 = rss_bytes();
    format!(
        "registered={} reg_ms={} jobs_per_s={:.0} bytes_per_job={}",
        a.peer_oneshots,
        reg.as_millis(),
        a.peer_oneshots as f64 / reg.as_secs_f64(),
        (rss1.saturating_sub(rss0)) / a.peer_oneshots as u64
    )
}

fn main() {
    let a = args();
    if let Some(phase) = a.phase.clone() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let line = rt.block_on(async {
            match phase.as_str() {
                "sundial-cron" => sundial_cron(&a).await,
                "sundial-oneshot" => sundial_oneshot(&a, false).await,
                "sundial-oneshot-nostore" => sundial_oneshot(&a, true).await,
                "timer-oneshot" => timer_oneshot(&a).await,
                "tcs-cron" => tcs_cron(&a).await,
                "tcs-oneshot" => tcs_oneshot(&a).await,
                other => format!("error=unknown-phase-{other}"),
            }
        });
        println!("{phase} {line}");
        // Do not wait for the runtime's tasks (the peer's scheduler never stops).
        std::process::exit(0);
    }
    let exe = std::env::current_exe().expect("own path");
    let pass: Vec<String> = std::env::args().skip(1).collect();
    println!(
        "# engine_bench: jobs={} active={} secs={} oneshots={} peer_oneshots={}; load {}",
        a.jobs,
        a.active,
        a.secs,
        a.oneshots,
        a.peer_oneshots,
        loadavg()
    );
    for phase in [
        "sundial-cron",
        "tcs-cron",
        "sundial-oneshot",
        "sundial-oneshot-nostore",
        "timer-oneshot",
        "tcs-oneshot",
    ] {
        let out = std::process::Command::new(&exe)
            .args(&pass)
            .args(["--phase", phase])
            .output()
            .expect("run phase");
        print!("{}", String::from_utf8_lossy(&out.stdout));
        if !out.status.success() {
            eprintln!("{phase} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}
