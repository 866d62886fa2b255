//! Countly compatibility, proven with the real Countly web SDK: `e2e/countly-web.mjs`
//! drives `countly-sdk-web` (from `e2e/node_modules`) in headless Chromium against a
//! `sundial serve` on the embedded defaults (local bus, SQLite in a temporary data
//! directory), and the aggregates read back from the store must be exactly what that
//! scenario sent: launches, usage reports and seconds, active and new users, every
//! custom-event counter with its segments, and the platform breakdown of the launches.
//!
//! Prerequisites (the test panics, never skips, when one is missing): Node.js, the e2e
//! packages (`npm ci --prefix e2e`) and Debian's Chromium at `/usr/bin/chromium`
//! (`apt-get install chromium`, or `scripts/services.sh`).
//!
//! Waiting without timed assertions: once the script has exited, every request the SDK
//! sent was acknowledged, so its events are on the bus. A launch for a second app is then
//! sent and the test waits (generously) until that launch is aggregated: the bus is one
//! ordered log, so everything published before it has been applied too, and the counts of
//! the app under test are final when they are asserted.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Server, block_on, create_app, open_store, today, wait_until};
use serde_json::Value;
use sqlx::Connection as _;
use sundial_analytics::aggregate::{AggregateStore as _, SET_ACTIVE, SET_NEW};

const E2E_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../e2e");
const CHROMIUM: &str = "/usr/bin/chromium";
const WAIT: Duration = Duration::from_secs(60);
/// What the script's first device calls itself (its second device gets an SDK-made id).
const DEVICE_1: &str = "web-e2e-device-1";

/// Panics with how to install whatever the test needs and is missing.
fn check_prerequisites(e2e: &Path) {
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        _ => panic!(
            "Node.js is needed to run the Countly web SDK: install it (Debian: \
             `apt-get install nodejs npm`), then `npm ci --prefix e2e`"
        ),
    }
    for package in ["countly-sdk-web", "playwright-core"] {
        let manifest = e2e.join("node_modules").join(package).join("package.json");
        assert!(
            manifest.is_file(),
            "{} is missing: install the e2e packages with `npm ci --prefix e2e` \
             (from the repository root)",
            manifest.display()
        );
    }
    assert!(
        Path::new(CHROMIUM).is_file(),
        "{CHROMIUM} is missing: install Chromium with `apt-get install chromium` \
         (scripts/services.sh does it)"
    );
}

/// Runs the SDK scenario against `server` and returns the script's JSON report.
fn run_web_sdk(e2e: &Path, server: &Server, app_key: &str) -> Value {
    let output = Command::new("node")
        .arg(e2e.join("countly-web.mjs"))
        .args(["--server", &format!("http://{}", server.addr)])
        .args(["--app-key", app_key])
        .args(["--device-id", DEVICE_1])
        .args(["--chromium", CHROMIUM])
        .args(["--timeout-secs", "120"])
        .current_dir(e2e)
        .output()
        .expect("run node e2e/countly-web.mjs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the web SDK run failed ({}):\n{stderr}\nreport: {stdout}\nserver log:\n{}",
        output.status,
        server.log_text()
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("report is not JSON ({e}): {stdout}"))
}

/// The requests of the report that carry `param` with `value`.
fn requests_with<'a>(report: &'a Value, param: &str, value: &str) -> Vec<&'a Value> {
    report["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .filter(|r| r["params"][param].as_str() == Some(value))
        .collect()
}

/// Launches counted under `platform` over `from..=to`, read from the store's breakdown
/// counters (the store has no typed reader for them yet).
fn launches_on_platform(db: &Path, app_id: i64, platform: &str, from: i32, to: i32) -> i64 {
    block_on(async {
        let url = format!("sqlite://{}", db.display());
        let mut conn = sqlx::SqliteConnection::connect(&url)
            .await
            .expect("open the SQLite store");
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COALESCE(SUM(launches), 0) FROM day_counters \
             WHERE app_id = $1 AND dim = 'platform' AND value = $2 AND day BETWEEN $3 AND $4",
        )
        .bind(app_id)
        .bind(platform)
        .bind(i64::from(from))
        .bind(i64::from(to))
        .fetch_one(&mut conn)
        .await
        .expect("launches by platform");
        n
    })
}

#[test]
fn countly_web_sdk_in_headless_chromium_is_counted_exactly() {
    let e2e = PathBuf::from(E2E_DIR);
    check_prerequisites(&e2e);

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data_s = data.to_str().expect("utf-8");
    let tz = "UTC";
    let app = create_app(&["--data-dir", data_s], "Web", tz);
    let sentinel_app = create_app(&["--data-dir", data_s], "Sentinel", tz);
    let server = Server::start(&["--data-dir", data_s], dir.path());
    let db = data.join("sundial.db");
    let store = open_store(&format!("sqlite://{}", db.display()));

    let first_day = today(tz);
    let report = run_web_sdk(&e2e, &server, &app.key);
    let last_day = today(tz);

    // What the SDK sent: every request answered 200, three sessions, with `_os`.
    let requests = report["requests"].as_array().expect("requests");
    assert!(!requests.is_empty(), "the SDK sent nothing: {report}");
    for r in requests {
        assert_eq!(r["status"], 200, "{r}");
    }
    let device_2 = report["devices"][1]["device_id"]
        .as_str()
        .expect("second device id")
        .to_owned();
    assert_ne!(device_2, DEVICE_1);
    let begins = requests_with(&report, "begin_session", "1");
    assert_eq!(begins.len(), 3, "{report}");
    for begin in &begins {
        let metrics: Value =
            serde_json::from_str(begin["params"]["metrics"].as_str().expect("metrics"))
                .expect("metrics JSON");
        assert_eq!(metrics["_os"], "Linux", "{begin}");
        assert_eq!(metrics["_app_version"], "2.1.0", "{begin}");
    }
    assert_eq!(requests_with(&report, "end_session", "1").len(), 3);

    // Everything acknowledged is on the bus; a later launch of another app marks its end.
    let reply = server.get(&format!(
        "/i?app_key={}&device_id=sentinel&begin_session=1",
        sentinel_app.key
    ));
    assert_eq!(reply.status, 200, "{}", reply.body);
    wait_until(WAIT, "the sentinel launch to be aggregated", || {
        block_on(store.device_count(sentinel_app.id)).expect("device count") == 1
    });

    // Devices: the developer-supplied id and the one the SDK generated.
    let devices: BTreeSet<String> = block_on(store.load_devices(app.id))
        .expect("devices")
        .into_iter()
        .map(|d| d.device_id)
        .collect();
    assert_eq!(
        devices,
        BTreeSet::from([DEVICE_1.to_owned(), device_2.clone()])
    );
    assert_eq!(block_on(store.device_count(app.id)).expect("count"), 2);

    // Day totals (summed over the days the run spanned: one, unless it crossed midnight).
    let days = block_on(store.day_totals(app.id, first_day, last_day)).expect("totals");
    let launches: i64 = days.iter().map(|d| d.launches).sum();
    let usage_reports: i64 = days.iter().map(|d| d.usage_reports).sum();
    let usage_secs: f64 = days.iter().map(|d| d.usage_secs).sum();
    assert_eq!(launches, 3, "{days:?}");
    // session_duration(30) and end_session(15), end_session(20) on device 1;
    // end_session(10) on device 2.
    assert_eq!(usage_reports, 4, "{days:?}");
    assert!((usage_secs - 75.0).abs() < 1e-9, "{days:?}");
    let members = |kind: &'static str, dim: &'static str, value: &str| -> BTreeSet<u32> {
        (first_day..=last_day)
            .flat_map(|day| {
                block_on(store.day_set(app.id, day, kind, dim, value))
                    .expect("set")
                    .iter()
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    assert_eq!(members(SET_ACTIVE, "", "").len(), 2, "active users");
    assert_eq!(members(SET_NEW, "", "").len(), 2, "new users");

    // Breakdowns: both devices launched on Linux with app version 2.1.0.
    assert_eq!(members(SET_ACTIVE, "platform", "linux").len(), 2);
    assert_eq!(members(SET_ACTIVE, "app_version", "2.1.0").len(), 2);
    assert_eq!(
        launches_on_platform(&db, app.id, "linux", first_day, last_day),
        3
    );

    // Custom events, with their segments, exactly (the SDK adds one `[CLY]_orientation`
    // per session: the page is 1280x720).
    let mut events: BTreeMap<(String, String, String), (i64, f64, f64)> = BTreeMap::new();
    for e in block_on(store.event_totals(app.id, first_day, last_day)).expect("events") {
        let entry = events
            .entry((e.name, e.seg_key, e.seg_value))
            .or_insert((0, 0.0, 0.0));
        entry.0 += e.count;
        entry.1 += e.sum;
        entry.2 += e.dur_secs;
    }
    let key = |name: &str, k: &str, v: &str| (name.to_owned(), k.to_owned(), v.to_owned());
    let expected = BTreeMap::from([
        (key("purchase", "", ""), (3, 24.75, 4.0)),
        (key("purchase", "plan", "pro"), (2, 19.5, 4.0)),
        (key("purchase", "plan", "basic"), (1, 5.25, 0.0)),
        (key("purchase", "source", "web"), (3, 24.75, 4.0)),
        (key("level_up", "", ""), (3, 0.0, 0.0)),
        (key("level_up", "level", "7"), (3, 0.0, 0.0)),
        (key("share", "", ""), (1, 0.0, 0.0)),
        (key("share", "network", "mail"), (1, 0.0, 0.0)),
        (key("[CLY]_orientation", "", ""), (3, 0.0, 0.0)),
        (key("[CLY]_orientation", "mode", "landscape"), (3, 0.0, 0.0)),
    ]);
    assert_eq!(
        events.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "event counters: {events:?}"
    );
    for (k, want) in &expected {
        let got = events[k];
        assert_eq!(got.0, want.0, "count of {k:?}");
        assert!((got.1 - want.1).abs() < 1e-9, "sum of {k:?}: {got:?}");
        assert!((got.2 - want.2).abs() < 1e-9, "dur of {k:?}: {got:?}");
    }

    server.stop();
}
