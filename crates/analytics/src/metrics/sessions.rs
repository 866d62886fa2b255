//! Distributions that need single events: session length and launches per device.
//!
//! Both are computed from the raw-event archive of the days asked for, plus one day on
//! each side (a Countly session that began the evening before must not be mistaken for
//! a new one, and one that began in the evening goes on after midnight).
//!
//! Sessions, per device, in timestamp order (see `docs/metrics.md`):
//! - a native `usage_time` is one whole session, counted on its own timestamp's day;
//! - a Countly session (events marked `incremental_session`) begins with a
//!   `begin_session` (an `open_app`), adds up its `usage_time` increments, and is
//!   counted once, on its beginning's day, when it is closed: by an `end_session`, by
//!   the device's next `begin_session`, or by 30 minutes without a report (a session
//!   still open at the end of the data is counted with what it reported so far);
//! - increments with no open session (their beginning fell outside the data) open a
//!   session at the first of them;
//! - a native `open_app` is a launch but not, by itself, a session here: a native
//!   client reports its session length with `usage_time`.

use std::collections::{BTreeMap, HashMap};

use jiff::tz::TimeZone;

use crate::aggregate::{Day, day_and_hour};
use crate::event::{Event, EventKind};

/// A Countly session with no report for this long is closed.
pub const SESSION_TIMEOUT_MS: i64 = 30 * 60 * 1_000;

/// Session-length buckets: labels and inclusive upper bounds in seconds.
pub const SESSION_BUCKETS: [(&str, f64); 8] = [
    ("0-3", 3.0),
    ("4-10", 10.0),
    ("11-30", 30.0),
    ("31-60", 60.0),
    ("61-180", 180.0),
    ("181-600", 600.0),
    ("601-1800", 1_800.0),
    ("1800+", f64::INFINITY),
];

/// Launches-per-device buckets: labels and inclusive upper bounds.
pub const LAUNCH_BUCKETS: [(&str, u64); 9] = [
    ("1-2", 2),
    ("3-4", 4),
    ("5-6", 6),
    ("7-8", 8),
    ("9-10", 10),
    ("11-20", 20),
    ("21-30", 30),
    ("31-49", 49),
    ("50+", u64::MAX),
];

/// The bucket of a session of `secs` seconds: a length falls in the first bucket whose
/// upper bound it does not exceed (3.5 s is in `4-10`, 1800 s in `601-1800`).
pub fn session_bucket(secs: f64) -> usize {
    SESSION_BUCKETS
        .iter()
        .position(|(_, upper)| secs <= *upper)
        .unwrap_or(SESSION_BUCKETS.len() - 1)
}

/// The bucket of a device with `launches` launches on a day (at least 1).
pub fn launch_bucket(launches: u64) -> usize {
    LAUNCH_BUCKETS
        .iter()
        .position(|(_, upper)| launches <= *upper)
        .unwrap_or(LAUNCH_BUCKETS.len() - 1)
}

struct Open {
    day: Day,
    secs: f64,
    last_ms: i64,
}

/// Session-length counts per day of `from..=to`, from the events of (at least)
/// `from - 1 ..= to + 1`.
pub fn session_lengths(
    events: &[Event],
    tz: &TimeZone,
    from: Day,
    to: Day,
) -> BTreeMap<Day, [u64; SESSION_BUCKETS.len()]> {
    let mut out: BTreeMap<Day, [u64; SESSION_BUCKETS.len()]> = (from..=to)
        .map(|d| (d, [0; SESSION_BUCKETS.len()]))
        .collect();
    let mut count = |day: Day, secs: f64| {
        if let Some(row) = out.get_mut(&day) {
            row[session_bucket(secs)] += 1;
        }
    };
    for device in by_device(events) {
        let mut open: Option<Open> = None;
        for event in device {
            if let Some(o) = &open
                && event.ts_ms - o.last_ms > SESSION_TIMEOUT_MS
                && is_session_report(event)
            {
                count(o.day, o.secs);
                open = None;
            }
            let day = day_and_hour(event.ts_ms, tz).0;
            match &event.kind {
                EventKind::OpenApp if event.incremental_session => {
                    if let Some(o) = open.take() {
                        count(o.day, o.secs);
                    }
                    open = Some(Open {
                        day,
                        secs: 0.0,
                        last_ms: event.ts_ms,
                    });
                }
                EventKind::UsageTime {
                    duration_secs,
                    ends_session,
                } if event.incremental_session => {
                    let o = open.get_or_insert(Open {
                        day,
                        secs: 0.0,
                        last_ms: event.ts_ms,
                    });
                    o.secs += duration_secs;
                    o.last_ms = event.ts_ms;
                    if *ends_session && let Some(o) = open.take() {
                        count(o.day, o.secs);
                    }
                }
                EventKind::UsageTime { duration_secs, .. } => count(day, *duration_secs),
                EventKind::OpenApp | EventKind::Custom { .. } => {}
            }
        }
        if let Some(o) = open {
            count(o.day, o.secs);
        }
    }
    out
}

fn is_session_report(event: &Event) -> bool {
    event.incremental_session
        && matches!(event.kind, EventKind::OpenApp | EventKind::UsageTime { .. })
}

/// Launches-per-device counts per day of `from..=to`: each device with at least one
/// launch on a day counts once, in the bucket of its number of launches that day.
pub fn launches_per_device(
    events: &[Event],
    tz: &TimeZone,
    from: Day,
    to: Day,
) -> BTreeMap<Day, [u64; LAUNCH_BUCKETS.len()]> {
    let mut launches: HashMap<(Day, &str), u64> = HashMap::new();
    for event in events {
        if matches!(event.kind, EventKind::OpenApp) {
            let day = day_and_hour(event.ts_ms, tz).0;
            if (from..=to).contains(&day) {
                *launches.entry((day, &event.device_id)).or_default() += 1;
            }
        }
    }
    let mut out: BTreeMap<Day, [u64; LAUNCH_BUCKETS.len()]> = (from..=to)
        .map(|d| (d, [0; LAUNCH_BUCKETS.len()]))
        .collect();
    for ((day, _), n) in launches {
        if let Some(row) = out.get_mut(&day) {
            row[launch_bucket(n)] += 1;
        }
    }
    out
}

/// The events grouped by device, each group in timestamp order (ties keep input order).
fn by_device(events: &[Event]) -> Vec<Vec<&Event>> {
    let mut groups: HashMap<&str, Vec<&Event>> = HashMap::new();
    for event in events {
        groups.entry(&event.device_id).or_default().push(event);
    }
    let mut out: Vec<Vec<&Event>> = groups.into_values().collect();
    for group in &mut out {
        group.sort_by_key(|e| e.ts_ms);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Dimensions;

    const DAY_MS: i64 = 86_400_000;

    fn event(device: &str, ts_ms: i64, kind: EventKind, countly: bool) -> Event {
        Event {
            kind,
            ts_ms,
            device_id: device.to_owned(),
            user_id: None,
            dims: Dimensions::default(),
            event_id: None,
            incremental_session: countly,
        }
    }

    fn usage(secs: f64, ends: bool) -> EventKind {
        EventKind::UsageTime {
            duration_secs: secs,
            ends_session: ends,
        }
    }

    #[test]
    fn bucket_edges() {
        assert_eq!(SESSION_BUCKETS[session_bucket(0.0)].0, "0-3");
        assert_eq!(SESSION_BUCKETS[session_bucket(3.0)].0, "0-3");
        assert_eq!(SESSION_BUCKETS[session_bucket(3.5)].0, "4-10");
        assert_eq!(SESSION_BUCKETS[session_bucket(1_800.0)].0, "601-1800");
        assert_eq!(SESSION_BUCKETS[session_bucket(1_800.5)].0, "1800+");
        assert_eq!(LAUNCH_BUCKETS[launch_bucket(1)].0, "1-2");
        assert_eq!(LAUNCH_BUCKETS[launch_bucket(49)].0, "31-49");
        assert_eq!(LAUNCH_BUCKETS[launch_bucket(50)].0, "50+");
    }

    #[test]
    fn countly_increments_add_up_on_the_beginning_day() {
        let tz = TimeZone::UTC;
        let start = 10 * DAY_MS + DAY_MS - 120_000; // 23:58 on day 10
        let events = vec![
            event("a", start, EventKind::OpenApp, true),
            event("a", start + 60_000, usage(60.0, false), true),
            event("a", start + 180_000, usage(70.0, true), true), // day 11
            // Native: each usage_time is a session on its own day.
            event("b", 11 * DAY_MS + 5_000, EventKind::OpenApp, false),
            event("b", 11 * DAY_MS + 9_000, usage(4.0, true), false),
        ];
        let out = session_lengths(&events, &tz, 10, 11);
        assert_eq!(out[&10][session_bucket(130.0)], 1);
        assert_eq!(out[&10].iter().sum::<u64>(), 1);
        assert_eq!(out[&11][session_bucket(4.0)], 1);
        assert_eq!(out[&11].iter().sum::<u64>(), 1);
    }

    #[test]
    fn countly_sessions_close_on_timeout_and_next_begin() {
        let tz = TimeZone::UTC;
        let t = 5 * DAY_MS;
        let events = vec![
            event("a", t, EventKind::OpenApp, true),
            event("a", t + 60_000, usage(60.0, false), true),
            // 31 minutes of silence: the session above closes at 60 s.
            event("a", t + 60_000 + 31 * 60_000, usage(20.0, false), true),
            // The next begin closes the orphan session at 20 s.
            event("a", t + 40 * 60_000, EventKind::OpenApp, true),
        ];
        let out = session_lengths(&events, &tz, 5, 5);
        assert_eq!(out[&5][session_bucket(60.0)], 1);
        assert_eq!(out[&5][session_bucket(20.0)], 1);
        // The last begin is still open, at 0 s.
        assert_eq!(out[&5][session_bucket(0.0)], 1);
        assert_eq!(out[&5].iter().sum::<u64>(), 3);
    }

    #[test]
    fn launches_are_counted_per_device_and_day() {
        let tz = TimeZone::UTC;
        let mut events: Vec<Event> = (0..5)
            .map(|i| event("a", 3 * DAY_MS + i, EventKind::OpenApp, false))
            .collect();
        events.push(event("b", 3 * DAY_MS, EventKind::OpenApp, false));
        events.push(event("c", 3 * DAY_MS, usage(1.0, true), false));
        events.push(event("a", 4 * DAY_MS, EventKind::OpenApp, false));
        let out = launches_per_device(&events, &tz, 3, 4);
        assert_eq!(out[&3][launch_bucket(5)], 1);
        assert_eq!(out[&3][launch_bucket(1)], 1);
        assert_eq!(out[&3].iter().sum::<u64>(), 2);
        assert_eq!(out[&4][launch_bucket(1)], 1);
    }
}
