//! Sundial's SQL stores: SQLite (the embedded default, one file in the data directory)
//! and PostgreSQL (for scale-out), picked at run time by URL.
//!
//! One type, [`SqlStore`], implements the analytics [`Store`](sundial_analytics::Store)
//! and [`AccountStore`](sundial_analytics::AccountStore) traits on either backend.
//! Each backend has its own migrations
//! (`migrations/sqlite`, `migrations/postgres`), applied on connect, so a store is
//! always at the schema this build expects; a database from a *newer* build is refused
//! rather than misread.
//!
//! Queries are written once where both dialects agree (`$1` placeholders work on both)
//! and per backend where they do not.

/// Runs the same query text on whichever backend the store has.
macro_rules! on_backend {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            Backend::Sqlite($pool) => $body,
            Backend::Postgres($pool) => $body,
        }
    };
}

/// Like `on_backend!`, but on SQLite through the aggregator's writer connection
/// ([`SqlStore`]'s `sqlite_writer`).
macro_rules! on_writer {
    ($store:expr, $pool:ident => $body:expr) => {
        match (&$store.backend, &$store.sqlite_writer) {
            (Backend::Sqlite(_), Some($pool)) => $body,
            (Backend::Sqlite($pool), None) => $body,
            (Backend::Postgres($pool), _) => $body,
        }
    };
}

mod accounts;
mod aggregates;
mod apps;
mod jobs;
mod metrics;
mod read;
mod recompute;

pub use apps::APP_DATA_TABLES;
pub use read::{DayTotals, EventTotals};
pub use recompute::{RecomputeError, Recomputed};

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// Moves the data generation (see migration 0007): running aggregators drop their
/// caches before their next batch.
pub(crate) const BUMP_GENERATION: &str =
    "UPDATE data_generation SET generation = generation + 1 WHERE id = 1";

/// The file name of the embedded database inside the data directory.
pub const SQLITE_FILE: &str = "sundial.db";

/// SQLite page cache of the aggregator's writer connection, in KiB. Its commits
/// insert new devices into the `devices` B-trees at random places (the id index);
/// with SQLite's default 2 MiB the pages spill to the WAL mid-transaction and are read
/// back. In `examples/aggregate_bench.rs`, the first pass over 1 M new devices took
/// 6.0 s with 2 MiB, 3.5 s with 8 MiB, 3.2-3.4 s with 16 MiB or 32 MiB (medians of 3,
/// load average 2-3). The other connections keep the default, so this is the one
/// large cache (it fills only as pages are used).
const WRITER_CACHE_KIB: u32 = 16 * 1024;

/// A store on SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlStore {
    backend: Backend,
    /// On SQLite, one connection with a larger page cache that the aggregator commits
    /// through (SQLite has one writer at a time anyway).
    sqlite_writer: Option<SqlitePool>,
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A store that could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// A data upgrade after the migrations failed.
    #[error("cannot upgrade the data of {url}")]
    Upgrade {
        /// The URL, with any password removed.
        url: String,
        /// What failed.
        #[source]
        source: sundial_analytics::StoreError,
    },
    /// The URL names no supported backend.
    #[error("unsupported store URL `{0}`: use sqlite://PATH or postgres://USER@HOST/DB")]
    Scheme(String),
    /// The URL could not be parsed.
    #[error("invalid store URL `{url}`")]
    Url {
        /// The URL, with any password removed.
        url: String,
        /// The driver's complaint.
        #[source]
        source: sqlx::Error,
    },
    /// The data directory could not be created.
    #[error("cannot create data directory {path}")]
    DataDir {
        /// The directory.
        path: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The database could not be reached.
    #[error("cannot connect to {url}")]
    Connect {
        /// The URL, with any password removed.
        url: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// Migrations failed (or the database is newer than this build).
    #[error("cannot migrate {url}")]
    Migrate {
        /// The URL, with any password removed.
        url: String,
        /// The migrator's error.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
}

impl SqlStore {
    /// Opens the store named by `url` (`sqlite://PATH`, `postgres://…`), creating a
    /// SQLite file if needed, and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self, ConnectError> {
        let shown = redact(url);
        if url.starts_with("sqlite:") {
            let options =
                SqliteConnectOptions::from_str(url).map_err(|source| ConnectError::Url {
                    url: shown.clone(),
                    source,
                })?;
            Self::open_sqlite(options, &shown).await
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url).map_err(|source| ConnectError::Url {
                url: shown.clone(),
                source,
            })?;
            // One direct connection first: its error says what is wrong ("connection
            // refused", "password authentication failed"), where a pool only times out.
            let probe = PgConnection::connect_with(&options)
                .await
                .map_err(|source| ConnectError::Connect {
                    url: shown.clone(),
                    source,
                })?;
            let _ = probe.close().await;
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(options)
                .await
                .map_err(|source| ConnectError::Connect {
                    url: shown.clone(),
                    source,
                })?;
            sqlx::migrate!("./migrations/postgres")
                .run(&pool)
                .await
                .map_err(|source| ConnectError::Migrate {
                    url: shown.clone(),
                    source,
                })?;
            let store = Self {
                backend: Backend::Postgres(pool),
                sqlite_writer: None,
            };
            store.upgrade(&shown).await?;
            Ok(store)
        } else {
            Err(ConnectError::Scheme(shown))
        }
    }

    /// Opens (creating it if needed) the embedded SQLite store in `data_dir`.
    pub async fn open_in(data_dir: &Path) -> Result<Self, ConnectError> {
        std::fs::create_dir_all(data_dir).map_err(|source| ConnectError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        let path = data_dir.join(SQLITE_FILE);
        let options = SqliteConnectOptions::new().filename(&path);
        Self::open_sqlite(options, &format!("sqlite://{}", path.display())).await
    }

    async fn open_sqlite(options: SqliteConnectOptions, shown: &str) -> Result<Self, ConnectError> {
        // WAL for concurrent readers; FULL so that a committed transaction survives a
        // power loss (apps and accounts are acknowledged to their creators).
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            // Statement journals (multi-row upserts inside a transaction) in memory
            // rather than in temporary files.
            .pragma("temp_store", "memory");
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options.clone())
            .await
            .map_err(|source| ConnectError::Connect {
                url: shown.to_owned(),
                source,
            })?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|source| ConnectError::Migrate {
                url: shown.to_owned(),
                source,
            })?;
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.pragma("cache_size", format!("-{WRITER_CACHE_KIB}")))
            .await
            .map_err(|source| ConnectError::Connect {
                url: shown.to_owned(),
                source,
            })?;
        let store = Self {
            backend: Backend::Sqlite(pool),
            sqlite_writer: Some(writer),
        };
        store.upgrade(shown).await?;
        Ok(store)
    }

    /// Data upgrades that SQL migrations cannot do (they need Rust: bitmaps).
    async fn upgrade(&self, shown: &str) -> Result<(), ConnectError> {
        let upgrade = async {
            self.backfill_set_sizes().await?;
            self.backfill_registered().await
        };
        upgrade.await.map_err(|source| ConnectError::Upgrade {
            url: shown.to_owned(),
            source,
        })
    }

    /// `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Closes every connection; pending work finishes first.
    pub async fn close(&self) {
        if let Some(writer) = &self.sqlite_writer {
            writer.close().await;
        }
        match &self.backend {
            Backend::Sqlite(pool) => pool.close().await,
            Backend::Postgres(pool) => pool.close().await,
        }
    }
}

/// The URL with its password (if any) replaced, for messages and logs.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

fn backend_error(e: sqlx::Error) -> sundial_analytics::StoreError {
    sundial_analytics::StoreError::Backend(Box::new(e))
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite://./x.db"), "sqlite://./x.db");
    }
}
