//! Property tests of the search against a brute-force oracle.
//!
//! The oracle knows nothing about the search: it steps through real instants one by one
//! (every minute for 5-field expressions, every second otherwise), converts each to wall
//! time with jiff and applies the DST rules literally:
//!
//! - a non-fixed job fires at every instant whose wall time matches;
//! - a fixed-time job fires at an instant whose wall time matches and which is the first
//!   occurrence of that wall time, and at an instant that ends a gap if any wall time
//!   skipped by the gap matches.
//!
//! Anchors are drawn near real transitions (1970–2040) of zones with DST, half-hour and
//! 45-minute offsets and historic rule changes, and uniformly over 1970–2199.

use jiff::Timestamp;
use jiff::tz::{AmbiguousOffset, TimeZone};
use proptest::prelude::*;

use crate::Schedule;
use crate::calendar::Calendar;
use crate::civil::Civil;
use crate::parse::Body;
use crate::search;

const ZONES: [&str; 10] = [
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "America/St_Johns",
    "Pacific/Apia",
    "Pacific/Chatham",
    "Africa/Casablanca",
    "Europe/Moscow",
];

fn wall_of(tz: &TimeZone, s: i64) -> Civil {
    let off = tz.to_offset(Timestamp::from_second(s).expect("in range"));
    Civil::from_unix(s + i64::from(off.seconds()))
}

/// Does the schedule fire at the whole second `s`, by the literal rules?
fn oracle_fires(cal: &Calendar, tz: &TimeZone, s: i64) -> bool {
    let wall = wall_of(tz, s);
    if !cal.fixed_time {
        return cal.matches(wall);
    }
    if cal.matches(wall) {
        let dt = wall.to_jiff().expect("in range");
        match tz.to_ambiguous_timestamp(dt).offset() {
            AmbiguousOffset::Fold { before, .. } => {
                if wall.to_unix() - i64::from(before.seconds()) == s {
                    return true;
                }
            }
            _ => return true,
        }
    }
    let prev = wall_of(tz, s - 1);
    let skipped = wall.to_unix() - prev.to_unix() - 1;
    (1..=skipped).any(|k| cal.matches(prev.add_seconds(k)))
}

fn basic(lo: u32, hi: u32) -> BoxedStrategy<String> {
    prop_oneof![
        3 => Just("*".to_owned()),
        2 => (1..=hi.max(2)).prop_map(|n| format!("*/{n}")),
        3 => (lo..=hi).prop_map(|v| v.to_string()),
        2 => (lo..=hi, lo..=hi).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
        2 => (lo..=hi, lo..=hi, lo..=hi).prop_map(|(a, b, c)| format!("{a},{b},{c}")),
        1 => (lo..=hi, 1..=hi.max(2)).prop_map(|(a, n)| format!("{a}/{n}")),
    ]
    .boxed()
}

fn dom() -> BoxedStrategy<String> {
    prop_oneof![
        6 => basic(1, 31),
        1 => Just("?".to_owned()),
        1 => Just("L".to_owned()),
        1 => (1..=5_u32).prop_map(|n| format!("L-{n}")),
        1 => Just("LW".to_owned()),
        1 => (1..=31_u32).prop_map(|n| format!("{n}W")),
    ]
    .boxed()
}

fn dow() -> BoxedStrategy<String> {
    prop_oneof![
        6 => basic(0, 7),
        1 => Just("?".to_owned()),
        1 => Just("MON-FRI".to_owned()),
        1 => (0..=7_u32).prop_map(|n| format!("{n}L")),
        1 => (0..=7_u32, 1..=5_u32).prop_map(|(n, k)| format!("{n}#{k}")),
    ]
    .boxed()
}

/// Dense-ish 5-field expressions (they often fire within the oracle's window).
fn expr5() -> impl Strategy<Value = String> {
    (basic(0, 59), basic(0, 23), dom(), basic(1, 12), dow())
        .prop_map(|(mi, h, d, mo, w)| format!("{mi} {h} {d} {mo} {w}"))
}

/// 6-field expressions with a seconds field, restricted to dense days.
fn expr6() -> impl Strategy<Value = String> {
    (basic(0, 59), basic(0, 59), basic(0, 23)).prop_map(|(s, mi, h)| format!("{s} {mi} {h} * * *"))
}

/// An anchor instant: near a transition of the zone, or anywhere in 1970–2199.
fn anchor(tz: &TimeZone, year: i16, pick: u8, delta: i64, uniform: i64, near: bool) -> Timestamp {
    if near {
        let start = jiff::civil::date(year, 1, 1)
            .to_zoned_datetime(TimeZone::UTC)
            .expect("valid")
            .timestamp();
        if let Some(tr) = tz.following(start).nth(usize::from(pick % 2)) {
            let s = tr.timestamp().as_second() + delta;
            if let Ok(t) = Timestamp::from_second(s) {
                return t;
            }
        }
    }
    Timestamp::from_second(uniform).expect("in range")
}

struct Case {
    cal: Calendar,
    tz: TimeZone,
    t: Timestamp,
    step: i64,
    window: i64,
}

fn case(
    expr: &str,
    zone: usize,
    year: i16,
    pick: u8,
    delta: i64,
    uniform: i64,
    near: bool,
) -> Case {
    let s = Schedule::parse(expr).expect("generated expressions are valid");
    let Body::Calendar(c) = s.expr.body else {
        panic!("calendar expected");
    };
    let tz = TimeZone::get(ZONES[zone]).expect("zone");
    let t = anchor(&tz, year, pick, delta, uniform, near);
    let (step, window) = if c.field_count == 5 {
        (60, 3 * 86_400)
    } else {
        (1, 6 * 3600)
    };
    Case {
        cal: c.cal,
        tz,
        t,
        step,
        window,
    }
}

fn check_next(c: &Case) -> Result<(), TestCaseError> {
    let t = c.t.as_second();
    let next = search::next_after(&c.cal, c.t, &c.tz);
    // Oracle: first firing instant in (t, t + window].
    let first = (t / c.step + 1) * c.step;
    let oracle = (0..)
        .map(|k| first + k * c.step)
        .take_while(|s| *s <= t + c.window)
        .find(|s| oracle_fires(&c.cal, &c.tz, *s));
    match oracle {
        Some(o) => prop_assert_eq!(next.map(|n| n.as_second()), Some(o)),
        None => {
            if let Some(n) = next {
                prop_assert!(n.as_second() > t + c.window);
            }
        }
    }
    if let Some(n) = next {
        prop_assert!(n > c.t);
        prop_assert!(
            oracle_fires(&c.cal, &c.tz, n.as_second()),
            "next {n} does not fire"
        );
        // prev inverts next.
        let p = search::prev_before(&c.cal, n, &c.tz);
        if let Some(p) = p {
            prop_assert!(p <= c.t, "prev_before({n}) = {p} lies after {}", c.t);
            prop_assert_eq!(search::next_after(&c.cal, p, &c.tz), Some(n));
        }
    }
    Ok(())
}

fn check_prev(c: &Case) -> Result<(), TestCaseError> {
    let t = c.t.as_second();
    let prev = search::prev_before(&c.cal, c.t, &c.tz);
    let last = (t - 1).div_euclid(c.step) * c.step;
    let oracle = (0..)
        .map(|k| last - k * c.step)
        .take_while(|s| *s >= t - c.window && *s >= 0)
        .find(|s| oracle_fires(&c.cal, &c.tz, *s));
    match oracle {
        Some(o) => prop_assert_eq!(prev.map(|p| p.as_second()), Some(o)),
        None => {
            if let Some(p) = prev {
                prop_assert!(p.as_second() < t - c.window || t - c.window < 0);
            }
        }
    }
    if let Some(p) = prev {
        prop_assert!(p < c.t);
        prop_assert!(
            oracle_fires(&c.cal, &c.tz, p.as_second()),
            "prev {p} does not fire"
        );
    }
    Ok(())
}

const YEAR_2199_END: i64 = 7_258_118_399;

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn next_after_is_the_first_fire(
        expr in expr5(),
        zone in 0..ZONES.len(),
        year in 1971_i16..2040,
        pick in any::<u8>(),
        delta in -2 * 86_400_i64..2 * 86_400,
        uniform in 0..YEAR_2199_END,
        near in proptest::bool::weighted(0.8),
    ) {
        check_next(&case(&expr, zone, year, pick, delta, uniform, near))?;
    }

    #[test]
    fn prev_before_is_the_last_fire(
        expr in expr5(),
        zone in 0..ZONES.len(),
        year in 1971_i16..2040,
        pick in any::<u8>(),
        delta in -2 * 86_400_i64..2 * 86_400,
        uniform in 0..YEAR_2199_END,
        near in proptest::bool::weighted(0.8),
    ) {
        check_prev(&case(&expr, zone, year, pick, delta, uniform, near))?;
    }

    #[test]
    fn six_fields_second_by_second(
        expr in expr6(),
        zone in 0..ZONES.len(),
        year in 1971_i16..2040,
        pick in any::<u8>(),
        delta in -3 * 3600_i64..3 * 3600,
    ) {
        let c = case(&expr, zone, year, pick, delta, 0, true);
        check_next(&c)?;
        check_prev(&c)?;
    }

    #[test]
    fn civil_search_agrees_with_matches(expr in expr5(), start in 0..YEAR_2199_END) {
        let s = Schedule::parse(&expr).expect("valid");
        let Body::Calendar(c) = s.expr.body else { panic!("calendar") };
        let from = Civil::from_unix(start);
        if let Some(n) = c.cal.next_civil(from) {
            prop_assert!(n >= from && c.cal.matches(n));
            // Nothing matches in between (checked minute by minute over a bounded stretch).
            let mut k = Civil::from_unix((start + 59) / 60 * 60);
            let mut steps = 0;
            while k < n && steps < 20_000 {
                prop_assert!(!c.cal.matches(k), "{k:?} matches before {n:?}");
                k = k.add_seconds(60);
                steps += 1;
            }
            prop_assert_eq!(c.cal.prev_civil(n), Some(n));
        }
        if let Some(p) = c.cal.prev_civil(from) {
            prop_assert!(p <= from && c.cal.matches(p));
        }
    }

    #[test]
    fn normal_form_round_trips(expr in expr5(), secs in basic(0, 59), seven in any::<bool>()) {
        let text = if seven { format!("{secs} {expr} 2030-2040/3") } else { expr };
        let s = Schedule::parse(&text).expect("valid");
        let again = Schedule::parse(&s.to_string()).expect("normal form parses");
        prop_assert_eq!(&again, &s, "{} → {}", text, s);
        let _ = s.describe(crate::Lang::En);
        let _ = s.describe(crate::Lang::Zh);
    }
}

/// The fuzz target's body (crates/cron/fuzz/fuzz_targets/parse_next.rs), run on
/// cron-flavoured noise so `cargo test` covers it too.
fn fuzz_body(expr: &str, raw: i64) {
    let secs = raw.clamp(
        Timestamp::MIN.as_second() + 1,
        Timestamp::MAX.as_second() - 1,
    );
    let t = Timestamp::from_second(secs).expect("clamped into range");
    let tz = TimeZone::get(ZONES[(raw as u64 % ZONES.len() as u64) as usize]).expect("zone");
    match Schedule::parse_with_seed(expr, raw as u64) {
        Ok(s) => {
            if let Some(n) = s.next_after(t, &tz) {
                assert!(n > t);
            }
            if let Some(p) = s.prev_before(t, &tz) {
                assert!(p < t);
            }
            let _ = s.iter_after(t, &tz).take(3).count();
            let norm = s.to_string();
            let again = Schedule::parse(&norm).expect("the normal form parses");
            assert_eq!(again.to_string(), norm);
            let _ = s.describe(crate::Lang::En);
            let _ = s.describe(crate::Lang::Zh);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_noise(
        expr in "[0-9LW#?*/,HhA-Z@ \\t()-]{0,40}|(CRON_)?TZ=[A-Za-z/_]{0,20} [0-9*/, LW#-]{0,30}|@every [0-9a-z]{0,12}",
        raw in any::<i64>(),
    ) {
        fuzz_body(&expr, raw);
    }

    #[test]
    fn never_panics_on_near_valid(
        fields in proptest::collection::vec("[0-9]{1,3}(-[0-9]{1,3})?(/[0-9]{1,2})?|\\*(/[0-9]{1,2})?|L(-[0-9]{1,2})?|[0-9]{1,2}[WL]|[0-9]#[0-9]|\\?|H(\\([0-9]{1,2}-[0-9]{1,2}\\))?(/[0-9]{1,2})?|[A-Za-z]{3}(-[A-Za-z]{3})?", 5..=7),
        raw in any::<i64>(),
    ) {
        fuzz_body(&fields.join(" "), raw);
    }
}
