//! Table tests for every rule of the dialect and of the DST policy.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use sundial_cron::{ErrorKind, Field, Kind, Lang, Schedule};

fn tz(name: &str) -> TimeZone {
    TimeZone::get(name).expect("zone in the bundled tzdb")
}

fn ts(s: &str) -> Timestamp {
    s.parse().expect("valid timestamp")
}

/// The next `n` fires after `from`, as RFC 3339 strings in `zone`.
fn fires(expr: &str, zone: &str, from: &str, n: usize) -> Vec<String> {
    let s = Schedule::parse(expr).expect("valid expression");
    let z = tz(zone);
    let from = if from.ends_with(']') {
        from.parse::<jiff::ZonedDateTime>()
            .expect("valid zoned")
            .timestamp()
    } else {
        ts(from)
    };
    s.iter_after(from, &z)
        .take(n)
        .map(|t| {
            t.to_zoned_datetime(z.clone())
                .strftime("%Y-%m-%dT%H:%M:%S%:z")
                .to_string()
        })
        .collect()
}

/// The previous `n` fires before `from`, newest first.
fn fires_back(expr: &str, zone: &str, from: &str, n: usize) -> Vec<String> {
    let s = Schedule::parse(expr).expect("valid expression");
    let z = tz(zone);
    s.iter_before(ts(from), &z)
        .take(n)
        .map(|t| {
            t.to_zoned_datetime(z.clone())
                .strftime("%Y-%m-%dT%H:%M:%S%:z")
                .to_string()
        })
        .collect()
}

fn err(expr: &str) -> sundial_cron::ParseError {
    Schedule::parse(expr).expect_err("invalid expression")
}

// ---------------------------------------------------------------------------------------
// Parsing.

#[test]
fn field_counts_and_whitespace() {
    assert!(Schedule::parse("  0 0 * * *\t").is_ok());
    assert!(Schedule::parse("0\t0  *\t*  *").is_ok());
    assert!(Schedule::parse("0 0 0 * * *").is_ok());
    assert!(Schedule::parse("0 0 0 * * * 2030").is_ok());
    assert!(matches!(
        err("0 0 * *").kind(),
        ErrorKind::FieldCount { found: 4 }
    ));
    assert!(matches!(
        err("0 0 0 * * * * *").kind(),
        ErrorKind::FieldCount { found: 8 }
    ));
    assert!(matches!(err("   ").kind(), ErrorKind::Empty));
    assert!(matches!(err("").kind(), ErrorKind::Empty));
}

#[test]
fn caret_errors() {
    let e = err("0 0 32 * *");
    assert_eq!(e.field(), Some(Field::DayOfMonth));
    assert_eq!(e.span(), 4..6);
    assert_eq!(
        e.to_string(),
        "invalid day-of-month `32`: must be 1–31\n  0 0 32 * *\n      ^^"
    );
    let e = err("0 22-2 * * *");
    assert_eq!(e.span(), 2..6);
    assert!(e.to_string().contains("write `22-23,0-2`"), "{e}");
    let e = err("*/0 * * * *");
    assert!(matches!(e.kind(), ErrorKind::ZeroStep { .. }));
    assert_eq!(e.span(), 2..3);
    let e = err("0 0 * * MON#6");
    assert_eq!(e.span(), 12..13);
    let e = err("0 0 * FOO *");
    assert_eq!(e.field(), Some(Field::Month));
    assert_eq!(e.span(), 6..9);
    let e = err("60 * * * *");
    assert_eq!(
        e.to_string().lines().next(),
        Some("invalid minute `60`: must be 0–59")
    );
    let e = err("0 0 * * 8");
    assert_eq!(e.field(), Some(Field::DayOfWeek));
    let e = err("0 0 1,,2 * *");
    assert_eq!(e.field(), Some(Field::DayOfMonth));
    let e = err("0 0 * * * 1969");
    assert_eq!(e.field(), Some(Field::DayOfWeek));
    let e = err("0 0 0 * * * 1969");
    assert_eq!(e.field(), Some(Field::Year));
    let e = err("0 0 * * * 99999999999999999999");
    // Six fields: the huge number is a day-of-week.
    assert_eq!(e.field(), Some(Field::DayOfWeek));
    assert!(matches!(e.kind(), ErrorKind::OutOfRange { .. }));
    let e = err("0 0 0 * * * 99999999999999999999");
    assert!(matches!(e.kind(), ErrorKind::OutOfRange { .. }));
    // Quartz letters only where they belong.
    assert_eq!(err("L * * * *").field(), Some(Field::Minute));
    assert_eq!(err("0 ? * * *").field(), Some(Field::Hour));
    assert_eq!(err("0 0 * * L").field(), Some(Field::DayOfWeek));
    assert_eq!(err("0 0 L-31 * *").field(), Some(Field::DayOfMonth));
    assert_eq!(err("0 0 32W * *").field(), Some(Field::DayOfMonth));
}

#[test]
fn aliases_every_reboot_and_zone() {
    assert_eq!(
        Schedule::parse("@daily").expect("ok").to_string(),
        "0 0 * * *"
    );
    assert_eq!(
        Schedule::parse("@MIDNIGHT").expect("ok").to_string(),
        "0 0 * * *"
    );
    assert_eq!(
        Schedule::parse("@hourly").expect("ok").to_string(),
        "0 * * * *"
    );
    assert_eq!(
        Schedule::parse("@weekly").expect("ok").to_string(),
        "0 0 * * 0"
    );
    assert_eq!(
        Schedule::parse("@monthly").expect("ok").to_string(),
        "0 0 1 * *"
    );
    assert_eq!(
        Schedule::parse("@yearly").expect("ok").to_string(),
        "0 0 1 1 *"
    );
    assert_eq!(
        Schedule::parse("@annually").expect("ok").to_string(),
        "0 0 1 1 *"
    );
    let e = err("@reboot");
    assert!(matches!(e.kind(), ErrorKind::Reboot));
    assert!(e.to_string().contains("start-up hook"), "{e}");
    assert!(matches!(
        err("@fortnightly").kind(),
        ErrorKind::UnknownAlias { .. }
    ));
    assert!(matches!(err("@daily 0").kind(), ErrorKind::Trailing { .. }));
    let every = Schedule::parse("@every 1h30m").expect("ok");
    assert_eq!(
        every.kind(),
        Kind::Every(std::time::Duration::from_secs(5400))
    );
    assert_eq!(every.to_string(), "@every 1h30m");
    assert_eq!(
        every.next_after(ts("2024-01-01T00:00:00Z"), &TimeZone::UTC),
        Some(ts("2024-01-01T01:30:00Z"))
    );
    assert!(matches!(
        err("@every 0s").kind(),
        ErrorKind::Duration { .. }
    ));
    assert!(matches!(err("@every").kind(), ErrorKind::Duration { .. }));
    let s = Schedule::parse("CRON_TZ=Europe/Berlin 0 9 * * *").expect("ok");
    assert_eq!(s.timezone_name(), Some("Europe/Berlin"));
    assert!(s.timezone().is_some());
    assert_eq!(s.to_string(), "CRON_TZ=Europe/Berlin 0 9 * * *");
    // The schedule's own zone wins over the zone passed in.
    assert_eq!(
        s.next_after(ts("2024-07-01T00:00:00Z"), &TimeZone::UTC),
        Some(ts("2024-07-01T07:00:00Z"))
    );
    let s = Schedule::parse("TZ=Asia/Kathmandu @daily").expect("ok");
    assert_eq!(
        s.next_after(ts("2024-07-01T00:00:00Z"), &TimeZone::UTC),
        Some(ts("2024-07-01T18:15:00Z"))
    );
    let e = err("CRON_TZ=Mars/Olympus 0 0 * * *");
    assert!(matches!(e.kind(), ErrorKind::TimeZone { .. }));
    assert_eq!(e.span(), 8..20);
}

#[test]
fn names_ranges_steps() {
    let t = "2024-01-01T00:00:00Z";
    assert_eq!(
        fires("0 0 * jan,MAR sun", "UTC", t, 3),
        [
            "2024-01-07T00:00:00+00:00",
            "2024-01-14T00:00:00+00:00",
            "2024-01-21T00:00:00+00:00"
        ]
    );
    // 0 and 7 are both Sunday; never Quartz's 1 = Sunday.
    assert_eq!(
        fires("0 0 * * 7", "UTC", t, 1),
        fires("0 0 * * 0", "UTC", t, 1)
    );
    // 2024-01-01 is a Monday, but the start instant itself is excluded.
    assert_eq!(
        fires("0 0 * * 1", "UTC", t, 1),
        ["2024-01-08T00:00:00+00:00"]
    );
    // FRI-SUN wraps to Sunday as 7.
    assert_eq!(
        Schedule::parse("0 0 * * FRI-SUN").expect("ok").to_string(),
        "0 0 * * 0,5,6"
    );
    // a/n = a-max/n; a step larger than the range yields the start only.
    assert_eq!(
        Schedule::parse("10/20 * * * *").expect("ok").to_string(),
        "10-50/20 * * * *"
    );
    assert_eq!(
        Schedule::parse("5-10/20 * * * *").expect("ok").to_string(),
        "5 * * * *"
    );
    assert_eq!(
        Schedule::parse("*/100 * * * *").expect("ok").to_string(),
        "*/100 * * * *"
    );
    assert_eq!(
        fires("*/100 * * * *", "UTC", t, 2),
        ["2024-01-01T01:00:00+00:00", "2024-01-01T02:00:00+00:00"]
    );
    assert_eq!(
        Schedule::parse("0,15,30,45 * * * *")
            .expect("ok")
            .to_string(),
        "0-45/15 * * * *"
    );
    assert_eq!(
        Schedule::parse("0 12 * * mon-fri").expect("ok").to_string(),
        "0 12 * * 1-5"
    );
    assert_eq!(
        Schedule::parse("0 0 ? * *").expect("ok").to_string(),
        "0 0 * * *"
    );
}

#[test]
fn seconds_and_years() {
    let t = "2024-01-01T00:00:00Z";
    assert_eq!(
        fires("*/20 * * * * *", "UTC", t, 3),
        [
            "2024-01-01T00:00:20+00:00",
            "2024-01-01T00:00:40+00:00",
            "2024-01-01T00:01:00+00:00"
        ]
    );
    assert_eq!(
        fires("0 0 0 1 1 * 2030,2199", "UTC", t, 3),
        ["2030-01-01T00:00:00+00:00", "2199-01-01T00:00:00+00:00"]
    );
    let s = Schedule::parse("0 0 0 1 1 * 2199").expect("ok");
    assert_eq!(
        s.next_after(ts("2199-01-01T00:00:00Z"), &TimeZone::UTC),
        None
    );
    assert_eq!(
        s.prev_before(ts("2300-01-01T00:00:00Z"), &TimeZone::UTC),
        Some(ts("2199-01-01T00:00:00Z"))
    );
    // Before 1970 the first fire is in 1970.
    let s = Schedule::parse("@yearly").expect("ok");
    assert_eq!(
        s.next_after(ts("1960-06-01T00:00:00Z"), &TimeZone::UTC),
        Some(ts("1970-01-01T00:00:00Z"))
    );
    assert_eq!(
        s.prev_before(ts("1970-01-01T00:00:00Z"), &TimeZone::UTC),
        None
    );
}

#[test]
fn the_year_2038() {
    assert_eq!(
        fires("7 14 3 19 1 *", "UTC", "2038-01-01T00:00:00Z", 2),
        ["2038-01-19T03:14:07+00:00", "2039-01-19T03:14:07+00:00"]
    );
    assert_eq!(
        fires("*/1 * * * * *", "UTC", "2038-01-19T03:14:06Z", 3),
        [
            "2038-01-19T03:14:07+00:00",
            "2038-01-19T03:14:08+00:00",
            "2038-01-19T03:14:09+00:00"
        ]
    );
    assert_eq!(
        fires("0 3 * * *", "America/New_York", "2038-03-13T00:00:00Z", 2),
        ["2038-03-13T03:00:00-05:00", "2038-03-14T03:00:00-04:00"]
    );
}

#[test]
fn leap_years() {
    assert_eq!(
        fires("0 0 29 2 *", "UTC", "2097-01-01T00:00:00Z", 2),
        ["2104-02-29T00:00:00+00:00", "2108-02-29T00:00:00+00:00"]
    );
    assert_eq!(
        fires("0 0 29 2 *", "UTC", "2024-03-01T00:00:00Z", 1),
        ["2028-02-29T00:00:00+00:00"]
    );
    assert_eq!(
        fires("0 0 L 2 *", "UTC", "2099-03-01T00:00:00Z", 2),
        ["2100-02-28T00:00:00+00:00", "2101-02-28T00:00:00+00:00"]
    );
    assert_eq!(
        fires_back("0 0 29 2 *", "UTC", "2104-01-01T00:00:00Z", 2),
        ["2096-02-29T00:00:00+00:00", "2092-02-29T00:00:00+00:00"]
    );
}

#[test]
fn never_firing_schedules_end_quickly() {
    for expr in [
        "0 0 30 2 *",
        "0 0 31 4,6,9,11 *",
        "0 0 0 29 2 * 2100",
        "0 0 0 31 2 ? *",
        "0 0 0 30 2 * 1970-2199",
    ] {
        let s = Schedule::parse(expr).expect("parses");
        for zone in ["UTC", "America/New_York", "Australia/Lord_Howe"] {
            assert_eq!(
                s.next_after(ts("1970-01-01T00:00:00Z"), &tz(zone)),
                None,
                "{expr}"
            );
            assert_eq!(
                s.prev_before(ts("2199-12-31T00:00:00Z"), &tz(zone)),
                None,
                "{expr}"
            );
        }
    }
}

#[test]
fn fifth_weekday_gaps_of_decades() {
    // A February with five Mondays needs a leap year whose February starts on Monday.
    assert_eq!(
        fires("0 0 * 2 MON#5", "UTC", "2000-01-01T00:00:00Z", 4),
        [
            "2016-02-29T00:00:00+00:00",
            "2044-02-29T00:00:00+00:00",
            "2072-02-29T00:00:00+00:00",
            "2112-02-29T00:00:00+00:00",
        ]
    );
    assert_eq!(
        fires_back("0 0 * 2 1#5", "UTC", "2112-02-29T00:00:00Z", 2),
        ["2072-02-29T00:00:00+00:00", "2044-02-29T00:00:00+00:00"]
    );
}

#[test]
fn quartz_days() {
    let t = "2024-01-01T00:00:00Z";
    assert_eq!(
        fires("0 0 L * *", "UTC", t, 3),
        [
            "2024-01-31T00:00:00+00:00",
            "2024-02-29T00:00:00+00:00",
            "2024-03-31T00:00:00+00:00"
        ]
    );
    assert_eq!(
        fires("0 0 L-2 * *", "UTC", t, 2),
        ["2024-01-29T00:00:00+00:00", "2024-02-27T00:00:00+00:00"]
    );
    // LW: March 2024 ends on a Sunday → Friday the 29th; June 2024 ends on Sunday → 28th.
    assert_eq!(
        fires("0 0 LW 3,6 *", "UTC", t, 2),
        ["2024-03-29T00:00:00+00:00", "2024-06-28T00:00:00+00:00"]
    );
    // 1W never leaves the month: June 1 2024 is a Saturday → Monday the 3rd.
    assert_eq!(
        fires("0 0 1W 6 *", "UTC", t, 1),
        ["2024-06-03T00:00:00+00:00"]
    );
    // 15W: 2024-06-15 is a Saturday → Friday the 14th; 2024-09-15 is a Sunday → 16th.
    assert_eq!(
        fires("0 0 15W 6,9 *", "UTC", t, 2),
        ["2024-06-14T00:00:00+00:00", "2024-09-16T00:00:00+00:00"]
    );
    // 5L: last Friday.
    assert_eq!(
        fires("0 0 ? * 5L", "UTC", t, 2),
        ["2024-01-26T00:00:00+00:00", "2024-02-23T00:00:00+00:00"]
    );
    // MON#2: second Monday.
    assert_eq!(
        fires("0 0 ? * MON#2", "UTC", t, 2),
        ["2024-01-08T00:00:00+00:00", "2024-02-12T00:00:00+00:00"]
    );
}

#[test]
fn vixie_day_rule() {
    let t = "2024-01-01T00:00:00Z";
    // Both restricted: either matches (1st of the month OR any Friday).
    assert_eq!(
        fires("0 0 1 * FRI", "UTC", t, 3),
        [
            "2024-01-05T00:00:00+00:00",
            "2024-01-12T00:00:00+00:00",
            "2024-01-19T00:00:00+00:00"
        ]
    );
    assert_eq!(
        fires("0 0 1 2 FRI", "UTC", t, 2),
        ["2024-02-01T00:00:00+00:00", "2024-02-02T00:00:00+00:00"]
    );
    // A field beginning with `*` (also `*/n`, `?`): both must match.
    assert_eq!(
        fires("0 0 */2 * FRI", "UTC", t, 2),
        ["2024-01-05T00:00:00+00:00", "2024-01-19T00:00:00+00:00"]
    );
    assert_eq!(
        fires("0 0 13 * */7", "UTC", t, 1),
        ["2024-10-13T00:00:00+00:00"]
    );
    assert_eq!(
        fires("0 0 ? * FRI", "UTC", t, 1),
        ["2024-01-05T00:00:00+00:00"]
    );
}

#[test]
fn hashed_values() {
    let a = Schedule::parse_with_seed("H H * * *", 1).expect("ok");
    let b = Schedule::parse_with_seed("H H * * *", 2).expect("ok");
    assert_eq!(a, Schedule::parse_with_seed("H H * * *", 1).expect("ok"));
    assert_ne!(a.to_string(), b.to_string());
    // Spread: 1000 job ids fall on many different minutes.
    let minutes: std::collections::HashSet<String> = (0..1000)
        .map(|i| {
            Schedule::parse_with_seed("H * * * *", sundial_cron::hash_seed(&format!("job-{i}")))
                .expect("ok")
                .to_string()
        })
        .collect();
    assert!(minutes.len() > 50, "{}", minutes.len());
    for seed in 0..200 {
        let s = Schedule::parse_with_seed("H(10-20)/5 H(1-3) H * H", seed).expect("ok");
        let norm = s.to_string();
        let f: Vec<&str> = norm.split(' ').collect();
        let hour: u32 = f[1].parse().expect("one hour");
        assert!((1..=3).contains(&hour), "{norm}");
        let dom: u32 = f[2].parse().expect("one day");
        assert!((1..=28).contains(&dom), "{norm}");
        let dow: u32 = f[4].parse().expect("one weekday");
        assert!(dow <= 6, "{norm}");
        let minutes: Vec<i8> = s
            .iter_after(ts("2024-01-01T00:00:00Z"), &TimeZone::UTC)
            .take(3)
            .map(|t| t.to_zoned_datetime(TimeZone::UTC).minute())
            .collect();
        assert!(minutes.iter().all(|m| (10..=20).contains(m)), "{norm}");
        assert!(
            minutes[0] < minutes[1],
            "{norm}: H/5 fires at least twice an hour"
        );
        // The normal form parses back to the same schedule.
        assert_eq!(Schedule::parse(&norm).expect("normal form parses"), s);
    }
    assert!(Schedule::parse("0 0 0 * * * H").is_err());
}

// ---------------------------------------------------------------------------------------
// DST: America/New_York (2024-03-10 02:00 → 03:00, 2024-11-03 02:00 → 01:00).

#[test]
fn new_york_spring_forward() {
    let from = "2024-03-09T12:00:00-05:00[America/New_York]";
    // Fixed time in the gap → the first instant after it.
    assert_eq!(
        fires("30 2 * * *", "America/New_York", from, 2),
        ["2024-03-10T03:00:00-04:00", "2024-03-11T02:30:00-04:00"]
    );
    // Several fixed times in the gap (and one right after it) fire once.
    assert_eq!(
        fires("0,30 2,3 * * *", "America/New_York", from, 4),
        [
            "2024-03-10T03:00:00-04:00",
            "2024-03-10T03:30:00-04:00",
            "2024-03-11T02:00:00-04:00",
            "2024-03-11T02:30:00-04:00",
        ]
    );
    // `*` in minute or hour: times that do not exist are skipped.
    assert_eq!(
        fires(
            "*/30 * * * *",
            "America/New_York",
            "2024-03-10T01:15:00-05:00[America/New_York]",
            3
        ),
        [
            "2024-03-10T01:30:00-05:00",
            "2024-03-10T03:00:00-04:00",
            "2024-03-10T03:30:00-04:00"
        ]
    );
    assert_eq!(
        fires(
            "15 * * * *",
            "America/New_York",
            "2024-03-10T01:15:00-05:00[America/New_York]",
            2
        ),
        ["2024-03-10T03:15:00-04:00", "2024-03-10T04:15:00-04:00"]
    );
    assert_eq!(
        fires("*/20 2 * * *", "America/New_York", from, 1),
        ["2024-03-11T02:00:00-04:00"]
    );
}

#[test]
fn new_york_fall_back() {
    let from = "2024-11-02T12:00:00-04:00[America/New_York]";
    // Fixed time in the repeated hour: once, in the first copy.
    assert_eq!(
        fires("30 1 * * *", "America/New_York", from, 2),
        ["2024-11-03T01:30:00-04:00", "2024-11-04T01:30:00-05:00"]
    );
    // `*` jobs run in both copies.
    assert_eq!(
        fires(
            "*/30 * * * *",
            "America/New_York",
            "2024-11-03T00:45:00-04:00[America/New_York]",
            5
        ),
        [
            "2024-11-03T01:00:00-04:00",
            "2024-11-03T01:30:00-04:00",
            "2024-11-03T01:00:00-05:00",
            "2024-11-03T01:30:00-05:00",
            "2024-11-03T02:00:00-05:00",
        ]
    );
    assert_eq!(
        fires(
            "0 * * * *",
            "America/New_York",
            "2024-11-03T00:00:00-04:00[America/New_York]",
            3
        ),
        [
            "2024-11-03T01:00:00-04:00",
            "2024-11-03T01:00:00-05:00",
            "2024-11-03T02:00:00-05:00"
        ]
    );
    // Starting inside the first copy, after the last first-copy fire.
    assert_eq!(
        fires(
            "*/20 1 * * *",
            "America/New_York",
            "2024-11-03T01:50:00-04:00[America/New_York]",
            4
        ),
        [
            "2024-11-03T01:00:00-05:00",
            "2024-11-03T01:20:00-05:00",
            "2024-11-03T01:40:00-05:00",
            "2024-11-04T01:00:00-05:00",
        ]
    );
    // Starting inside the second copy: a fixed-time job does not fire again.
    assert_eq!(
        fires(
            "45 1 * * *",
            "America/New_York",
            "2024-11-03T01:10:00-05:00[America/New_York]",
            1
        ),
        ["2024-11-04T01:45:00-05:00"]
    );
    // Backwards: both copies for `*` jobs, newest first.
    assert_eq!(
        fires_back(
            "*/30 1 * * *",
            "America/New_York",
            "2024-11-03T07:00:00Z",
            5
        ),
        [
            "2024-11-03T01:30:00-05:00",
            "2024-11-03T01:00:00-05:00",
            "2024-11-03T01:30:00-04:00",
            "2024-11-03T01:00:00-04:00",
            "2024-11-02T01:30:00-04:00",
        ]
    );
    assert_eq!(
        fires_back("30 1 * * *", "America/New_York", "2024-11-03T07:00:00Z", 2),
        ["2024-11-03T01:30:00-04:00", "2024-11-02T01:30:00-04:00"]
    );
}

// Europe/Berlin (2024-03-31 02:00 → 03:00, 2024-10-27 03:00 → 02:00).

#[test]
fn berlin() {
    assert_eq!(
        fires("30 2 * * *", "Europe/Berlin", "2024-03-30T12:00:00Z", 2),
        ["2024-03-31T03:00:00+02:00", "2024-04-01T02:30:00+02:00"]
    );
    assert_eq!(
        fires("30 2 * * *", "Europe/Berlin", "2024-10-26T12:00:00Z", 2),
        ["2024-10-27T02:30:00+02:00", "2024-10-28T02:30:00+01:00"]
    );
    assert_eq!(
        fires("*/20 2 * * *", "Europe/Berlin", "2024-10-26T12:00:00Z", 7),
        [
            "2024-10-27T02:00:00+02:00",
            "2024-10-27T02:20:00+02:00",
            "2024-10-27T02:40:00+02:00",
            "2024-10-27T02:00:00+01:00",
            "2024-10-27T02:20:00+01:00",
            "2024-10-27T02:40:00+01:00",
            "2024-10-28T02:00:00+01:00",
        ]
    );
    assert_eq!(
        fires("*/20 2 * * *", "Europe/Berlin", "2024-03-30T12:00:00Z", 2),
        // No 02:xx exists on 31 March: the next fires are the following night.
        ["2024-04-01T02:00:00+02:00", "2024-04-01T02:20:00+02:00"]
    );
    // Six fields, fixed minute and hour, every second: the seconds of 02:30 in the gap
    // collapse into one fire at 03:00:00.
    assert_eq!(
        fires("* 30 2 * * *", "Europe/Berlin", "2024-03-30T12:00:00Z", 2),
        ["2024-03-31T03:00:00+02:00", "2024-04-01T02:30:00+02:00"]
    );
}

// Australia/Lord_Howe: +10:30 standard, +11:00 summer; 30-minute shifts at 02:00.

#[test]
fn lord_howe() {
    // 2024-10-06 02:00 → 02:30.
    assert_eq!(
        fires(
            "15 2 * * *",
            "Australia/Lord_Howe",
            "2024-10-05T00:00:00Z",
            2
        ),
        ["2024-10-06T02:30:00+11:00", "2024-10-07T02:15:00+11:00"]
    );
    // 2024-04-07 02:00 → 01:30: 01:30–01:59 happens twice.
    assert_eq!(
        fires(
            "45 1 * * *",
            "Australia/Lord_Howe",
            "2024-04-06T00:00:00Z",
            2
        ),
        ["2024-04-07T01:45:00+11:00", "2024-04-08T01:45:00+10:30"]
    );
    assert_eq!(
        fires(
            "*/15 1 * * *",
            "Australia/Lord_Howe",
            "2024-04-06T13:50:00Z",
            6
        ),
        [
            "2024-04-07T01:00:00+11:00",
            "2024-04-07T01:15:00+11:00",
            "2024-04-07T01:30:00+11:00",
            "2024-04-07T01:45:00+11:00",
            "2024-04-07T01:30:00+10:30",
            "2024-04-07T01:45:00+10:30",
        ]
    );
}

#[test]
fn odd_offsets_and_historic_rules() {
    // Kathmandu +05:45 (was +05:30 until 1986, when 00:00–00:15 was skipped: a fixed
    // midnight job fires at the end of that gap).
    assert_eq!(
        fires("0 0 * * *", "Asia/Kathmandu", "1985-12-30T12:00:00Z", 2),
        ["1985-12-31T00:00:00+05:30", "1986-01-01T00:15:00+05:45"]
    );
    assert_eq!(
        fires("0 0 * * *", "Asia/Kathmandu", "2024-01-01T00:00:00Z", 1),
        ["2024-01-02T00:00:00+05:45"]
    );
    // Samoa skipped 2011-12-30 entirely: a fixed daily job fires at the end of the gap.
    assert_eq!(
        fires("0 12 * * *", "Pacific/Apia", "2011-12-29T23:00:00Z", 2),
        ["2011-12-31T00:00:00+14:00", "2011-12-31T12:00:00+14:00"]
    );
    // Chatham +12:45/+13:45.
    assert_eq!(
        fires("0 9 * * *", "Pacific/Chatham", "2024-07-01T00:00:00Z", 1),
        ["2024-07-02T09:00:00+12:45"]
    );
}

#[test]
fn matches_and_exclusive_bounds() {
    let s = Schedule::parse("30 1 * * *").expect("ok");
    let first: jiff::ZonedDateTime = "2024-11-03T01:30:00-04:00[America/New_York]"
        .parse()
        .expect("ok");
    let second: jiff::ZonedDateTime = "2024-11-03T01:30:00-05:00[America/New_York]"
        .parse()
        .expect("ok");
    assert!(s.matches(&first));
    assert!(!s.matches(&second));
    let gap = Schedule::parse("30 2 * * *").expect("ok");
    let after_gap: jiff::ZonedDateTime = "2024-03-10T03:00:00-04:00[America/New_York]"
        .parse()
        .expect("ok");
    assert!(gap.matches(&after_gap));
    // The given instant is exclusive.
    let t = ts("2024-01-01T00:00:00Z");
    let daily = Schedule::parse("@daily").expect("ok");
    assert_eq!(
        daily.next_after(t, &TimeZone::UTC),
        Some(ts("2024-01-02T00:00:00Z"))
    );
    assert_eq!(
        daily.prev_before(t, &TimeZone::UTC),
        Some(ts("2023-12-31T00:00:00Z"))
    );
    let t = ts("2024-01-01T00:00:00.5Z");
    assert_eq!(
        daily.prev_before(t, &TimeZone::UTC),
        Some(ts("2024-01-01T00:00:00Z"))
    );
    assert!(!daily.matches(&t.to_zoned_datetime(TimeZone::UTC)));
    assert_eq!(
        daily
            .next_zoned_after(
                &"2024-01-01T12:00:00+01:00[Europe/Berlin]"
                    .parse()
                    .expect("ok")
            )
            .map(|z| z.to_string()),
        Some("2024-01-02T00:00:00+01:00[Europe/Berlin]".to_owned())
    );
}

// ---------------------------------------------------------------------------------------
// Text.

#[test]
fn descriptions() {
    let d = |e: &str, l| Schedule::parse(e).expect("ok").describe(l);
    assert_eq!(
        d("30 2 * * MON-FRI", Lang::En),
        "At 02:30, Monday through Friday"
    );
    assert_eq!(d("30 2 * * MON-FRI", Lang::Zh), "周一至周五 02:30");
    assert_eq!(d("0 0 * * *", Lang::En), "At 00:00");
    assert_eq!(d("0 0 * * *", Lang::Zh), "每天 00:00");
    assert_eq!(d("*/5 * * * *", Lang::En), "Every 5 minutes");
    assert_eq!(d("*/5 * * * *", Lang::Zh), "每5分钟");
    assert_eq!(
        d("0 0 L * *", Lang::En),
        "At 00:00, on the last day of the month"
    );
    assert_eq!(
        d("0 9 ? * 5L", Lang::En),
        "At 09:00, on the last Friday of the month"
    );
    assert_eq!(d("0 9 ? * 1#2", Lang::Zh), "每月第二个周一 09:00");
    assert_eq!(
        d("0 0 1 1 *", Lang::En),
        "At 00:00, on day 1 of the month, in January"
    );
    assert_eq!(
        d("0 9,17 1 * MON", Lang::En),
        "At 09:00 and 17:00, on day 1 of the month or Monday"
    );
    assert_eq!(
        d("@every 90m", Lang::En),
        "Every 90 minutes (an interval, not a calendar)"
    );
    assert_eq!(
        d("CRON_TZ=Asia/Shanghai 0 8 * * *", Lang::En),
        "At 08:00 (Asia/Shanghai time)"
    );
}

#[test]
fn display_round_trips() {
    for expr in [
        "0 12 * * MON-FRI",
        "*/5 * * * *",
        "0 0 L-3,LW,15W * ?",
        "0 0 ? * 5L,1#2,SAT",
        "*/10,7 0-5,20 1,2,3,10 */2 *",
        "0 0 0 1 1 * 2030-2035,2040",
        "CRON_TZ=America/New_York 30 2 * * *",
        "@every 1d2h3m4s5ms",
    ] {
        let s = Schedule::parse(expr).expect("valid");
        let again = Schedule::parse(&s.to_string()).expect("normal form parses");
        assert_eq!(again, s, "{expr} → {s}");
        assert_eq!(again.to_string(), s.to_string());
    }
}
