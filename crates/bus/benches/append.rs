//! Durable append throughput and latency of `LocalLog` (with `syncs_in_flight` 1, i.e.
//! strictly one group commit after another, and 4, the default), side by side with a
//! naive baseline that `fdatasync`s every batch on its own (no group commit).
//!
//! Each configuration runs `N` concurrent appenders (tokio tasks for `LocalLog`, blocking
//! threads for the baseline) that each append batches of 100 records of 200 bytes for a
//! fixed time, then prints records/s, MB/s, batches per fdatasync and the p50/p99/max
//! latency of one append (from the call until it is durable). Two open-loop rows start
//! appends at a fixed rate instead (1,500 and 3,000 batches/s, i.e. 150,000 and 300,000
//! records/s; `N` is 0 there), which is how an ingest server sees its load. Last, it
//! reopens the largest log (timing recovery) and reads it all back.
//!
//! ```text
//! cargo bench -p sundial-bus --bench append                 # 3 s per configuration
//! cargo bench -p sundial-bus --bench append -- --secs 10    # longer runs
//! ```
//! Set `TMPDIR` to put the logs on the disk you want to measure.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sundial_bus::{LocalLog, Options, ReadLimits};

const RECORDS_PER_BATCH: usize = 100;
const RECORD_BYTES: usize = 200;
const APPENDERS: [usize; 3] = [1, 8, 64];
/// `Options::syncs_in_flight` values compared: strictly one commit after another, and
/// the default.
const SYNCS: [usize; 2] = [1, 4];

fn options(syncs: usize) -> Options {
    let mut o = Options::default();
    o.syncs_in_flight = syncs;
    o
}

struct Outcome {
    name: String,
    appenders: usize,
    records: u64,
    elapsed: Duration,
    syncs: u64,
    latencies: Vec<Duration>,
}

impl Outcome {
    fn print(&mut self) {
        self.latencies.sort_unstable();
        let pct = |p: f64| {
            let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
            self.latencies.get(i).copied().unwrap_or_default()
        };
        let secs = self.elapsed.as_secs_f64();
        let batches = self.latencies.len() as f64;
        println!(
            "| {:<28} | {:>3} | {:>11.0} | {:>7.1} | {:>8.1} | {:>8.2} | {:>8.2} | {:>8.2} |",
            self.name,
            self.appenders,
            self.records as f64 / secs,
            self.records as f64 * RECORD_BYTES as f64 / secs / 1e6,
            batches / self.syncs.max(1) as f64,
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
            self.latencies
                .last()
                .copied()
                .unwrap_or_default()
                .as_secs_f64()
                * 1e3,
        );
    }
}

fn batch(appender: usize, seq: u64) -> Vec<Vec<u8>> {
    (0..RECORDS_PER_BATCH)
        .map(|i| {
            let mut r = vec![b'x'; RECORD_BYTES];
            r[..8].copy_from_slice(&(appender as u64).to_le_bytes());
            r[8..16].copy_from_slice(&seq.to_le_bytes());
            r[16..24].copy_from_slice(&(i as u64).to_le_bytes());
            r
        })
        .collect()
}

async fn run_local_log(
    appenders: usize,
    duration: Duration,
    syncs: usize,
) -> (Outcome, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let log = LocalLog::open(dir.path(), options(syncs)).unwrap();
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for a in 0..appenders {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut seq = 0;
            while Instant::now() < deadline {
                let b = batch(a, seq);
                let t0 = Instant::now();
                log.append(b).await.unwrap();
                latencies.push(t0.elapsed());
                seq += 1;
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed();
    let stats = log.stats();
    log.close().await;
    let outcome = Outcome {
        name: format!("LocalLog, syncs_in_flight={syncs}"),
        appenders,
        records: stats.durable_end,
        elapsed,
        syncs: stats.commits,
        latencies,
    };
    (outcome, dir)
}

/// Reopens a log written by a run (recovery scans the active segment) and reads it all
/// back with the default read limits.
fn recover_and_read(dir: &std::path::Path) {
    let t0 = Instant::now();
    let log = LocalLog::open(dir, Options::default()).unwrap();
    let open = t0.elapsed();
    let stats = log.stats();
    let active_bytes = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| e.path())
        .max()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .unwrap_or(0);
    println!(
        "recovery: open() of a log with {} segments, {:.1} MB active segment scanned: {:.1} ms ({:.0} MB/s)",
        stats.segments,
        active_bytes as f64 / 1e6,
        open.as_secs_f64() * 1e3,
        active_bytes as f64 / 1e6 / open.as_secs_f64(),
    );
    let t0 = Instant::now();
    let mut reader = log.reader(0);
    let mut records = 0u64;
    let mut bytes = 0u64;
    loop {
        let batch = reader.try_next_batch(ReadLimits::default()).unwrap();
        if batch.is_empty() {
            break;
        }
        records += batch.len() as u64;
        bytes += batch.iter().map(|r| r.payload.len() as u64).sum::<u64>();
    }
    let read = t0.elapsed().as_secs_f64();
    println!(
        "sequential read (page cache, ReadLimits::default()): {records} records in {:.0} ms = {:.0} records/s, {:.0} MB/s",
        read * 1e3,
        records as f64 / read,
        bytes as f64 / 1e6 / read,
    );
}

/// Open loop: starts `rate` appends per second on a 1 ms tick, whatever the state of the
/// earlier ones, as an ingest server under a steady request rate would.
async fn run_open_loop(rate: u64, duration: Duration, syncs: usize) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let log = LocalLog::open(dir.path(), options(syncs)).unwrap();
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut started = 0u64;
    let mut tasks = Vec::new();
    while start.elapsed() < duration {
        tick.tick().await;
        let due = start.elapsed().as_micros() as u64 * rate / 1_000_000;
        while started < due {
            let log = log.clone();
            let seq = started;
            tasks.push(tokio::spawn(async move {
                let b = batch(0, seq);
                let t0 = Instant::now();
                log.append(b).await.unwrap();
                t0.elapsed()
            }));
            started += 1;
        }
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.push(t.await.unwrap());
    }
    let elapsed = start.elapsed();
    let stats = log.stats();
    log.close().await;
    Outcome {
        name: format!("open loop {rate}/s, syncs={syncs}"),
        appenders: 0,
        records: stats.durable_end,
        elapsed,
        syncs: stats.commits,
        latencies,
    }
}

/// The baseline: a mutex-protected file, one write + one fdatasync per batch.
fn run_naive(appenders: usize, duration: Duration) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let file: Arc<Mutex<File>> = Arc::new(Mutex::new(
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("naive.log"))
            .unwrap(),
    ));
    let start = Instant::now();
    let deadline = start + duration;
    let threads: Vec<_> = (0..appenders)
        .map(|a| {
            let file = file.clone();
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                let mut seq = 0;
                let mut buf = Vec::new();
                while Instant::now() < deadline {
                    let b = batch(a, seq);
                    let t0 = Instant::now();
                    buf.clear();
                    for r in &b {
                        buf.extend_from_slice(&(r.len() as u32).to_le_bytes());
                        buf.extend_from_slice(&crc32c::crc32c(r).to_le_bytes());
                        buf.extend_from_slice(r);
                    }
                    let mut f = file.lock().unwrap();
                    f.write_all(&buf).unwrap();
                    f.sync_data().unwrap();
                    drop(f);
                    latencies.push(t0.elapsed());
                    seq += 1;
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for t in threads {
        latencies.extend(t.join().unwrap());
    }
    let elapsed = start.elapsed();
    let batches = latencies.len() as u64;
    Outcome {
        name: "naive (fdatasync per batch)".to_string(),
        appenders,
        records: batches * RECORDS_PER_BATCH as u64,
        elapsed,
        syncs: batches,
        latencies,
    }
}

fn main() {
    let mut secs = 3.0f64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--secs" {
            secs = args.next().and_then(|s| s.parse().ok()).unwrap_or(secs);
        }
    }
    let duration = Duration::from_secs_f64(secs);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "durable appends: batches of {RECORDS_PER_BATCH} records x {RECORD_BYTES} bytes, {secs} s per row, TMPDIR={}",
        std::env::temp_dir().display()
    );
    println!();
    println!(
        "| {:<28} | {:>3} | {:>11} | {:>7} | {:>8} | {:>8} | {:>8} | {:>8} |",
        "implementation", "N", "records/s", "MB/s", "batch/fs", "p50 ms", "p99 ms", "max ms"
    );
    println!(
        "|{:-<30}|{:->5}|{:->13}|{:->9}|{:->10}|{:->10}|{:->10}|{:->10}|",
        "", "", "", "", "", "", "", ""
    );
    let mut biggest = None;
    for appenders in APPENDERS {
        for syncs in SYNCS {
            let (mut outcome, dir) = runtime.block_on(run_local_log(appenders, duration, syncs));
            outcome.print();
            biggest = Some(dir);
        }
        run_naive(appenders, duration).print();
    }
    for rate in [1500, 3000] {
        for syncs in SYNCS {
            runtime
                .block_on(run_open_loop(rate, duration, syncs))
                .print();
        }
    }
    println!();
    if let Some(dir) = biggest {
        recover_and_read(dir.path());
    }
}
