//! Accounts end to end: `sundial account create --password-stdin` makes an admin, who
//! logs in over HTTP against `sundial serve`, creates an app, hands its key to an SDK
//! (ingest), and reads with an API token from `sundial token create`; plus `account
//! list/passwd/delete`, `token list/revoke` and the first-run hint.

mod common;

use std::io::Write as _;
use std::process::{Output, Stdio};
use std::time::Duration;

use common::{Server, block_on, now_ms, open_store, sundial, wait_until};
use serde_json::{Value, json};
use sundial_analytics::aggregate::AggregateStore as _;

const WAIT: Duration = Duration::from_secs(60);

/// Runs `sundial ARGS…` with `stdin` as standard input.
fn run_with_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = sundial()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sundial");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn ok_json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

fn login(server: &Server, username: &str, password: &str) -> common::Reply {
    let body = json!({"username": username, "password": password}).to_string();
    server.post("/api/v1/auth/login", body.as_bytes(), &[])
}

#[test]
fn admin_from_cli_logs_in_creates_an_app_and_reads_with_a_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data_s = data.to_str().expect("utf-8");

    // A fresh installation says how to create the first admin.
    let server = Server::start(&["--data-dir", data_s], dir.path());
    wait_until(WAIT, "the first-run hint", || {
        server
            .log_text()
            .contains("sundial account create --username admin --role admin")
    });
    server.stop();

    // Without a terminal and without --password-stdin, the command refuses.
    let output = run_with_stdin(
        &[
            "account",
            "create",
            "--username",
            "admin",
            "--role",
            "admin",
            "--data-dir",
            data_s,
        ],
        "",
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--password-stdin"));
    // Too short a password is refused before anything is stored.
    let output = run_with_stdin(
        &[
            "account",
            "create",
            "--username",
            "admin",
            "--role",
            "admin",
            "--password-stdin",
            "--data-dir",
            data_s,
        ],
        "short\n",
    );
    assert_eq!(output.status.code(), Some(2));

    let admin = ok_json(&run_with_stdin(
        &[
            "account",
            "create",
            "--username",
            "admin",
            "--role",
            "admin",
            "--password-stdin",
            "--json",
            "--data-dir",
            data_s,
        ],
        "s3cret-admin-password\n",
    ));
    assert_eq!(admin["role"], "admin");
    assert_eq!(admin["grants"], Value::Null);
    let output = run_with_stdin(
        &[
            "account",
            "create",
            "--username",
            "admin",
            "--password-stdin",
            "--data-dir",
            data_s,
        ],
        "another-password\n",
    );
    assert_eq!(output.status.code(), Some(2), "duplicate username");
    let listed = ok_json(
        &sundial()
            .args(["account", "list", "--json", "--data-dir", data_s])
            .output()
            .expect("run"),
    );
    assert_eq!(listed.as_array().expect("array").len(), 1);
    assert!(!listed.to_string().contains("argon2"));

    let server = Server::start(&["--data-dir", data_s], dir.path());
    assert!(!server.log_text().contains("no admin account exists"));
    assert_eq!(login(&server, "admin", "wrong-password").status, 401);
    let reply = login(&server, "admin", "s3cret-admin-password");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let session = reply.json()["token"].as_str().expect("token").to_owned();
    let bearer = format!("Bearer {session}");

    // Unauthenticated requests cannot list or create apps.
    assert_eq!(server.get("/api/v1/apps").status, 401);
    let app_body = json!({"name": "Demo", "timezone": "Asia/Shanghai"}).to_string();
    assert_eq!(
        server.post("/api/v1/apps", app_body.as_bytes(), &[]).status,
        401
    );
    let created = server.post(
        "/api/v1/apps",
        app_body.as_bytes(),
        &[("Authorization", &bearer)],
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let app = created.json();
    let app_id = app["id"].as_i64().expect("id");
    let app_key = app["app_key"].as_str().expect("key").to_owned();

    // The SDK sends a launch with the key; it is counted.
    let event = json!({"app_key": app_key, "events": [
        {"type": "open_app", "ts": now_ms(), "device_id": "device-1"}]});
    let reply = server.post("/api/v1/ingest", event.to_string().as_bytes(), &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let store = open_store(&format!("sqlite://{}", data.join("sundial.db").display()));
    wait_until(WAIT, "the launch to be aggregated", || {
        block_on(store.load_devices(app_id))
            .expect("devices")
            .iter()
            .any(|d| d.device_id == "device-1")
    });

    // Deleting the app's data empties it; the aggregator starts over from the store, so
    // the same device sending again is a new device of the emptied app.
    let reply = common::http(
        server.addr,
        "DELETE",
        &format!("/api/v1/apps/{app_id}/data"),
        b"",
        &[("Authorization", &bearer)],
    );
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert!(
        block_on(store.load_devices(app_id))
            .expect("devices")
            .is_empty()
    );
    let reply = server.post("/api/v1/ingest", event.to_string().as_bytes(), &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    wait_until(WAIT, "the device to be counted again", || {
        block_on(store.load_devices(app_id))
            .expect("devices")
            .iter()
            .any(|d| d.device_id == "device-1")
    });

    // A script reads with an API token made on the command line.
    let token = ok_json(
        &sundial()
            .args([
                "token",
                "create",
                "--username",
                "admin",
                "--name",
                "ci-script",
                "--json",
                "--data-dir",
                data_s,
            ])
            .output()
            .expect("run"),
    );
    let api_token = token["token"].as_str().expect("token").to_owned();
    assert!(api_token.starts_with("sdt_"));
    let token_bearer = format!("Bearer {api_token}");
    let reply = common::http(
        server.addr,
        "GET",
        &format!("/api/v1/apps/{app_id}"),
        b"",
        &[("Authorization", &token_bearer)],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["app_key"], app_key.as_str());

    let tokens = ok_json(
        &sundial()
            .args(["token", "list", "--json", "--data-dir", data_s])
            .output()
            .expect("run"),
    );
    assert_eq!(tokens[0]["name"], "ci-script");
    assert!(tokens[0].get("token").is_none(), "tokens are shown once");
    let id = tokens[0]["id"].as_i64().expect("id").to_string();
    let output = sundial()
        .args(["token", "revoke", &id, "--data-dir", data_s])
        .output()
        .expect("run");
    assert!(output.status.success());
    let reply = common::http(
        server.addr,
        "GET",
        "/api/v1/auth/me",
        b"",
        &[("Authorization", &token_bearer)],
    );
    assert_eq!(reply.status, 401, "revoked token");

    // `account passwd` signs the sessions out.
    let output = run_with_stdin(
        &[
            "account",
            "passwd",
            "--username",
            "admin",
            "--password-stdin",
            "--data-dir",
            data_s,
        ],
        "a-brand-new-password\n",
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reply = common::http(
        server.addr,
        "GET",
        "/api/v1/auth/me",
        b"",
        &[("Authorization", &bearer)],
    );
    assert_eq!(reply.status, 401);
    assert_eq!(login(&server, "admin", "a-brand-new-password").status, 200);

    // The last admin cannot be deleted; a viewer can.
    let output = sundial()
        .args([
            "account",
            "delete",
            "--username",
            "admin",
            "--data-dir",
            data_s,
        ])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("last admin"));
    ok_json(&run_with_stdin(
        &[
            "account",
            "create",
            "--username",
            "viewer",
            "--grant",
            &app_id.to_string(),
            "--password-stdin",
            "--json",
            "--data-dir",
            data_s,
        ],
        "viewer-password\n",
    ));
    let output = sundial()
        .args([
            "account",
            "delete",
            "--username",
            "viewer",
            "--data-dir",
            data_s,
        ])
        .output()
        .expect("run");
    assert!(output.status.success());

    // The audit log has the CLI's and the API's actions, and no secret.
    let reply = common::http(
        server.addr,
        "GET",
        "/api/v1/audit",
        b"",
        &[(
            "Authorization",
            &format!(
                "Bearer {}",
                login(&server, "admin", "a-brand-new-password").json()["token"]
                    .as_str()
                    .expect("token")
            ),
        )],
    );
    assert_eq!(reply.status, 200);
    for action in [
        "account.create",
        "app.create",
        "token.create",
        "token.revoke",
        "account.passwd",
    ] {
        assert!(reply.body.contains(action), "{action} in {}", reply.body);
    }
    assert!(!reply.body.contains("s3cret-admin-password"));

    // A per-app rate limit set through the API applies to ingest at once; deleting the
    // app makes its key unknown at once.
    let admin_bearer = format!(
        "Bearer {}",
        login(&server, "admin", "a-brand-new-password").json()["token"]
            .as_str()
            .expect("token")
    );
    let reply = common::http(
        server.addr,
        "PATCH",
        &format!("/api/v1/apps/{app_id}"),
        json!({"rate_limit_per_sec": 1}).to_string().as_bytes(),
        &[("Authorization", &admin_bearer)],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let statuses: Vec<u16> = (0..3)
        .map(|_| {
            server
                .post("/api/v1/ingest", event.to_string().as_bytes(), &[])
                .status
        })
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    let reply = common::http(
        server.addr,
        "DELETE",
        &format!("/api/v1/apps/{app_id}"),
        b"",
        &[("Authorization", &admin_bearer)],
    );
    assert_eq!(reply.status, 204, "{}", reply.body);
    let reply = server.post("/api/v1/ingest", event.to_string().as_bytes(), &[]);
    assert_eq!(reply.status, 401, "{}", reply.body);

    assert!(!server.log_text().contains("s3cret-admin-password"));
    assert!(!server.log_text().contains(&session));
    server.stop();
}
