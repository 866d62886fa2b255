//! The OpenAPI 3.1 document of `sundial serve`'s HTTP API, served at
//! `/api/openapi.json` and rendered in `docs/http-api.md`.
//!
//! It is generated from the handlers' `#[utoipa::path]` annotations and the answer
//! types' schemas, so a route or a field cannot change without the document changing.
//! Ingest request bodies are parsed field by field (to report each fault with its
//! index and field), so their schemas are written here as types that mirror the
//! contract of `docs/ingest.md`.

use std::collections::BTreeMap;

use utoipa::OpenApi;

/// Dimensions, given per event or once for the whole batch.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct IngestDimensions {
    /// `ios`, `android`, `web`, …
    platform: Option<String>,
    /// The app's version.
    app_version: Option<String>,
    /// Distribution channel.
    channel: Option<String>,
    /// Operating system version.
    os_version: Option<String>,
    /// Device model.
    device_model: Option<String>,
    /// Locale, e.g. `zh_CN`.
    locale: Option<String>,
    /// Country (ISO 3166-1 alpha-2).
    country: Option<String>,
}

/// One event of a batch.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct IngestEvent {
    /// `open_app`, `usage_time` or `custom`.
    #[schema(rename = "type")]
    kind: String,
    /// Epoch milliseconds (number) or RFC 3339 (string); more than 10 minutes in the
    /// future is clamped, older than the age window (default 30 days) is rejected.
    #[schema(value_type = Object)]
    ts: serde_json::Value,
    /// The device (≤ 128 bytes); defaults to the batch's `device_id`.
    device_id: Option<String>,
    /// The signed-in user.
    user_id: Option<String>,
    /// For de-duplication of retries (per app).
    event_id: Option<String>,
    /// `usage_time`: seconds in [0, 86400].
    duration_secs: Option<f64>,
    /// `custom`: the event's name (≤ 128 bytes).
    name: Option<String>,
    /// `custom`: how many times (default 1).
    count: Option<u32>,
    /// `custom`: a value summed over events.
    sum: Option<f64>,
    /// `custom`: segment key → value.
    segments: Option<BTreeMap<String, String>>,
    #[schema(inline)]
    #[allow(clippy::struct_field_names)]
    dimensions: Option<IngestDimensions>,
}

/// `POST /api/v1/ingest`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct IngestBatch {
    /// The app's public key.
    app_key: String,
    /// Default device for events without one.
    device_id: Option<String>,
    /// Batch-level dimensions (`platform`, `app_version`, … at the top level).
    #[schema(inline)]
    dimensions: Option<IngestDimensions>,
    /// Up to 1,000 events.
    events: Vec<IngestEvent>,
}

/// `POST /api/v1/open_app` and `/api/v1/usage_time`: one event's fields at the top
/// level, with the app key.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct IngestSingle {
    /// The app's public key.
    app_key: String,
    /// Epoch milliseconds or RFC 3339.
    #[schema(value_type = Object)]
    ts: serde_json::Value,
    /// The device.
    device_id: String,
    /// `usage_time` only: seconds in [0, 86400].
    duration_secs: Option<f64>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sundial Analytics HTTP API",
        version = "1",
        description = "The HTTP API of `sundial serve`: ingest (native and Countly SDKs), \
                       metric queries and operations. Errors are `{\"error\", \"field\"}` \
                       JSON. Metric definitions: docs/metrics.md."
    ),
    paths(
        crate::ingest::batch,
        crate::ingest::open_app,
        crate::ingest::usage_time,
        crate::countly::handle,
        crate::query::overview,
        crate::query::active,
        crate::query::retention,
        crate::query::lifecycle,
        crate::query::distribution,
        crate::query::breakdown,
        crate::query::events,
        crate::query::summary,
        crate::admin::login,
        crate::admin::logout,
        crate::admin::me,
        crate::admin::list_apps,
        crate::admin::create_app,
        crate::admin::get_app,
        crate::admin::patch_app,
        crate::admin::rotate_app,
        crate::admin::delete_app_data,
        crate::admin::delete_app,
        crate::admin::list_accounts,
        crate::admin::create_account,
        crate::admin::patch_account,
        crate::admin::delete_account,
        crate::admin::list_tokens,
        crate::admin::create_token,
        crate::admin::delete_token,
        crate::admin::list_audit,
        crate::ops::healthz,
        crate::ops::readyz,
        crate::ops::metrics,
        openapi_json,
    ),
    modifiers(&Security),
    tags(
        (name = "ingest", description = "SDKs report events"),
        (name = "countly", description = "Countly SDK compatibility"),
        (name = "metrics", description = "Metric queries; every day in the app's zone"),
        (name = "auth", description = "Login, logout, who am I (docs/security.md)"),
        (name = "admin", description = "Apps, accounts, API tokens, audit log"),
        (name = "operations", description = "Health, readiness, Prometheus metrics, this document"),
    )
)]
struct ApiDoc;

/// The two ways to authenticate: `Authorization: Bearer` (session or API token) and
/// the session cookie (with the CSRF header on mutations).
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::auth::SESSION_COOKIE,
                "The dashboard's session cookie; mutations also need the X-Sundial-CSRF header",
            ))),
        );
    }
}

/// `GET /api/openapi.json`.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations",
    summary = "This OpenAPI 3.1 document",
    responses((status = 200, description = "The document", body = Object)))]
pub(crate) async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(document())
}

/// The whole document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    // The Countly endpoints share one handler.
    if let Some(item) = doc.paths.paths.get("/i").cloned() {
        for path in ["/i/bulk", "/o/sdk"] {
            doc.paths.paths.insert(path.to_owned(), item.clone());
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_with_its_methods() {
        let doc = serde_json::to_value(document()).expect("json");
        assert!(
            doc["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1"))
        );
        let paths = doc["paths"].as_object().expect("paths");
        for (path, method) in [
            ("/api/v1/ingest", "post"),
            ("/api/v1/open_app", "post"),
            ("/api/v1/usage_time", "post"),
            ("/i", "get"),
            ("/i/bulk", "post"),
            ("/o/sdk", "get"),
            ("/api/v1/apps/{app}/overview", "get"),
            ("/api/v1/apps/{app}/active", "get"),
            ("/api/v1/apps/{app}/retention", "get"),
            ("/api/v1/apps/{app}/lifecycle", "get"),
            ("/api/v1/apps/{app}/distribution", "get"),
            ("/api/v1/apps/{app}/breakdown", "get"),
            ("/api/v1/apps/{app}/events", "get"),
            ("/api/v1/apps/{app}/summary", "get"),
            ("/healthz", "get"),
            ("/readyz", "get"),
            ("/metrics", "get"),
            ("/api/openapi.json", "get"),
        ] {
            assert!(
                paths.get(path).and_then(|p| p.get(method)).is_some(),
                "{method} {path} is not in the document"
            );
        }
        // Answer schemas carry the contract's field names.
        let schemas = &doc["components"]["schemas"];
        for field in ["launches", "usage_secs", "avg_session_secs", "total_users"] {
            assert!(
                schemas["OverviewDay"]["properties"].get(field).is_some(),
                "OverviewDay.{field}"
            );
        }
        assert!(
            schemas["IngestReply"]["properties"]
                .get("rejected")
                .is_some()
        );
    }
}
