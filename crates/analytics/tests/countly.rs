//! The Countly SDK protocol, case by case. The `NODE_*` and `WEB_*` strings are requests
//! the real SDKs sent to a local listener: the Node.js SDK 24.10.4 (GET, parameters in
//! insertion order, lower-case checksum; its bulk module's `/i/bulk`) and the web SDK
//! 26.1.1 (POST form body, parameters sorted, upper-case checksum), both with the salt
//! `s3cret`. The other cases are built in the same shape.

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use serde_json::{Value, json};
use sundial_analytics::countly::{
    ChecksumVerdict, CountlyOutcome, CountlyRequest, Endpoint, Method, decode, sdk_reply,
    success_reply, verify_checksum,
};
use sundial_analytics::event::{MAX_DURATION_SECS, MAX_ID_BYTES, MAX_SEGMENTS};
use sundial_analytics::{EventKind, Limits};

/// A few seconds after the Node.js requests below were captured.
const NOW_MS: i64 = 1_795_571_330_000;

fn now() -> Timestamp {
    Timestamp::from_millisecond(NOW_MS).expect("valid")
}

const SALT: &str = "s3cret";

// The Node.js SDK's requests, as captured (salt "s3cret").
const NODE_BEGIN: &str = "begin_session=1&metrics=%7B%22_os%22%3A%22iOS%22%2C%22_os_version%22%3A%2217.1%22%2C%22_device%22%3A%22iPhone15%2C2%22%2C%22_locale%22%3A%22zh_CN%22%2C%22_carrier%22%3A%22CMCC%22%2C%22_app_version%22%3A%221.2.3%22%7D&app_key=APPKEY&device_id=dev-1&sdk_name=javascript_native_nodejs&sdk_version=24.10.4&t=0&timestamp=1795571326939&hour=1&dow=3&tz=0&checksum256=75c70d7bd60e3025fb592fc925a61b1383c36e79b138ba9a4b1ed3f31d5d7a58";
const NODE_EVENTS: &str = "events=%5B%7B%22key%22%3A%22purchase%22%2C%22count%22%3A1%2C%22sum%22%3A9.99%2C%22dur%22%3A3%2C%22segmentation%22%3A%7B%22sku%22%3A%22gold%22%2C%22level%22%3A7%7D%2C%22timestamp%22%3A1795571326947%2C%22hour%22%3A1%2C%22dow%22%3A3%7D%5D&app_key=APPKEY&device_id=dev-1&sdk_name=javascript_native_nodejs&sdk_version=24.10.4&t=0&timestamp=1795571327038&hour=1&dow=3&tz=0&checksum256=20841adeec795b63b69d15f9d1075b9ab64a6d9a3c5daee0e48fcd2fa9f88bf7";
const NODE_EXTEND: &str = "session_duration=60&app_key=APPKEY&device_id=dev-1&sdk_name=javascript_native_nodejs&sdk_version=24.10.4&t=0&timestamp=1795571327349&hour=1&dow=3&tz=0&checksum256=daa5e74b06ea00798c57708a082dc54461d5a0d67899ef912fbc7b4420fcfbd5";
const NODE_CHANGE_ID: &str = "old_device_id=dev-1&app_key=APPKEY&device_id=user-42&sdk_name=javascript_native_nodejs&sdk_version=24.10.4&t=0&timestamp=1795571327747&hour=1&dow=3&tz=0&checksum256=cb6cce4ffb1acad4f5248348685789a5aedebae74001b960f922d8056b4c95d3";
const NODE_END: &str = "end_session=1&session_duration=15&app_key=APPKEY&device_id=user-42&sdk_name=javascript_native_nodejs&sdk_version=24.10.4&t=0&timestamp=1795571328147&hour=1&dow=3&tz=0&checksum256=6b3fec6b27b5efbb3e96973c2cb99cdc3761cf4dfa9ce2532f4b69b1a97d74ab";
/// The bulk module: requests as JSON objects; `metrics` once a JSON string, once an
/// object; `events` an array; timestamps in milliseconds and in seconds.
const NODE_BULK: &str = "app_key=APPKEY&requests=%5B%7B%22device_id%22%3A%22b1%22%2C%22begin_session%22%3A1%2C%22metrics%22%3A%22%7B%5C%22_os%5C%22%3A%5C%22Android%5C%22%2C%5C%22_app_version%5C%22%3A%5C%222.0%5C%22%7D%22%2C%22timestamp%22%3A1732406400123%2C%22app_key%22%3A%22APPKEY%22%2C%22sdk_name%22%3A%22javascript_native_nodejs_bulk%22%2C%22sdk_version%22%3A%2224.10.4%22%2C%22hour%22%3A0%2C%22dow%22%3A0%2C%22tz%22%3A0%7D%2C%7B%22begin_session%22%3A1%2C%22metrics%22%3A%7B%22_os%22%3A%22Android%22%2C%22_os_version%22%3A%2214%22%7D%2C%22device_id%22%3A%22b2%22%2C%22timestamp%22%3A1732406400%2C%22app_key%22%3A%22APPKEY%22%2C%22sdk_name%22%3A%22javascript_native_nodejs_bulk%22%2C%22sdk_version%22%3A%2224.10.4%22%2C%22hour%22%3A0%2C%22dow%22%3A0%2C%22tz%22%3A0%7D%2C%7B%22device_id%22%3A%22b2%22%2C%22session_duration%22%3A30%2C%22timestamp%22%3A1732406460%2C%22app_key%22%3A%22APPKEY%22%2C%22sdk_name%22%3A%22javascript_native_nodejs_bulk%22%2C%22sdk_version%22%3A%2224.10.4%22%2C%22hour%22%3A0%2C%22dow%22%3A0%2C%22tz%22%3A0%7D%2C%7B%22device_id%22%3A%22b2%22%2C%22events%22%3A%5B%7B%22key%22%3A%22level_up%22%2C%22count%22%3A2%2C%22segmentation%22%3A%7B%7D%2C%22timestamp%22%3A1732406401000%2C%22hour%22%3A0%2C%22dow%22%3A0%7D%5D%2C%22app_key%22%3A%22APPKEY%22%2C%22sdk_name%22%3A%22javascript_native_nodejs_bulk%22%2C%22sdk_version%22%3A%2224.10.4%22%2C%22timestamp%22%3A1795571328450%2C%22hour%22%3A1%2C%22dow%22%3A3%2C%22tz%22%3A0%7D%5D&checksum256=c6319ef4a559ffdd9991026d41b9169081a31e6c40076e01a85c507bad583823";
/// The web SDK's begin_session: a POST form body, parameters sorted, checksum upper case.
const WEB_BEGIN_BODY: &str = "app_key=APPKEY&av=3.1.0&begin_session=1&device_id=0b6c3f4e-web&dow=3&hour=2&metrics=%7B%22_app_version%22%3A%223.1.0%22%2C%22_ua%22%3A%22Mozilla%2F5.0%20(Windows%20NT%2010.0%3B%20Win64%3B%20x64)%20AppleWebKit%2F537.36%20(KHTML%2C%20like%20Gecko)%20Chrome%2F131.0.0.0%20Safari%2F537.36%22%2C%22_resolution%22%3A%221920x1080%22%2C%22_density%22%3A1.25%2C%22_locale%22%3A%22en-US%22%2C%22_os%22%3A%22Windows%22%2C%22_device_type%22%3A%22desktop%22%2C%22_os_version%22%3A%2210%22%7D&sdk_name=javascript_native_web&sdk_version=26.1.1&t=1&timestamp=1795571326000&tz=60&checksum256=E27120B2F4404965AB94BA3498D79D45609D86DB3ECC5D59FC76C081322A3ECB";

// The web SDK 26.1.1's requests as captured (salt "s3cret", `force_post`): server config,
// the health check, begin_session and an event with its `id`.
const WEB_SC: &str = "app_key=APPKEY&av=3.1.0&device_id=web-1&dow=3&hour=1&method=sc&sdk_name=javascript_native_web&sdk_version=26.1.1&t=0&timestamp=1795571506468&checksum256=2882C4AFAE33BE58D5B0FCC550D2F92CBF1601103E401532DB83A1D8B1F7E56D";
const WEB_HEALTH: &str = "app_key=APPKEY&av=3.1.0&device_id=web-1&dow=3&hc=%7B%22el%22%3A0%2C%22wl%22%3A0%2C%22sc%22%3A-1%2C%22em%22%3A%22%22%2C%22bom%22%3A0%2C%22cbom%22%3A0%7D&hour=1&metrics=%7B%22_app_version%22%3A%223.1.0%22%2C%22_ua%22%3A%22Mozilla%2F5.0%20(X11%3B%20Linux%20x86_64)%20AppleWebKit%2F537.36%20(KHTML%2C%20like%20Gecko)%20Chrome%2F131.0.0.0%20Safari%2F537.36%22%7D&sdk_name=javascript_native_web&sdk_version=26.1.1&t=0&timestamp=1795571506483&tz=0&checksum256=645DD0A761D0B9BD353ACA833795467D2350D06FC41A27F85F9E926A6882E8F1";
const WEB_BEGIN: &str = "app_key=APPKEY&av=3.1.0&begin_session=1&device_id=web-1&dow=3&hour=1&metrics=%7B%22_os%22%3A%22Android%22%2C%22_app_version%22%3A%223.1.0%22%2C%22_ua%22%3A%22Mozilla%2F5.0%20(X11%3B%20Linux%20x86_64)%20AppleWebKit%2F537.36%20(KHTML%2C%20like%20Gecko)%20Chrome%2F131.0.0.0%20Safari%2F537.36%22%2C%22_locale%22%3A%22en-US%22%2C%22_device_type%22%3A%22desktop%22%2C%22_browser%22%3A%22Chrome%22%2C%22_browser_version%22%3A%22131.0.0.0%22%7D&rr=2&sdk_name=javascript_native_web&sdk_version=26.1.1&t=0&timestamp=1795571506486&tz=0&checksum256=C9487A3CCD4669C9DE72072BB41B768135377FE4A98E0B4899BD7462F4F12CD7";
const WEB_EVENT: &str = "app_key=APPKEY&av=3.1.0&device_id=web-1&dow=3&events=%5B%7B%22key%22%3A%22tap%22%2C%22count%22%3A1%2C%22segmentation%22%3A%7B%22button%22%3A%22buy%22%7D%2C%22timestamp%22%3A1795571506487%2C%22hour%22%3A1%2C%22dow%22%3A3%2C%22id%22%3A%22ee3df1cb1795571506487%22%2C%22cvid%22%3A%22%22%7D%5D&hour=1&metrics=%7B%22_ua%22%3A%22Mozilla%2F5.0%20(X11%3B%20Linux%20x86_64)%20AppleWebKit%2F537.36%20(KHTML%2C%20like%20Gecko)%20Chrome%2F131.0.0.0%20Safari%2F537.36%22%7D&rr=1&sdk_name=javascript_native_web&sdk_version=26.1.1&t=0&timestamp=1795571506488&tz=0&checksum256=C46E86A425C393A345842636179F2994C14FA64364D378C3E219CB2585E0DBC9";

const FORM: Option<&str> = Some("application/x-www-form-urlencoded");
const JSON_TYPE: Option<&str> = Some("application/json");

fn get(endpoint: Endpoint, query: &str) -> CountlyRequest<'_> {
    CountlyRequest {
        endpoint,
        method: Method::Get,
        query,
        body: &[],
        content_type: None,
    }
}

fn post<'a>(
    endpoint: Endpoint,
    query: &'a str,
    body: &'a [u8],
    content_type: Option<&'a str>,
) -> CountlyRequest<'a> {
    CountlyRequest {
        endpoint,
        method: Method::Post,
        query,
        body,
        content_type,
    }
}

fn run(request: &CountlyRequest<'_>) -> CountlyOutcome {
    decode(request, now(), &Limits::default())
}

fn reply_json(outcome: &CountlyOutcome) -> Value {
    serde_json::from_str(&outcome.reply).expect("the reply is JSON")
}

/// The reply an SDK accepts: a JSON object with a truthy `result`.
fn assert_sdk_accepts(reply: &str) {
    let value: Value = serde_json::from_str(reply).expect("the reply is JSON");
    let result = value.get("result").expect("has result");
    assert!(
        !matches!(result, Value::Null | Value::Bool(false)) && result != "" && result != 0,
        "{reply}"
    );
}

#[test]
fn node_sdk_session_flow_maps_to_launch_usage_and_custom_events() {
    // begin_session → open_app with the dimensions from `metrics`.
    let begin = run(&get(Endpoint::Write, NODE_BEGIN));
    assert!(begin.rejections.is_empty(), "{:?}", begin.rejections);
    assert_eq!(begin.reply, r#"{"result":"Success"}"#);
    assert_eq!(begin.app_key.as_deref(), Some("APPKEY"));
    let [request] = begin.requests.as_slice() else {
        panic!("one request: {:?}", begin.requests)
    };
    assert_eq!(request.app_key, "APPKEY");
    assert_eq!(request.device_id, "dev-1");
    assert_eq!(
        request.sdk_name.as_deref(),
        Some("javascript_native_nodejs")
    );
    assert_eq!(request.sdk_version.as_deref(), Some("24.10.4"));
    let [open] = request.events.as_slice() else {
        panic!("one event: {:?}", request.events)
    };
    assert_eq!(open.kind, EventKind::OpenApp);
    assert_eq!(open.ts_ms, 1_795_571_326_939);
    assert_eq!(open.device_id, "dev-1");
    assert_eq!(open.dims.platform.as_deref(), Some("ios"));
    assert_eq!(open.dims.os_version.as_deref(), Some("17.1"));
    assert_eq!(open.dims.app_version.as_deref(), Some("1.2.3"));
    assert_eq!(open.dims.device_model.as_deref(), Some("iPhone15,2"));
    assert_eq!(open.dims.locale.as_deref(), Some("zh_CN"));
    assert_eq!(open.dims.channel, None, "_carrier is not a dimension");

    // events → custom, at the event's own timestamp (not the request's).
    let events = run(&get(Endpoint::Write, NODE_EVENTS));
    assert!(events.rejections.is_empty(), "{:?}", events.rejections);
    let custom = &events.requests[0].events[0];
    assert_eq!(custom.ts_ms, 1_795_571_326_947);
    match &custom.kind {
        EventKind::Custom {
            name,
            count,
            sum,
            dur_secs,
            segments,
        } => {
            assert_eq!(name, "purchase");
            assert_eq!(*count, 1);
            assert_eq!(*sum, 9.99);
            assert_eq!(*dur_secs, 3.0);
            assert_eq!(segments.get("sku").map(String::as_str), Some("gold"));
            assert_eq!(segments.get("level").map(String::as_str), Some("7"));
        }
        other => panic!("not custom: {other:?}"),
    }

    // session_duration → a usage report that does not close the session.
    let extend = run(&get(Endpoint::Write, NODE_EXTEND));
    assert_eq!(
        extend.requests[0].events[0].kind,
        EventKind::UsageTime {
            duration_secs: 60.0,
            ends_session: false
        }
    );
    assert_eq!(extend.requests[0].events[0].ts_ms, 1_795_571_327_349);

    // change_id with merge → old_device_id reported, no event.
    let change = run(&get(Endpoint::Write, NODE_CHANGE_ID));
    assert!(change.rejections.is_empty(), "{:?}", change.rejections);
    assert_eq!(change.requests[0].device_id, "user-42");
    assert_eq!(change.requests[0].old_device_id.as_deref(), Some("dev-1"));
    assert!(change.requests[0].events.is_empty());

    // end_session with its duration → a usage report that closes the session.
    let end = run(&get(Endpoint::Write, NODE_END));
    let [usage] = end.requests[0].events.as_slice() else {
        panic!("one event")
    };
    assert_eq!(
        usage.kind,
        EventKind::UsageTime {
            duration_secs: 15.0,
            ends_session: true
        }
    );
    assert_eq!(usage.device_id, "user-42");
}

#[test]
fn resent_requests_get_the_same_event_ids() {
    let id_of = |query: &str| -> Vec<Option<String>> {
        run(&get(Endpoint::Write, query)).requests[0]
            .events
            .iter()
            .map(|e| e.event_id.clone())
            .collect()
    };
    let first = id_of(NODE_BEGIN);
    let [Some(id)] = first.as_slice() else {
        panic!("one launch with an id: {first:?}")
    };
    assert!(id.starts_with("cly-") && id.ends_with("-o"), "{id}");
    assert!(id.len() <= MAX_ID_BYTES);
    // The same request again, also with another `rr` (remaining requests) or checksum.
    assert_eq!(id_of(NODE_BEGIN), first);
    assert_eq!(id_of(&format!("{NODE_BEGIN}&rr=3")), first);
    let no_checksum = NODE_BEGIN.split("&checksum256=").next().expect("has one");
    assert_eq!(id_of(no_checksum), first);
    // Another request (another timestamp) is another launch.
    let later = NODE_BEGIN.replace("timestamp=1795571326939", "timestamp=1795571326940");
    assert_ne!(id_of(&later), first);
    // The usage report and custom events without their own id.
    let extend = id_of(NODE_EXTEND);
    assert!(extend[0].as_deref().is_some_and(|i| i.ends_with("-u")));
    let custom = id_of(NODE_EVENTS);
    assert!(custom[0].as_deref().is_some_and(|i| i.ends_with("-e0")));
    // Without a timestamp a resend cannot be told from a new request: no id.
    assert_eq!(
        id_of("app_key=k&device_id=d&begin_session=1"),
        [None::<String>]
    );
}

#[test]
fn node_sdk_checksums_verify_against_the_query_as_sent() {
    for query in [
        NODE_BEGIN,
        NODE_EVENTS,
        NODE_EXTEND,
        NODE_CHANGE_ID,
        NODE_END,
    ] {
        let request = get(Endpoint::Write, query);
        assert_eq!(
            request.verify_checksum(SALT),
            ChecksumVerdict::Valid,
            "{query}"
        );
        assert_eq!(
            request.verify_checksum("another salt"),
            ChecksumVerdict::Mismatch,
            "{query}"
        );
    }
    // One byte changed in the payload.
    let tampered = NODE_EXTEND.replace("session_duration=60", "session_duration=61");
    assert_eq!(
        get(Endpoint::Write, &tampered).verify_checksum(SALT),
        ChecksumVerdict::Mismatch
    );
    // No checksum at all.
    let cut = NODE_EXTEND
        .split("&checksum256=")
        .next()
        .expect("has a checksum");
    assert_eq!(
        get(Endpoint::Write, cut).verify_checksum(SALT),
        ChecksumVerdict::Missing
    );
    assert_eq!(
        ChecksumVerdict::Missing.reason(),
        Some("request does not have checksum")
    );
    // Not hex: a mismatch, not a panic.
    let garbage = format!("{cut}&checksum256=xyz");
    assert_eq!(
        get(Endpoint::Write, &garbage).verify_checksum(SALT),
        ChecksumVerdict::Mismatch
    );
    // The bulk request's checksum covers the outer query string.
    assert!(
        get(Endpoint::Bulk, NODE_BULK)
            .verify_checksum(SALT)
            .is_valid()
    );
}

#[test]
fn web_sdk_post_form_body_decodes_and_verifies() {
    let request = post(Endpoint::Write, "", WEB_BEGIN_BODY.as_bytes(), FORM);
    assert_eq!(request.verify_checksum(SALT), ChecksumVerdict::Valid);
    assert_eq!(request.verify_checksum("wrong"), ChecksumVerdict::Mismatch);
    // The same body sent as GET is not read: only the (empty) query string counts.
    let as_get = CountlyRequest {
        method: Method::Get,
        ..request
    };
    assert_eq!(as_get.verify_checksum(SALT), ChecksumVerdict::Missing);

    let outcome = run(&request);
    assert!(outcome.rejections.is_empty(), "{:?}", outcome.rejections);
    let open = &outcome.requests[0].events[0];
    assert_eq!(open.kind, EventKind::OpenApp);
    assert_eq!(open.ts_ms, 1_795_571_326_000);
    assert_eq!(open.device_id, "0b6c3f4e-web");
    assert_eq!(open.dims.platform.as_deref(), Some("windows"));
    assert_eq!(open.dims.os_version.as_deref(), Some("10"));
    assert_eq!(open.dims.app_version.as_deref(), Some("3.1.0"));
    assert_eq!(open.dims.locale.as_deref(), Some("en-US"));
}

#[test]
fn real_web_sdk_posts_decode_and_verify() {
    let web_now = Timestamp::from_millisecond(1_795_571_510_000).expect("valid");
    let limits = Limits::default();
    for body in [WEB_SC, WEB_HEALTH, WEB_BEGIN, WEB_EVENT] {
        let endpoint = if body.contains("method=sc") {
            Endpoint::Sdk
        } else {
            Endpoint::Write
        };
        let request = post(endpoint, "", body.as_bytes(), FORM);
        assert_eq!(
            request.verify_checksum(SALT),
            ChecksumVerdict::Valid,
            "{body}"
        );
        let outcome = decode(&request, web_now, &limits);
        assert!(outcome.rejections.is_empty(), "{:?}", outcome.rejections);
        assert_eq!(outcome.app_key.as_deref(), Some("APPKEY"));
    }
    let sc = decode(
        &post(Endpoint::Sdk, "", WEB_SC.as_bytes(), FORM),
        web_now,
        &limits,
    );
    assert_eq!(sc.reply, "{}");
    // The health check carries no events.
    let health = decode(
        &post(Endpoint::Write, "", WEB_HEALTH.as_bytes(), FORM),
        web_now,
        &limits,
    );
    assert_eq!(health.accepted(), 0);
    assert_eq!(health.reply, r#"{"result":"Success"}"#);
    let begin = decode(
        &post(Endpoint::Write, "", WEB_BEGIN.as_bytes(), FORM),
        web_now,
        &limits,
    );
    let open = &begin.requests[0].events[0];
    assert_eq!(open.kind, EventKind::OpenApp);
    assert_eq!(open.ts_ms, 1_795_571_506_486);
    assert_eq!(open.dims.platform.as_deref(), Some("android"));
    assert_eq!(open.dims.app_version.as_deref(), Some("3.1.0"));
    assert_eq!(open.dims.locale.as_deref(), Some("en-US"));
    let event = decode(
        &post(Endpoint::Write, "", WEB_EVENT.as_bytes(), FORM),
        web_now,
        &limits,
    );
    let tap = &event.requests[0].events[0];
    assert_eq!(tap.ts_ms, 1_795_571_506_487);
    assert_eq!(tap.event_id.as_deref(), Some("ee3df1cb1795571506487"));
    // `av` gives the app version to requests without `_app_version` in their metrics.
    assert_eq!(tap.dims.app_version.as_deref(), Some("3.1.0"));
    assert!(matches!(&tap.kind, EventKind::Custom { name, segments, .. }
        if name == "tap" && segments.get("button").map(String::as_str) == Some("buy")));
}

#[test]
fn node_bulk_requests_decode_each_with_its_own_time() {
    let limits = Limits {
        max_age: SignedDuration::from_hours(24 * 800),
        ..Limits::default()
    };
    let outcome = decode(&get(Endpoint::Bulk, NODE_BULK), now(), &limits);
    assert!(outcome.rejections.is_empty(), "{:?}", outcome.rejections);
    assert_eq!(outcome.app_key.as_deref(), Some("APPKEY"));
    assert_eq!(outcome.requests.len(), 4);
    assert_eq!(
        outcome.requests.iter().map(|r| r.index).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    let events: Vec<_> = outcome.events().map(|(_, e)| e.clone()).collect();
    assert_eq!(events.len(), 4);
    assert_eq!(events[0].device_id, "b1");
    assert_eq!(events[0].kind, EventKind::OpenApp);
    assert_eq!(events[0].ts_ms, 1_732_406_400_123);
    assert_eq!(events[0].dims.platform.as_deref(), Some("android"));
    assert_eq!(events[0].dims.app_version.as_deref(), Some("2.0"));
    // A timestamp in seconds; metrics given as an object.
    assert_eq!(events[1].device_id, "b2");
    assert_eq!(events[1].ts_ms, 1_732_406_400_000);
    assert_eq!(events[1].dims.os_version.as_deref(), Some("14"));
    assert_eq!(
        events[2].kind,
        EventKind::UsageTime {
            duration_secs: 30.0,
            ends_session: false
        }
    );
    assert_eq!(events[2].ts_ms, 1_732_406_460_000);
    // An old event in a new request keeps its own day.
    assert_eq!(events[3].ts_ms, 1_732_406_401_000);
    assert!(
        matches!(&events[3].kind, EventKind::Custom { name, count: 2, .. } if name == "level_up")
    );
    assert_eq!(outcome.reply, r#"{"result":"Success"}"#);
}

#[test]
fn bulk_events_older_than_the_window_are_dropped_but_answered_with_success() {
    let outcome = run(&get(Endpoint::Bulk, NODE_BULK));
    assert_eq!(outcome.accepted(), 0);
    assert_eq!(outcome.rejections.len(), 4, "{:?}", outcome.rejections);
    assert!(outcome.rejections.iter().all(|r| r.dropped));
    assert_eq!(outcome.rejections[0].request, Some(0));
    assert_eq!(outcome.rejections[0].field, "timestamp");
    assert!(outcome.rejections[0].reason.contains("older than"));
    assert_eq!(outcome.rejections[3].field, "events[0].timestamp");
    assert_eq!(outcome.rejections[3].event, Some(0));
    let reply = reply_json(&outcome);
    assert_eq!(reply["result"], "Success");
    assert!(
        reply["info"]
            .as_str()
            .is_some_and(|i| i.starts_with("Request ignored:")),
        "{reply}"
    );
}

#[test]
fn bulk_accepts_query_string_and_json_string_entries_and_defaults_the_app_key() {
    let requests = json!([
        "device_id=q1&begin_session=1&timestamp=1795571300000&metrics=%7B%22_os%22%3A%22Android%22%7D",
        "{\"device_id\":\"j1\",\"session_duration\":\"12.5\",\"timestamp\":\"1795571300\"}",
        {"device_id": "o1", "app_key": "OTHER", "end_session": "1"},
        {"begin_session": 1},
        42
    ]);
    let body = format!(
        "app_key=OUTER&requests={}",
        form_urlencoded::byte_serialize(requests.to_string().as_bytes()).collect::<String>()
    );
    let outcome = run(&post(Endpoint::Bulk, "", body.as_bytes(), FORM));
    assert_eq!(outcome.requests.len(), 3);
    assert_eq!(outcome.requests[0].app_key, "OUTER");
    assert_eq!(
        outcome.requests[0].events[0].dims.platform.as_deref(),
        Some("android")
    );
    assert_eq!(outcome.requests[1].device_id, "j1");
    assert_eq!(outcome.requests[1].events[0].ts_ms, 1_795_571_300_000);
    assert_eq!(
        outcome.requests[1].events[0].kind,
        EventKind::UsageTime {
            duration_secs: 12.5,
            ends_session: false
        }
    );
    assert_eq!(outcome.requests[2].app_key, "OTHER");
    // end_session without a duration still closes the session.
    assert_eq!(
        outcome.requests[2].events[0].kind,
        EventKind::UsageTime {
            duration_secs: 0.0,
            ends_session: true
        }
    );
    assert_eq!(
        outcome.requests[2].events[0].ts_ms, NOW_MS,
        "no timestamp: now"
    );
    let faults: Vec<_> = outcome
        .rejections
        .iter()
        .map(|r| (r.request, r.field.as_str()))
        .collect();
    assert_eq!(faults, [(Some(3), "device_id"), (Some(4), "request")]);
    assert_sdk_accepts(&outcome.reply);
}

#[test]
fn bulk_without_readable_requests_is_ignored_with_success() {
    for query in [
        "app_key=k",
        "app_key=k&requests=not-json",
        "app_key=k&requests=%7B%7D",
    ] {
        let outcome = run(&get(Endpoint::Bulk, query));
        assert!(outcome.requests.is_empty(), "{query}");
        assert_eq!(outcome.rejections.len(), 1, "{query}");
        assert_eq!(outcome.rejections[0].request, None);
        assert_eq!(outcome.rejections[0].field, "requests");
        assert_sdk_accepts(&outcome.reply);
    }
}

#[test]
fn json_bodies_are_read_with_raw_or_encoded_values() {
    let body = json!({
        "app_key": "k", "device_id": "d", "begin_session": 1,
        "timestamp": 1_795_571_000_000_i64,
        "metrics": {"_os": "Android", "_os_version": 14, "_store": "com.android.vending"},
        "country_code": "cn",
        "events": [{"key": "buy", "count": 3, "sum": "4.5", "id": "evt-1"}]
    })
    .to_string();
    let outcome = run(&post(Endpoint::Write, "", body.as_bytes(), JSON_TYPE));
    assert!(outcome.rejections.is_empty(), "{:?}", outcome.rejections);
    let events = &outcome.requests[0].events;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].kind, EventKind::OpenApp);
    assert_eq!(events[0].dims.os_version.as_deref(), Some("14"));
    assert_eq!(
        events[0].dims.channel.as_deref(),
        Some("com.android.vending")
    );
    assert_eq!(events[0].dims.country.as_deref(), Some("CN"));
    assert_eq!(events[1].event_id.as_deref(), Some("evt-1"));
    assert!(matches!(events[1].kind, EventKind::Custom { count: 3, sum, .. } if sum == 4.5));
    // The request's dimensions apply to its custom events too.
    assert_eq!(events[1].dims.platform.as_deref(), Some("android"));

    // Without a Content-Type, a body starting with `{` is JSON.
    let sniffed = run(&post(Endpoint::Write, "", body.as_bytes(), None));
    assert_eq!(sniffed.requests, outcome.requests);
}

#[test]
fn get_post_form_and_json_bodies_mean_the_same() {
    let metrics = r#"{"_os":"Android","_app_version":"2.1"}"#;
    let events = r#"[{"key":"buy","count":2,"sum":3.5,"segmentation":{"sku":"a"},"timestamp":1795571200000}]"#;
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("app_key", "k")
        .append_pair("device_id", "d")
        .append_pair("timestamp", "1795571300000")
        .append_pair("begin_session", "1")
        .append_pair("session_duration", "20")
        .append_pair("metrics", metrics)
        .append_pair("events", events)
        .finish();
    let encoded_json = json!({
        "app_key": "k", "device_id": "d", "timestamp": "1795571300000",
        "begin_session": "1", "session_duration": "20", "metrics": metrics, "events": events
    })
    .to_string();
    let raw_json = json!({
        "app_key": "k", "device_id": "d", "timestamp": 1_795_571_300_000_i64,
        "begin_session": 1, "session_duration": 20,
        "metrics": serde_json::from_str::<Value>(metrics).expect("json"),
        "events": serde_json::from_str::<Value>(events).expect("json")
    })
    .to_string();
    let requests = [
        get(Endpoint::Write, &form),
        post(Endpoint::Write, "", form.as_bytes(), FORM),
        post(Endpoint::Write, "", form.as_bytes(), None),
        post(Endpoint::Write, "", encoded_json.as_bytes(), JSON_TYPE),
        post(Endpoint::Write, "", raw_json.as_bytes(), JSON_TYPE),
        post(
            Endpoint::Write,
            "app_key=k",
            raw_json.as_bytes(),
            Some("text/plain"),
        ),
    ];
    let without_ids = |outcome: &CountlyOutcome| {
        assert!(outcome.rejections.is_empty(), "{:?}", outcome.rejections);
        outcome.requests[0]
            .events
            .iter()
            .map(|e| {
                let mut e = e.clone();
                e.event_id = None;
                e
            })
            .collect::<Vec<_>>()
    };
    let expected = without_ids(&run(&requests[0]));
    assert_eq!(expected.len(), 3);
    for request in &requests[1..] {
        assert_eq!(without_ids(&run(request)), expected, "{request:?}");
    }
    // The form sent by GET and by POST is the same request: the same event ids.
    assert_eq!(run(&requests[0]).requests, run(&requests[1]).requests);
}

#[test]
fn body_wins_over_the_query_string_and_get_ignores_the_body() {
    let body = b"device_id=from-body&begin_session=1";
    let posted = run(&post(
        Endpoint::Write,
        "app_key=k&device_id=from-query",
        body,
        FORM,
    ));
    assert_eq!(posted.requests[0].device_id, "from-body");
    assert_eq!(posted.requests[0].events.len(), 1);

    let got = run(&CountlyRequest {
        endpoint: Endpoint::Write,
        method: Method::Get,
        query: "app_key=k&device_id=from-query",
        body,
        content_type: FORM,
    });
    assert_eq!(got.requests[0].device_id, "from-query");
    assert!(got.requests[0].events.is_empty());
}

#[test]
fn unreadable_bodies_fall_back_to_the_query_string() {
    for (body, content_type) in [
        (&b"{not json"[..], JSON_TYPE),
        (&b"[1,2]"[..], JSON_TYPE),
        (
            &b"--x\r\nContent-Disposition: form-data"[..],
            Some("multipart/form-data; boundary=x"),
        ),
    ] {
        let outcome = run(&post(
            Endpoint::Write,
            "app_key=k&device_id=d&begin_session=1",
            body,
            content_type,
        ));
        assert_eq!(outcome.accepted(), 1, "{content_type:?}");
        assert_eq!(outcome.rejections.len(), 1, "{content_type:?}");
        assert_eq!(outcome.rejections[0].field, "body");
        assert!(!outcome.rejections[0].dropped);
        assert_sdk_accepts(&outcome.reply);
    }
}

#[test]
fn json_bodies_verify_their_raw_bytes_with_the_checksum_in_the_query() {
    use sha2::{Digest, Sha256};
    let body = br#"{"app_key":"k","device_id":"d","begin_session":1}"#;
    let mut hasher = Sha256::new();
    hasher.update(body);
    hasher.update(SALT.as_bytes());
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let query = format!("checksum256={hex}");
    assert_eq!(
        verify_checksum(&query, body, JSON_TYPE, SALT),
        ChecksumVerdict::Valid
    );
    assert_eq!(
        verify_checksum(
            &query,
            br#"{"app_key":"k","device_id":"e"}"#,
            JSON_TYPE,
            SALT
        ),
        ChecksumVerdict::Mismatch
    );
}

#[test]
fn bad_metrics_lose_only_the_dimensions() {
    for metrics in ["%7Bnot-json", "%5B1%5D", "%22text%22"] {
        let query = format!("app_key=k&device_id=d&begin_session=1&metrics={metrics}");
        let outcome = run(&get(Endpoint::Write, &query));
        assert_eq!(outcome.accepted(), 1, "{metrics}");
        let open = &outcome.requests[0].events[0];
        assert!(open.dims.is_empty());
        assert_eq!(outcome.rejections.len(), 1);
        assert_eq!(outcome.rejections[0].field, "metrics");
        assert!(!outcome.rejections[0].dropped);
        let reply = reply_json(&outcome);
        assert!(
            reply["info"]
                .as_str()
                .is_some_and(|i| i.starts_with("accepted 1 event;")),
            "{reply}"
        );
    }
    // A dimension of the wrong type or too long is left out alone.
    let long = "x".repeat(MAX_ID_BYTES + 1);
    let metrics = json!({"_os": "iOS", "_device": long, "_locale": ["en"]}).to_string();
    let query = format!(
        "app_key=k&device_id=d&begin_session=1&metrics={}",
        form_urlencoded::byte_serialize(metrics.as_bytes()).collect::<String>()
    );
    let outcome = run(&get(Endpoint::Write, &query));
    let dims = &outcome.requests[0].events[0].dims;
    assert_eq!(dims.platform.as_deref(), Some("ios"));
    assert_eq!(dims.device_model, None);
    assert_eq!(dims.locale, None);
    let fields: Vec<_> = outcome
        .rejections
        .iter()
        .map(|r| r.field.as_str())
        .collect();
    assert_eq!(fields, ["metrics._device", "metrics._locale"]);
}

#[test]
fn bad_events_parameter_drops_only_the_events() {
    let outcome = run(&get(
        Endpoint::Write,
        "app_key=k&device_id=d&begin_session=1&session_duration=5&events=%5B%7B%22key%22",
    ));
    assert_eq!(outcome.accepted(), 2, "launch and usage stay");
    assert_eq!(outcome.rejections.len(), 1);
    assert_eq!(outcome.rejections[0].field, "events");
    assert!(outcome.rejections[0].dropped);
}

#[test]
fn each_bad_event_is_rejected_on_its_own() {
    let events = json!([
        {"key": "ok", "count": 2, "timestamp": 1_795_571_000_000_i64},
        {"count": 1},
        {"key": "zero", "count": 0},
        {"key": "fraction", "count": 1.5},
        {"key": "sum", "sum": "lots"},
        {"key": "dur", "dur": MAX_DURATION_SECS + 1.0},
        {"key": "", "count": 1},
        "purchase",
        {"key": "later", "timestamp": "soon"}
    ]);
    let query = format!(
        "app_key=k&device_id=d&timestamp=1795571100000&events={}",
        form_urlencoded::byte_serialize(events.to_string().as_bytes()).collect::<String>()
    );
    let outcome = run(&get(Endpoint::Write, &query));
    let faults: Vec<_> = outcome
        .rejections
        .iter()
        .map(|r| (r.event, r.field.as_str(), r.dropped))
        .collect();
    assert_eq!(
        faults,
        [
            (Some(1), "events[1].key", true),
            (Some(2), "events[2].count", true),
            (Some(3), "events[3].count", true),
            (Some(4), "events[4].sum", true),
            (Some(5), "events[5].dur", true),
            (Some(6), "events[6].key", true),
            (Some(7), "events[7].event", true),
            (Some(8), "events[8].timestamp", false),
        ]
    );
    let accepted = &outcome.requests[0].events;
    assert_eq!(accepted.len(), 2);
    assert_eq!(accepted[0].ts_ms, 1_795_571_000_000);
    // An unreadable event timestamp falls back to the request's.
    assert_eq!(accepted[1].ts_ms, 1_795_571_100_000);
}

#[test]
fn segments_are_capped_truncated_or_dropped_but_the_event_stays() {
    let mut segmentation = serde_json::Map::new();
    for i in 0..MAX_SEGMENTS + 5 {
        segmentation.insert(format!("k{i:02}"), json!(i));
    }
    segmentation.insert("a_long".into(), json!("é".repeat(200)));
    segmentation.insert("a_list".into(), json!(["x", "y"]));
    segmentation.insert("a_null".into(), Value::Null);
    let events = json!([{"key": "view", "segmentation": segmentation}]);
    let query = format!(
        "app_key=k&device_id=d&events={}",
        form_urlencoded::byte_serialize(events.to_string().as_bytes()).collect::<String>()
    );
    let outcome = run(&get(Endpoint::Write, &query));
    let EventKind::Custom { segments, .. } = &outcome.requests[0].events[0].kind else {
        panic!("custom")
    };
    assert_eq!(segments.len(), MAX_SEGMENTS);
    let long = segments.get("a_long").expect("kept, truncated");
    assert!(long.len() <= 256 && long.chars().all(|c| c == 'é'));
    assert!(!segments.contains_key("a_list"));
    assert!(!segments.contains_key("a_null"));
    assert!(outcome.rejections.iter().all(|r| !r.dropped));
    // Keys are read in order: a_list (dropped), a_long (truncated), a_null (absent, no
    // note), k00..k30 fill the cap, k31..k36 are beyond it.
    assert_eq!(outcome.rejections.len(), 8, "{:?}", outcome.rejections);
}

#[test]
fn timestamps_missing_in_seconds_unreadable_future_and_old() {
    let cases: [(&str, Option<i64>, usize, &[&str]); 6] = [
        ("", Some(NOW_MS), 0, &[]),
        ("&timestamp=1795571000", Some(1_795_571_000_000), 0, &[]),
        ("&timestamp=1795571000123", Some(1_795_571_000_123), 0, &[]),
        ("&timestamp=tomorrow", Some(NOW_MS), 0, &["timestamp"]),
        // Two hours ahead: clamped to now.
        ("&timestamp=1795578530000", Some(NOW_MS), 1, &[]),
        // Sixty days old: dropped.
        ("&timestamp=1790387330000", None, 0, &["timestamp"]),
    ];
    for (suffix, ts, clamped, fields) in cases {
        let query = format!("app_key=k&device_id=d&begin_session=1{suffix}");
        let outcome = run(&get(Endpoint::Write, &query));
        let got: Vec<_> = outcome.requests[0].events.iter().map(|e| e.ts_ms).collect();
        assert_eq!(got, ts.into_iter().collect::<Vec<_>>(), "{suffix}");
        assert_eq!(outcome.clamped, clamped, "{suffix}");
        let got_fields: Vec<_> = outcome
            .rejections
            .iter()
            .map(|r| r.field.as_str())
            .collect();
        assert_eq!(got_fields, fields, "{suffix}");
    }
}

#[test]
fn session_duration_out_of_range_is_rejected_and_end_session_still_closes() {
    let outcome = run(&get(
        Endpoint::Write,
        "app_key=k&device_id=d&session_duration=-3",
    ));
    assert_eq!(outcome.accepted(), 0);
    assert_eq!(outcome.rejections[0].field, "session_duration");
    assert!(outcome.rejections[0].dropped);

    let outcome = run(&get(
        Endpoint::Write,
        "app_key=k&device_id=d&end_session=1&session_duration=100000",
    ));
    assert_eq!(
        outcome.requests[0].events[0].kind,
        EventKind::UsageTime {
            duration_secs: 0.0,
            ends_session: true
        }
    );
    assert!(!outcome.rejections[0].dropped);
}

#[test]
fn one_request_that_begins_and_ends_keeps_the_order_launch_custom_usage() {
    let events = json!([{"key": "tap"}]).to_string();
    let query = format!(
        "app_key=k&device_id=d&begin_session=1&session_duration=30&end_session=1&events={}",
        form_urlencoded::byte_serialize(events.as_bytes()).collect::<String>()
    );
    let outcome = run(&get(Endpoint::Write, &query));
    let kinds: Vec<_> = outcome.requests[0]
        .events
        .iter()
        .map(|e| e.kind.type_name())
        .collect();
    assert_eq!(kinds, ["open_app", "custom", "usage_time"]);
}

#[test]
fn requests_without_device_or_app_key_are_ignored_with_success() {
    for (query, field) in [
        ("app_key=k&begin_session=1", "device_id"),
        ("device_id=d&begin_session=1", "app_key"),
        ("app_key=k&device_id=&begin_session=1", "device_id"),
    ] {
        let outcome = run(&get(Endpoint::Write, query));
        assert!(outcome.requests.is_empty(), "{query}");
        assert_eq!(outcome.rejections[0].field, field, "{query}");
        let reply = reply_json(&outcome);
        assert_eq!(reply["result"], "Success");
        assert!(
            reply["info"]
                .as_str()
                .is_some_and(|i| i.contains("Request ignored") && i.contains(field)),
            "{reply}"
        );
    }
    let long = "d".repeat(MAX_ID_BYTES + 1);
    let outcome = run(&get(
        Endpoint::Write,
        &format!("app_key=k&device_id={long}&begin_session=1"),
    ));
    assert!(outcome.requests.is_empty());
}

#[test]
fn huge_requests_are_capped_at_the_event_limit() {
    let limits = Limits {
        max_events: 10,
        ..Limits::default()
    };
    let events: Vec<Value> = (0..25).map(|i| json!({"key": format!("e{i}")})).collect();
    let query = format!(
        "app_key=k&device_id=d&begin_session=1&events={}",
        form_urlencoded::byte_serialize(Value::Array(events).to_string().as_bytes())
            .collect::<String>()
    );
    let outcome = decode(&get(Endpoint::Write, &query), now(), &limits);
    assert_eq!(outcome.accepted(), 10);
    // The launch and the first nine events fit; one rejection counts the rest.
    assert_eq!(outcome.requests[0].events[0].kind, EventKind::OpenApp);
    assert_eq!(outcome.rejections.len(), 1);
    assert!(outcome.rejections[0].dropped);
    assert_eq!(outcome.rejections[0].field, "events");
    assert!(
        outcome.rejections[0]
            .reason
            .starts_with("16 events over the limit of 10 events"),
        "{}",
        outcome.rejections[0].reason
    );

    // The limit is per HTTP request: bulk entries share it.
    let requests: Vec<Value> = (0..3)
        .map(|i| {
            let events: Vec<Value> = (0..5).map(|j| json!({"key": format!("e{j}")})).collect();
            json!({"device_id": format!("d{i}"), "events": events})
        })
        .collect();
    let body = json!({"app_key": "k", "requests": requests}).to_string();
    let outcome = decode(
        &post(Endpoint::Bulk, "", body.as_bytes(), JSON_TYPE),
        now(),
        &limits,
    );
    let per_request: Vec<_> = outcome.requests.iter().map(|r| r.events.len()).collect();
    assert_eq!(per_request, [5, 5, 0]);
    assert_eq!(outcome.rejections.len(), 1);
    assert_eq!(outcome.rejections[0].request, Some(2));
    assert!(outcome.rejections[0].reason.starts_with("5 events over"));

    // A bulk of more requests than the limit: the rest are dropped in one rejection.
    let requests: Vec<Value> = (0..15)
        .map(|i| json!({"device_id": format!("d{i}"), "begin_session": 1}))
        .collect();
    let body = json!({"app_key": "k", "requests": requests}).to_string();
    let outcome = decode(
        &post(Endpoint::Bulk, "", body.as_bytes(), JSON_TYPE),
        now(),
        &limits,
    );
    assert_eq!(outcome.requests.len(), 10);
    assert_eq!(outcome.accepted(), 10);
    assert_eq!(outcome.rejections.len(), 1);
    assert_eq!(outcome.rejections[0].field, "requests");
    assert!(outcome.rejections[0].reason.contains("15 requests"));
}

#[test]
fn ignored_features_are_listed_and_old_device_id_equal_to_the_new_is_no_change() {
    let outcome = run(&get(
        Endpoint::Write,
        "app_key=k&device_id=d&old_device_id=d&user_details=%7B%7D&crash=%7B%7D&consent=%7B%7D&location=",
    ));
    let request = &outcome.requests[0];
    assert_eq!(request.old_device_id, None);
    assert_eq!(
        request.ignored.iter().copied().collect::<Vec<_>>(),
        ["consent", "crash", "location", "user_details"]
    );
    assert_eq!(outcome.reply, r#"{"result":"Success"}"#);
}

#[test]
fn sdk_reads_answer_an_empty_config() {
    let sc = run(&get(
        Endpoint::Sdk,
        "app_key=k&device_id=d&sdk_version=26.1.1&sdk_name=javascript_native_web&t=1&timestamp=1795571326000&hour=2&dow=3&av=3.1.0&method=sc",
    ));
    assert_eq!(sc.reply, "{}");
    assert_eq!(sc.sdk_method.as_deref(), Some("sc"));
    assert!(sc.requests.is_empty());
    assert_eq!(sc.app_key.as_deref(), Some("k"));
    assert_eq!(sc.ignored_reply("unknown app key"), "{}");
    for (method, reply) in [
        ("rc", "{}"),
        ("fetch_remote_config", "{}"),
        ("feedback", r#"{"result":[]}"#),
    ] {
        let outcome = run(&post(
            Endpoint::Sdk,
            "",
            format!("app_key=k&device_id=d&method={method}").as_bytes(),
            FORM,
        ));
        assert_eq!(outcome.reply, reply, "{method}");
    }
    assert_sdk_accepts(&sdk_reply(Some("ab")));
    assert_sdk_accepts(&sdk_reply(None));
}

#[test]
fn ignored_reply_is_a_success_with_the_reason() {
    let outcome = run(&get(Endpoint::Write, NODE_BEGIN));
    let reply: Value =
        serde_json::from_str(&outcome.ignored_reply("request does not match checksum"))
            .expect("JSON");
    assert_eq!(
        reply,
        json!({"result": "Success", "info": "Request ignored: request does not match checksum"})
    );
    assert_eq!(success_reply(None), r#"{"result":"Success"}"#);
}

/// Every event decoded satisfies the model's invariants.
fn assert_invariants(outcome: &CountlyOutcome, limits: &Limits) {
    assert_sdk_accepts_or_config(&outcome.reply);
    assert!(outcome.accepted() <= limits.max_events);
    let oldest = now()
        .checked_sub(limits.max_age)
        .expect("in range")
        .as_millisecond();
    let newest = now()
        .checked_add(limits.max_future)
        .expect("in range")
        .as_millisecond();
    for (key, event) in outcome.events() {
        assert!(!key.is_empty() && key.len() <= MAX_ID_BYTES);
        assert!(!event.device_id.is_empty() && event.device_id.len() <= MAX_ID_BYTES);
        assert!((oldest..=newest).contains(&event.ts_ms), "{}", event.ts_ms);
        for (_, value) in event.dims.iter() {
            assert!(value.is_none_or(|v| !v.is_empty() && v.len() <= MAX_ID_BYTES));
        }
        match &event.kind {
            EventKind::OpenApp => {}
            EventKind::UsageTime { duration_secs, .. } => {
                assert!((0.0..=MAX_DURATION_SECS).contains(duration_secs));
            }
            EventKind::Custom {
                name,
                count,
                sum,
                dur_secs,
                segments,
            } => {
                assert!(!name.is_empty() && name.len() <= MAX_ID_BYTES);
                assert!(*count >= 1);
                assert!(sum.is_finite());
                assert!((0.0..=MAX_DURATION_SECS).contains(dur_secs));
                assert!(segments.len() <= MAX_SEGMENTS);
            }
        }
    }
}

fn assert_sdk_accepts_or_config(reply: &str) {
    if reply == "{}" {
        return;
    }
    assert_sdk_accepts(reply);
}

fn endpoint() -> impl Strategy<Value = Endpoint> {
    prop_oneof![
        Just(Endpoint::Write),
        Just(Endpoint::Bulk),
        Just(Endpoint::Sdk)
    ]
}

/// Query strings and bodies made of Countly-ish pieces, so that the decoder gets past
/// its first checks often.
fn countly_text() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("app_key"),
        Just("device_id"),
        Just("old_device_id"),
        Just("begin_session"),
        Just("session_duration"),
        Just("end_session"),
        Just("timestamp"),
        Just("metrics"),
        Just("events"),
        Just("requests"),
        Just("checksum256"),
        Just("method"),
        Just("country_code"),
        Just("av"),
    ];
    let value = prop_oneof![
        Just("1".to_owned()),
        Just("k".to_owned()),
        Just("1795571000000".to_owned()),
        Just("%5B%7B%22key%22%3A%22a%22%2C%22count%22%3A2%7D%5D".to_owned()),
        Just("%7B%22_os%22%3A%22iOS%22%7D".to_owned()),
        Just("%5B%7B%22device_id%22%3A%22x%22%2C%22begin_session%22%3A1%7D%5D".to_owned()),
        "[ -~]{0,24}",
        any::<f64>().prop_map(|f| f.to_string()),
    ];
    prop::collection::vec((key, value), 0..10).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(
        endpoint in endpoint(),
        post_it in any::<bool>(),
        query in ".{0,200}",
        body in prop::collection::vec(any::<u8>(), 0..400),
        content_type in prop::option::of(prop_oneof![
            Just("application/json"),
            Just("application/x-www-form-urlencoded"),
            Just("multipart/form-data"),
            Just("text/plain"),
        ]),
        salt in "[a-z]{0,8}",
    ) {
        let request = CountlyRequest {
            endpoint,
            method: if post_it { Method::Post } else { Method::Get },
            query: &query,
            body: &body,
            content_type,
        };
        let limits = Limits::default();
        let outcome = decode(&request, now(), &limits);
        assert_invariants(&outcome, &limits);
        let _ = request.verify_checksum(&salt);
    }

    #[test]
    fn decode_keeps_invariants_on_countly_shaped_input(
        endpoint in endpoint(),
        query in countly_text(),
        body in countly_text(),
        max_events in 1_usize..20,
    ) {
        let limits = Limits { max_events, ..Limits::default() };
        let request = post(endpoint, &query, body.as_bytes(), FORM);
        let outcome = decode(&request, now(), &limits);
        assert_invariants(&outcome, &limits);
        // Bulk or not, every rejection names a request or the HTTP request itself.
        for rejection in &outcome.rejections {
            prop_assert!(!rejection.field.is_empty());
            prop_assert!(!rejection.reason.is_empty());
        }
    }

    #[test]
    fn json_bodies_of_any_shape_never_panic(value in json_value()) {
        let body = value.to_string();
        for endpoint in [Endpoint::Write, Endpoint::Bulk] {
            let outcome = decode(&post(endpoint, "", body.as_bytes(), JSON_TYPE), now(), &Limits::default());
            assert_invariants(&outcome, &Limits::default());
        }
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        prop_oneof![
            Just("1".to_owned()),
            Just("d".to_owned()),
            Just("1795571000000".to_owned()),
            "[ -~]{0,16}"
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        let key = prop_oneof![
            Just("app_key".to_owned()),
            Just("device_id".to_owned()),
            Just("begin_session".to_owned()),
            Just("session_duration".to_owned()),
            Just("events".to_owned()),
            Just("requests".to_owned()),
            Just("metrics".to_owned()),
            Just("key".to_owned()),
            Just("count".to_owned()),
            Just("segmentation".to_owned()),
            Just("timestamp".to_owned()),
            "[a-z_]{1,6}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key, inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
