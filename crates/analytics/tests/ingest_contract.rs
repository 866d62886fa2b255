//! The ingest contract, case by case: what is accepted, what is rejected with which
//! index/field/reason, and what refuses the whole envelope.

use jiff::Timestamp;
use proptest::prelude::*;
use serde_json::json;
use sundial_analytics::{
    Dimensions, EnvelopeError, EventKind, Limits, SingleKind, parse_batch, parse_single,
};

/// 2024-11-24T00:00:00Z, the contract example's day.
fn now() -> Timestamp {
    Timestamp::from_millisecond(1_732_406_400_000).expect("valid")
}

fn batch(value: serde_json::Value) -> Result<sundial_analytics::Batch, EnvelopeError> {
    parse_batch(value.to_string().as_bytes(), now(), &Limits::default())
}

#[test]
fn the_contract_example_is_accepted_whole() {
    let body = json!({
        "app_key": "k", "device_id": "batch-device",
        "events": [
            {"type": "open_app", "ts": 1732406400123_i64, "device_id": "d1", "user_id": "u1",
             "platform": "ios", "app_version": "1.2.3", "channel": "appstore",
             "os_version": "17.1", "device_model": "iPhone15,2", "locale": "zh_CN",
             "country": "CN", "event_id": "e-1"},
            {"type": "usage_time", "ts": "2024-11-24T08:00:00+08:00", "device_id": "d1",
             "duration_secs": 42.5},
            {"type": "custom", "name": "purchase", "ts": 1732406400999_i64, "device_id": "d1",
             "count": 1, "sum": 9.99, "segments": {"sku": "gold"}}
        ]
    });
    let b = batch(body).expect("readable");
    assert_eq!(b.app_key, "k");
    assert!(b.rejected.is_empty(), "{:?}", b.rejected);
    assert_eq!(b.accepted.len(), 3);
    let open = &b.accepted[0];
    assert_eq!(open.kind, EventKind::OpenApp);
    assert_eq!(open.ts_ms, 1_732_406_400_123);
    assert_eq!(open.user_id.as_deref(), Some("u1"));
    assert_eq!(open.event_id.as_deref(), Some("e-1"));
    assert_eq!(open.dims.country.as_deref(), Some("CN"));
    // 08:00+08:00 is midnight UTC.
    assert_eq!(b.accepted[1].ts_ms, 1_732_406_400_000);
    assert_eq!(
        b.accepted[1].kind,
        EventKind::UsageTime {
            duration_secs: 42.5,
            ends_session: true
        }
    );
    match &b.accepted[2].kind {
        EventKind::Custom {
            name,
            count,
            sum,
            segments,
            ..
        } => {
            assert_eq!(name, "purchase");
            assert_eq!(*count, 1);
            assert!((sum - 9.99).abs() < 1e-12);
            assert_eq!(segments.get("sku").map(String::as_str), Some("gold"));
        }
        other => panic!("not custom: {other:?}"),
    }
}

#[test]
fn batch_level_device_and_dimensions_are_inherited() {
    let b = batch(json!({
        "app_key": "k", "device_id": "d0", "platform": "android", "channel": "play",
        "events": [
            {"type": "open_app", "ts": 1732406400000_i64},
            {"type": "open_app", "ts": 1732406400000_i64, "device_id": "d9", "platform": "ios"}
        ]
    }))
    .expect("readable");
    assert_eq!(b.accepted[0].device_id, "d0");
    assert_eq!(b.accepted[0].dims.platform.as_deref(), Some("android"));
    assert_eq!(b.accepted[1].device_id, "d9");
    assert_eq!(b.accepted[1].dims.platform.as_deref(), Some("ios"));
    assert_eq!(b.accepted[1].dims.channel.as_deref(), Some("play"));
}

#[test]
fn valid_events_are_accepted_beside_rejected_ones() {
    let long = "x".repeat(129);
    let cases: Vec<(serde_json::Value, &str, &str)> = vec![
        (
            json!({"ts": 1732406400000_i64, "device_id": "d"}),
            "type",
            "is missing",
        ),
        (
            json!({"type": "launch", "ts": 1732406400000_i64, "device_id": "d"}),
            "type",
            "not an event type",
        ),
        (
            json!({"type": 3, "ts": 1732406400000_i64, "device_id": "d"}),
            "type",
            "must be a string",
        ),
        (
            json!({"type": "open_app", "device_id": "d"}),
            "ts",
            "is missing",
        ),
        (
            json!({"type": "open_app", "ts": "yesterday", "device_id": "d"}),
            "ts",
            "RFC 3339",
        ),
        (
            json!({"type": "open_app", "ts": "2024-11-24T08:00:00", "device_id": "d"}),
            "ts",
            "with an offset",
        ),
        (
            json!({"type": "open_app", "ts": 1.5, "device_id": "d"}),
            "ts",
            "looks like seconds",
        ),
        (
            json!({"type": "open_app", "ts": true, "device_id": "d"}),
            "ts",
            "found a boolean",
        ),
        (
            json!({"type": "open_app", "ts": 1732406400_i64, "device_id": "d"}),
            "ts",
            "looks like seconds",
        ),
        (
            json!({"type": "open_app", "ts": "2024-09-01T00:00:00Z", "device_id": "d"}),
            "ts",
            "older than the accepted window of 30 days",
        ),
        (
            json!({"type": "open_app", "ts": 1732406400000_i64}),
            "device_id",
            "is missing",
        ),
        (
            json!({"type": "open_app", "ts": 1732406400000_i64, "device_id": long}),
            "device_id",
            "at most 128",
        ),
        (
            json!({"type": "open_app", "ts": 1732406400000_i64, "device_id": 7}),
            "device_id",
            "must be a string",
        ),
        (
            json!({"type": "open_app", "ts": 1732406400000_i64, "device_id": "d", "platform": ["ios"]}),
            "platform",
            "must be a string",
        ),
        (
            json!({"type": "open_app", "ts": 1732406400000_i64, "device_id": "d", "duration_secs": 3}),
            "duration_secs",
            "not a field of a `open_app` event",
        ),
        (
            json!({"type": "open_app", "ts": 1732406400000_i64, "device_id": "d", "plattform": "ios"}),
            "plattform",
            "not a field",
        ),
        (
            json!({"type": "usage_time", "ts": 1732406400000_i64, "device_id": "d"}),
            "duration_secs",
            "is missing",
        ),
        (
            json!({"type": "usage_time", "ts": 1732406400000_i64, "device_id": "d", "duration_secs": -1}),
            "duration_secs",
            "from 0 to 86400",
        ),
        (
            json!({"type": "usage_time", "ts": 1732406400000_i64, "device_id": "d", "duration_secs": 86400.5}),
            "duration_secs",
            "from 0 to 86400",
        ),
        (
            json!({"type": "usage_time", "ts": 1732406400000_i64, "device_id": "d", "duration_secs": "42"}),
            "duration_secs",
            "found a string",
        ),
        (
            json!({"type": "custom", "ts": 1732406400000_i64, "device_id": "d"}),
            "name",
            "is missing",
        ),
        (
            json!({"type": "custom", "ts": 1732406400000_i64, "device_id": "d", "name": long}),
            "name",
            "at most 128",
        ),
        (
            json!({"type": "custom", "ts": 1732406400000_i64, "device_id": "d", "name": "n", "count": 0}),
            "count",
            "from 1 to",
        ),
        (
            json!({"type": "custom", "ts": 1732406400000_i64, "device_id": "d", "name": "n", "count": 1.5}),
            "count",
            "whole number",
        ),
        (
            json!({"type": "custom", "ts": 1732406400000_i64, "device_id": "d", "name": "n", "sum": "9"}),
            "sum",
            "must be a number",
        ),
        (
            json!({"type": "custom", "ts": 1732406400000_i64, "device_id": "d", "name": "n", "segments": ["a"]}),
            "segments",
            "must be an object",
        ),
        (
            json!({"type": "custom", "ts": 1732406400000_i64, "device_id": "d", "name": "n", "segments": {"a": {"b": 1}}}),
            "segments.a",
            "found an object",
        ),
        (json!("not an object"), "event", "must be a JSON object"),
    ];
    let n = cases.len();
    let mut events: Vec<serde_json::Value> = Vec::new();
    for (bad, _, _) in &cases {
        events.push(json!({"type": "open_app", "ts": 1732406400000_i64, "device_id": "ok"}));
        events.push(bad.clone());
    }
    let b = batch(json!({"app_key": "k", "events": events})).expect("readable");
    assert_eq!(b.accepted.len(), n, "every valid event is accepted");
    assert_eq!(b.rejected.len(), n, "{:#?}", b.rejected);
    for (i, ((_, field, reason), rejection)) in cases.iter().zip(&b.rejected).enumerate() {
        assert_eq!(rejection.index, 2 * i + 1, "case {i}");
        assert_eq!(rejection.field, *field, "case {i}: {rejection}");
        assert!(
            rejection.reason.contains(reason),
            "case {i}: `{}` should mention `{reason}`",
            rejection.reason
        );
    }
}

#[test]
fn future_timestamps_are_clamped_and_counted() {
    let eleven_min = 1_732_406_400_000_i64 + 11 * 60_000;
    let nine_min = 1_732_406_400_000_i64 + 9 * 60_000;
    let b = batch(json!({"app_key": "k", "device_id": "d", "events": [
        {"type": "open_app", "ts": eleven_min},
        {"type": "open_app", "ts": nine_min}
    ]}))
    .expect("readable");
    assert_eq!(b.clamped, 1);
    assert_eq!(b.accepted[0].ts_ms, now().as_millisecond());
    assert_eq!(b.accepted[1].ts_ms, nine_min);
}

#[test]
fn empty_strings_are_absent() {
    let b = batch(
        json!({"app_key": "k", "device_id": "d", "platform": "", "events": [
            {"type": "open_app", "ts": 1732406400000_i64, "channel": "", "user_id": null}
        ]}),
    )
    .expect("readable");
    assert_eq!(b.accepted[0].dims, Dimensions::default());
    assert_eq!(b.accepted[0].user_id, None);
}

#[test]
fn unreadable_envelopes() {
    let limits = Limits::default();
    let cases: Vec<(&[u8], &str)> = vec![
        (b"", "not valid JSON"),
        (b"{\"app_key\": \"k\", \"events\": [", "line 1"),
        (b"[1,2]", "must be a JSON object, found an array"),
        (b"{\"events\": []}", "`app_key` is missing"),
        (
            b"{\"app_key\": 5, \"events\": []}",
            "`app_key` must be a string",
        ),
        (b"{\"app_key\": \"\", \"events\": []}", "`app_key` is empty"),
        (b"{\"app_key\": \"k\"}", "`events` is missing"),
        (
            b"{\"app_key\": \"k\", \"events\": {}}",
            "`events` must be an array",
        ),
    ];
    for (body, expected) in cases {
        let err = parse_batch(body, now(), &limits).expect_err("refused");
        assert!(
            err.to_string().contains(expected),
            "{:?}: `{err}` should mention `{expected}`",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn unknown_envelope_fields_are_ignored_with_a_warning() {
    let b = batch(
        json!({"app_key": "k", "device_id": "d", "sent_at": 5, "sdk": {"v": 1},
        "events": [{"type": "open_app", "ts": 1732406400000_i64}]}),
    )
    .expect("readable");
    assert_eq!(b.accepted.len(), 1);
    assert_eq!(b.warnings.len(), 2, "{:?}", b.warnings);
    assert!(b.warnings.iter().any(|w| w.contains("`sent_at`")));
}

#[test]
fn a_bad_batch_level_value_rejects_only_the_events_that_inherit_it() {
    let long = "x".repeat(129);
    let b = batch(
        json!({"app_key": "k", "device_id": long, "platform": 3, "events": [
            {"type": "open_app", "ts": 1732406400000_i64},
            {"type": "open_app", "ts": 1732406400000_i64, "device_id": "own"},
            {"type": "open_app", "ts": 1732406400000_i64, "device_id": "own", "platform": "ios"}
        ]}),
    )
    .expect("readable");
    assert_eq!(b.accepted.len(), 1, "{:?}", b.rejected);
    assert_eq!(b.accepted[0].dims.platform.as_deref(), Some("ios"));
    assert_eq!(b.rejected.len(), 2);
    assert_eq!(
        (b.rejected[0].index, b.rejected[0].field.as_str()),
        (0, "device_id")
    );
    assert!(
        b.rejected[0].reason.contains("batch-level"),
        "{}",
        b.rejected[0].reason
    );
    assert_eq!(
        (b.rejected[1].index, b.rejected[1].field.as_str()),
        (1, "platform")
    );
}

#[test]
fn fractional_milliseconds_are_floored() {
    let b = batch(json!({"app_key": "k", "device_id": "d", "events": [
        {"type": "open_app", "ts": 1732406400123.9_f64},
        {"type": "open_app", "ts": 1732406400000.0_f64}
    ]}))
    .expect("readable");
    assert_eq!(b.accepted[0].ts_ms, 1_732_406_400_123);
    assert_eq!(b.accepted[1].ts_ms, 1_732_406_400_000);
}

#[test]
fn too_many_events_is_its_own_error() {
    let events: Vec<_> = (0..1001)
        .map(|_| json!({"type": "open_app", "ts": 1732406400000_i64}))
        .collect();
    let err = batch(json!({"app_key": "k", "device_id": "d", "events": events})).expect_err("413");
    assert_eq!(
        err,
        EnvelopeError::TooManyEvents {
            count: 1001,
            max: 1000
        }
    );
}

#[test]
fn single_event_endpoints() {
    let limits = Limits::default();
    let body =
        json!({"app_key": "k", "device_id": "d", "ts": 1732406400000_i64, "platform": "ios"});
    let b = parse_single(
        body.to_string().as_bytes(),
        SingleKind::OpenApp,
        now(),
        &limits,
    )
    .expect("readable");
    assert_eq!(b.accepted.len(), 1);
    assert_eq!(b.accepted[0].kind, EventKind::OpenApp);

    let body =
        json!({"app_key": "k", "device_id": "d", "ts": 1732406400000_i64, "duration_secs": 3});
    let b = parse_single(
        body.to_string().as_bytes(),
        SingleKind::UsageTime,
        now(),
        &limits,
    )
    .expect("readable");
    assert!(matches!(b.accepted[0].kind, EventKind::UsageTime { .. }));

    let body = json!({"app_key": "k", "device_id": "d", "ts": 1732406400000_i64, "type": "custom"});
    let b = parse_single(
        body.to_string().as_bytes(),
        SingleKind::OpenApp,
        now(),
        &limits,
    )
    .expect("readable");
    assert_eq!(b.rejected[0].field, "type");
    assert!(b.accepted.is_empty());
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_batch(&body, now(), &Limits::default());
        let _ = parse_single(&body, SingleKind::UsageTime, now(), &Limits::default());
    }

    #[test]
    fn every_event_is_either_accepted_or_rejected(
        events in proptest::collection::vec(arb_event(), 0..40)
    ) {
        let n = events.len();
        let body = json!({"app_key": "k", "events": events}).to_string();
        let b = parse_batch(body.as_bytes(), now(), &Limits::default()).expect("readable");
        prop_assert_eq!(b.accepted.len() + b.rejected.len(), n);
        for event in &b.accepted {
            prop_assert!(!event.device_id.is_empty() && event.device_id.len() <= 128);
            prop_assert!(event.ts_ms <= now().as_millisecond() + 600_000);
        }
        let mut indexes: Vec<_> = b.rejected.iter().map(|r| r.index).collect();
        indexes.dedup();
        prop_assert_eq!(indexes.len(), b.rejected.len());
    }
}

/// Events mixing valid and invalid fields of every kind.
fn arb_event() -> impl Strategy<Value = serde_json::Value> {
    let ts = prop_oneof![
        (1_729_000_000_000_i64..1_733_000_000_000).prop_map(|t| json!(t)),
        Just(json!("2024-11-23T10:00:00+08:00")),
        Just(json!("bad")),
        Just(json!(null)),
        any::<f64>().prop_map(|f| json!(f)),
    ];
    let kind = prop_oneof![
        Just(json!("open_app")),
        Just(json!("usage_time")),
        Just(json!("custom")),
        Just(json!("other")),
    ];
    let text = prop_oneof![
        Just(json!("d1")),
        Just(json!("")),
        Just(json!(1)),
        ".{0,140}".prop_map(|s| json!(s))
    ];
    let number = prop_oneof![
        any::<f64>().prop_map(|f| json!(f)),
        any::<i64>().prop_map(|i| json!(i)),
        Just(json!("3"))
    ];
    (kind, ts, text.clone(), text, number.clone(), number).prop_map(
        |(kind, ts, device, name, duration, count)| {
            json!({"type": kind, "ts": ts, "device_id": device, "name": name,
               "duration_secs": duration, "count": count})
        },
    )
}
