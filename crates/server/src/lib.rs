//! `sundial-server`: Sundial's HTTP surface and the pipeline that runs beside it.
//!
//! - [`router`] builds the axum router from the [`ROUTES`] table: native ingest
//!   (`/api/v1/ingest`, `/api/v1/open_app`, `/api/v1/usage_time`), the Countly SDK
//!   endpoints (`/i`, `/i/bulk`, `/o/sdk`), operations (`/healthz`, `/readyz`,
//!   `/metrics`), login (`/api/v1/auth/…`) and the admin API (apps, accounts, tokens,
//!   audit), the metrics query API (`/api/v1/apps/{app}/…`, see `docs/metrics.md`)
//!   and its OpenAPI document (`/api/openapi.json`), each route with the access check
//!   its table row names (see [`auth`]);
//! - [`run_aggregator`] is the bus → aggregator → store loop;
//! - [`jobs_router`] is the jobs REST API of the `sundial run` daemon over a
//!   scheduler ([`JobsState`]), with its own `/metrics` and `/healthz`.
//!
//! The server holds no analytics logic: validation, decoding and aggregation are
//! `sundial-analytics`'s; storage and bus backends come in as trait objects, picked by
//! the binary. Request bodies may be gzip-compressed; every size limit applies to the
//! decompressed bytes.

mod admin;
pub mod auth;
mod body;
mod countly;
mod error;
mod ingest;
mod jobs;
mod maintenance;
mod openapi;
mod ops;
mod pipeline;
mod query;
mod state;

use axum::Router;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{MethodRouter, any, delete, get, patch, post};
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;

pub use admin::{ADMIN_BODY_LIMIT, LoginBody, decode_login};
pub use auth::{Access, AuthError, AuthSettings, Principal, ThrottleSettings};
pub use error::ApiError;
pub use ingest::{SIGNATURE_HEADER, sign, verify_signature};
pub use jobs::{ClusterDefinitions, ClusterWriteError, JobsState, jobs_router};
pub use maintenance::{
    CLOSE_OUT_JOB, MAINTENANCE_GRACE, MaintenanceError, MaintenanceSettings, close_out_all,
    start_maintenance, start_maintenance_with,
};
pub use openapi::document as openapi_document;
pub use pipeline::{AggregatorSettings, run_aggregator};
pub use state::{APP_CACHE_TTL, IngestSettings, Readiness, ServerState};

/// One route: method (`*` for any), path, who may use it, and its handler.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// `GET`, `POST`, `PATCH`, `DELETE`, or `*` for every method.
    pub method: &'static str,
    /// The axum path (`{app}` for a path parameter).
    pub path: &'static str,
    /// Who may use it.
    pub access: Access,
    handler: fn() -> MethodRouter<ServerState>,
}

impl Route {
    /// Whether the route changes something (every method but GET, HEAD, OPTIONS).
    pub fn mutates(&self) -> bool {
        !matches!(self.method, "GET" | "HEAD" | "OPTIONS")
    }
}

const fn route(
    method: &'static str,
    path: &'static str,
    access: Access,
    handler: fn() -> MethodRouter<ServerState>,
) -> Route {
    Route {
        method,
        path,
        access,
        handler,
    }
}

/// Every route [`router`] serves, and the only source it builds from. Tests iterate it:
/// every route but `Ingest`/`Public` ones must answer 401 without credentials, and
/// every `Admin` route 403 to a viewer.
pub const ROUTES: &[Route] = &[
    route("POST", "/api/v1/ingest", Access::Ingest, || {
        post(ingest::batch)
    }),
    route("POST", "/api/v1/open_app", Access::Ingest, || {
        post(ingest::open_app)
    }),
    route("POST", "/api/v1/usage_time", Access::Ingest, || {
        post(ingest::usage_time)
    }),
    route("*", "/i", Access::Ingest, || any(countly::handle)),
    route("*", "/i/", Access::Ingest, || any(countly::handle)),
    route("*", "/i/bulk", Access::Ingest, || any(countly::handle)),
    route("*", "/i/bulk/", Access::Ingest, || any(countly::handle)),
    route("*", "/o/sdk", Access::Ingest, || any(countly::handle)),
    route("*", "/o/sdk/", Access::Ingest, || any(countly::handle)),
    route("GET", "/healthz", Access::Public, || get(ops::healthz)),
    route("GET", "/readyz", Access::Public, || get(ops::readyz)),
    route("GET", "/metrics", Access::Public, || get(ops::metrics)),
    route("POST", "/api/v1/auth/login", Access::Public, || {
        post(admin::login)
    }),
    route("POST", "/api/v1/auth/logout", Access::Account, || {
        post(admin::logout)
    }),
    route("GET", "/api/v1/auth/me", Access::Account, || get(admin::me)),
    route("GET", "/api/v1/apps", Access::Account, || {
        get(admin::list_apps)
    }),
    route("POST", "/api/v1/apps", Access::Admin, || {
        post(admin::create_app)
    }),
    route("GET", "/api/v1/apps/{app}", Access::Account, || {
        get(admin::get_app)
    }),
    route("PATCH", "/api/v1/apps/{app}", Access::Admin, || {
        patch(admin::patch_app)
    }),
    route("DELETE", "/api/v1/apps/{app}", Access::Admin, || {
        delete(admin::delete_app)
    }),
    route("POST", "/api/v1/apps/{app}/rotate", Access::Admin, || {
        post(admin::rotate_app)
    }),
    route("DELETE", "/api/v1/apps/{app}/data", Access::Admin, || {
        delete(admin::delete_app_data)
    }),
    route("GET", "/api/v1/accounts", Access::Admin, || {
        get(admin::list_accounts)
    }),
    route("POST", "/api/v1/accounts", Access::Admin, || {
        post(admin::create_account)
    }),
    route("PATCH", "/api/v1/accounts/{id}", Access::Admin, || {
        patch(admin::patch_account)
    }),
    route("DELETE", "/api/v1/accounts/{id}", Access::Admin, || {
        delete(admin::delete_account)
    }),
    route("GET", "/api/v1/tokens", Access::Account, || {
        get(admin::list_tokens)
    }),
    route("POST", "/api/v1/tokens", Access::Account, || {
        post(admin::create_token)
    }),
    route("DELETE", "/api/v1/tokens/{id}", Access::Account, || {
        delete(admin::delete_token)
    }),
    route("GET", "/api/v1/audit", Access::Admin, || {
        get(admin::list_audit)
    }),
    route(
        "GET",
        "/api/v1/apps/{app}/overview",
        Access::Account,
        || get(query::overview),
    ),
    route("GET", "/api/v1/apps/{app}/active", Access::Account, || {
        get(query::active)
    }),
    route(
        "GET",
        "/api/v1/apps/{app}/retention",
        Access::Account,
        || get(query::retention),
    ),
    route(
        "GET",
        "/api/v1/apps/{app}/lifecycle",
        Access::Account,
        || get(query::lifecycle),
    ),
    route(
        "GET",
        "/api/v1/apps/{app}/distribution",
        Access::Account,
        || get(query::distribution),
    ),
    route(
        "GET",
        "/api/v1/apps/{app}/breakdown",
        Access::Account,
        || get(query::breakdown),
    ),
    route("GET", "/api/v1/apps/{app}/events", Access::Account, || {
        get(query::events)
    }),
    route("GET", "/api/v1/apps/{app}/summary", Access::Account, || {
        get(query::summary)
    }),
    route("GET", "/api/openapi.json", Access::Account, || {
        get(openapi::openapi_json)
    }),
];

/// The router of every route in [`ROUTES`], each wrapped in its access check; non-ingest
/// routes also get security headers, `Cache-Control: no-store` and a body limit of
/// [`ADMIN_BODY_LIMIT`].
pub fn router(state: ServerState) -> Router {
    let mut router = Router::new();
    for r in ROUTES {
        let mut handler = (r.handler)();
        match r.access {
            Access::Ingest | Access::Public => {}
            Access::Account => {
                handler =
                    handler.route_layer(from_fn_with_state(state.clone(), auth::require_account));
            }
            Access::Admin => {
                handler =
                    handler.route_layer(from_fn_with_state(state.clone(), auth::require_admin));
            }
        }
        if r.access != Access::Ingest {
            handler = handler
                .layer(RequestBodyLimitLayer::new(ADMIN_BODY_LIMIT))
                .layer(from_fn(auth::no_store))
                .layer(from_fn(auth::security_headers));
        }
        router = router.route(r.path, handler);
    }
    router
        .fallback(not_found)
        .layer(RequestDecompressionLayer::new())
        .with_state(state)
}

async fn not_found() -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let mut response =
        ApiError::new(axum::http::StatusCode::NOT_FOUND, "no such route").into_response();
    auth::add_security_headers(response.headers_mut());
    response
}
