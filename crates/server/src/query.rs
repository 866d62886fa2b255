//! The metrics query API: `GET /api/v1/apps/{app}/{overview,active,retention,
//! lifecycle,distribution,breakdown,events,summary}`.
//!
//! Handlers only parse parameters and pick the app; the definitions and the
//! computation are `sundial_analytics::metrics`'s. Every parameter is validated before
//! anything is read, and a bad one is answered 400 with its name in `field`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sundial_analytics::metrics::{
    self, AppClock, BreakdownMetric, Calendar, DistributionKind, MetricsSource, QueryError,
    RetentionQuery,
};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::ServerState;

type Params = Query<HashMap<String, String>>;

// Parameter documentation for the OpenAPI document (handlers read a map, to name
// unknown parameters in their errors).

/// The range, inclusive, in the app's zone.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct RangeParams {
    /// First day, `YYYY-MM-DD` (default: 29 days before `to`).
    from: Option<String>,
    /// Last day, `YYYY-MM-DD` (default: today in the app's zone).
    to: Option<String>,
}

#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct ActiveParams {
    /// `week` (ISO) or `month`: calendar uniques instead of rolling figures.
    calendar: Option<String>,
}

#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct RetentionParams {
    /// `new` (default) or `active`.
    kind: Option<String>,
    /// `classic` (default) or `unbounded`.
    mode: Option<String>,
    /// `day` (default) or `week`.
    period: Option<String>,
    /// Comma-separated offsets, 0 to 366 (default `1,2,3,7,14,30`; weeks `1,…,8`).
    days: Option<String>,
}

#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct DistributionParams {
    /// `session_length`, `launches_per_device`, `hour_launches`, `hour_new`,
    /// `hour_active` or `freshness`.
    kind: String,
}

#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct BreakdownParams {
    /// `platform`, `app_version`, `channel`, `os_version` or `country`.
    dimension: String,
    /// `launches`, `active_users` (default) or `new_users`.
    metric: Option<String>,
}

#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct EventsParams {
    /// Only this event name.
    name: Option<String>,
    /// Also break each event down by this segment key.
    segment: Option<String>,
}

/// Names the query string may use, per endpoint (anything else is a 400: a typo must
/// not silently give the default answer).
fn check_params(params: &HashMap<String, String>, allowed: &[&str]) -> Result<(), ApiError> {
    let mut unknown: Vec<&str> = params
        .keys()
        .map(String::as_str)
        .filter(|k| !allowed.contains(k))
        .collect();
    unknown.sort_unstable();
    match unknown.first() {
        None => Ok(()),
        Some(name) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "unknown parameter `{name}`; this endpoint takes {}",
                allowed.join(", ")
            ),
        )
        .with_field(*name)),
    }
}

fn query_error(e: QueryError) -> ApiError {
    match e {
        QueryError::Param { name, reason } => ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("parameter `{name}`: {reason}"),
        )
        .with_field(name),
        QueryError::Store(e) => {
            tracing::error!(error = %e, "metrics query failed");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the store failed; see the server log",
            )
        }
    }
}

/// The app of the path, with its clock, once the caller may read it (403 otherwise).
async fn app_clock(
    state: &ServerState,
    principal: &Principal,
    app: &str,
) -> Result<AppClock, ApiError> {
    let bad = |reason: String| ApiError::new(StatusCode::BAD_REQUEST, reason).with_field("app");
    let id: i64 = app
        .parse()
        .map_err(|_| bad(format!("parameter `app`: `{app}` is not an app id")))?;
    principal.require_app_read(id)?;
    let found = state.inner.store.app_by_id(id).await.map_err(|e| {
        tracing::error!(error = %e, "app look-up failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the store failed; see the server log",
        )
    })?;
    let Some(found) = found else {
        return Err(bad(format!("parameter `app`: no app with id {id}")));
    };
    Ok(AppClock::new(
        found.id,
        &found.timezone,
        jiff::Timestamp::now().as_millisecond(),
    ))
}

fn source(state: &ServerState) -> &dyn MetricsSource {
    &*state.inner.store
}

fn get<'a>(params: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    params.get(name).map(String::as_str)
}

fn range(params: &HashMap<String, String>, clock: &AppClock) -> Result<(i32, i32), ApiError> {
    metrics::parse_range(get(params, "from"), get(params, "to"), clock).map_err(query_error)
}

fn answer<T: Serialize>(result: Result<T, QueryError>) -> Response {
    match result {
        Ok(body) => Json(body).into_response(),
        Err(e) => query_error(e).into_response(),
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/apps/{app}/overview",
    tag = "metrics",
    summary = "Daily overview: launches, usage, active/new/returning/total/registered users",
    params(("app" = i64, Path, description = "The app id (`sundial app list`)"), RangeParams),
    responses(
        (status = 200, description = "The figures (see docs/metrics.md)", body = metrics::Overview),
        (status = 400, description = "A bad parameter, named in `field`", body = ApiError),
        (status = 401, description = "No valid session or API token", body = ApiError),
        (status = 403, description = "A viewer without a grant for this app", body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn overview(
    State(state): State<ServerState>,
    principal: Principal,
    Path(app): Path<String>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    check_params(&params, &["from", "to"])?;
    let clock = app_clock(&state, &principal, &app).await?;
    let (from, to) = range(&params, &clock)?;
    Ok(answer(
        metrics::overview(source(&state), &clock, from, to).await,
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/apps/{app}/active",
    tag = "metrics",
    summary = "Active users: DAU/WAU/MAU and stickiness per day, or calendar-week/month uniques",
    params(("app" = i64, Path, description = "The app id (`sundial app list`)"), RangeParams, ActiveParams),
    responses(
        (status = 200, description = "The figures (see docs/metrics.md)", body = metrics::Active),
        (status = 400, description = "A bad parameter, named in `field`", body = ApiError),
        (status = 401, description = "No valid session or API token", body = ApiError),
        (status = 403, description = "A viewer without a grant for this app", body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn active(
    State(state): State<ServerState>,
    principal: Principal,
    Path(app): Path<String>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    check_params(&params, &["from", "to", "calendar"])?;
    let calendar = get(&params, "calendar")
        .map(Calendar::parse)
        .transpose()
        .map_err(query_error)?;
    let clock = app_clock(&state, &principal, &app).await?;
    let (from, to) = range(&params, &clock)?;
    Ok(answer(
        metrics::active(source(&state), &clock, from, to, calendar).await,
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/apps/{app}/retention",
    tag = "metrics",
    summary = "Retention matrix of daily or weekly cohorts",
    params(("app" = i64, Path, description = "The app id (`sundial app list`)"), RangeParams, RetentionParams),
    responses(
        (status = 200, description = "The figures (see docs/metrics.md)", body = metrics::Retention),
        (status = 400, description = "A bad parameter, named in `field`", body = ApiError),
        (status = 401, description = "No valid session or API token", body = ApiError),
        (status = 403, description = "A viewer without a grant for this app", body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn retention(
    State(state): State<ServerState>,
    principal: Principal,
    Path(app): Path<String>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    check_params(&params, &["from", "to", "kind", "mode", "period", "days"])?;
    let query = RetentionQuery::parse(
        get(&params, "kind"),
        get(&params, "mode"),
        get(&params, "period"),
        get(&params, "days"),
    )
    .map_err(query_error)?;
    let clock = app_clock(&state, &principal, &app).await?;
    let (from, to) = range(&params, &clock)?;
    Ok(answer(
        metrics::retention(source(&state), &clock, from, to, &query).await,
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/apps/{app}/lifecycle",
    tag = "metrics",
    summary = "New, returning, resurrecting and dormant users per day",
    params(("app" = i64, Path, description = "The app id (`sundial app list`)"), RangeParams),
    responses(
        (status = 200, description = "The figures (see docs/metrics.md)", body = metrics::Lifecycle),
        (status = 400, description = "A bad parameter, named in `field`", body = ApiError),
        (status = 401, description = "No valid session or API token", body = ApiError),
        (status = 403, description = "A viewer without a grant for this app", body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn lifecycle(
    State(state): State<ServerState>,
    principal: Principal,
    Path(app): Path<String>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    check_params(&params, &["from", "to"])?;
    let clock = app_clock(&state, &principal, &app).await?;
    let (from, to) = range(&params, &clock)?;
    Ok(answer(
        metrics::lifecycle(source(&state), &clock, from, to).await,
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/apps/{app}/distribution",
    tag = "metrics",
    summary = "A per-day distribution (session length, launches per device, hours, freshness)",
    params(("app" = i64, Path, description = "The app id (`sundial app list`)"), RangeParams, DistributionParams),
    responses(
        (status = 200, description = "The figures (see docs/metrics.md)", body = metrics::Distribution),
        (status = 400, description = "A bad parameter, named in `field`", body = ApiError),
        (status = 401, description = "No valid session or API token", body = ApiError),
        (status = 403, description = "A viewer without a grant for this app", body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn distribution(
    State(state): State<ServerState>,
    principal: Principal,
    Path(app): Path<String>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    check_params(&params, &["from", "to", "kind"])?;
    let kind = match get(&params, "kind") {
        Some(kind) => DistributionKind::parse(kind).map_err(query_error)?,
        None => {
            return Err(query_error(QueryError::Param {
                name: "kind",
                reason: "required: one of session_length, launches_per_device, hour_launches, \
                         hour_new, hour_active, freshness"
                    .into(),
            }));
        }
    };
    let clock = app_clock(&state, &principal, &app).await?;
    let (from, to) = range(&params, &clock)?;
    Ok(answer(
        metrics::distribution(source(&state), &clock, from, to, kind).await,
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/apps/{app}/breakdown",
    tag = "metrics",
    summary = "Launches, active or new users per day by one dimension",
    params(("app" = i64, Path, description = "The app id (`sundial app list`)"), RangeParams, BreakdownParams),
    responses(
        (status = 200, description = "The figures (see docs/metrics.md)", body = metrics::Breakdown),
        (status = 400, description = "A bad parameter, named in `field`", body = ApiError),
        (status = 401, description = "No valid session or API token", body = ApiError),
        (status = 403, description = "A viewer without a grant for this app", body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn breakdown(
    State(state): State<ServerState>,
    principal: Principal,
    Path(app): Path<String>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    check_params(&params, &["from", "to", "dimension", "metric"])?;
    let dimension = metrics::parse_dimension(get(&params, "dimension")).map_err(query_error)?;
    let metric = BreakdownMetric::parse(get(&params, "metric")).map_err(query_error)?;
    let clock = app_clock(&state, &principal, &app).await?;
    let (from, to) = range(&params, &clock)?;
    Ok(answer(
        metrics::breakdown(source(&state), &clock, from, to, dimension, metric).await,
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/apps/{app}/events",
    tag = "metrics",
    summary = "Custom events per day and name, optionally by one segment",
    params(("app" = i64, Path, description = "The app id (`sundial app list`)"), RangeParams, EventsParams),
    responses(
        (status = 200, description = "The figures (see docs/metrics.md)", body = metrics::Events),
        (status = 400, description = "A bad parameter, named in `field`", body = ApiError),
        (status = 401, description = "No valid session or API token", body = ApiError),
        (status = 403, description = "A viewer without a grant for this app", body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn events(
    State(state): State<ServerState>,
    principal: Principal,
    Path(app): Path<String>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    check_params(&params, &["from", "to", "name", "segment"])?;
    let clock = app_clock(&state, &principal, &app).await?;
    let (from, to) = range(&params, &clock)?;
    let name = get(&params, "name").filter(|n| !n.is_empty());
    let segment = get(&params, "segment").filter(|s| !s.is_empty());
    Ok(answer(
        metrics::events(source(&state), &clock, from, to, name, segment).await,
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/apps/{app}/summary",
    tag = "metrics",
    summary = "KPI tiles of the dashboard's first page",
    params(("app" = i64, Path, description = "The app id (`sundial app list`)")),
    responses(
        (status = 200, description = "The figures (see docs/metrics.md)", body = metrics::Summary),
        (status = 400, description = "A bad parameter, named in `field`", body = ApiError),
        (status = 401, description = "No valid session or API token", body = ApiError),
        (status = 403, description = "A viewer without a grant for this app", body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn summary(
    State(state): State<ServerState>,
    principal: Principal,
    Path(app): Path<String>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    check_params(&params, &[])?;
    let clock = app_clock(&state, &principal, &app).await?;
    Ok(answer(metrics::summary(source(&state), &clock).await))
}
