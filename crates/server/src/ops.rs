//! Operations endpoints: `/healthz` (the process is up), `/readyz` (it can do its work:
//! the store answers, the bus is reachable, the aggregator is not failing) and
//! `/metrics` (Prometheus text).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::ServerState;

/// `GET /healthz`: 200 while the process serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "operations", summary = "Liveness: the process answers",
    responses((status = 200, description = "`ok`", body = String, content_type = "text/plain")))]
pub(crate) async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// `GET /readyz`: 200 when every part this process runs works, else 503 naming what
/// does not.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    summary = "Readiness: the store answers, the bus is reachable, the aggregator is not failing",
    responses((status = 200, description = "ready", body = String, content_type = "text/plain"),
              (status = 503, description = "not ready, with the reasons", body = String, content_type = "text/plain")))]
pub(crate) async fn readyz(State(state): State<ServerState>) -> Response {
    let mut problems = Vec::new();
    if let Err(e) = state.inner.store.app_by_id(0).await {
        problems.push(format!("store: {e}"));
    }
    if let Some(bus) = &state.inner.bus
        && let Err(e) = bus.end_position().await
    {
        problems.push(format!("bus: {e}"));
    }
    if let Some(Err(e)) = state.inner.readiness.aggregator() {
        problems.push(format!("aggregator: {e}"));
    }
    if problems.is_empty() {
        Json(json!({"status": "ready"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not ready", "problems": problems})),
        )
            .into_response()
    }
}

/// `GET /metrics`: the Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations", summary = "Prometheus text metrics",
    responses((status = 200, description = "Prometheus exposition format", body = String, content_type = "text/plain")))]
pub(crate) async fn metrics(State(state): State<ServerState>) -> Response {
    match &state.inner.metrics {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are not enabled").into_response(),
    }
}
