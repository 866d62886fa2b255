//! The `Store` trait: where apps and aggregates live.
//!
//! Implementations (SQLite, PostgreSQL) are in `sundial-storage-sql`; this crate only
//! says what a store must do. Every method is a transaction of its own: it either
//! happens whole or not at all.

use async_trait::async_trait;

use crate::app::{App, AppError, AppUpdate, NewApp};

/// A store operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The input was not acceptable; nothing changed.
    #[error(transparent)]
    Invalid(#[from] AppError),
    /// No such app.
    #[error("no app with {0}")]
    NoSuchApp(String),
    /// The operating system's random generator failed.
    #[error("cannot generate a key: {0}")]
    Entropy(String),
    /// The database failed (connection, I/O, constraint).
    #[error("storage error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// What one close-out pass of an app did ([`Store::close_out`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CloseOut {
    /// Unique-device sets rewritten as one row.
    pub sets_compacted: u64,
    /// Delta rows folded away.
    pub rows_removed: u64,
    /// Raw-event rows deleted by the raw-data retention.
    pub raw_rows_deleted: u64,
    /// Retention cells materialised.
    pub retention_cells: u64,
}

/// Where apps and aggregates are kept; the metrics engine reads the aggregates
/// through the [`MetricsSource`](crate::metrics::MetricsSource) part.
#[async_trait]
pub trait Store: crate::metrics::MetricsSource + Send + Sync + std::fmt::Debug {
    /// Creates an app with a fresh key and secret.
    async fn create_app(&self, app: NewApp) -> Result<App, StoreError>;
    /// All apps, by id.
    async fn list_apps(&self) -> Result<Vec<App>, StoreError>;
    /// The app with this id.
    async fn app_by_id(&self, id: i64) -> Result<Option<App>, StoreError>;
    /// The app with this key (ingest's look-up).
    async fn app_by_key(&self, app_key: &str) -> Result<Option<App>, StoreError>;
    /// Changes an app's settings (validated); `NoSuchApp` when it does not exist.
    async fn update_app(&self, id: i64, update: AppUpdate) -> Result<App, StoreError>;
    /// Gives the app a fresh key and secret; the old ones stop working at once (up to
    /// the server's app-cache lifetime).
    async fn rotate_app_credentials(&self, id: i64) -> Result<App, StoreError>;
    /// Deletes every aggregate row of the app (devices, users, sets, counters, event
    /// ids); the app itself stays. `NoSuchApp` when it does not exist.
    async fn delete_app_data(&self, id: i64) -> Result<(), StoreError>;
    /// Deletes the app's data, its grants and the app. `NoSuchApp` when it does not
    /// exist.
    async fn delete_app(&self, id: i64) -> Result<(), StoreError>;
    /// The daily close-out of one app: every unique-device set of a day before
    /// `before` that is stored as several delta rows is rewritten as one row (so reads
    /// of ended days decode one bitmap per set), and raw-event rows of days before
    /// `raw_before` are deleted (the raw-data retention). Answers do not change.
    async fn close_out(
        &self,
        app_id: i64,
        before: crate::aggregate::Day,
        raw_before: Option<crate::aggregate::Day>,
    ) -> Result<CloseOut, StoreError>;
}
