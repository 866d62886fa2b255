//! `sundial recompute` as a user runs it: events aggregated by `sundial serve` in one
//! zone, the app moved to another, the command rebuilds the days in the new zone (with
//! progress on stderr), and bad input is refused with exit status 2.

mod common;

use std::time::Duration;

use common::{Server, block_on, create_app, now_ms, open_store, sundial, wait_until};
use serde_json::json;
use sundial_analytics::metrics::{self, AppClock};
use sundial_analytics::{AppUpdate, Store as _};

const HOUR_MS: i64 = 3_600_000;

#[test]
fn recompute_moves_days_to_the_new_zone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data_s = data.to_str().expect("utf-8");
    let app = create_app(&["--data-dir", data_s], "Moving", "UTC");
    let server = Server::start(&["--data-dir", data_s], dir.path());
    // Three launches three days ago at 20:00 UTC: that is 04:00 the next day in Shanghai.
    let base = now_ms() - 3 * 24 * HOUR_MS;
    let at = base - base.rem_euclid(24 * HOUR_MS) + 20 * HOUR_MS;
    let body = json!({"app_key": app.key, "events": [
        {"type": "open_app", "ts": at, "device_id": "a"},
        {"type": "open_app", "ts": at + 1_000, "device_id": "b"},
        {"type": "open_app", "ts": at + 2_000, "device_id": "c"}]});
    let reply = server.post("/api/v1/ingest", body.to_string().as_bytes(), &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let store = open_store(&format!("sqlite://{}", data.join("sundial.db").display()));
    let utc_day = sundial_analytics::aggregate::day_and_hour(at, &jiff::tz::TimeZone::UTC).0;
    wait_until(
        Duration::from_secs(60),
        "the launches to be aggregated",
        || {
            let clock = AppClock::new(app.id, "UTC", now_ms());
            block_on(metrics::overview(&store, &clock, utc_day, utc_day))
                .map(|o| o.days[0].launches == 3)
                .unwrap_or(false)
        },
    );
    server.stop();

    block_on(store.update_app(
        app.id,
        AppUpdate {
            timezone: Some("Asia/Shanghai".into()),
            ..AppUpdate::default()
        },
    ))
    .expect("move the app");
    let id = app.id.to_string();
    let out = sundial()
        .args(["recompute", "--app", &id, "--json", "--data-dir", data_s])
        .output()
        .expect("run recompute");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("raw rows"), "progress is shown: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["events"], 3);

    let clock = AppClock::new(app.id, "Asia/Shanghai", now_ms());
    let overview =
        block_on(metrics::overview(&store, &clock, utc_day, utc_day + 1)).expect("overview");
    assert_eq!(overview.days[0].launches, 0, "nothing left on the UTC day");
    assert_eq!(overview.days[1].launches, 3);
    assert_eq!(overview.days[1].new_users, 3);

    // Bad input: exit 2, nothing changed.
    for (args, says) in [
        (
            vec!["recompute", "--app", "999999"],
            "no app with id 999999",
        ),
        (
            vec![
                "recompute",
                "--app",
                &id,
                "--from",
                "2024-13-01",
                "--to",
                "2024-12-01",
            ],
            "--from",
        ),
        (
            vec![
                "recompute",
                "--app",
                &id,
                "--from",
                "2024-12-02",
                "--to",
                "2024-12-01",
            ],
            "after --to",
        ),
        (
            vec!["recompute", "--app", &id, "--from", "2024-12-01"],
            "--to",
        ),
    ] {
        let out = sundial()
            .args(&args)
            .args(["--data-dir", data_s])
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    let again =
        block_on(metrics::overview(&store, &clock, utc_day, utc_day + 1)).expect("overview");
    assert_eq!(again, overview);
}
