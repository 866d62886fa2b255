//! `sundial-server`: Sundial's HTTP surface and the pipeline that runs beside it.
//!
//! - [`router`] builds the axum router: native ingest (`/api/v1/ingest`,
//!   `/api/v1/open_app`, `/api/v1/usage_time`), the Countly SDK endpoints (`/i`,
//!   `/i/bulk`, `/o/sdk`), the metrics query API (`/api/v1/apps/{app}/…`, see
//!   `docs/metrics.md`), and operations (`/healthz`, `/readyz`, `/metrics`);
//! - [`run_aggregator`] is the bus → aggregator → store loop;
//! - [`jobs_router`] is the jobs REST API of the `sundial run` daemon over a
//!   scheduler ([`JobsState`]), with its own `/metrics` and `/healthz`.
//!
//! The server holds no analytics logic: validation, decoding and aggregation are
//! `sundial-analytics`'s; storage and bus backends come in as trait objects, picked by
//! the binary. Request bodies may be gzip-compressed; every size limit applies to the
//! decompressed bytes.

mod body;
mod countly;
mod error;
mod ingest;
mod jobs;
mod openapi;
mod ops;
mod pipeline;
mod query;
mod state;

use axum::Router;
use axum::routing::{any, get, post};
use tower_http::decompression::RequestDecompressionLayer;

pub use error::ApiError;
pub use ingest::{SIGNATURE_HEADER, sign, verify_signature};
pub use jobs::{JobsState, jobs_router};
pub use openapi::document as openapi_document;
pub use pipeline::{AggregatorSettings, run_aggregator};
pub use state::{APP_CACHE_TTL, IngestSettings, Readiness, ServerState};

/// The router of every route this crate serves.
pub fn router(state: ServerState) -> Router {
    Router::new()
        .route("/api/v1/ingest", post(ingest::batch))
        .route("/api/v1/open_app", post(ingest::open_app))
        .route("/api/v1/usage_time", post(ingest::usage_time))
        .route("/i", any(countly::handle))
        .route("/i/", any(countly::handle))
        .route("/i/bulk", any(countly::handle))
        .route("/i/bulk/", any(countly::handle))
        .route("/o/sdk", any(countly::handle))
        .route("/o/sdk/", any(countly::handle))
        .route("/api/v1/apps/{app}/overview", get(query::overview))
        .route("/api/v1/apps/{app}/active", get(query::active))
        .route("/api/v1/apps/{app}/retention", get(query::retention))
        .route("/api/v1/apps/{app}/lifecycle", get(query::lifecycle))
        .route("/api/v1/apps/{app}/distribution", get(query::distribution))
        .route("/api/v1/apps/{app}/breakdown", get(query::breakdown))
        .route("/api/v1/apps/{app}/events", get(query::events))
        .route("/api/v1/apps/{app}/summary", get(query::summary))
        .route("/api/openapi.json", get(openapi::openapi_json))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .layer(RequestDecompressionLayer::new())
        .with_state(state)
}
