//! The Countly SDK endpoints: `/i`, `/i/bulk` (GET and POST) and `/o/sdk`.
//!
//! Decoding and the answers are [`sundial_analytics::countly`]'s; this module adds the
//! HTTP side: read the body (gzip undone, size-limited), look up each request's app,
//! make the events durable, answer 200 with a truthy `result`. Only a bus failure gets
//! an error status (503), because then nothing was acknowledged and the SDK's resend is
//! what we want. Requests for unknown app keys, and requests without a valid
//! `checksum256` for an app that has a Countly salt, are dropped with an `info` saying so
//! (any other status would make the SDK resend them forever).
//!
//! CORS: the web SDK posts from the page's origin, so these routes answer preflights
//! and send `Access-Control-Allow-Origin: *` (they carry no credentials).

use std::collections::BTreeMap;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use sundial_analytics::Event;
use sundial_analytics::countly::{self, CountlyRequest, Endpoint};

use crate::body::read_limited;
use crate::ingest::publish;
use crate::state::ServerState;

/// Every Countly route.
#[utoipa::path(
    method(get, post),
    path = "/i",
    tag = "countly",
    summary = "Countly SDK write API (also at /i/bulk and /o/sdk); see docs/countly.md",
    params(("app_key" = String, Query, description = "The app key (also accepted in a form body)"),
           ("device_id" = String, Query, description = "The SDK's device id")),
    responses((status = 200, description = "`{\"result\":\"Success\"}` (Countly SDKs retry anything else)", body = Object)),
)]
pub(crate) async fn handle(
    State(state): State<ServerState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let endpoint = Endpoint::from_path(uri.path()).unwrap_or(Endpoint::Write);
    let response = if method == Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
    } else if state.inner.bus.is_none() && endpoint != Endpoint::Sdk {
        let e = crate::ingest::not_ingesting();
        (
            e.status,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({"result": "Error", "info": e.error}).to_string(),
        )
            .into_response()
    } else {
        serve(&state, &method, &uri, &headers, body, endpoint).await
    };
    let mut response = response;
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type"),
    );
    let label = endpoint.path();
    metrics::counter!("sundial_countly_requests_total", "endpoint" => label,
        "status" => response.status().as_u16().to_string())
    .increment(1);
    metrics::histogram!("sundial_ingest_request_duration_seconds", "endpoint" => label)
        .record(started.elapsed().as_secs_f64());
    response
}

fn json(body: String) -> Response {
    (
        StatusCode::from_u16(countly::REPLY_STATUS).unwrap_or(StatusCode::OK),
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

async fn serve(
    state: &ServerState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
    endpoint: Endpoint,
) -> Response {
    let bytes = match read_limited(body, state.inner.settings.max_body_bytes).await {
        Ok(bytes) => bytes,
        // Too large or unreadable: the SDK would resend it forever, so answer a success
        // that says it was dropped.
        Err(e) => {
            metrics::counter!("sundial_countly_dropped_total", "reason" => "body").increment(1);
            return json(countly::success_reply(Some(&format!(
                "Request ignored: {}",
                e.error
            ))));
        }
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let request = CountlyRequest {
        endpoint,
        method: if method == Method::POST {
            countly::Method::Post
        } else {
            countly::Method::Get
        },
        query: uri.query().unwrap_or(""),
        body: &bytes,
        content_type,
    };
    let now = Timestamp::now();
    let outcome = countly::decode(&request, now, &state.inner.settings.limits);
    if endpoint == Endpoint::Sdk {
        return json(outcome.reply);
    }

    // Group the accepted events by app key, then by app.
    let mut by_key: BTreeMap<&str, Vec<Event>> = BTreeMap::new();
    for (key, event) in outcome.events() {
        by_key.entry(key).or_default().push(event.clone());
    }
    let mut unknown = Vec::new();
    let mut bad_checksum = None;
    let mut published = 0_usize;
    for (key, events) in by_key {
        let app = match state.app_by_key(key).await {
            Ok(Some(app)) => app,
            Ok(None) => {
                unknown.push(key.to_owned());
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "app look-up failed");
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::CONTENT_TYPE, "application/json")],
                    r#"{"result":"Error","info":"the store is unavailable"}"#,
                )
                    .into_response();
            }
        };
        if let Some(salt) = app.countly_salt.as_deref().filter(|s| !s.is_empty()) {
            let verdict = request.verify_checksum(salt);
            if !verdict.is_valid() {
                bad_checksum = verdict.reason();
                continue;
            }
        }
        if !state.admit(app.id, app.rate_limit_per_sec) {
            metrics::counter!("sundial_ingest_rate_limited_total").increment(1);
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"result":"Error","info":"rate limit of this app exceeded"}"#,
            )
                .into_response();
        }
        let count = events.len();
        if let Err(e) = publish(state, app.id, now, events).await {
            return (
                e.status,
                [(header::CONTENT_TYPE, "application/json")],
                serde_json::json!({"result": "Error", "info": e.error}).to_string(),
            )
                .into_response();
        }
        published += count;
    }
    metrics::counter!("sundial_ingest_events_accepted_total", "endpoint" => endpoint.path())
        .increment(published as u64);
    for rejection in &outcome.rejections {
        metrics::counter!("sundial_ingest_events_rejected_total", "endpoint" => endpoint.path(),
            "field" => rejection.field.clone())
        .increment(1);
    }
    if published == 0 {
        if let Some(reason) = bad_checksum {
            metrics::counter!("sundial_countly_dropped_total", "reason" => "checksum").increment(1);
            return json(outcome.ignored_reply(reason));
        }
        if !unknown.is_empty() {
            metrics::counter!("sundial_countly_dropped_total", "reason" => "app_key").increment(1);
            return json(outcome.ignored_reply("unknown app_key"));
        }
    }
    json(outcome.reply)
}
