//! The metrics engine against a brute-force reference, on SQLite and PostgreSQL.
//!
//! Generated data (several zones, DST change days, late and out-of-order arrival,
//! duplicate `event_id`s, native and Countly-style sessions, custom events with
//! segments) goes through the real aggregator into a real store; every query of the
//! metrics API is then compared with a direct computation over the deduplicated event
//! list that follows `docs/metrics.md` word for word.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde_json::{Value, json};
use sundial_analytics::aggregate::{AggregateStore as _, Aggregator};
use sundial_analytics::bus::BusMessage;
use sundial_analytics::metrics::{
    self, AppClock, BreakdownMetric, Calendar, DistributionKind, MetricsSource, RetentionQuery,
};
use sundial_analytics::record::EventRecord;
use sundial_analytics::{Dimensions, Event, EventKind, NewApp, Store};
use sundial_storage_sql::SqlStore;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

/// A small deterministic generator (xorshift64*).
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
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

fn ts(text: &str) -> i64 {
    text.parse::<jiff::Timestamp>()
        .expect("timestamp")
        .as_millisecond()
}

/// The reference's own day function: the civil date in the zone, via jiff directly.
fn day_in(ts_ms: i64, tz: &jiff::tz::TimeZone) -> i32 {
    let date = jiff::Timestamp::from_millisecond(ts_ms)
        .expect("ts")
        .to_zoned_datetime(tz.clone())
        .date();
    metrics::day_of(date)
}

fn hour_in(ts_ms: i64, tz: &jiff::tz::TimeZone) -> usize {
    let zoned = jiff::Timestamp::from_millisecond(ts_ms)
        .expect("ts")
        .to_zoned_datetime(tz.clone());
    usize::try_from(zoned.hour()).expect("hour")
}

fn date(day: i32) -> String {
    metrics::date_of(day).to_string()
}

fn event(kind: EventKind, ts_ms: i64, device: &str, dims: &Dimensions) -> Event {
    Event {
        kind,
        ts_ms,
        device_id: device.to_owned(),
        user_id: None,
        dims: dims.clone(),
        event_id: None,
        incremental_session: false,
    }
}

/// Events of `devices` devices over `start..now`, in generation order.
fn generate(rng: &mut Rng, devices: usize, start: i64, now: i64) -> Vec<Event> {
    let mut out = Vec::new();
    let span = now - start;
    for d in 0..devices {
        let device = format!("dev-{d}");
        let user = rng.chance(40).then(|| format!("user-{}", rng.below(30)));
        let mut dims = Dimensions {
            platform: Some(rng.pick(&["ios", "android", "web"]).to_owned()),
            app_version: Some(rng.pick(&["1.0", "1.1"]).to_owned()),
            channel: rng
                .chance(70)
                .then(|| rng.pick(&["appstore", "googleplay", "ads"]).to_owned()),
            country: Some(rng.pick(&["CN", "US", "DE"]).to_owned()),
            ..Dimensions::default()
        };
        // Each device lives from a random instant; most come back a few times.
        let mut t =
            start + i64::try_from(rng.below(u64::try_from(span).expect("span"))).expect("t");
        let visits = 1 + rng.below(12);
        for _ in 0..visits {
            if t >= now - 2 * HOUR {
                break;
            }
            if rng.chance(15) {
                dims.app_version = Some("2.0".to_owned()); // upgrades mid-life
            }
            if rng.chance(50) {
                // Native: a launch, a whole-session usage report.
                out.push(event(EventKind::OpenApp, t, &device, &dims));
                let secs = (rng.below(4_000) as f64) / 2.0;
                out.push(event(
                    EventKind::UsageTime {
                        duration_secs: secs,
                        ends_session: true,
                    },
                    t + 1_000 + rng.below(60_000) as i64,
                    &device,
                    &dims,
                ));
            } else {
                // Countly: begin, increments a minute apart, maybe an end.
                let mut at = t;
                out.push(Event {
                    incremental_session: true,
                    ..event(EventKind::OpenApp, at, &device, &dims)
                });
                let increments = rng.below(5);
                for i in 0..=increments {
                    // Mostly a minute apart; sometimes a silence either side of the
                    // 30-minute session timeout.
                    at += if rng.chance(12) {
                        25 * MINUTE + rng.below(10) as i64 * MINUTE
                    } else {
                        MINUTE + rng.below(1_000) as i64
                    };
                    let last = i == increments;
                    let ends = last && rng.chance(60);
                    if last && !ends && rng.chance(50) {
                        break; // left open: closed by the timeout or the next begin
                    }
                    out.push(Event {
                        incremental_session: true,
                        ..event(
                            EventKind::UsageTime {
                                duration_secs: (rng.below(120) as f64) / 2.0,
                                ends_session: ends,
                            },
                            at,
                            &device,
                            &dims,
                        )
                    });
                }
            }
            if rng.chance(40) {
                let mut e = event(
                    EventKind::Custom {
                        name: rng.pick(&["purchase", "level_up"]).to_owned(),
                        count: 1 + rng.below(3) as u32,
                        sum: (rng.below(1_000) as f64) / 100.0,
                        dur_secs: 0.0,
                        segments: [("sku".to_owned(), rng.pick(&["gold", "silver"]).to_owned())]
                            .into(),
                    },
                    t + 30 * MINUTE + 7,
                    &device,
                    &dims,
                );
                e.user_id.clone_from(&user);
                out.push(e);
            }
            if let Some(last) = out.last_mut() {
                last.user_id.clone_from(&user);
            }
            // Next visit: hours to days later.
            t += if rng.chance(15) {
                20 * MINUTE + rng.below(30) as i64 * MINUTE // back soon: the next begin closes
            } else {
                3 * HOUR + rng.below(4 * 24) as i64 * HOUR + rng.below(60) as i64 * MINUTE
            };
        }
    }
    // Event ids on a third of the events, so that duplicates can be sent.
    for (i, e) in out.iter_mut().enumerate() {
        if i % 3 == 0 {
            e.event_id = Some(format!("ev-{i}"));
        }
    }
    out
}

/// Arrival order: shuffled (late and out-of-order), with some events sent twice.
fn arrival(rng: &mut Rng, events: &[Event]) -> Vec<Event> {
    let mut out: Vec<Event> = events.to_vec();
    for e in events {
        if e.event_id.is_some() && rng.chance(20) {
            out.push(e.clone());
        }
    }
    for i in (1..out.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        out.swap(i, j);
    }
    out
}

async fn load(store: &SqlStore, app_id: i64, events: &[Event], rng: &mut Rng) {
    let mut aggregator = Aggregator::new("reference");
    let mut position = store
        .consumer_position("reference")
        .await
        .expect("position");
    let mut rest = events;
    while !rest.is_empty() {
        let mut batch = Vec::new();
        for _ in 0..1 + rng.below(4) {
            if rest.is_empty() {
                break;
            }
            let n = (1 + rng.below(40) as usize).min(rest.len());
            let (now, later) = rest.split_at(n);
            batch.push(BusMessage {
                position,
                payload: EventRecord::new(app_id, 0, now.to_vec()).encode(),
            });
            position += 1;
            rest = later;
        }
        aggregator.apply(store, &batch).await.expect("apply");
    }
}

/// The brute-force side.
struct Reference {
    events: Vec<Event>,
    tz: jiff::tz::TimeZone,
    today: i32,
    first_day: HashMap<String, i32>,
    active: BTreeMap<i32, BTreeSet<String>>,
}

impl Reference {
    fn new(arrived: &[Event], tz: jiff::tz::TimeZone, today: i32) -> Self {
        let mut seen = HashSet::new();
        let events: Vec<Event> = arrived
            .iter()
            .filter(|e| e.event_id.as_ref().is_none_or(|id| seen.insert(id.clone())))
            .cloned()
            .collect();
        let mut first_ts: HashMap<String, i64> = HashMap::new();
        let mut active: BTreeMap<i32, BTreeSet<String>> = BTreeMap::new();
        for e in &events {
            let f = first_ts.entry(e.device_id.clone()).or_insert(e.ts_ms);
            *f = (*f).min(e.ts_ms);
            active
                .entry(day_in(e.ts_ms, &tz))
                .or_default()
                .insert(e.device_id.clone());
        }
        let first_day = first_ts
            .iter()
            .map(|(d, t)| (d.clone(), day_in(*t, &tz)))
            .collect();
        Reference {
            events,
            tz,
            today,
            first_day,
            active,
        }
    }

    fn active(&self, day: i32) -> BTreeSet<String> {
        self.active.get(&day).cloned().unwrap_or_default()
    }

    fn active_in(&self, from: i32, to: i32) -> BTreeSet<String> {
        (from..=to).flat_map(|d| self.active(d)).collect()
    }

    fn new_on(&self, day: i32) -> BTreeSet<String> {
        self.first_day
            .iter()
            .filter(|(_, f)| **f == day)
            .map(|(d, _)| d.clone())
            .collect()
    }

    fn on(&self, day: i32) -> impl Iterator<Item = &Event> {
        self.events
            .iter()
            .filter(move |e| day_in(e.ts_ms, &self.tz) == day)
    }

    fn overview(&self, from: i32, to: i32) -> Value {
        let mut user_first: HashMap<&str, i64> = HashMap::new();
        for e in &self.events {
            if let Some(u) = &e.user_id {
                let f = user_first.entry(u).or_insert(e.ts_ms);
                *f = (*f).min(e.ts_ms);
            }
        }
        let days: Vec<Value> = (from..=to)
            .map(|d| {
                let launches = self
                    .on(d)
                    .filter(|e| matches!(e.kind, EventKind::OpenApp))
                    .count() as i64;
                let usage: Vec<f64> = self
                    .on(d)
                    .filter_map(|e| match e.kind {
                        EventKind::UsageTime { duration_secs, .. } => Some(duration_secs),
                        _ => None,
                    })
                    .collect();
                let usage_secs: f64 = usage.iter().sum();
                let active = self.active(d).len() as u64;
                let new = self.new_on(d).len() as u64;
                json!({
                    "date": date(d),
                    "launches": launches,
                    "usage_secs": usage_secs,
                    "usage_reports": usage.len(),
                    "avg_session_secs": (launches > 0).then(|| usage_secs / launches as f64),
                    "active_users": active,
                    "new_users": new,
                    "returning_users": active - new,
                    "total_users": self.first_day.values().filter(|f| **f <= d).count(),
                    "registered_users": user_first.values().filter(|t| day_in(**t, &self.tz) <= d).count(),
                })
            })
            .collect();
        json!({ "timezone": self.tz.iana_name().expect("iana"), "days": days })
    }

    fn active_days(&self, from: i32, to: i32) -> Value {
        let ratio = |a: usize, b: usize| (b > 0).then(|| a as f64 / b as f64);
        let days: Vec<Value> = (from..=to)
            .map(|d| {
                let dau = self.active(d).len();
                let wau = self.active_in(d - 6, d).len();
                let mau = self.active_in(d - 29, d).len();
                json!({"date": date(d), "dau": dau, "wau": wau, "mau": mau,
                       "dau_wau": ratio(dau, wau), "dau_mau": ratio(dau, mau)})
            })
            .collect();
        json!({ "timezone": self.tz.iana_name().expect("iana"), "days": days })
    }

    fn weeks(&self, from: i32, to: i32) -> Value {
        // Mondays: 1970-01-05 is day 4.
        let monday = |d: i32| d - (d - 4).rem_euclid(7);
        let mut periods = Vec::new();
        let mut start = monday(from);
        while start <= to {
            let date0 = metrics::date_of(start).iso_week_date();
            periods.push(json!({
                "period": format!("{}-W{:02}", date0.year(), date0.week()),
                "from": date(start), "to": date(start + 6),
                "users": self.active_in(start, start + 6).len(),
                "complete": start + 6 < self.today,
            }));
            start += 7;
        }
        json!({ "timezone": self.tz.iana_name().expect("iana"), "calendar": "week", "periods": periods })
    }

    fn retention(
        &self,
        from: i32,
        to: i32,
        kind: &str,
        mode: &str,
        period: &str,
        offsets: &[i32],
    ) -> Value {
        let len = if period == "week" { 7 } else { 1 };
        let monday = |d: i32| d - (d - 4).rem_euclid(7);
        let (first, last) = if len == 7 {
            (monday(from), monday(to))
        } else {
            (from, to)
        };
        let mut cohorts = Vec::new();
        let mut start = first;
        while start <= last {
            let members: BTreeSet<String> = (start..start + len)
                .flat_map(|d| {
                    if kind == "new" {
                        self.new_on(d)
                    } else {
                        self.active(d)
                    }
                })
                .collect();
            let size = members.len();
            let mut retained = serde_json::Map::new();
            for &n in offsets {
                let at = start + n * len;
                let cell = if at + len - 1 < self.today {
                    let window = if mode == "classic" {
                        self.active_in(at, at + len - 1)
                    } else {
                        self.active_in(at, self.today)
                    };
                    let count = members.intersection(&window).count();
                    json!({"count": count, "ratio": if size == 0 { 0.0 } else { count as f64 / size as f64 }})
                } else {
                    Value::Null
                };
                retained.insert(n.to_string(), cell);
            }
            cohorts.push(json!({"date": date(start), "size": size, "retained": retained}));
            start += len;
        }
        json!({"timezone": self.tz.iana_name().expect("iana"), "kind": kind, "mode": mode,
               "period": period, "cohorts": cohorts})
    }

    fn lifecycle(&self, from: i32, to: i32) -> Value {
        let days: Vec<Value> = (from..=to)
            .map(|d| {
                let (today, before, fresh) = (self.active(d), self.active(d - 1), self.new_on(d));
                json!({
                    "date": date(d),
                    "new": fresh.len(),
                    "returning": today.intersection(&before).count(),
                    "resurrecting": today.iter().filter(|x| !before.contains(*x) && !fresh.contains(*x)).count(),
                    "dormant": before.difference(&today).count(),
                })
            })
            .collect();
        json!({"timezone": self.tz.iana_name().expect("iana"), "days": days})
    }

    fn distribution(&self, from: i32, to: i32, kind: &str) -> Vec<(String, Vec<u64>)> {
        let mut rows: BTreeMap<i32, Vec<u64>> = BTreeMap::new();
        let width = match kind {
            "session_length" => 8,
            "launches_per_device" => 9,
            "freshness" => 32,
            _ => 24,
        };
        for d in from..=to {
            rows.insert(d, vec![0; width]);
        }
        let session_bucket = |s: f64| {
            [3.0, 10.0, 30.0, 60.0, 180.0, 600.0, 1800.0]
                .iter()
                .position(|u| s <= *u)
                .unwrap_or(7)
        };
        match kind {
            "session_length" => {
                // Walk each device's events in time order.
                let mut by_device: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
                for e in &self.events {
                    by_device.entry(&e.device_id).or_default().push(e);
                }
                for (_, mut evs) in by_device {
                    evs.sort_by_key(|e| e.ts_ms);
                    // (begin day, seconds, last report)
                    let mut open: Option<(i32, f64, i64)> = None;
                    let mut sessions: Vec<(i32, f64)> = Vec::new();
                    for e in evs {
                        let reports =
                            e.incremental_session && !matches!(e.kind, EventKind::Custom { .. });
                        if reports
                            && let Some((day, secs, last)) = open
                            && e.ts_ms - last > 30 * MINUTE
                        {
                            sessions.push((day, secs));
                            open = None;
                        }
                        match (&e.kind, e.incremental_session) {
                            (EventKind::OpenApp, true) => {
                                if let Some((day, secs, _)) = open.take() {
                                    sessions.push((day, secs));
                                }
                                open = Some((day_in(e.ts_ms, &self.tz), 0.0, e.ts_ms));
                            }
                            (
                                EventKind::UsageTime {
                                    duration_secs,
                                    ends_session,
                                },
                                true,
                            ) => {
                                let (day, secs, _) =
                                    open.unwrap_or((day_in(e.ts_ms, &self.tz), 0.0, e.ts_ms));
                                open = Some((day, secs + duration_secs, e.ts_ms));
                                if *ends_session {
                                    sessions.push((day, secs + duration_secs));
                                    open = None;
                                }
                            }
                            (EventKind::UsageTime { duration_secs, .. }, false) => {
                                sessions.push((day_in(e.ts_ms, &self.tz), *duration_secs));
                            }
                            _ => {}
                        }
                    }
                    if let Some((day, secs, _)) = open {
                        sessions.push((day, secs));
                    }
                    for (day, secs) in sessions {
                        if let Some(row) = rows.get_mut(&day) {
                            row[session_bucket(secs)] += 1;
                        }
                    }
                }
            }
            "launches_per_device" => {
                for d in from..=to {
                    let mut per: HashMap<&str, u64> = HashMap::new();
                    for e in self.on(d).filter(|e| matches!(e.kind, EventKind::OpenApp)) {
                        *per.entry(&e.device_id).or_default() += 1;
                    }
                    for n in per.values() {
                        let b = [2, 4, 6, 8, 10, 20, 30, 49]
                            .iter()
                            .position(|u| n <= u)
                            .unwrap_or(8);
                        rows.get_mut(&d).expect("row")[b] += 1;
                    }
                }
            }
            "hour_launches" => {
                for e in self
                    .events
                    .iter()
                    .filter(|e| matches!(e.kind, EventKind::OpenApp))
                {
                    if let Some(row) = rows.get_mut(&day_in(e.ts_ms, &self.tz)) {
                        row[hour_in(e.ts_ms, &self.tz)] += 1;
                    }
                }
            }
            "hour_new" => {
                let mut first: HashMap<&str, i64> = HashMap::new();
                for e in &self.events {
                    let f = first.entry(&e.device_id).or_insert(e.ts_ms);
                    *f = (*f).min(e.ts_ms);
                }
                for t in first.values() {
                    if let Some(row) = rows.get_mut(&day_in(*t, &self.tz)) {
                        row[hour_in(*t, &self.tz)] += 1;
                    }
                }
            }
            "hour_active" => {
                let mut seen: HashSet<(i32, usize, &str)> = HashSet::new();
                for e in &self.events {
                    let (d, h) = (day_in(e.ts_ms, &self.tz), hour_in(e.ts_ms, &self.tz));
                    if seen.insert((d, h, &e.device_id))
                        && let Some(row) = rows.get_mut(&d)
                    {
                        row[h] += 1;
                    }
                }
            }
            "freshness" => {
                for d in from..=to {
                    for device in self.active(d) {
                        let age = d - self.first_day[&device];
                        rows.get_mut(&d).expect("row")
                            [usize::try_from(age.min(31)).expect("age")] += 1;
                    }
                }
            }
            other => panic!("no reference for {other}"),
        }
        rows.into_iter().map(|(d, r)| (date(d), r)).collect()
    }

    /// Per value (None = unreported): per-day counts and the total.
    fn breakdown(
        &self,
        from: i32,
        to: i32,
        dim: &str,
        metric: &str,
    ) -> BTreeMap<Option<String>, (u64, Vec<u64>)> {
        let value_of = |e: &Event| -> Option<String> {
            e.dims
                .iter()
                .find(|(n, _)| *n == dim)
                .and_then(|(_, v)| v.map(str::to_owned))
        };
        let width = usize::try_from(to - from + 1).expect("width");
        let mut out: BTreeMap<Option<String>, (u64, Vec<u64>)> = BTreeMap::new();
        let mut unions: BTreeMap<Option<String>, BTreeSet<String>> = BTreeMap::new();
        for d in from..=to {
            let i = usize::try_from(d - from).expect("i");
            let mut per: BTreeMap<Option<String>, BTreeSet<String>> = BTreeMap::new();
            let mut launches: BTreeMap<Option<String>, u64> = BTreeMap::new();
            for e in self.on(d) {
                let v = value_of(e);
                match metric {
                    "launches" => {
                        if matches!(e.kind, EventKind::OpenApp) {
                            *launches.entry(v).or_default() += 1;
                        }
                    }
                    "active_users" => {
                        per.entry(v).or_default().insert(e.device_id.clone());
                    }
                    _ => {
                        if self.first_day[&e.device_id] == d {
                            per.entry(v).or_default().insert(e.device_id.clone());
                        }
                    }
                }
            }
            for (v, n) in launches {
                let entry = out.entry(v).or_insert_with(|| (0, vec![0; width]));
                entry.0 += n;
                entry.1[i] += n;
            }
            for (v, devices) in per {
                let entry = out.entry(v.clone()).or_insert_with(|| (0, vec![0; width]));
                entry.1[i] = devices.len() as u64;
                unions.entry(v).or_default().extend(devices);
            }
        }
        for (v, u) in unions {
            out.get_mut(&v).expect("value").0 = u.len() as u64;
        }
        out
    }

    fn events(&self, from: i32, to: i32) -> BTreeMap<(String, String), (i64, f64)> {
        let mut out = BTreeMap::new();
        for e in &self.events {
            let d = day_in(e.ts_ms, &self.tz);
            if !(from..=to).contains(&d) {
                continue;
            }
            if let EventKind::Custom {
                name,
                count,
                sum,
                segments,
                ..
            } = &e.kind
            {
                for key in [
                    String::new(),
                    segments.get("sku").cloned().unwrap_or_default(),
                ] {
                    let entry: &mut (i64, f64) = out.entry((name.clone(), key)).or_default();
                    entry.0 += i64::from(*count);
                    entry.1 += sum;
                }
            }
        }
        out
    }
}

/// Equal JSON, numbers within a relative 1e-9 (sums are added in other orders).
fn assert_json_eq(actual: &Value, expected: &Value, path: &str) {
    match (actual, expected) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().expect("f64"), b.as_f64().expect("f64"));
            assert!(
                (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
                "{path}: {a} != {b}"
            );
        }
        (Value::Object(a), Value::Object(b)) => {
            let keys_a: BTreeSet<_> = a.keys().collect();
            let keys_b: BTreeSet<_> = b.keys().collect();
            assert_eq!(keys_a, keys_b, "{path}: keys differ");
            for (k, v) in a {
                assert_json_eq(v, &b[k], &format!("{path}.{k}"));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{path}: lengths differ");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert_json_eq(x, y, &format!("{path}[{i}]"));
            }
        }
        _ => assert_eq!(actual, expected, "{path}"),
    }
}

async fn check_zone(store: &SqlStore, zone: &str, seed: u64) {
    let tz = jiff::tz::TimeZone::get(zone).expect("zone");
    let app = store
        .create_app(NewApp {
            name: format!("reference {zone}"),
            timezone: zone.into(),
        })
        .await
        .expect("app");
    // Five weeks around the end of daylight saving time in Europe (27 Oct) and in
    // the United States (3 Nov); "now" is mid-afternoon of 2024-11-14 UTC.
    let start = ts("2024-10-12T00:00:00Z");
    let now = ts("2024-11-14T15:00:00Z");
    let mut rng = Rng(seed);
    let generated = generate(&mut rng, 70, start, now);
    let arrived = arrival(&mut rng, &generated);
    load(store, app.id, &arrived, &mut rng).await;

    // The data must exercise what the test is about: devices whose first arrival was
    // not their first event (late data moves them), and duplicates.
    let mut first_arrival: HashMap<&str, i64> = HashMap::new();
    let mut earliest: HashMap<&str, i64> = HashMap::new();
    for e in &arrived {
        first_arrival.entry(&e.device_id).or_insert(e.ts_ms);
        let t = earliest.entry(&e.device_id).or_insert(e.ts_ms);
        *t = (*t).min(e.ts_ms);
    }
    let moved = first_arrival
        .iter()
        .filter(|(d, t)| earliest[*d] < **t)
        .count();
    assert!(moved > 10, "only {moved} devices arrived late");
    assert!(arrived.len() > generated.len() + 50, "too few duplicates");

    let clock = AppClock::new(app.id, zone, now);
    let reference = Reference::new(&arrived, tz.clone(), clock.today);
    let src: &dyn MetricsSource = store;
    let from = day_in(start, &tz) - 1;
    let to = clock.today;
    let ctx = |what: &str| format!("{zone} on {}: {what}", store.backend_name());

    let overview = metrics::overview(src, &clock, from, to)
        .await
        .expect("overview");
    assert_json_eq(
        &serde_json::to_value(&overview).expect("json"),
        &reference.overview(from, to),
        &ctx("overview"),
    );

    let active = metrics::active(src, &clock, from, to, None)
        .await
        .expect("active");
    assert_json_eq(
        &serde_json::to_value(&active).expect("json"),
        &reference.active_days(from, to),
        &ctx("active"),
    );
    let weeks = metrics::active(src, &clock, from + 3, to, Some(Calendar::Week))
        .await
        .expect("weeks");
    assert_json_eq(
        &serde_json::to_value(&weeks).expect("json"),
        &reference.weeks(from + 3, to),
        &ctx("active?calendar=week"),
    );

    for (kind, mode, period, days) in [
        ("new", "classic", "day", "0,1,2,3,7,14,30"),
        ("active", "unbounded", "day", "1,3,7"),
        ("new", "unbounded", "week", "1,2,3"),
        ("active", "classic", "week", "0,1,4"),
    ] {
        let query =
            RetentionQuery::parse(Some(kind), Some(mode), Some(period), Some(days)).expect("query");
        let offsets: Vec<i32> = days.split(',').map(|n| n.parse().expect("n")).collect();
        let got = metrics::retention(src, &clock, from, to, &query)
            .await
            .expect("retention");
        assert_json_eq(
            &serde_json::to_value(&got).expect("json"),
            &reference.retention(from, to, kind, mode, period, &offsets),
            &ctx(&format!("retention {kind} {mode} {period}")),
        );
    }

    let classic = metrics::retention(
        src,
        &clock,
        from,
        to,
        &RetentionQuery::parse(None, None, None, None).expect("defaults"),
    )
    .await
    .expect("retention");
    let retained: u64 = classic
        .cohorts
        .iter()
        .flat_map(|c| c.retained.values().flatten())
        .map(|cell| cell.count)
        .sum();
    assert!(retained > 20, "the data retains too few users ({retained})");

    let lifecycle = metrics::lifecycle(src, &clock, from, to)
        .await
        .expect("lifecycle");
    assert_json_eq(
        &serde_json::to_value(&lifecycle).expect("json"),
        &reference.lifecycle(from, to),
        &ctx("lifecycle"),
    );

    for kind in [
        "session_length",
        "launches_per_device",
        "hour_launches",
        "hour_new",
        "hour_active",
        "freshness",
    ] {
        let got = metrics::distribution(
            src,
            &clock,
            from,
            to,
            DistributionKind::parse(kind).expect("kind"),
        )
        .await
        .expect("distribution");
        let expected = reference.distribution(from, to, kind);
        let actual: Vec<(String, Vec<u64>)> = got
            .days
            .iter()
            .map(|d| (d.date.clone(), d.counts.clone()))
            .collect();
        assert_eq!(actual, expected, "{}", ctx(kind));
        let total: u64 = got.total.iter().sum();
        assert_eq!(total, expected.iter().flat_map(|(_, r)| r).sum::<u64>());
    }

    for dim in ["platform", "app_version", "channel", "country"] {
        for metric in ["launches", "active_users", "new_users"] {
            let got = metrics::breakdown(
                src,
                &clock,
                from,
                to,
                metrics::parse_dimension(Some(dim)).expect("dim"),
                BreakdownMetric::parse(Some(metric)).expect("metric"),
            )
            .await
            .expect("breakdown");
            let actual: BTreeMap<Option<String>, (u64, Vec<u64>)> = got
                .values
                .iter()
                .map(|v| (v.value.clone(), (v.total, v.counts.clone())))
                .collect();
            assert_eq!(
                actual,
                reference.breakdown(from, to, dim, metric),
                "{}",
                ctx(&format!("breakdown {dim} {metric}"))
            );
            // Largest total first.
            assert!(got.values.windows(2).all(|w| w[0].total >= w[1].total));
        }
    }

    let events = metrics::events(src, &clock, from, to, None, Some("sku"))
        .await
        .expect("events");
    let mut actual = BTreeMap::new();
    for e in &events.events {
        actual.insert((e.name.clone(), String::new()), (e.count, e.sum));
        assert_eq!(e.counts.iter().sum::<i64>(), e.count);
        for s in e.segments.as_deref().unwrap_or_default() {
            actual.insert((e.name.clone(), s.value.clone()), (s.count, s.sum));
        }
    }
    let expected = reference.events(from, to);
    assert_eq!(
        actual.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "{}",
        ctx("events")
    );
    for (k, (count, sum)) in &expected {
        let (c, s) = actual[k];
        assert_eq!(c, *count, "{}", ctx("events count"));
        assert!((s - sum).abs() < 1e-6, "{}", ctx("events sum"));
    }

    let summary = metrics::summary(src, &clock).await.expect("summary");
    let today = clock.today;
    assert_eq!(
        summary.total_users,
        reference.first_day.len() as u64,
        "{}",
        ctx("summary")
    );
    assert_eq!(
        summary.last_7_days.current.active_users,
        reference.active_in(today - 7, today - 1).len() as u64
    );
    assert_eq!(
        summary.last_30_days.previous.active_users,
        reference.active_in(today - 60, today - 31).len() as u64
    );
    assert_eq!(
        summary.yesterday.current.new_users,
        reference.new_on(today - 1).len() as u64
    );
    let mut kept = 0;
    let mut size = 0;
    for cohort in today - 30..today - 1 {
        let members = reference.new_on(cohort);
        size += members.len();
        kept += members.intersection(&reference.active(cohort + 1)).count();
    }
    let d1 = summary.retention["d1"].expect("d1");
    assert!(
        (d1 - kept as f64 / size as f64).abs() < 1e-12,
        "{}",
        ctx("summary d1")
    );
}

#[tokio::test]
async fn metrics_match_a_brute_force_reference_on_both_backends() {
    for t in common::both().await {
        for (i, zone) in ["America/New_York", "Asia/Shanghai", "Europe/London"]
            .into_iter()
            .enumerate()
        {
            check_zone(&t.store, zone, 0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1)).await;
        }
    }
}

/// A store aggregated before migration 0005 had neither set sizes nor per-day
/// registered users: opening it fills both in, and the answers are the same.
#[tokio::test]
async fn stores_from_before_the_metrics_migration_are_filled_in_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqlStore::open_in(dir.path()).await.expect("open");
    let zone = "Asia/Shanghai";
    let app = store
        .create_app(NewApp {
            name: "old".into(),
            timezone: zone.into(),
        })
        .await
        .expect("app");
    let start = ts("2024-10-20T00:00:00Z");
    let now = ts("2024-11-14T15:00:00Z");
    let mut rng = Rng(7);
    let events = generate(&mut rng, 40, start, now);
    load(&store, app.id, &events, &mut rng).await;
    let clock = AppClock::new(app.id, zone, now);
    let tz = jiff::tz::TimeZone::get(zone).expect("zone");
    let from = day_in(start, &tz);
    let before = metrics::overview(&store, &clock, from, clock.today)
        .await
        .expect("overview");
    assert!(before.days.iter().any(|d| d.registered_users > 0));
    store.close().await;

    // What an older build left: no sizes, no registered counts (and the markers that
    // migration 0009 sets for such a store).
    let url = format!("sqlite://{}", dir.path().join("sundial.db").display());
    {
        use sqlx::Connection as _;
        let mut conn = sqlx::SqliteConnection::connect(&url)
            .await
            .expect("connect");
        sqlx::query("DELETE FROM set_sizes")
            .execute(&mut conn)
            .await
            .expect("delete sizes");
        sqlx::query("UPDATE day_counters SET new_registered = 0")
            .execute(&mut conn)
            .await
            .expect("reset registered");
        sqlx::query(
            "INSERT INTO pending_upgrades (name) VALUES ('fill_set_sizes'), ('fill_registered')",
        )
        .execute(&mut conn)
        .await
        .expect("mark as migration 0009 does");
        conn.close().await.expect("close");
    }
    let emptied = SqlStore::connect(&url).await.expect("reopen");
    let after = metrics::overview(&emptied, &clock, from, clock.today)
        .await
        .expect("overview");
    assert_eq!(after, before);
}

async fn snapshot(store: &SqlStore, clock: &AppClock, from: i32, to: i32) -> Value {
    let retention =
        RetentionQuery::parse(None, Some("unbounded"), None, Some("0,1,7")).expect("query");
    let classic =
        RetentionQuery::parse(Some("active"), None, None, Some("0,1,2,7,30")).expect("query");
    json!({
        "overview": metrics::overview(store, clock, from, to).await.expect("overview"),
        "active": metrics::active(store, clock, from, to, None).await.expect("active"),
        "retention": metrics::retention(store, clock, from, to, &retention).await.expect("retention"),
        "classic": metrics::retention(store, clock, from, to, &classic).await.expect("classic"),
        "breakdown": metrics::breakdown(store, clock, from, to, "platform", BreakdownMetric::NewUsers)
            .await
            .expect("breakdown"),
        "freshness": metrics::distribution(store, clock, from, to, DistributionKind::Freshness)
            .await
            .expect("distribution"),
    })
}

/// The daily close-out compacts ended days' sets without changing any answer, also
/// when late events for closed-out days arrive afterwards through an aggregator whose
/// cache predates the close-out; the raw-data retention drops old raw rows only.
#[tokio::test]
async fn close_out_changes_no_answer_and_late_data_still_counts() {
    for t in common::both().await {
        let store = &t.store;
        let zone = "America/New_York";
        let tz = jiff::tz::TimeZone::get(zone).expect("zone");
        let app = store
            .create_app(NewApp {
                name: "close-out".into(),
                timezone: zone.into(),
            })
            .await
            .expect("app");
        let start = ts("2024-10-20T00:00:00Z");
        let now = ts("2024-11-14T15:00:00Z");
        let mut rng = Rng(42);
        let generated = generate(&mut rng, 50, start, now);
        let arrived = arrival(&mut rng, &generated);
        // Two thirds now, the rest (late, for closed-out days too) after the close-out,
        // through the same aggregator.
        let split = arrived.len() * 2 / 3;
        let mut aggregator = Aggregator::new("close-out");
        let mut position = 0;
        for chunk in arrived[..split].chunks(7) {
            let message = BusMessage {
                position,
                payload: EventRecord::new(app.id, 0, chunk.to_vec()).encode(),
            };
            position += 1;
            aggregator.apply(store, &[message]).await.expect("apply");
        }
        let clock = AppClock::new(app.id, zone, now);
        let (from, to) = (day_in(start, &tz) - 1, clock.today);
        let before = snapshot(store, &clock, from, to).await;
        let done = store
            .close_out(app.id, clock.today, None)
            .await
            .expect("close-out");
        assert!(done.sets_compacted > 10 && done.rows_removed > done.sets_compacted);
        assert!(
            done.retention_cells > 100,
            "cells: {}",
            done.retention_cells
        );
        assert_json_eq(
            &snapshot(store, &clock, from, to).await,
            &before,
            "close-out changed an answer",
        );
        // Nothing left to do a second time.
        let again = store
            .close_out(app.id, clock.today, None)
            .await
            .expect("again");
        assert_eq!(again.sets_compacted, 0);

        for chunk in arrived[split..].chunks(7) {
            let message = BusMessage {
                position,
                payload: EventRecord::new(app.id, 0, chunk.to_vec()).encode(),
            };
            position += 1;
            aggregator
                .apply(store, &[message])
                .await
                .expect("apply late");
        }
        let reference = Reference::new(&arrived, tz.clone(), clock.today);
        let overview = metrics::overview(store, &clock, from, to)
            .await
            .expect("overview");
        assert_json_eq(
            &serde_json::to_value(&overview).expect("json"),
            &reference.overview(from, to),
            &format!("late data after close-out on {}", store.backend_name()),
        );
        let active = metrics::active(store, &clock, from, to, None)
            .await
            .expect("active");
        assert_json_eq(
            &serde_json::to_value(&active).expect("json"),
            &reference.active_days(from, to),
            "active after close-out",
        );
        // Late data invalidated the cells that read its days; a second close-out writes
        // them again, and classic retention (now read from cells) is exact.
        let again = store
            .close_out(app.id, clock.today, None)
            .await
            .expect("again");
        assert!(again.retention_cells > 0);
        for kind in ["new", "active"] {
            let query =
                RetentionQuery::parse(Some(kind), None, None, Some("0,1,2,3,7,14,30")).expect("q");
            let got = metrics::retention(store, &clock, from, to, &query)
                .await
                .expect("retention");
            assert_json_eq(
                &serde_json::to_value(&got).expect("json"),
                &reference.retention(from, to, kind, "classic", "day", &[0, 1, 2, 3, 7, 14, 30]),
                &format!("materialised {kind} retention on {}", store.backend_name()),
            );
        }

        // Raw-data retention: rows of days before the cut go, later ones stay.
        let cut = from + 10;
        let kept_before = store.raw_events(app.id, cut, to).await.expect("raw").len();
        let done = store
            .close_out(app.id, clock.today, Some(cut))
            .await
            .expect("retention");
        assert!(done.raw_rows_deleted > 0);
        assert!(
            store
                .raw_events(app.id, from, cut - 1)
                .await
                .expect("raw")
                .is_empty()
        );
        assert_eq!(
            store.raw_events(app.id, cut, to).await.expect("raw").len(),
            kept_before
        );
    }
}

async fn set_zone(store: &SqlStore, app_id: i64, zone: &str) {
    store
        .update_app(
            app_id,
            sundial_analytics::AppUpdate {
                timezone: Some(zone.to_owned()),
                ..Default::default()
            },
        )
        .await
        .expect("update zone");
}

/// After an app's time zone changes, `recompute` rebuilds its aggregates in the new
/// zone: every answer then matches the reference computed in that zone. A range
/// recompute rebuilds only its days and leaves the others as they were.
#[tokio::test]
async fn recompute_after_a_time_zone_change_matches_the_reference() {
    for t in common::both().await {
        let store = &t.store;
        let app = store
            .create_app(NewApp {
                name: "moves".into(),
                timezone: "UTC".into(),
            })
            .await
            .expect("app");
        let start = ts("2024-10-15T00:00:00Z");
        let now = ts("2024-11-14T15:00:00Z");
        let mut rng = Rng(99);
        let generated = generate(&mut rng, 60, start, now);
        let arrived = arrival(&mut rng, &generated);
        load(store, app.id, &arrived, &mut rng).await;

        // Whole app, into Asia/Shanghai.
        let zone = "Asia/Shanghai";
        set_zone(store, app.id, zone).await;
        let mut calls = 0;
        let done = store
            .recompute_app(app.id, None, &mut |_, _| calls += 1)
            .await
            .expect("recompute");
        let tz = jiff::tz::TimeZone::get(zone).expect("zone");
        let clock = AppClock::new(app.id, zone, now);
        let reference = Reference::new(&arrived, tz.clone(), clock.today);
        assert_eq!(done.events, reference.events.len() as u64);
        assert!(calls > 0, "progress is reported");
        let (from, to) = (day_in(start, &tz) - 1, clock.today);
        let ctx = |what: &str| format!("recomputed {what} on {}", store.backend_name());
        let overview = metrics::overview(store, &clock, from, to)
            .await
            .expect("overview");
        assert_json_eq(
            &serde_json::to_value(&overview).expect("json"),
            &reference.overview(from, to),
            &ctx("overview"),
        );
        let lifecycle = metrics::lifecycle(store, &clock, from, to)
            .await
            .expect("lifecycle");
        assert_json_eq(
            &serde_json::to_value(&lifecycle).expect("json"),
            &reference.lifecycle(from, to),
            &ctx("lifecycle"),
        );
        let query = RetentionQuery::parse(None, None, None, Some("1,3,7")).expect("query");
        let retention = metrics::retention(store, &clock, from, to, &query)
            .await
            .expect("retention");
        assert_json_eq(
            &serde_json::to_value(&retention).expect("json"),
            &reference.retention(from, to, "new", "classic", "day", &[1, 3, 7]),
            &ctx("retention"),
        );
        for kind in [
            "session_length",
            "launches_per_device",
            "hour_new",
            "hour_active",
            "freshness",
        ] {
            let got = metrics::distribution(
                store,
                &clock,
                from,
                to,
                DistributionKind::parse(kind).expect("kind"),
            )
            .await
            .expect("distribution");
            let actual: Vec<(String, Vec<u64>)> = got
                .days
                .iter()
                .map(|d| (d.date.clone(), d.counts.clone()))
                .collect();
            assert_eq!(
                actual,
                reference.distribution(from, to, kind),
                "{}",
                ctx(kind)
            );
        }
        // No shadow is left behind.
        assert!(
            store
                .list_apps()
                .await
                .expect("apps")
                .iter()
                .all(|a| !a.name.starts_with("(recompute"))
        );

        // Back to UTC, but only ten days: those match the UTC reference, the others keep
        // their Shanghai figures.
        let before = metrics::overview(store, &clock, from, to)
            .await
            .expect("overview");
        set_zone(store, app.id, "UTC").await;
        let utc = jiff::tz::TimeZone::UTC;
        let clock_utc = AppClock::new(app.id, "UTC", now);
        let (r_from, r_to) = (from + 8, from + 17);
        store
            .recompute_app(app.id, Some((r_from, r_to)), &mut |_, _| {})
            .await
            .expect("range recompute");
        let reference_utc = Reference::new(&arrived, utc, clock_utc.today);
        let after = metrics::overview(store, &clock_utc, from, to)
            .await
            .expect("overview");
        for (i, day) in (from..=to).enumerate() {
            let got = &after.days[i];
            if (r_from..=r_to).contains(&day) {
                let want = &reference_utc.overview(day, day)["days"][0];
                for field in ["launches", "usage_reports", "active_users", "new_users"] {
                    assert_eq!(
                        serde_json::to_value(got).expect("json")[field],
                        want[field],
                        "{} {field} on {}",
                        store.backend_name(),
                        got.date
                    );
                }
            } else {
                let old = &before.days[i];
                assert_eq!(
                    (got.launches, got.active_users, got.new_users),
                    (old.launches, old.active_users, old.new_users),
                    "day {} outside the range changed",
                    got.date
                );
            }
        }
    }
}

/// Events aggregated for the app while a recompute runs make it change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recompute_refuses_to_swap_when_events_arrive_meanwhile() {
    let t = common::sqlite().await;
    let store = &t.store;
    let app = store
        .create_app(NewApp {
            name: "busy".into(),
            timezone: "UTC".into(),
        })
        .await
        .expect("app");
    let start = ts("2024-10-15T00:00:00Z");
    let now = ts("2024-11-14T15:00:00Z");
    let mut rng = Rng(5);
    let events = generate(&mut rng, 30, start, now);
    load(store, app.id, &events, &mut rng).await;
    let clock = AppClock::new(app.id, "UTC", now);
    let before = metrics::overview(store, &clock, clock.today - 30, clock.today)
        .await
        .expect("overview");
    let late = vec![event(
        EventKind::OpenApp,
        now - MINUTE,
        "late-device",
        &Dimensions::default(),
    )];
    let handle = tokio::runtime::Handle::current();
    let mut sent = false;
    let err = store
        .recompute_app(app.id, None, &mut |_, _| {
            if !sent {
                sent = true;
                let store = store.clone();
                let late = late.clone();
                tokio::task::block_in_place(|| {
                    handle.block_on(async move {
                        let mut aggregator = Aggregator::new("live");
                        let message = BusMessage {
                            position: 0,
                            payload: EventRecord::new(app.id, 0, late).encode(),
                        };
                        aggregator.apply(&store, &[message]).await.expect("apply");
                    });
                });
            }
        })
        .await
        .expect_err("must refuse");
    assert!(err.to_string().contains("during the recompute"), "{err}");
    let after = metrics::overview(store, &clock, clock.today - 30, clock.today)
        .await
        .expect("overview");
    // Unchanged but for the late launch, and no shadow left.
    let today = after.days.last().expect("today");
    assert_eq!(
        today.launches,
        before.days.last().expect("today").launches + 1
    );
    assert_eq!(
        &after.days[..after.days.len() - 1],
        &before.days[..before.days.len() - 1]
    );
    assert_eq!(store.list_apps().await.expect("apps").len(), 1);
}

/// An aggregator with warm caches notices app data deleted behind its back (by another
/// process, through the store's data generation) and counts the app afresh.
#[tokio::test]
async fn aggregators_drop_their_caches_when_app_data_changes_elsewhere() {
    for t in common::both().await {
        let store = &t.store;
        let app = store
            .create_app(NewApp {
                name: "wiped".into(),
                timezone: "UTC".into(),
            })
            .await
            .expect("app");
        let at = ts("2024-11-10T10:00:00Z");
        let send = |position: u64, device: &str| BusMessage {
            position,
            payload: EventRecord::new(
                app.id,
                0,
                vec![event(
                    EventKind::OpenApp,
                    at,
                    device,
                    &Dimensions::default(),
                )],
            )
            .encode(),
        };
        let mut aggregator = Aggregator::new("warm");
        aggregator
            .apply(store, &[send(0, "a")])
            .await
            .expect("apply");
        store.delete_app_data(app.id).await.expect("wipe");
        aggregator
            .apply(store, &[send(1, "a")])
            .await
            .expect("apply");
        let clock = AppClock::new(app.id, "UTC", ts("2024-11-14T00:00:00Z"));
        let day = day_in(at, &jiff::tz::TimeZone::UTC);
        let o = metrics::overview(store, &clock, day, day)
            .await
            .expect("overview");
        assert_eq!(
            (
                o.days[0].launches,
                o.days[0].active_users,
                o.days[0].new_users
            ),
            (1, 1, 1),
            "{}",
            store.backend_name()
        );
    }
}
