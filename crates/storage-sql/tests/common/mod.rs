//! Test stores on both backends: SQLite in a temporary directory, PostgreSQL in a
//! throwaway schema of the test database (`SUNDIAL_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`). A PostgreSQL that cannot be reached fails
//! the test: `bash scripts/services.sh` starts one.

use sqlx::Connection;
use sundial_storage_sql::SqlStore;

/// A store and what keeps it alive (the SQLite directory).
pub(crate) struct TestStore {
    pub(crate) store: SqlStore,
    _dir: Option<tempfile::TempDir>,
}

pub(crate) fn postgres_url() -> String {
    std::env::var("SUNDIAL_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

pub(crate) async fn sqlite() -> TestStore {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqlStore::open_in(dir.path())
        .await
        .expect("open SQLite store");
    TestStore {
        store,
        _dir: Some(dir),
    }
}

pub(crate) async fn postgres() -> TestStore {
    let base = postgres_url();
    let schema = format!(
        "sundial_test_{}",
        sundial_analytics::app::random_token(6).expect("entropy")
    );
    let mut conn = sqlx::PgConnection::connect(&base)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is required for this test and is not reachable at {base}: {e}. \
             Run `bash scripts/services.sh`."
            )
        });
    // The schema name is ours: "sundial_test_" and hex digits.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut conn)
        .await
        .expect("create schema");
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");
    let store = SqlStore::connect(&url)
        .await
        .expect("open PostgreSQL store");
    TestStore { store, _dir: None }
}

/// Both backends, for tests that must hold on each.
pub(crate) async fn both() -> Vec<TestStore> {
    vec![sqlite().await, postgres().await]
}
