//! Cron jobs on the engine across DST transitions, month ends and leap days, run on
//! virtual time (years in milliseconds).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{handler_job, register_sleeper, scheduler_at, ts};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use sundial_scheduler::job::TriggerSpec;
use sundial_scheduler::store::MemoryJobStore;

/// Runs `expr` in `zone` from `start` for `days`; returns the fires' nominal instants.
async fn fires(expr: &str, zone: &str, start: &str, days: u64) -> Vec<Timestamp> {
    let store = MemoryJobStore::new();
    let (s, clock) = scheduler_at(start, &store, "n1");
    let rec = register_sleeper(&s, "work", clock, Duration::from_secs(1));
    s.start().await.expect("start");
    s.add(handler_job("job", TriggerSpec::cron(expr, zone), "work"))
        .await
        .expect("add");
    tokio::time::sleep(Duration::from_secs(days * 86_400)).await;
    for (nominal, started, _) in rec.all() {
        assert_eq!(nominal, started, "virtual time has no lateness");
    }
    rec.nominals()
}

fn per_local_day(fires: &[Timestamp], zone: &str) -> BTreeMap<String, usize> {
    let tz = TimeZone::get(zone).expect("zone");
    let mut days = BTreeMap::new();
    for f in fires {
        *days
            .entry(f.to_zoned_datetime(tz.clone()).date().to_string())
            .or_insert(0) += 1;
    }
    days
}

#[tokio::test(start_paused = true)]
async fn new_york_spring_forward_runs_0230_once_at_0300_edt() {
    let f = fires("30 2 * * *", "America/New_York", "2024-03-09T00:00:00Z", 3).await;
    assert_eq!(
        f,
        vec![
            ts("2024-03-09T07:30:00Z"), // 02:30 EST
            ts("2024-03-10T07:00:00Z"), // gap: 03:00 EDT
            ts("2024-03-11T06:30:00Z"), // 02:30 EDT
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn new_york_fall_back_runs_once_a_day() {
    let f = fires("30 2 * * *", "America/New_York", "2024-11-02T00:00:00Z", 3).await;
    assert_eq!(
        f,
        vec![
            ts("2024-11-02T06:30:00Z"),
            ts("2024-11-03T07:30:00Z"), // 02:30 EST, after the fold
            ts("2024-11-04T07:30:00Z"),
        ]
    );
    // 01:30 exists twice on the fall-back day: it fires once, at the first (EDT).
    let f = fires("30 1 * * *", "America/New_York", "2024-11-02T12:00:00Z", 2).await;
    assert_eq!(
        f,
        vec![ts("2024-11-03T05:30:00Z"), ts("2024-11-04T06:30:00Z")]
    );
}

#[tokio::test(start_paused = true)]
async fn berlin_spring_forward_and_fall_back_run_0230_once_each_day() {
    let spring = fires("30 2 * * *", "Europe/Berlin", "2024-03-30T00:00:00Z", 3).await;
    assert_eq!(
        spring,
        vec![
            ts("2024-03-30T01:30:00Z"), // 02:30 CET
            ts("2024-03-31T01:00:00Z"), // gap: 03:00 CEST
            ts("2024-04-01T00:30:00Z"), // 02:30 CEST
        ]
    );
    let fall = fires("30 2 * * *", "Europe/Berlin", "2024-10-26T00:00:00Z", 3).await;
    assert_eq!(
        fall,
        vec![
            ts("2024-10-26T00:30:00Z"),
            ts("2024-10-27T00:30:00Z"), // first 02:30 (CEST); not again at 01:30Z
            ts("2024-10-28T01:30:00Z"),
        ]
    );
    for (day, n) in per_local_day(&fall, "Europe/Berlin") {
        assert_eq!(n, 1, "{day}");
    }
}

#[tokio::test(start_paused = true)]
async fn month_ends_over_a_year() {
    let last = fires("0 9 L * *", "Europe/Berlin", "2023-12-31T12:00:00Z", 366).await;
    let days: Vec<String> = last
        .iter()
        .map(|t| {
            t.to_zoned_datetime(TimeZone::get("Europe/Berlin").expect("zone"))
                .date()
                .to_string()
        })
        .collect();
    assert_eq!(
        days,
        [
            "2024-01-31",
            "2024-02-29",
            "2024-03-31",
            "2024-04-30",
            "2024-05-31",
            "2024-06-30",
            "2024-07-31",
            "2024-08-31",
            "2024-09-30",
            "2024-10-31",
            "2024-11-30",
            "2024-12-31",
        ]
    );
    // The 31st fires only in months that have one.
    let thirty_first = fires("0 0 31 * *", "UTC", "2024-01-01T00:00:00Z", 366).await;
    assert_eq!(thirty_first.len(), 7);
}

#[tokio::test(start_paused = true)]
async fn leap_days_only() {
    let f = fires(
        "0 12 29 2 *",
        "America/New_York",
        "2023-01-01T00:00:00Z",
        6 * 366,
    )
    .await;
    assert_eq!(
        f,
        vec![ts("2024-02-29T17:00:00Z"), ts("2028-02-29T17:00:00Z")]
    );
}
