//! Apps on both backends.

use async_trait::async_trait;
use sundial_analytics::app::random_token;
use sundial_analytics::{App, NewApp, Store, StoreError};

use crate::{Backend, SqlStore, backend_error};

/// Random bytes in an app key (40 hex characters, like Countly's) and in a secret.
const KEY_BYTES: usize = 20;
const SECRET_BYTES: usize = 32;

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
        }
    }
}

/// The columns of `apps`, in [`AppRow`] order (a macro so that queries stay `&'static str`).
macro_rules! columns {
    () => {
        "id, name, timezone, app_key, app_secret, require_signature, created_at_ms, countly_salt"
    };
}

#[async_trait]
impl Store for SqlStore {
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
}
