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
    /// A URL that reaches the same database (and schema) directly.
    url: String,
}

impl TestStore {
    /// The SQLite file, for a SQLite store.
    #[allow(dead_code)]
    pub(crate) fn sqlite_path(&self) -> Option<std::path::PathBuf> {
        self._dir
            .as_ref()
            .map(|d| d.path().join(sundial_storage_sql::SQLITE_FILE))
    }

    /// Runs one statement on a connection of its own, binding `$1` = `id` and (when the
    /// text has it) `$2` = `blob`.
    #[allow(dead_code)]
    pub(crate) async fn execute(&self, sql: &str, id: i64, blob: Vec<u8>) {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        let with_blob = sql.0.contains("$2");
        if self._dir.is_some() {
            let mut conn = sqlx::SqliteConnection::connect(&self.url)
                .await
                .expect("connect");
            let mut q = sqlx::query(sql).bind(id);
            if with_blob {
                q = q.bind(blob);
            }
            q.execute(&mut conn).await.expect("execute");
        } else {
            let mut conn = sqlx::PgConnection::connect(&self.url)
                .await
                .expect("connect");
            let mut q = sqlx::query(sql).bind(id);
            if with_blob {
                q = q.bind(blob);
            }
            q.execute(&mut conn).await.expect("execute");
        }
    }

    /// Runs a `SELECT COUNT(*) … $1` on a connection of its own.
    #[allow(dead_code)]
    pub(crate) async fn count(&self, sql: &str, id: i64) -> i64 {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        let (n,): (i64,) = if self._dir.is_some() {
            let mut conn = sqlx::SqliteConnection::connect(&self.url)
                .await
                .expect("connect");
            sqlx::query_as(sql)
                .bind(id)
                .fetch_one(&mut conn)
                .await
                .expect("count")
        } else {
            let mut conn = sqlx::PgConnection::connect(&self.url)
                .await
                .expect("connect");
            sqlx::query_as(sql)
                .bind(id)
                .fetch_one(&mut conn)
                .await
                .expect("count")
        };
        n
    }
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
    let url = format!(
        "sqlite://{}",
        dir.path().join(sundial_storage_sql::SQLITE_FILE).display()
    );
    TestStore {
        store,
        _dir: Some(dir),
        url,
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
    TestStore {
        store,
        _dir: None,
        url,
    }
}

/// Both backends, for tests that must hold on each.
pub(crate) async fn both() -> Vec<TestStore> {
    vec![sqlite().await, postgres().await]
}
