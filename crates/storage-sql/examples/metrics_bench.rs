//! The metrics query benchmark of `docs/benchmarks-metrics.md`: one app with 1 M
//! devices over 90 days (about 30 M events), loaded through the real aggregator, then
//! queried from a fresh process ("cold start of the query path": new pool, no cache).
//!
//! ```text
//! cargo run --release -p sundial-storage-sql --example metrics_bench -- load  --store URL
//! cargo run --release -p sundial-storage-sql --example metrics_bench -- close-out --store URL
//! cargo run --release -p sundial-storage-sql --example metrics_bench -- query --store URL
//! ```
//!
//! `load` prints progress and the app id; `close-out` runs the daily close-out over
//! every loaded day (what `sundial serve` does after each midnight); `query` finds the app by name, runs each
//! query once cold and then `--runs` times, and prints the first and median latencies.

use std::time::{Duration, Instant};

use sundial_analytics::aggregate::{AggregateStore as _, Aggregator};
use sundial_analytics::bus::BusMessage;
use sundial_analytics::metrics::{
    self, AppClock, BreakdownMetric, DistributionKind, RetentionQuery,
};
use sundial_analytics::record::EventRecord;
use sundial_analytics::{Dimensions, Event, EventKind, NewApp, Store};
use sundial_storage_sql::SqlStore;

const APP_NAME: &str = "metrics-bench";
const ZONE: &str = "Asia/Shanghai";
/// 2024-08-01 00:00 in Shanghai.
const START_MS: i64 = 1_722_441_600_000;
const DAY_MS: i64 = 86_400_000;

struct Args {
    mode: String,
    store: String,
    devices: u32,
    days: i32,
    runs: usize,
}

fn args() -> Args {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        mode: it.next().unwrap_or_else(|| "help".into()),
        store: String::new(),
        devices: 1_000_000,
        days: 90,
        runs: 20,
    };
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--store" => a.store = value,
            "--devices" => a.devices = value.parse().expect("--devices N"),
            "--days" => a.days = value.parse().expect("--days N"),
            "--runs" => a.runs = value.parse().expect("--runs N"),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(
        !a.store.is_empty() && ["load", "query", "close-out"].contains(&a.mode.as_str()),
        "usage: metrics_bench load|close-out|query --store URL [--devices N] [--days N] [--runs N]"
    );
    a
}

/// xorshift64*: deterministic and fast.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const PLATFORMS: [&str; 3] = ["ios", "android", "web"];
const VERSIONS: [&str; 5] = ["1.0", "1.1", "1.2", "2.0", "2.1"];
const CHANNELS: [&str; 4] = ["appstore", "googleplay", "huawei", "ads"];
const COUNTRIES: [&str; 6] = ["CN", "US", "DE", "JP", "BR", "IN"];

struct Device {
    first_day: i32,
    /// Chance (per mille) of being active on a later day.
    stay: u64,
    dims: Dimensions,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a = args();
    let store = SqlStore::connect(&a.store).await.expect("open store");
    match a.mode.as_str() {
        "load" => load(&store, &a).await,
        "close-out" => close_out(&store, &a).await,
        _ => query(&store, &a).await,
    }
}

async fn load(store: &SqlStore, a: &Args) {
    let app = store
        .create_app(NewApp {
            name: APP_NAME.into(),
            timezone: ZONE.into(),
        })
        .await
        .expect("app");
    let mut rng = Rng(0x5EED);
    let devices: Vec<Device> = (0..a.devices)
        .map(|_| Device {
            first_day: i32::try_from(rng.below(u64::try_from(a.days).expect("days"))).expect("day"),
            stay: [50, 150, 400][rng.below(3) as usize],
            dims: Dimensions {
                platform: Some(PLATFORMS[rng.below(3) as usize].into()),
                app_version: Some(VERSIONS[rng.below(5) as usize].into()),
                channel: Some(CHANNELS[rng.below(4) as usize].into()),
                country: Some(COUNTRIES[rng.below(6) as usize].into()),
                ..Dimensions::default()
            },
        })
        .collect();
    let mut aggregator = Aggregator::new("bench");
    let mut position = store.consumer_position("bench").await.expect("position");
    let started = Instant::now();
    let mut total = 0_u64;
    for day in 0..a.days {
        let day_start = START_MS + i64::from(day) * DAY_MS;
        let mut batch: Vec<BusMessage> = Vec::new();
        let mut events: Vec<Event> = Vec::with_capacity(600);
        for (no, device) in devices.iter().enumerate() {
            let active = device.first_day == day
                || (device.first_day < day && rng.below(1_000) < device.stay);
            if !active {
                continue;
            }
            let id = format!("device-{no:07}");
            let at = day_start + i64::try_from(rng.below(DAY_MS as u64 - 3_600_000)).expect("ms");
            let mk = |kind: EventKind, ts_ms: i64| Event {
                kind,
                ts_ms,
                device_id: id.clone(),
                user_id: None,
                dims: device.dims.clone(),
                event_id: None,
                incremental_session: false,
            };
            events.push(mk(EventKind::OpenApp, at));
            events.push(mk(
                EventKind::UsageTime {
                    duration_secs: (rng.below(1_200) as f64) + 0.5,
                    ends_session: true,
                },
                at + 60_000,
            ));
            events.push(mk(
                EventKind::Custom {
                    name: "level_up".into(),
                    count: 1,
                    sum: 0.0,
                    dur_secs: 0.0,
                    segments: Default::default(),
                },
                at + 30_000,
            ));
            if events.len() >= 500 {
                batch.push(BusMessage {
                    position,
                    payload: EventRecord::new(app.id, 0, std::mem::take(&mut events)).encode(),
                });
                position += 1;
            }
            if batch.len() >= 20 {
                aggregator.apply(store, &batch).await.expect("apply");
                total += 10_000;
                batch.clear();
            }
        }
        if !events.is_empty() {
            total += events.len() as u64;
            batch.push(BusMessage {
                position,
                payload: EventRecord::new(app.id, 0, std::mem::take(&mut events)).encode(),
            });
            position += 1;
        }
        if !batch.is_empty() {
            aggregator.apply(store, &batch).await.expect("apply");
        }
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "day {}/{}: {total} events in {secs:.0} s ({:.0} events/s)",
            day + 1,
            a.days,
            total as f64 / secs
        );
    }
    println!("loaded app {} ({total} events)", app.id);
}

/// The daily close-out of every ended day, as `sundial serve` runs it.
async fn close_out(store: &SqlStore, a: &Args) {
    let app = store
        .list_apps()
        .await
        .expect("apps")
        .into_iter()
        .find(|x| x.name == APP_NAME)
        .expect("run `load` first");
    // The same "now" as `query`: every loaded day has ended.
    let now = START_MS + i64::from(a.days) * DAY_MS + 3_600_000;
    let today = AppClock::new(app.id, ZONE, now).today;
    let started = Instant::now();
    let report = store
        .close_out(app.id, today, None)
        .await
        .expect("close-out");
    println!(
        "close-out: {} sets compacted, {} rows folded away, {} retention cells, in {:.1} s",
        report.sets_compacted,
        report.rows_removed,
        report.retention_cells,
        started.elapsed().as_secs_f64()
    );
}

async fn time<T, F: std::future::Future<Output = T>>(f: F) -> (T, Duration) {
    let t = Instant::now();
    let v = f.await;
    (v, t.elapsed())
}

async fn query(store: &SqlStore, a: &Args) {
    let app = store
        .list_apps()
        .await
        .expect("apps")
        .into_iter()
        .find(|x| x.name == APP_NAME)
        .expect("run `load` first");
    // "Now" is an hour into the day after the data: every day of it has ended.
    let now = START_MS + i64::from(a.days) * DAY_MS + 3_600_000;
    let clock = AppClock::new(app.id, ZONE, now);
    let last = clock.today - 1;
    let first = last - (a.days - 1);
    let retention = RetentionQuery::parse(
        None,
        None,
        None,
        Some(
            &(1..=30)
                .map(|n: u32| n.to_string())
                .collect::<Vec<_>>()
                .join(","),
        ),
    )
    .expect("retention query");
    println!(
        "backend {} · app {} · days {}..{} · runs {}",
        store.backend_name(),
        app.id,
        metrics::date_of(first),
        metrics::date_of(last),
        a.runs
    );
    println!("| query | first (cold) | median | p90 | answer |");
    println!("|---|---|---|---|---|");
    for name in [
        "overview 90 d",
        "retention 30 cohorts x 30 d",
        "breakdown 90 d platform active_users",
        "breakdown 90 d app_version new_users",
        "active (DAU/WAU/MAU) 90 d",
        "distribution hour_active 90 d",
    ] {
        let mut times = Vec::new();
        let mut answer = String::new();
        for _ in 0..=a.runs {
            let (summary, took) = match name {
                "overview 90 d" => {
                    let (o, t) = time(metrics::overview(store, &clock, first, last)).await;
                    let o = o.expect("overview");
                    (
                        format!("total users {}", o.days.last().map_or(0, |d| d.total_users)),
                        t,
                    )
                }
                "retention 30 cohorts x 30 d" => {
                    let (r, t) = time(metrics::retention(
                        store,
                        &clock,
                        last - 59,
                        last - 30,
                        &retention,
                    ))
                    .await;
                    let r = r.expect("retention");
                    let cells = r.cohorts.iter().map(|c| c.retained.len()).sum::<usize>();
                    (format!("{cells} cells"), t)
                }
                "breakdown 90 d platform active_users" => {
                    let (b, t) = time(metrics::breakdown(
                        store,
                        &clock,
                        first,
                        last,
                        "platform",
                        BreakdownMetric::ActiveUsers,
                    ))
                    .await;
                    (format!("{} values", b.expect("breakdown").values.len()), t)
                }
                "breakdown 90 d app_version new_users" => {
                    let (b, t) = time(metrics::breakdown(
                        store,
                        &clock,
                        first,
                        last,
                        "app_version",
                        BreakdownMetric::NewUsers,
                    ))
                    .await;
                    (format!("{} values", b.expect("breakdown").values.len()), t)
                }
                "active (DAU/WAU/MAU) 90 d" => {
                    let (x, t) = time(metrics::active(store, &clock, first, last, None)).await;
                    let days = x.expect("active").days.unwrap_or_default();
                    (format!("last mau {}", days.last().map_or(0, |d| d.mau)), t)
                }
                _ => {
                    let (x, t) = time(metrics::distribution(
                        store,
                        &clock,
                        first,
                        last,
                        DistributionKind::HourActive,
                    ))
                    .await;
                    (
                        format!("{} buckets", x.expect("distribution").buckets.len()),
                        t,
                    )
                }
            };
            answer = summary;
            times.push(took);
        }
        let cold = times[0];
        let mut warm = times[1..].to_vec();
        warm.sort();
        let median = warm[warm.len() / 2];
        let p90 = warm[(warm.len() * 9 / 10).min(warm.len() - 1)];
        println!(
            "| {name} | {:.1} ms | {:.1} ms | {:.1} ms | {answer} |",
            cold.as_secs_f64() * 1e3,
            median.as_secs_f64() * 1e3,
            p90.as_secs_f64() * 1e3
        );
    }
}
