//! Apps on both backends: creation, look-up, settings, key rotation, and deletion of
//! an app's data or of the app.
//!
//! Deleting data removes the app's rows from every per-app aggregate table listed in
//! [`APP_DATA_TABLES`] in one transaction; a table added to the aggregates must be
//! added there (the storage tests check that every table with an `app_id` column
//! other than `apps` and the account tables is listed).

use async_trait::async_trait;
use sundial_analytics::app::random_token;
use sundial_analytics::{App, AppUpdate, NewApp, Store, StoreError};

use crate::{Backend, SqlStore, backend_error};

/// Random bytes in an app key (40 hex characters, like Countly's) and in a secret.
const KEY_BYTES: usize = 20;
const SECRET_BYTES: usize = 32;

/// Every table that holds rows of one app's analytics data (keyed by `app_id`).
pub const APP_DATA_TABLES: &[&str] = &[
    "devices",
    "app_users",
    "day_sets",
    "day_counters",
    "hour_counters",
    "event_counters",
    "event_ids",
    "set_sizes",
    "raw_events",
    "retention_cells",
];

/// The `DELETE` statements for [`APP_DATA_TABLES`] (static text: table names are ours).
const DELETE_APP_DATA: &[&str] = &[
    "DELETE FROM devices WHERE app_id = $1",
    "DELETE FROM app_users WHERE app_id = $1",
    "DELETE FROM day_sets WHERE app_id = $1",
    "DELETE FROM day_counters WHERE app_id = $1",
    "DELETE FROM hour_counters WHERE app_id = $1",
    "DELETE FROM event_counters WHERE app_id = $1",
    "DELETE FROM event_ids WHERE app_id = $1",
    "DELETE FROM set_sizes WHERE app_id = $1",
    "DELETE FROM raw_events WHERE app_id = $1",
    "DELETE FROM retention_cells WHERE app_id = $1",
];

#[derive(Debug, sqlx::FromRow)]
struct AppRow {
    id: i64,
    name: String,
    timezone: String,
    app_key: String,
    app_secret: String,
    require_signature: bool,
    created_at_ms: i64,
    countly_salt: Option<String>,
    rate_limit_per_sec: Option<i64>,
}

impl From<AppRow> for App {
    fn from(r: AppRow) -> Self {
        App {
            id: r.id,
            name: r.name,
            timezone: r.timezone,
            app_key: r.app_key,
            app_secret: r.app_secret,
            require_signature: r.require_signature,
            created_at_ms: r.created_at_ms,
            countly_salt: r.countly_salt,
            rate_limit_per_sec: r.rate_limit_per_sec.and_then(|r| u32::try_from(r).ok()),
        }
    }
}

/// The columns of `apps`, in [`AppRow`] order (a macro so that queries stay `&'static str`).
macro_rules! columns {
    () => {
        "id, name, timezone, app_key, app_secret, require_signature, created_at_ms, countly_salt, \
         rate_limit_per_sec"
    };
}

#[async_trait]
impl Store for SqlStore {
    async fn close_out(
        &self,
        app_id: i64,
        before: sundial_analytics::aggregate::Day,
        raw_before: Option<sundial_analytics::aggregate::Day>,
    ) -> Result<sundial_analytics::CloseOut, StoreError> {
        self.close_out_app(app_id, before, raw_before).await
    }

    async fn create_app(&self, app: NewApp) -> Result<App, StoreError> {
        app.validate()?;
        let key = random_token(KEY_BYTES).map_err(|e| StoreError::Entropy(e.to_string()))?;
        let secret = random_token(SECRET_BYTES).map_err(|e| StoreError::Entropy(e.to_string()))?;
        let now = jiff::Timestamp::now().as_millisecond();
        const SQL: &str = concat!(
            "INSERT INTO apps (name, timezone, app_key, app_secret, created_at_ms) ",
            "VALUES ($1, $2, $3, $4, $5) RETURNING ",
            columns!()
        );
        let row: AppRow = on_backend!(self, pool => sqlx::query_as(SQL)
            .bind(app.name.trim())
            .bind(&app.timezone)
            .bind(&key)
            .bind(&secret)
            .bind(now)
            .fetch_one(pool)
            .await
            .map_err(backend_error)?);
        tracing::info!(app_id = row.id, name = %row.name, "app created");
        Ok(row.into())
    }

    async fn list_apps(&self) -> Result<Vec<App>, StoreError> {
        const SQL: &str = concat!("SELECT ", columns!(), " FROM apps ORDER BY id");
        let rows: Vec<AppRow> = on_backend!(self, pool => sqlx::query_as(SQL)
            .fetch_all(pool)
            .await
            .map_err(backend_error)?);
        Ok(rows.into_iter().map(App::from).collect())
    }

    async fn app_by_id(&self, id: i64) -> Result<Option<App>, StoreError> {
        const SQL: &str = concat!("SELECT ", columns!(), " FROM apps WHERE id = $1");
        let row: Option<AppRow> = on_backend!(self, pool => sqlx::query_as(SQL)
            .bind(id)
            .fetch_optional(pool)
            .await
            .map_err(backend_error)?);
        Ok(row.map(App::from))
    }

    async fn app_by_key(&self, app_key: &str) -> Result<Option<App>, StoreError> {
        const SQL: &str = concat!("SELECT ", columns!(), " FROM apps WHERE app_key = $1");
        let row: Option<AppRow> = on_backend!(self, pool => sqlx::query_as(SQL)
            .bind(app_key)
            .fetch_optional(pool)
            .await
            .map_err(backend_error)?);
        Ok(row.map(App::from))
    }

    async fn update_app(&self, id: i64, update: AppUpdate) -> Result<App, StoreError> {
        update.validate()?;
        const SQL: &str = concat!(
            "UPDATE apps SET ",
            "name = COALESCE($2, name), ",
            "timezone = COALESCE($3, timezone), ",
            "require_signature = COALESCE($4, require_signature), ",
            "rate_limit_per_sec = CASE WHEN $5 THEN $6 ELSE rate_limit_per_sec END, ",
            "countly_salt = CASE WHEN $7 THEN $8 ELSE countly_salt END ",
            "WHERE id = $1 RETURNING ",
            columns!()
        );
        let rate = update.rate_limit_per_sec.map(|r| r.map(i64::from));
        let row: Option<AppRow> = on_backend!(self, pool => sqlx::query_as(SQL)
            .bind(id)
            .bind(update.name.as_deref().map(str::trim))
            .bind(update.timezone.as_deref())
            .bind(update.require_signature)
            .bind(rate.is_some())
            .bind(rate.flatten())
            .bind(update.countly_salt.is_some())
            .bind(update.countly_salt.clone().flatten())
            .fetch_optional(pool)
            .await
            .map_err(backend_error)?);
        let row = row.ok_or_else(|| StoreError::NoSuchApp(format!("id {id}")))?;
        if update.timezone.is_some() {
            // Aggregators elsewhere cache the zone: tell them.
            on_backend!(self, pool => {
                sqlx::query(crate::BUMP_GENERATION)
                    .execute(pool)
                    .await
                    .map_err(backend_error)?;
            });
        }
        tracing::info!(app_id = id, "app updated");
        Ok(row.into())
    }

    async fn rotate_app_credentials(&self, id: i64) -> Result<App, StoreError> {
        let key = random_token(KEY_BYTES).map_err(|e| StoreError::Entropy(e.to_string()))?;
        let secret = random_token(SECRET_BYTES).map_err(|e| StoreError::Entropy(e.to_string()))?;
        const SQL: &str = concat!(
            "UPDATE apps SET app_key = $2, app_secret = $3 WHERE id = $1 RETURNING ",
            columns!()
        );
        let row: Option<AppRow> = on_backend!(self, pool => sqlx::query_as(SQL)
            .bind(id)
            .bind(&key)
            .bind(&secret)
            .fetch_optional(pool)
            .await
            .map_err(backend_error)?);
        let row = row.ok_or_else(|| StoreError::NoSuchApp(format!("id {id}")))?;
        tracing::info!(app_id = id, "app key and secret rotated");
        Ok(row.into())
    }

    async fn delete_app_data(&self, id: i64) -> Result<(), StoreError> {
        self.delete_app_rows(id, false).await
    }

    async fn delete_app(&self, id: i64) -> Result<(), StoreError> {
        self.delete_app_rows(id, true).await
    }
}

impl SqlStore {
    /// Deletes the app's data rows and, when `app_too`, its grants and the app, in one
    /// transaction.
    async fn delete_app_rows(&self, id: i64, app_too: bool) -> Result<(), StoreError> {
        on_backend!(self, pool => {
            let mut tx = pool.begin().await.map_err(backend_error)?;
            let exists: Option<(i64,)> = sqlx::query_as("SELECT id FROM apps WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend_error)?;
            if exists.is_none() {
                return Err(StoreError::NoSuchApp(format!("id {id}")));
            }
            for sql in DELETE_APP_DATA {
                sqlx::query(*sql)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend_error)?;
            }
            sqlx::query(crate::BUMP_GENERATION)
                .execute(&mut *tx)
                .await
                .map_err(backend_error)?;
            if app_too {
                sqlx::query("DELETE FROM account_grants WHERE app_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend_error)?;
                sqlx::query("DELETE FROM apps WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend_error)?;
            }
            tx.commit().await.map_err(backend_error)?;
        });
        tracing::info!(app_id = id, app_deleted = app_too, "app data deleted");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{APP_DATA_TABLES, DELETE_APP_DATA};

    #[test]
    fn every_data_table_has_its_delete() {
        assert_eq!(APP_DATA_TABLES.len(), DELETE_APP_DATA.len());
        for (table, sql) in APP_DATA_TABLES.iter().zip(DELETE_APP_DATA) {
            assert_eq!(*sql, format!("DELETE FROM {table} WHERE app_id = $1"));
        }
    }
}
