//! The metrics query API over real HTTP: `sundial serve` on embedded defaults, events
//! sent through ingest, every endpoint read back, and a table of bad parameters that
//! must each answer 400 naming the parameter. (The definitions themselves are checked
//! against a brute-force reference in `sundial-storage-sql`'s tests.)

mod common;

use std::time::Duration;

use std::io::Write as _;
use std::process::Stdio;

use common::{Server, create_app, now_ms, sundial};
use serde_json::{Value, json};

const DAY_MS: i64 = 86_400_000;

fn date_in(tz: &str, ts_ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ts_ms)
        .expect("ts")
        .to_zoned_datetime(jiff::tz::TimeZone::get(tz).expect("zone"))
        .date()
        .to_string()
}

/// An admin and an API token for it, made with the CLI.
fn admin_token(data_dir: &str) -> String {
    account_token(data_dir, "admin", &["--role", "admin"])
}

/// An account (`extra`: role and grants) and an API token for it, made with the CLI.
fn account_token(data_dir: &str, username: &str, extra: &[&str]) -> String {
    let mut child = sundial()
        .args(["account", "create", "--username", username])
        .args(extra)
        .args(["--password-stdin", "--data-dir", data_dir])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"correct horse battery staple\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = sundial()
        .args([
            "token",
            "create",
            "--username",
            username,
            "--name",
            "metrics-test",
        ])
        .args(["--json", "--data-dir", data_dir])
        .output()
        .expect("token create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    format!("Bearer {}", v["token"].as_str().expect("token"))
}

fn get_as(server: &Server, path: &str, bearer: &str) -> common::Reply {
    common::http(server.addr, "GET", path, b"", &[("Authorization", bearer)])
}

#[test]
fn every_endpoint_answers_and_bad_parameters_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data_s = data.to_str().expect("utf-8");
    let tz = "Asia/Shanghai";
    let app = create_app(&["--data-dir", data_s], "Metrics", tz);
    let bearer = admin_token(data_s);
    // A viewer granted only another app may not read this one; one with every app may.
    let other = create_app(&["--data-dir", data_s], "Other", "UTC");
    let other_id = other.id.to_string();
    let narrow = account_token(
        data_s,
        "narrow",
        &["--role", "viewer", "--grant", &other_id],
    );
    let wide = account_token(data_s, "wide", &["--role", "viewer"]);
    let server = Server::start(&["--data-dir", data_s], dir.path());
    let get_json = |path: &str| {
        let reply = get_as(&server, path, &bearer);
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
        reply.json()
    };

    // Yesterday: a (ios) and b (android) are new. Today: a returns, c (ios) is new.
    let now = now_ms();
    let yesterday = now - DAY_MS;
    let (today_s, yesterday_s) = (date_in(tz, now), date_in(tz, yesterday));
    let body = json!({"app_key": app.key, "events": [
        {"type": "open_app", "ts": yesterday, "device_id": "a", "platform": "ios"},
        {"type": "usage_time", "ts": yesterday, "device_id": "a", "platform": "ios", "duration_secs": 30},
        {"type": "open_app", "ts": yesterday, "device_id": "b", "platform": "android"},
        {"type": "open_app", "ts": now, "device_id": "a", "platform": "ios", "user_id": "u1"},
        {"type": "open_app", "ts": now, "device_id": "c", "platform": "ios"},
        {"type": "custom", "ts": now, "device_id": "c", "name": "purchase", "count": 2,
         "sum": 5.5, "segments": {"sku": "gold"}},
    ]});
    let reply = server.post("/api/v1/ingest", body.to_string().as_bytes(), &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["accepted"], 6);

    let id = app.id;
    let overview_path = format!("/api/v1/apps/{id}/overview?from={yesterday_s}&to={today_s}");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let overview = loop {
        let v = get_json(&overview_path);
        if v["days"][1]["new_users"] == 1 && v["days"][0]["new_users"] == 2 {
            break v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "events not aggregated in time: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(overview["timezone"], tz);
    let y = &overview["days"][0];
    assert_eq!(
        (
            y["date"].as_str(),
            y["launches"].as_i64(),
            y["active_users"].as_i64()
        ),
        (Some(yesterday_s.as_str()), Some(2), Some(2))
    );
    assert_eq!(y["usage_secs"], 30.0);
    assert_eq!(y["avg_session_secs"], 15.0);
    let t = &overview["days"][1];
    assert_eq!(t["returning_users"], 1);
    assert_eq!(t["total_users"], 3);
    assert_eq!(t["registered_users"], 1);

    let active = get_json(&format!(
        "/api/v1/apps/{id}/active?from={today_s}&to={today_s}"
    ));
    assert_eq!(active["days"][0]["dau"], 2);
    assert_eq!(active["days"][0]["wau"], 3);
    let weeks = get_json(&format!(
        "/api/v1/apps/{id}/active?calendar=month&to={today_s}"
    ));
    assert_eq!(weeks["calendar"], "month");

    let retention = get_json(&format!(
        "/api/v1/apps/{id}/retention?from={yesterday_s}&to={today_s}&days=0,1"
    ));
    let cohort = &retention["cohorts"][0];
    assert_eq!(cohort["size"], 2);
    assert_eq!(cohort["retained"]["0"], json!({"count": 2, "ratio": 1.0}));
    assert_eq!(cohort["retained"]["1"], Value::Null, "today has not ended");

    let lifecycle = get_json(&format!(
        "/api/v1/apps/{id}/lifecycle?from={today_s}&to={today_s}"
    ));
    assert_eq!(
        lifecycle["days"][0],
        json!({"date": today_s, "new": 1, "returning": 1, "resurrecting": 0, "dormant": 1})
    );

    let dist = get_json(&format!(
        "/api/v1/apps/{id}/distribution?kind=session_length&from={yesterday_s}&to={yesterday_s}"
    ));
    assert_eq!(dist["buckets"][3], "31-60");
    assert_eq!(
        dist["days"][0]["counts"][2], 1,
        "one 30-second session: {dist}"
    );
    let launches = get_json(&format!(
        "/api/v1/apps/{id}/distribution?kind=launches_per_device&from={today_s}&to={today_s}"
    ));
    assert_eq!(launches["total"][0], 2);

    let breakdown = get_json(&format!(
        "/api/v1/apps/{id}/breakdown?dimension=platform&from={yesterday_s}&to={today_s}"
    ));
    assert_eq!(breakdown["values"][0]["value"], "ios");
    assert_eq!(breakdown["values"][0]["total"], 2);
    assert_eq!(breakdown["values"][0]["counts"], json!([1, 2]));

    let events = get_json(&format!(
        "/api/v1/apps/{id}/events?segment=sku&from={today_s}&to={today_s}"
    ));
    assert_eq!(events["events"][0]["name"], "purchase");
    assert_eq!(events["events"][0]["count"], 2);
    assert_eq!(events["events"][0]["segments"][0]["value"], "gold");

    let summary = get_json(&format!("/api/v1/apps/{id}/summary"));
    assert_eq!(summary["total_users"], 3);
    assert_eq!(summary["today"]["current"]["active_users"], 2);
    assert_eq!(summary["date"], today_s);

    let path = format!("/api/v1/apps/{id}/summary");
    assert_eq!(
        get_as(&server, &path, &narrow).status,
        403,
        "viewer without a grant"
    );
    assert_eq!(
        get_as(&server, &path, &wide).status,
        200,
        "viewer of every app"
    );
    let path = format!("/api/v1/apps/{}/summary", other.id);
    assert_eq!(
        get_as(&server, &path, &narrow).status,
        200,
        "viewer of its granted app"
    );

    // The close-out job ran once at start, through the scheduler.
    let prometheus = server.get("/metrics");
    assert!(
        prometheus.body.contains("sundial_close_out_runs_total"),
        "{}",
        prometheus.body
    );

    // The OpenAPI document is served and lists these routes.
    let doc = get_json("/api/openapi.json");
    assert!(doc["paths"]["/api/v1/apps/{app}/retention"]["get"].is_object());

    // Bad parameters: 400, and `field` names the parameter.
    let cases = [
        ("/api/v1/apps/999999/overview".to_owned(), "app"),
        ("/api/v1/apps/abc/overview".to_owned(), "app"),
        (
            format!("/api/v1/apps/{id}/overview?from=2024-11-02&to=2024-11-01"),
            "from",
        ),
        (
            format!("/api/v1/apps/{id}/overview?from=2023-01-01&to=2024-11-01"),
            "to",
        ),
        (
            format!("/api/v1/apps/{id}/overview?from=2024-02-30"),
            "from",
        ),
        (
            format!("/api/v1/apps/{id}/overview?form=2024-01-01"),
            "form",
        ),
        (format!("/api/v1/apps/{id}/retention?kind=old"), "kind"),
        (format!("/api/v1/apps/{id}/retention?mode=x"), "mode"),
        (
            format!("/api/v1/apps/{id}/retention?period=month"),
            "period",
        ),
        (format!("/api/v1/apps/{id}/retention?days=1,x"), "days"),
        (format!("/api/v1/apps/{id}/distribution"), "kind"),
        (format!("/api/v1/apps/{id}/distribution?kind=weird"), "kind"),
        (format!("/api/v1/apps/{id}/breakdown"), "dimension"),
        (
            format!("/api/v1/apps/{id}/breakdown?dimension=color"),
            "dimension",
        ),
        (
            format!("/api/v1/apps/{id}/breakdown?dimension=platform&metric=x"),
            "metric",
        ),
        (
            format!("/api/v1/apps/{id}/active?calendar=year"),
            "calendar",
        ),
    ];
    for (path, field) in cases {
        // Without credentials: 401 whatever the parameters.
        assert_eq!(server.get(&path).status, 401, "GET {path} without a token");
        let reply = get_as(&server, &path, &bearer);
        assert_eq!(reply.status, 400, "GET {path}: {}", reply.body);
        let body = reply.json();
        assert_eq!(body["field"], field, "GET {path}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains(field)),
            "GET {path}: the message names `{field}`: {body}"
        );
    }
}
