//! Next-fire and parse benchmarks, side by side with croner, cron and saffron.
//!
//! One run measures every implementation on the same patterns from the same start
//! instant. Peers that cannot express a pattern (or a zone) are left out of that row.
//! `cron` takes 6-field expressions (seconds first), so it gets a `0 ` prefix; its
//! day-of-week names are unambiguous, numbers are not used in these patterns.
//!
//! Run: `cargo bench -p sundial-cron --bench next_fire`

use std::hint::black_box;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone as _, Utc};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use sundial_cron::Schedule;

const TYPICAL: [&str; 4] = ["*/5 * * * *", "0 12 * * MON-FRI", "0 0 1 * *", "30 2 * * *"];
const SPARSE: [&str; 2] = ["0 0 29 2 *", "0 0 * 2 MON#5"];
/// 2024-05-15T10:17:23Z, a Wednesday.
const START: i64 = 1_715_768_243;

fn start_utc() -> DateTime<Utc> {
    Utc.timestamp_opt(START, 0).single().expect("valid")
}

fn start_ts() -> Timestamp {
    Timestamp::from_second(START).expect("valid")
}

fn next_fire(c: &mut Criterion, group: &str, patterns: &[&str], zone: Option<&str>) {
    let mut g = c.benchmark_group(group);
    for pattern in patterns {
        let tz = zone.map_or(TimeZone::UTC, |z| TimeZone::get(z).expect("zone"));
        let s = Schedule::parse(pattern).expect("sundial parses");
        let t = start_ts();
        g.bench_with_input(BenchmarkId::new("sundial", pattern), &(), |b, _| {
            b.iter(|| s.next_after(black_box(t), &tz))
        });

        if let Ok(cr) = croner::Cron::from_str(pattern) {
            match zone {
                None => {
                    let t = start_utc();
                    g.bench_with_input(BenchmarkId::new("croner", pattern), &(), |b, _| {
                        b.iter(|| cr.find_next_occurrence(black_box(&t), false).ok())
                    });
                }
                Some(_) => {
                    let t = start_utc().with_timezone(&chrono_tz::America::New_York);
                    g.bench_with_input(BenchmarkId::new("croner", pattern), &(), |b, _| {
                        b.iter(|| cr.find_next_occurrence(black_box(&t), false).ok())
                    });
                }
            }
        }

        if let Ok(cs) = cron::Schedule::from_str(&format!("0 {pattern}")) {
            match zone {
                None => {
                    let t = start_utc();
                    g.bench_with_input(BenchmarkId::new("cron", pattern), &(), |b, _| {
                        b.iter(|| cs.after(black_box(&t)).next())
                    });
                }
                Some(_) => {
                    let t = start_utc().with_timezone(&chrono_tz::America::New_York);
                    g.bench_with_input(BenchmarkId::new("cron", pattern), &(), |b, _| {
                        b.iter(|| cs.after(black_box(&t)).next())
                    });
                }
            }
        }

        if zone.is_none()
            && let Ok(sf) = saffron::Cron::from_str(pattern)
        {
            let t = start_utc();
            g.bench_with_input(BenchmarkId::new("saffron", pattern), &(), |b, _| {
                b.iter(|| sf.next_after(black_box(t)))
            });
        }
    }
    g.finish();
}

fn bench_next(c: &mut Criterion) {
    next_fire(c, "next_utc", &TYPICAL, None);
    next_fire(c, "next_new_york", &TYPICAL, Some("America/New_York"));
    next_fire(c, "next_sparse_utc", &SPARSE, None);
}

fn bench_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    for pattern in TYPICAL.iter().chain(&SPARSE) {
        g.bench_with_input(BenchmarkId::new("sundial", pattern), pattern, |b, p| {
            b.iter(|| Schedule::parse(black_box(p)).is_ok())
        });
        if croner::Cron::from_str(pattern).is_ok() {
            g.bench_with_input(BenchmarkId::new("croner", pattern), pattern, |b, p| {
                b.iter(|| croner::Cron::from_str(black_box(p)).is_ok())
            });
        }
        let six = format!("0 {pattern}");
        if cron::Schedule::from_str(&six).is_ok() {
            g.bench_with_input(BenchmarkId::new("cron", pattern), &six, |b, p| {
                b.iter(|| cron::Schedule::from_str(black_box(p)).is_ok())
            });
        }
        if saffron::Cron::from_str(pattern).is_ok() {
            g.bench_with_input(BenchmarkId::new("saffron", pattern), pattern, |b, p| {
                b.iter(|| saffron::Cron::from_str(black_box(p)).is_ok())
            });
        }
    }
    g.finish();
}

fn config() -> Criterion {
    // Short runs: the machine has 2 cores shared with other builds.
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_next, bench_parse
}
criterion_main!(benches);
