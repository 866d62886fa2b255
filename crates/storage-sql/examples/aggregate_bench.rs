//! The aggregator's throughput without HTTP or the bus (`docs/benchmarks-ingest.md`):
//! bus messages shaped like `scripts/bench-ingest.sh`'s batched phase (100 events per
//! message, `open_app` and `usage_time` alternating, devices cycling over 1 M ids,
//! platform and app version at batch level) are encoded once and then applied through
//! the real [`Aggregator`] to a store, batch by batch, as `sundial serve` does.
//!
//! ```text
//! cargo run --release -p sundial-storage-sql --example aggregate_bench -- \
//!     [--store URL] [--events N] [--devices N] [--batch MESSAGES] [--json]
//! ```
//!
//! Without `--store` it uses a fresh SQLite file in a temporary directory. It prints
//! events/s for the first pass over the devices (every device new) and for the rest,
//! the time spent decoding versus applying, and the process's peak RSS. `--json`
//! publishes the old JSON record format (v1) instead of the current one.

use std::time::Instant;

use sundial_analytics::aggregate::Aggregator;
use sundial_analytics::bus::BusMessage;
use sundial_analytics::record::EventRecord;
use sundial_analytics::{Dimensions, Event, EventKind, NewApp, Store};
use sundial_storage_sql::SqlStore;

struct Args {
    store: Option<String>,
    events: u64,
    devices: u64,
    batch: usize,
    json: bool,
}

fn args() -> Args {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        store: None,
        events: 10_000_000,
        devices: 1_000_000,
        batch: 2_000,
        json: false,
    };
    while let Some(flag) = it.next() {
        if flag == "--json" {
            a.json = true;
            continue;
        }
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--store" => a.store = Some(value),
            "--events" => a.events = value.parse().expect("--events N"),
            "--devices" => a.devices = value.parse().expect("--devices N"),
            "--batch" => a.batch = value.parse().expect("--batch MESSAGES"),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

fn peak_rss_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

/// One message of 100 events, as the benchmark script's `batch.lua` builds it.
fn message(app_id: i64, n: u64, devices: u64, now: i64, json: bool) -> Vec<u8> {
    let dims = Dimensions {
        platform: Some("android".into()),
        app_version: Some("2.1.0".into()),
        ..Dimensions::default()
    };
    let events = (1..=100_u64)
        .map(|i| {
            let d = ((n * 100 + i) * 7919) % devices;
            Event {
                kind: if i % 2 == 0 {
                    EventKind::OpenApp
                } else {
                    EventKind::UsageTime {
                        duration_secs: 30.0,
                        ends_session: true,
                    }
                },
                ts_ms: now,
                device_id: format!("d{d}"),
                user_id: None,
                dims: dims.clone(),
                event_id: None,
                incremental_session: false,
            }
        })
        .collect();
    let record = EventRecord::new(app_id, now, events);
    if json {
        record.encode_json()
    } else {
        record.encode()
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a = args();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = match &a.store {
        Some(url) => SqlStore::connect(url).await.expect("open store"),
        None => SqlStore::open_in(dir.path()).await.expect("open store"),
    };
    let app = store
        .create_app(NewApp {
            name: format!("aggregate-bench-{}", std::process::id()),
            timezone: "UTC".into(),
        })
        .await
        .expect("app");
    let now = jiff::Timestamp::now().as_millisecond();
    let messages = a.events / 100;
    let first_pass = a.devices.div_ceil(100).min(messages);
    let mut aggregator = Aggregator::new(format!("bench-{}", app.id));
    let mut position = 0_u64;
    let mut build_secs = 0.0;
    let mut split: Option<(f64, u64)> = None;
    let started = Instant::now();
    let mut applied = 0_u64;
    while position < messages {
        let t = Instant::now();
        let end = (position + a.batch as u64).min(messages);
        let batch: Vec<BusMessage> = (position..end)
            .map(|n| BusMessage {
                position: n,
                payload: message(app.id, n, a.devices, now, a.json),
            })
            .collect();
        build_secs += t.elapsed().as_secs_f64();
        aggregator.apply(&store, &batch).await.expect("apply");
        applied += (end - position) * 100;
        position = end;
        if split.is_none() && position >= first_pass {
            split = Some((started.elapsed().as_secs_f64() - build_secs, applied));
        }
    }
    let total = started.elapsed().as_secs_f64() - build_secs;
    let (first_secs, first_events) = split.unwrap_or((total, applied));
    println!(
        "record format: {}",
        if a.json { "json (v1)" } else { "binary" }
    );
    println!(
        "first pass (new devices): {first_events} events in {first_secs:.2} s = {:.0} events/s",
        first_events as f64 / first_secs
    );
    let rest = applied - first_events;
    if rest > 0 {
        println!(
            "known devices: {rest} events in {:.2} s = {:.0} events/s",
            total - first_secs,
            rest as f64 / (total - first_secs)
        );
    }
    println!(
        "overall: {applied} events in {total:.2} s = {:.0} events/s; peak RSS {} MB",
        applied as f64 / total,
        peak_rss_mb()
    );
}
