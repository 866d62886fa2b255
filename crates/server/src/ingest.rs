//! The native ingest endpoints: `POST /api/v1/ingest`, `/api/v1/open_app`,
//! `/api/v1/usage_time` (the contract is in `docs/ingest.md`).
//!
//! A request is answered only after its accepted events are durable on the bus; the
//! order of checks is: body size (413) → envelope (400, 413 for too many events) → app
//! key (401) → signature (401) → rate limit (429) → publish (503 when the bus cannot
//! make the events durable, in which case nothing was acknowledged) → 200 with the
//! accepted count and every rejection.

use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use jiff::Timestamp;
use serde::Serialize;
use sha2::Sha256;
use sundial_analytics::ingest::{self, Batch, EnvelopeError, Rejection, SingleKind};
use sundial_analytics::record::EventRecord;
use sundial_analytics::{App, Event};

use crate::body::read_limited;
use crate::error::ApiError;
use crate::state::ServerState;

/// The request header that carries the optional signature.
pub const SIGNATURE_HEADER: &str = "x-sundial-signature";

/// The answer to an ingest request.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct IngestReply {
    /// Events made durable (counted once each, even when retried with an `event_id`).
    accepted: usize,
    /// Events not accepted, with where and why.
    rejected: Vec<Rejection>,
    /// Things accepted but worth knowing (e.g. ignored fields).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Batch,
    Single(SingleKind),
}

impl Endpoint {
    fn label(self) -> &'static str {
        match self {
            Endpoint::Batch => "ingest",
            Endpoint::Single(SingleKind::OpenApp) => "open_app",
            Endpoint::Single(SingleKind::UsageTime) => "usage_time",
        }
    }
}

/// `POST /api/v1/ingest`.
#[utoipa::path(
    post,
    path = "/api/v1/ingest",
    tag = "ingest",
    summary = "Ingest a batch of events",
    request_body(content = crate::openapi::IngestBatch, description = "A batch: app key, batch-level defaults, up to 1,000 events", content_type = "application/json"),
    params(("X-Sundial-Signature" = Option<String>, Header, description = "hex(HMAC-SHA256(app_secret, body)); required when the app requires signing"),
           ("Content-Encoding" = Option<String>, Header, description = "`gzip` accepted; limits apply after decompression")),
    responses(
        (status = 200, description = "Accepted events are durable; rejected ones say why", body = IngestReply),
        (status = 400, description = "Unreadable envelope (message says what and where)", body = ApiError),
        (status = 401, description = "Unknown app key or bad signature", body = ApiError),
        (status = 413, description = "Body over the limit (1 MiB after decompression) or over 1,000 events", body = ApiError),
        (status = 429, description = "The app's rate limit was hit", body = ApiError),
        (status = 503, description = "The bus could not make the events durable: nothing was acknowledged", body = ApiError),
    )
)]
pub(crate) async fn batch(
    State(state): State<ServerState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    serve(state, headers, body, Endpoint::Batch).await
}

/// `POST /api/v1/open_app`.
#[utoipa::path(
    post,
    path = "/api/v1/open_app",
    tag = "ingest",
    summary = "Report one app launch",
    request_body(content = crate::openapi::IngestSingle, description = "One event's fields with the app key", content_type = "application/json"),
    params(("X-Sundial-Signature" = Option<String>, Header, description = "hex(HMAC-SHA256(app_secret, body)); required when the app requires signing"),
           ("Content-Encoding" = Option<String>, Header, description = "`gzip` accepted; limits apply after decompression")),
    responses(
        (status = 200, description = "Accepted events are durable; rejected ones say why", body = IngestReply),
        (status = 400, description = "Unreadable envelope (message says what and where)", body = ApiError),
        (status = 401, description = "Unknown app key or bad signature", body = ApiError),
        (status = 413, description = "Body over the limit (1 MiB after decompression) or over 1,000 events", body = ApiError),
        (status = 429, description = "The app's rate limit was hit", body = ApiError),
        (status = 503, description = "The bus could not make the events durable: nothing was acknowledged", body = ApiError),
    )
)]
pub(crate) async fn open_app(
    State(state): State<ServerState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    serve(state, headers, body, Endpoint::Single(SingleKind::OpenApp)).await
}

/// `POST /api/v1/usage_time`.
#[utoipa::path(
    post,
    path = "/api/v1/usage_time",
    tag = "ingest",
    summary = "Report one session length",
    request_body(content = crate::openapi::IngestSingle, description = "One event's fields with the app key and `duration_secs`", content_type = "application/json"),
    params(("X-Sundial-Signature" = Option<String>, Header, description = "hex(HMAC-SHA256(app_secret, body)); required when the app requires signing"),
           ("Content-Encoding" = Option<String>, Header, description = "`gzip` accepted; limits apply after decompression")),
    responses(
        (status = 200, description = "Accepted events are durable; rejected ones say why", body = IngestReply),
        (status = 400, description = "Unreadable envelope (message says what and where)", body = ApiError),
        (status = 401, description = "Unknown app key or bad signature", body = ApiError),
        (status = 413, description = "Body over the limit (1 MiB after decompression) or over 1,000 events", body = ApiError),
        (status = 429, description = "The app's rate limit was hit", body = ApiError),
        (status = 503, description = "The bus could not make the events durable: nothing was acknowledged", body = ApiError),
    )
)]
pub(crate) async fn usage_time(
    State(state): State<ServerState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    serve(
        state,
        headers,
        body,
        Endpoint::Single(SingleKind::UsageTime),
    )
    .await
}

async fn serve(state: ServerState, headers: HeaderMap, body: Body, endpoint: Endpoint) -> Response {
    let started = Instant::now();
    let response = match handle(&state, &headers, body, endpoint).await {
        Ok(reply) => (StatusCode::OK, Json(reply)).into_response(),
        Err(e) => e.into_response(),
    };
    let label = endpoint.label();
    metrics::counter!("sundial_ingest_requests_total", "endpoint" => label,
        "status" => status_label(response.status()))
    .increment(1);
    metrics::histogram!("sundial_ingest_request_duration_seconds", "endpoint" => label)
        .record(started.elapsed().as_secs_f64());
    response
}

async fn handle(
    state: &ServerState,
    headers: &HeaderMap,
    body: Body,
    endpoint: Endpoint,
) -> Result<IngestReply, ApiError> {
    let settings = &state.inner.settings;
    if state.inner.bus.is_none() {
        return Err(not_ingesting());
    }
    let bytes = read_limited(body, settings.max_body_bytes).await?;
    let now = Timestamp::now();
    let batch = match endpoint {
        Endpoint::Batch => ingest::parse_batch(&bytes, now, &settings.limits),
        Endpoint::Single(kind) => ingest::parse_single(&bytes, kind, now, &settings.limits),
    }
    .map_err(envelope_error)?;
    let app = authenticate(state, &batch.app_key, headers, &bytes).await?;
    if !state.admit(app.id, app.rate_limit_per_sec) {
        metrics::counter!("sundial_ingest_rate_limited_total").increment(1);
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate limit of this app exceeded; retry later",
        ));
    }
    let Batch {
        accepted,
        rejected,
        clamped,
        warnings,
        ..
    } = batch;
    let count = accepted.len();
    publish(state, app.id, now, accepted).await?;

    let label = endpoint.label();
    metrics::counter!("sundial_ingest_events_accepted_total", "endpoint" => label)
        .increment(count as u64);
    for rejection in &rejected {
        metrics::counter!("sundial_ingest_events_rejected_total", "endpoint" => label,
            "field" => rejection.field.clone())
        .increment(1);
    }
    metrics::counter!("sundial_ingest_events_clamped_total").increment(clamped as u64);
    Ok(IngestReply {
        accepted: count,
        rejected,
        warnings,
    })
}

/// Looks up the app and checks the signature (required when the app says so, checked
/// whenever one is sent).
pub(crate) async fn authenticate(
    state: &ServerState,
    app_key: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<std::sync::Arc<App>, ApiError> {
    let app = state
        .app_by_key(app_key)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "app look-up failed");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable")
        })?
        .ok_or_else(|| {
            ApiError::new(StatusCode::UNAUTHORIZED, "unknown app key").with_field("app_key")
        })?;
    match headers.get(SIGNATURE_HEADER) {
        Some(value) => {
            let valid = value
                .to_str()
                .ok()
                .and_then(|s| hex::decode(s.trim()).ok())
                .is_some_and(|signature| verify_signature(&app.app_secret, body, &signature));
            if !valid {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "bad signature: X-Sundial-Signature must be the hex HMAC-SHA256 of the \
                     request body keyed with the app secret",
                )
                .with_field(SIGNATURE_HEADER));
            }
        }
        None if app.require_signature => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this app requires signed requests: send X-Sundial-Signature",
            )
            .with_field(SIGNATURE_HEADER));
        }
        None => {}
    }
    Ok(app)
}

/// Whether `signature` is HMAC-SHA256(secret, body), compared in constant time.
pub fn verify_signature(secret: &str, body: &[u8], signature: &[u8]) -> bool {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(signature).is_ok()
}

/// The hex signature of `body` for an app secret (what an SDK sends).
pub fn sign(secret: &str, body: &[u8]) -> String {
    match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(body);
            hex::encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

/// Makes the events durable on the bus (nothing to do for none).
pub(crate) async fn publish(
    state: &ServerState,
    app_id: i64,
    now: Timestamp,
    events: Vec<Event>,
) -> Result<(), ApiError> {
    if events.is_empty() {
        return Ok(());
    }
    let Some(bus) = &state.inner.bus else {
        return Err(not_ingesting());
    };
    let record = EventRecord::new(app_id, now.as_millisecond(), events);
    let id = message_id();
    bus.publish(&id, record.encode()).await.map_err(|e| {
        tracing::error!(error = %e, "publish failed; the request is not acknowledged");
        metrics::counter!("sundial_ingest_publish_failures_total").increment(1);
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the events could not be made durable; nothing was stored, retry later",
        )
    })?;
    Ok(())
}

/// The answer of a process that runs without ingest (`--role aggregate`).
pub(crate) fn not_ingesting() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "this process does not ingest (it runs with --role aggregate)",
    )
}

/// The status label of the request counter, without an allocation for the usual ones.
fn status_label(status: StatusCode) -> std::borrow::Cow<'static, str> {
    match status.as_u16() {
        200 => "200".into(),
        400 => "400".into(),
        401 => "401".into(),
        413 => "413".into(),
        429 => "429".into(),
        503 => "503".into(),
        other => other.to_string().into(),
    }
}

/// A unique id for the bus's de-duplication of a retried publish: 16 random bytes
/// drawn once per process, then counted up (one system call per process instead of
/// one per request; ids of different processes differ in their random part).
fn message_id() -> String {
    static BASE: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let base = *BASE.get_or_init(|| {
        let mut bytes = [0_u8; 16];
        // Without entropy, fall back to the clock: unique enough within the duplicate
        // window, and the counter keeps ids of this process apart.
        if getrandom::fill(&mut bytes).is_err() {
            let nanos = Timestamp::now().as_nanosecond();
            bytes = nanos.to_le_bytes();
        }
        u128::from_le_bytes(bytes)
    });
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{:032x}", base.wrapping_add(u128::from(n)))
}

fn envelope_error(e: EnvelopeError) -> ApiError {
    match &e {
        EnvelopeError::Json { line, column, .. } => {
            let mut error = ApiError::new(StatusCode::BAD_REQUEST, e.to_string());
            error.line = Some(*line);
            error.column = Some(*column);
            error
        }
        EnvelopeError::Field { field, .. } => {
            ApiError::new(StatusCode::BAD_REQUEST, e.to_string()).with_field(field.clone())
        }
        EnvelopeError::TooManyEvents { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()).with_field("events")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_reject() {
        let signature = sign("secret", b"{}");
        assert_eq!(signature.len(), 64);
        let raw = hex::decode(&signature).expect("hex");
        assert!(verify_signature("secret", b"{}", &raw));
        assert!(!verify_signature("other", b"{}", &raw));
        assert!(!verify_signature("secret", b"{ }", &raw));
        assert!(!verify_signature("secret", b"{}", &raw[..31]));
    }
}
