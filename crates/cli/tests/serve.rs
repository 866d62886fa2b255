//! `sundial serve` end to end, as a user runs it: the real binary, real HTTP, the local
//! bus and SQLite in a data directory (and NATS JetStream + PostgreSQL for scale-out),
//! with the aggregates read back from the store.

mod common;

use std::collections::HashSet;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Server, TestApp, block_on, create_app, now_ms, open_store, today, wait_until};
use serde_json::json;
use sundial_analytics::aggregate::AggregateStore as _;
use sundial_storage_sql::SqlStore;

const WAIT: Duration = Duration::from_secs(60);

fn sqlite_url(dir: &std::path::Path) -> String {
    format!("sqlite://{}", dir.join("sundial.db").display())
}

/// Sends a sentinel launch from a fresh device and waits until it is counted: the bus
/// is in order, so everything published before it has been applied too.
fn drain(server: &Server, store: &SqlStore, app: &TestApp, tz: &str, name: &str) {
    let body = json!({"app_key": app.key, "events": [
        {"type": "open_app", "ts": now_ms(), "device_id": name}]});
    let reply = server.post("/api/v1/ingest", body.to_string().as_bytes(), &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let day = today(tz);
    wait_until(WAIT, "the sentinel to be aggregated", || {
        block_on(store.load_devices(app.id))
            .expect("devices")
            .iter()
            .any(|d| d.device_id == name && d.first_day <= day)
    });
}

#[test]
fn embedded_defaults_count_what_was_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data_s = data.to_str().expect("utf-8");
    let tz = "Asia/Shanghai";
    let app = create_app(&["--data-dir", data_s], "Demo", tz);
    let server = Server::start(&["--data-dir", data_s], dir.path());
    let store = open_store(&sqlite_url(&data));
    let now = now_ms();

    // A batch: two devices, batch-level dimensions, every event type, one rejection.
    let batch = json!({
    "app_key": app.key, "platform": "ios", "app_version": "1.2.3", "channel": "appstore",
    "events": [
        {"type": "open_app", "ts": now, "device_id": "d1", "user_id": "u1"},
        {"type": "usage_time", "ts": now, "device_id": "d1", "duration_secs": 42.5},
        {"type": "open_app", "ts": now, "device_id": "d2", "platform": "android"},
        {"type": "custom", "name": "purchase", "ts": now, "device_id": "d2",
         "count": 2, "sum": 9.99, "segments": {"sku": "gold"}},
        {"type": "open_app", "ts": now, "device_id": "d3", "event_id": "e-1"},
        {"type": "open_app", "ts": "not a time", "device_id": "d9"}
    ]});
    let reply = server.post("/api/v1/ingest", batch.to_string().as_bytes(), &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let v = reply.json();
    assert_eq!(v["accepted"], 5);
    assert_eq!(v["rejected"][0]["index"], 5);
    assert_eq!(v["rejected"][0]["field"], "ts");

    // An SDK retry of an event id: accepted, counted once.
    let retry = json!({"app_key": app.key, "events": [
        {"type": "open_app", "ts": now, "device_id": "d3", "event_id": "e-1"}]});
    let reply = server.post("/api/v1/ingest", retry.to_string().as_bytes(), &[]);
    assert_eq!(
        (reply.status, reply.json()["accepted"].clone()),
        (200, json!(1))
    );

    // The single-event endpoints, one of them gzip-compressed and signed.
    let single = json!({"app_key": app.key, "ts": now, "device_id": "d4", "platform": "ios"});
    let reply = server.post("/api/v1/open_app", single.to_string().as_bytes(), &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let usage =
        json!({"app_key": app.key, "ts": now, "device_id": "d4", "duration_secs": 7.5}).to_string();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(usage.as_bytes()).expect("gzip");
    let gz = gz.finish().expect("gzip");
    let signature = sundial_server::sign(&app.secret, usage.as_bytes());
    let reply = server.post(
        "/api/v1/usage_time",
        &gz,
        &[
            ("Content-Encoding", "gzip"),
            ("X-Sundial-Signature", &signature),
        ],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["accepted"], 1);

    drain(&server, &store, &app, tz, "sentinel");
    let day = today(tz);
    let totals = block_on(store.day_totals(app.id, day, day)).expect("totals");
    let t = totals[0];
    // d1, d2, d3 (once), d4, sentinel.
    assert_eq!(t.launches, 5, "{t:?}");
    assert_eq!(t.usage_reports, 2);
    assert!((t.usage_secs - 50.0).abs() < 1e-9, "{}", t.usage_secs);
    assert_eq!(t.active_users, 5);
    assert_eq!(t.new_users, 5);
    let events = block_on(store.event_totals(app.id, day, day)).expect("events");
    let purchase: Vec<_> = events.iter().filter(|e| e.name == "purchase").collect();
    assert_eq!(purchase.len(), 2, "{events:?}");
    assert!(
        purchase
            .iter()
            .all(|e| e.count == 2 && (e.sum - 9.99).abs() < 1e-9)
    );
    assert!(
        purchase
            .iter()
            .any(|e| e.seg_key == "sku" && e.seg_value == "gold")
    );
    // Breakdown sets: d2's launch said android, its custom event inherited the batch's
    // ios, so d2 counts under both (as documented); d1, d3 and d4 are ios.
    let android =
        block_on(store.day_set(app.id, day, "active", "platform", "android")).expect("set");
    let ios = block_on(store.day_set(app.id, day, "active", "platform", "ios")).expect("set");
    assert_eq!((android.len(), ios.len()), (1, 4));

    // Health, readiness and metrics.
    assert_eq!(server.get("/healthz").status, 200);
    let ready = server.get("/readyz");
    assert_eq!(
        (ready.status, ready.json()["status"].clone()),
        (200, json!("ready"))
    );
    let metrics = server.get("/metrics");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .body
            .contains("sundial_ingest_requests_total{endpoint=\"ingest\",status=\"200\"}"),
        "{}",
        metrics.body
    );
    assert!(
        metrics
            .body
            .contains("sundial_aggregate_duplicates_total 1")
    );
    server.stop();
}

/// What, path, body, headers, expected status, a string the answer must contain.
type BadCase<'a> = (
    &'a str,
    &'a str,
    String,
    Vec<(&'a str, String)>,
    u16,
    &'a str,
);

#[test]
fn bad_input_gets_its_status_and_stores_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data_s = data.to_str().expect("utf-8");
    let tz = "UTC";
    let app = create_app(&["--data-dir", data_s], "Bad", tz);
    let signed = create_app(&["--data-dir", data_s], "Signed", tz);
    // Require signatures for the second app (no admin API yet: straight in the store).
    let store = open_store(&sqlite_url(&data));
    block_on(async {
        let pool = sqlx::SqlitePool::connect(&sqlite_url(&data))
            .await
            .expect("pool");
        sqlx::query("UPDATE apps SET require_signature = 1 WHERE id = $1")
            .bind(signed.id)
            .execute(&pool)
            .await
            .expect("update");
    });
    let server = Server::start(&["--data-dir", data_s], dir.path());
    let now = now_ms();
    let key = &app.key;
    let huge = format!(
        r#"{{"app_key":"{key}","events":[{{"type":"open_app","ts":{now},"device_id":"{}"}}]}}"#,
        "x".repeat(1 << 20)
    );
    let many: Vec<_> = (0..1001)
        .map(|i| json!({"type": "open_app", "ts": now, "device_id": format!("m{i}")}))
        .collect();
    let event = json!({"type": "open_app", "ts": now, "device_id": "z"});
    let unsigned = json!({"app_key": signed.key, "events": [event]}).to_string();
    let cases: Vec<BadCase<'_>> = vec![
        ("not JSON", "/api/v1/ingest", "{\"app_key\": ".into(), vec![], 400, "line 1"),
        ("not an object", "/api/v1/ingest", "[1,2]".into(), vec![], 400, "JSON object"),
        ("no app key", "/api/v1/ingest", json!({"events": []}).to_string(), vec![], 400, "app_key"),
        ("app key of wrong type", "/api/v1/ingest", json!({"app_key": 5, "events": []}).to_string(), vec![], 400, "app_key"),
        ("events not an array", "/api/v1/ingest", json!({"app_key": key, "events": {}}).to_string(), vec![], 400, "events"),
        ("unknown app key", "/api/v1/ingest", json!({"app_key": "nope", "events": [event]}).to_string(), vec![], 401, "unknown app key"),
        ("too many events", "/api/v1/ingest", json!({"app_key": key, "events": many}).to_string(), vec![], 413, "too many events"),
        ("body over 1 MiB", "/api/v1/ingest", huge, vec![], 413, "larger than the limit"),
        ("broken gzip", "/api/v1/ingest", "not gzip".into(), vec![("Content-Encoding", "gzip".into())], 400, "cannot read"),
        ("missing signature", "/api/v1/ingest", unsigned.clone(), vec![], 401, "requires signed requests"),
        ("bad signature", "/api/v1/ingest", unsigned.clone(), vec![("X-Sundial-Signature", "00".repeat(32))], 401, "bad signature"),
        ("signature not hex", "/api/v1/ingest", unsigned, vec![("X-Sundial-Signature", "zz".into())], 401, "bad signature"),
        ("single: no device", "/api/v1/open_app", json!({"app_key": key, "ts": now}).to_string(), vec![], 200, "device_id"),
        ("single: unknown key", "/api/v1/usage_time", json!({"app_key": "k", "ts": now, "device_id": "d", "duration_secs": 1}).to_string(), vec![], 401, "unknown app key"),
        ("duration out of range", "/api/v1/usage_time", json!({"app_key": key, "ts": now, "device_id": "d", "duration_secs": 90000}).to_string(), vec![], 200, "duration_secs"),
        ("too old", "/api/v1/ingest", json!({"app_key": key, "events": [{"type": "open_app", "ts": now - 31 * 86_400_000_i64, "device_id": "old"}]}).to_string(), vec![], 200, "older than"),
        ("wrong field type", "/api/v1/ingest", json!({"app_key": key, "events": [{"type": "open_app", "ts": now, "device_id": 7}]}).to_string(), vec![], 200, "device_id"),
    ];
    for (what, path, body, headers, status, needle) in &cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = server.post(path, body.as_bytes(), &headers);
        assert_eq!(reply.status, *status, "{what}: {}", reply.body);
        assert!(
            reply.body.contains(needle),
            "{what}: expected `{needle}` in {}",
            reply.body
        );
        let v = reply.json();
        if *status == 200 {
            assert_eq!(v["accepted"], 0, "{what}: {v}");
            assert_eq!(
                v["rejected"].as_array().map(Vec::len),
                Some(1),
                "{what}: {v}"
            );
        } else {
            assert!(v["error"].is_string(), "{what}: {v}");
        }
    }
    drain(&server, &store, &app, tz, "sentinel");
    assert_eq!(block_on(store.device_count(app.id)).expect("count"), 1);
    assert_eq!(block_on(store.device_count(signed.id)).expect("count"), 0);
    let day = today(tz);
    let t = block_on(store.day_totals(app.id, day, day)).expect("totals")[0];
    assert_eq!((t.launches, t.usage_reports, t.active_users), (1, 0, 1));
    server.stop();
}

#[test]
fn kill_9_mid_stream_loses_and_doubles_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data_s = data.to_str().expect("utf-8");
    let tz = "Europe/Berlin";
    let app = create_app(&["--data-dir", data_s], "Crash", tz);
    let server = Server::start(&["--data-dir", data_s], dir.path());
    let addr = server.addr;
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let (acked, stop, key) = (acked.clone(), stop.clone(), app.key.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    // Each request: 5 launches from 5 fresh devices.
                    let ids: Vec<String> = (0..5).map(|j| format!("t{t}-{i}-{j}")).collect();
                    let events: Vec<_> = ids
                        .iter()
                        .map(|d| json!({"type": "open_app", "ts": now_ms(), "device_id": d}))
                        .collect();
                    let body = json!({"app_key": key, "events": events}).to_string();
                    i += 1;
                    let Ok(reply) = std::panic::catch_unwind(|| {
                        common::http(addr, "POST", "/api/v1/ingest", body.as_bytes(), &[])
                    }) else {
                        break; // the server died mid-request
                    };
                    if reply.status == 200 {
                        acked.lock().expect("lock").extend(ids);
                    }
                }
            })
        })
        .collect();
    wait_until(WAIT, "400 acknowledged events", || {
        acked.lock().expect("lock").len() >= 400
    });
    server.kill9();
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        let _ = s.join();
    }
    let acked = acked.lock().expect("lock").clone();

    let server = Server::start(&["--data-dir", data_s], dir.path());
    let store = open_store(&sqlite_url(&data));
    drain(&server, &store, &app, tz, "sentinel");
    let devices: HashSet<String> = block_on(store.load_devices(app.id))
        .expect("devices")
        .into_iter()
        .map(|d| d.device_id)
        .collect();
    let missing: Vec<_> = acked.difference(&devices).take(5).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not counted: {missing:?}"
    );
    // Every device sent exactly one launch: launches = devices = active users means no
    // event was counted twice (events durable but not acknowledged may count once).
    let day = today(tz);
    let from = day - 1;
    let totals = block_on(store.day_totals(app.id, from, day)).expect("totals");
    let launches: i64 = totals.iter().map(|t| t.launches).sum();
    let active: u64 = totals.iter().map(|t| t.active_users).sum();
    assert_eq!(launches as usize, devices.len(), "launches vs devices");
    assert_eq!(active as usize, devices.len(), "active users vs devices");
    server.stop();
}

fn postgres_schema_url() -> String {
    let base = std::env::var("SUNDIAL_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!(
        "sundial_serve_{}",
        sundial_analytics::app::random_token(6).expect("entropy")
    );
    block_on(async {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&base)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL is required and is not reachable at {base}: {e}. \
                 Run `bash scripts/services.sh`."
                )
            });
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut conn)
            .await
            .expect("create schema");
    });
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}options=-c%20search_path%3D{schema}")
}

#[test]
fn scale_out_on_nats_and_postgres() {
    let nats = std::env::var("SUNDIAL_TEST_NATS_URL")
        .unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let pg = postgres_schema_url();
    let stream = format!(
        "SUNDIAL_TEST_{}",
        sundial_analytics::app::random_token(6).expect("entropy")
    );
    let bus = format!("{nats}?stream={stream}");
    let dir = tempfile::tempdir().expect("tempdir");
    let tz = "America/New_York";
    let app = create_app(&["--store", &pg], "Scale", tz);
    let common_args = ["--store", pg.as_str(), "--bus", bus.as_str()];
    let ingest_a = Server::start(
        &[&common_args[..], &["--role", "ingest"]].concat(),
        dir.path(),
    );
    let ingest_b = Server::start(
        &[&common_args[..], &["--role", "ingest"]].concat(),
        dir.path(),
    );
    let aggregator = Server::start(
        &[&common_args[..], &["--role", "aggregate"]].concat(),
        dir.path(),
    );
    let store = open_store(&pg);
    let now = now_ms();
    for (i, server) in [&ingest_a, &ingest_b].into_iter().enumerate() {
        for j in 0..10 {
            let body = json!({"app_key": app.key, "platform": "android", "events": [
                {"type": "open_app", "ts": now, "device_id": format!("n{i}-{j}")},
                {"type": "usage_time", "ts": now, "device_id": format!("n{i}-{j}"), "duration_secs": 2}
            ]});
            let reply = server.post("/api/v1/ingest", body.to_string().as_bytes(), &[]);
            assert_eq!(reply.status, 200, "{}", reply.body);
        }
    }
    // The aggregator role does not ingest.
    let body = json!({"app_key": app.key, "events": []}).to_string();
    assert_eq!(
        aggregator
            .post("/api/v1/ingest", body.as_bytes(), &[])
            .status,
        503
    );
    let day = today(tz);
    wait_until(WAIT, "20 launches in PostgreSQL", || {
        block_on(store.day_totals(app.id, day, day)).expect("totals")[0].launches == 20
    });
    // Restart the aggregator: it resumes from its committed position, no double count.
    aggregator.stop();
    let aggregator = Server::start(
        &[&common_args[..], &["--role", "aggregate"]].concat(),
        dir.path(),
    );
    drain(&ingest_a, &store, &app, tz, "sentinel");
    let t = block_on(store.day_totals(app.id, day, day)).expect("totals")[0];
    assert_eq!(
        (t.launches, t.usage_reports, t.active_users),
        (21, 20, 21),
        "{t:?}"
    );
    assert!((t.usage_secs - 40.0).abs() < 1e-9);
    for s in [ingest_a, ingest_b, aggregator] {
        s.stop();
    }
}

#[test]
fn countly_requests_count_and_checksums_are_enforced() {
    use sha2::Digest as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data_s = data.to_str().expect("utf-8");
    let tz = "UTC";
    let app = create_app(&["--data-dir", data_s], "Countly", tz);
    let salted = create_app(&["--data-dir", data_s], "Salted", tz);
    block_on(async {
        let pool = sqlx::SqlitePool::connect(&sqlite_url(&data))
            .await
            .expect("pool");
        sqlx::query("UPDATE apps SET countly_salt = 'pepper' WHERE id = $1")
            .bind(salted.id)
            .execute(&pool)
            .await
            .expect("update");
    });
    let server = Server::start(&["--data-dir", data_s], dir.path());
    let store = open_store(&sqlite_url(&data));
    let ts = now_ms();

    // /i by GET: a session begins on an Android device.
    let query = format!(
        "app_key={}&device_id=c1&timestamp={ts}&begin_session=1&metrics=%7B%22_os%22%3A%22Android%22%7D",
        app.key
    );
    let reply = server.get(&format!("/i?{query}"));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["result"], "Success");
    // /i/bulk by POST form: a known and an unknown app; the unknown one is dropped.
    let requests = json!([
        {"app_key": app.key, "device_id": "c2", "timestamp": ts, "begin_session": 1},
        {"app_key": "unknown", "device_id": "c3", "timestamp": ts, "begin_session": 1},
        {"app_key": app.key, "device_id": "c1", "timestamp": ts, "session_duration": 30,
         "end_session": 1}
    ]);
    let form = format!("requests={}", url_encode(&requests.to_string()));
    let reply = server.post(
        "/i/bulk",
        form.as_bytes(),
        &[("Content-Type", "application/x-www-form-urlencoded")],
    );
    assert_eq!(
        (reply.status, reply.json()["result"].clone()),
        (200, json!("Success"))
    );

    // The salted app: a wrong checksum is dropped (still 200 for the SDK), a right one counts.
    let base = format!(
        "app_key={}&device_id=s1&timestamp={ts}&begin_session=1",
        salted.key
    );
    let reply = server.get(&format!("/i?{base}&checksum256={}", "0".repeat(64)));
    assert_eq!(reply.status, 200);
    assert!(reply.body.contains("checksum"), "{}", reply.body);
    let digest = hex_upper(&sha2::Sha256::digest(format!("{base}pepper").as_bytes()));
    let reply = server.get(&format!("/i?{base}&checksum256={digest}"));
    assert_eq!(reply.status, 200);
    assert!(!reply.body.contains("ignored"), "{}", reply.body);
    // /o/sdk answers a valid empty configuration.
    let reply = server.get(&format!(
        "/o/sdk?method=sc&app_key={}&device_id=c1",
        app.key
    ));
    assert_eq!((reply.status, reply.body.as_str()), (200, "{}"));

    drain(&server, &store, &app, tz, "sentinel");
    drain(&server, &store, &salted, tz, "sentinel2");
    let day = today(tz);
    let t = block_on(store.day_totals(app.id, day, day)).expect("totals")[0];
    // c1, c2 and the sentinel launched; c1 reported 30 s with its end_session.
    assert_eq!(
        (t.launches, t.usage_reports, t.active_users),
        (3, 1, 3),
        "{t:?}"
    );
    assert!((t.usage_secs - 30.0).abs() < 1e-9);
    let android =
        block_on(store.day_set(app.id, day, "active", "platform", "android")).expect("set");
    assert_eq!(android.len(), 1);
    let s = block_on(store.day_totals(salted.id, day, day)).expect("totals")[0];
    assert_eq!(
        s.launches, 2,
        "the checksummed launch and the sentinel: {s:?}"
    );
    server.stop();
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}
