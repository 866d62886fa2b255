//! `sundial app create` / `app list` against a real store: SQLite in a temporary data
//! directory, and PostgreSQL (`SUNDIAL_TEST_POSTGRES_URL`) in a throwaway schema.

use assert_cmd::Command;
use predicates::prelude::*;
use sqlx::Connection as _;

fn sundial() -> Command {
    let mut cmd = Command::cargo_bin("sundial").expect("binary built");
    for (key, _) in std::env::vars() {
        if key.starts_with("SUNDIAL_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

fn json(output: &std::process::Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

#[test]
fn create_and_list_in_a_data_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8");
    sundial()
        .args(["app", "list", "--data-dir", data])
        .assert()
        .success()
        .stdout(predicate::str::contains("No apps yet"));
    let created = json(
        &sundial()
            .args([
                "app",
                "create",
                "Demo",
                "--timezone",
                "Asia/Shanghai",
                "--json",
                "--data-dir",
                data,
            ])
            .output()
            .expect("run"),
    );
    assert_eq!(created["name"], "Demo");
    assert_eq!(created["timezone"], "Asia/Shanghai");
    assert_eq!(created["app_key"].as_str().expect("key").len(), 40);
    assert_eq!(created["app_secret"].as_str().expect("secret").len(), 64);

    sundial()
        .args(["app", "create", "Second", "--data-dir", data])
        .assert()
        .success()
        .stdout(predicate::str::contains("app key:"))
        .stdout(predicate::str::contains("time zone UTC"));

    let listed = json(
        &sundial()
            .args(["app", "list", "--json", "--data-dir", data])
            .output()
            .expect("run"),
    );
    let apps = listed.as_array().expect("array");
    assert_eq!(apps.len(), 2);
    assert_eq!(apps[0]["app_key"], created["app_key"]);
    assert!(
        apps[0].get("app_secret").is_none(),
        "list never shows secrets"
    );
    sundial()
        .args(["app", "list", "--data-dir", data])
        .assert()
        .success()
        .stdout(predicate::str::contains("Asia/Shanghai"))
        .stdout(predicate::str::contains(
            created["app_key"].as_str().expect("key"),
        ));
}

#[test]
fn data_dir_from_the_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    sundial()
        .env("SUNDIAL_DATA_DIR", dir.path())
        .args(["app", "create", "Env"])
        .assert()
        .success();
    assert!(dir.path().join("sundial.db").exists());
}

#[test]
fn bad_input_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8");
    sundial()
        .args([
            "app",
            "create",
            "X",
            "--timezone",
            "Asia/Beijing",
            "--data-dir",
            data,
        ])
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains(
            "`Asia/Beijing` is not an IANA time zone",
        ));
    sundial()
        .args(["app", "create", "", "--data-dir", data])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("app name"));
    let listed = json(
        &sundial()
            .args(["app", "list", "--json", "--data-dir", data])
            .output()
            .expect("run"),
    );
    assert_eq!(listed, serde_json::json!([]));
    sundial()
        .args(["app", "list", "--store", "mysql://db/x"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("store.url"));
}

#[test]
fn unreachable_postgres_is_a_clear_failure() {
    sundial()
        .args([
            "app",
            "list",
            "--store",
            "postgres://postgres:pw@127.0.0.1:1/test",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "cannot connect to postgres://postgres:***@127.0.0.1:1/test",
        ))
        .stderr(predicate::str::contains("refused"))
        .stderr(predicate::str::contains("pw@").not());
}

#[tokio::test]
async fn create_and_list_on_postgres() {
    let base = std::env::var("SUNDIAL_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let mut conn = sqlx::PgConnection::connect(&base)
        .await
        .unwrap_or_else(|e| {
            panic!("PostgreSQL is required at {base}: {e}. Run `bash scripts/services.sh`.")
        });
    let schema = format!("sundial_cli_{}", std::process::id());
    // The schema name is ours: a prefix and a number.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(&mut conn)
    .await
    .expect("drop schema");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut conn)
        .await
        .expect("create schema");
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");
    let created = json(
        &sundial()
            .args(["app", "create", "PG app", "--json", "--store", &url])
            .output()
            .expect("run"),
    );
    let listed = json(
        &sundial()
            .args(["app", "list", "--json", "--store", &url])
            .output()
            .expect("run"),
    );
    assert_eq!(listed[0]["app_key"], created["app_key"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut conn)
        .await
        .expect("drop schema");
}
