//! The jobs REST API of the `sundial run` daemon: an axum [`Router`] over a
//! [`Scheduler`], JSON in and out.
//!
//! | Method and path                     | What it does                                   |
//! |-------------------------------------|------------------------------------------------|
//! | `GET /api/v1/jobs`                  | every job with its next fires                  |
//! | `GET /api/v1/jobs/{id}`             | one job                                        |
//! | `POST /api/v1/jobs`                 | create a job (persisted in the store)          |
//! | `PUT /api/v1/jobs/{id}`             | replace a job's definition                     |
//! | `DELETE /api/v1/jobs/{id}`          | remove a job (its runs stay in the ledger)     |
//! | `POST /api/v1/jobs/{id}/pause`      | pause                                          |
//! | `POST /api/v1/jobs/{id}/resume`     | resume (missed fires follow the misfire policy)|
//! | `POST /api/v1/jobs/{id}/trigger`    | fire now, optionally `{"overlap": "allow"}`    |
//! | `POST /api/v1/jobs/{id}/backfill`   | run the fires in `{"from", "to"}` not yet run  |
//! | `GET /api/v1/jobs/{id}/runs?limit=` | the newest runs, with their output tail        |
//! | `GET /metrics`                      | the engine's metrics, Prometheus text          |
//! | `GET /healthz`                      | 200 while the process serves HTTP              |
//! | `GET /api/openapi.json`             | the OpenAPI 3.1 document of these routes       |
//!
//! The OpenAPI document is `jobs_openapi.json` beside this file, written by hand; a
//! test checks that every operation it lists is served by [`jobs_router`].
//!
//! A job body is one `[[job]]` table of `jobs.toml` written as a JSON object (same keys,
//! same validation: `{"id": "x", "every": "1m", "command": ["true"]}`), so a job means
//! the same thing whether it comes from the file or the API.
//!
//! # Ownership
//!
//! Jobs are either **file-owned** (named in the jobs file) or **API-owned** (created
//! with `POST`). [`JobsState::apply_file`] makes the file-owned jobs match the file
//! (adding, updating, removing) and never touches API-owned jobs, except that a file
//! naming an API job's id takes that job over. The API may pause, resume, trigger and
//! backfill any job, but `PUT` and `DELETE` on a file-owned job answer 409: the file is
//! their source of truth, an API change would be undone at the next reload.
//!
//! # Cluster mode
//!
//! With [`JobsState::with_cluster`], definitions live in the cluster (etcd): create,
//! update, delete, pause and resume write there through [`ClusterDefinitions`], and
//! every node — this one included — applies the change from the cluster's watch. The
//! handlers answer once this node has applied it. `/healthz` and `/metrics` add the
//! node's cluster view (session, claiming, clock skew, leadership).
//!
//! # Ground rules
//!
//! Mutations (create, update, delete, file reloads) are serialised by one async mutex,
//! so a reload never interleaves with a create of the same id. Reads take no lock.
//! Every error answer is [`ApiError`] JSON: 400 with `field` for bad input, 404 for an
//! unknown job, 409 for a conflict, 500 (logged, not detailed) for store failures.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sundial_scheduler::engine::{
    EngineError, HistogramSnapshot, JobInfo, ReconcileReport, Scheduler, TriggerOutcome,
};
use sundial_scheduler::job::{JobId, JobSpec, RunRecord};
use sundial_scheduler::jobs_file::{self, JobsFileError};
use sundial_scheduler::policy::OverlapPolicy;

use crate::error::ApiError;

/// Next fires listed per job unless `?next=` says otherwise.
const DEFAULT_NEXT: usize = 5;
/// The most next fires or runs one request may ask for.
const MAX_LIST: usize = 1000;
/// Runs listed unless `?limit=` says otherwise.
const DEFAULT_RUNS: usize = 20;

/// Why the cluster did not take a definition change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterWriteError {
    /// The definition cannot run in cluster mode (answered 400, naming the field).
    #[error("{message}")]
    Invalid {
        /// The field at fault.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The cluster could not be written (answered 503).
    #[error("the cluster did not take the change: {0}")]
    Unavailable(String),
}

/// Where job definitions live in cluster mode (see the module docs). Implemented by
/// the binary over `sundial-cluster-etcd`.
#[async_trait::async_trait]
pub trait ClusterDefinitions: Send + Sync + std::fmt::Debug + 'static {
    /// Stores `spec` (new or replacing) for every node; returns once this node's
    /// scheduler has applied it (or after a bounded wait).
    async fn store(&self, spec: JobSpec) -> Result<(), ClusterWriteError>;
    /// Deletes the definition of `id` for every node; same wait.
    async fn remove(&self, id: &JobId) -> Result<(), ClusterWriteError>;
    /// The node's cluster view for `/healthz` (JSON object).
    fn health(&self) -> serde_json::Value;
    /// Prometheus text lines for `/metrics`.
    fn metrics(&self) -> String;
}

/// The jobs API's state: the scheduler and which jobs the jobs file owns. Cheap to
/// clone.
#[derive(Clone, Debug)]
pub struct JobsState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    scheduler: Scheduler,
    /// Ids of the jobs the jobs file defined at its last successful apply.
    file_ids: RwLock<BTreeSet<JobId>>,
    /// Serialises mutations (see the module docs).
    control: tokio::sync::Mutex<()>,
    /// Cluster mode: where definitions live.
    cluster: Option<Arc<dyn ClusterDefinitions>>,
}

impl JobsState {
    /// State over `scheduler`; `file_ids` are the ids the jobs file owned when it was
    /// last applied (persisted by the daemon across restarts), so a job removed from
    /// the file while the daemon was down is removed at the first apply.
    pub fn new(scheduler: Scheduler, file_ids: impl IntoIterator<Item = JobId>) -> Self {
        Self {
            inner: Arc::new(Inner {
                scheduler,
                file_ids: RwLock::new(file_ids.into_iter().collect()),
                control: tokio::sync::Mutex::new(()),
                cluster: None,
            }),
        }
    }

    /// State of a cluster node: definitions are written to `cluster`, and the jobs
    /// file's ids (`file_ids`) are those the file applied to the cluster.
    pub fn with_cluster(
        scheduler: Scheduler,
        file_ids: impl IntoIterator<Item = JobId>,
        cluster: Arc<dyn ClusterDefinitions>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                scheduler,
                file_ids: RwLock::new(file_ids.into_iter().collect()),
                control: tokio::sync::Mutex::new(()),
                cluster: Some(cluster),
            }),
        }
    }

    /// Records the ids the jobs file owns (cluster mode: after applying it to the
    /// cluster).
    pub fn set_file_ids(&self, ids: impl IntoIterator<Item = JobId>) {
        *self
            .inner
            .file_ids
            .write()
            .unwrap_or_else(PoisonError::into_inner) = ids.into_iter().collect();
    }

    fn cluster(&self) -> Option<&Arc<dyn ClusterDefinitions>> {
        self.inner.cluster.as_ref()
    }

    /// The scheduler.
    pub fn scheduler(&self) -> &Scheduler {
        &self.inner.scheduler
    }

    /// Ids of the file-owned jobs, sorted.
    pub fn file_ids(&self) -> Vec<JobId> {
        self.read_ids().iter().cloned().collect()
    }

    fn read_ids(&self) -> std::sync::RwLockReadGuard<'_, BTreeSet<JobId>> {
        self.inner
            .file_ids
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn is_file_owned(&self, id: &JobId) -> bool {
        self.read_ids().contains(id)
    }

    /// Makes the file-owned jobs match `specs` (the jobs file just read): new ids are
    /// added, changed definitions updated (running runs finish undisturbed, the paused
    /// flag is kept), ids the file owned before and no longer names are removed.
    /// API-owned jobs are left as they are, unless `specs` names one: then the file
    /// takes it over. Every spec is validated before anything changes.
    ///
    /// # Errors
    ///
    /// A spec that does not validate (nothing changed), or the engine's first error
    /// (changes before it stay applied; the jobs named by the old or the new file are
    /// then all treated as file-owned until the next successful apply).
    pub async fn apply_file(&self, specs: Vec<JobSpec>) -> Result<ReconcileReport, EngineError> {
        for spec in &specs {
            spec.validate().map_err(|source| EngineError::Spec {
                id: spec.id.clone(),
                source,
            })?;
        }
        let _guard = self.inner.control.lock().await;
        let new_ids: BTreeSet<JobId> = specs.iter().map(|s| s.id.clone()).collect();
        let previous = self.read_ids().clone();
        let mut desired = specs;
        desired.extend(
            self.inner
                .scheduler
                .list()
                .into_iter()
                .filter(|j| !new_ids.contains(&j.spec.id) && !previous.contains(&j.spec.id))
                .map(|j| j.spec),
        );
        let result = self.inner.scheduler.reconcile(desired).await;
        let owned = match &result {
            Ok(_) => new_ids,
            Err(_) => previous.union(&new_ids).cloned().collect(),
        };
        *self
            .inner
            .file_ids
            .write()
            .unwrap_or_else(PoisonError::into_inner) = owned;
        result
    }

    fn view(&self, info: JobInfo, next: usize) -> JobView {
        let next_fires = self
            .inner
            .scheduler
            .upcoming(&info.spec.id, next)
            .unwrap_or_default();
        JobView {
            id: info.spec.id.clone(),
            owner: if self.is_file_owned(&info.spec.id) {
                "file"
            } else {
                "api"
            },
            paused: info.spec.paused,
            next_fires,
            running: info.running,
            buffered: info.buffered,
            fires: info.fires,
            consecutive_failures: info.consecutive_failures,
            missing_handler: info.missing_handler,
            spec: info.spec,
        }
    }
}

/// A job as the API shows it.
#[derive(Debug, Serialize)]
struct JobView {
    id: JobId,
    /// `file` or `api` (see the module docs).
    owner: &'static str,
    paused: bool,
    next_fires: Vec<Timestamp>,
    running: usize,
    buffered: usize,
    fires: u64,
    consecutive_failures: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    missing_handler: Option<String>,
    spec: JobSpec,
}

/// The jobs API's routes, `/metrics` and `/healthz`.
pub fn jobs_router(state: JobsState) -> Router {
    Router::new()
        .route("/api/v1/jobs", get(list).post(create))
        .route("/api/v1/jobs/{id}", get(get_one).put(update).delete(delete))
        .route("/api/v1/jobs/{id}/pause", post(pause))
        .route("/api/v1/jobs/{id}/resume", post(resume))
        .route("/api/v1/jobs/{id}/trigger", post(trigger))
        .route("/api/v1/jobs/{id}/backfill", post(backfill))
        .route("/api/v1/jobs/{id}/runs", get(runs))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/api/openapi.json", get(openapi))
        .with_state(state)
}

/// Maps an engine error onto an answer.
fn engine_error(e: EngineError) -> ApiError {
    match e {
        EngineError::NotFound(id) => ApiError::new(StatusCode::NOT_FOUND, format!("no job `{id}`")),
        EngineError::AlreadyExists(id) => {
            ApiError::new(StatusCode::CONFLICT, format!("job `{id}` exists already"))
                .with_field("id")
        }
        e @ EngineError::Spec { .. } => ApiError::new(StatusCode::BAD_REQUEST, e.to_string()),
        e @ EngineError::EmptyRange { .. } => {
            ApiError::new(StatusCode::BAD_REQUEST, e.to_string()).with_field("to")
        }
        EngineError::ShutDown => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the scheduler is shutting down",
        ),
        e => {
            tracing::error!(error = %e, "jobs API: engine error");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error (see the log)",
            )
        }
    }
}

fn valid_id(id: &str) -> Result<JobId, ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(JobId::new(id))
    } else {
        // No job can have this id.
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no job `{id}`"),
        ))
    }
}

/// Parses a JSON body, reporting syntax errors with line and column.
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let mut err = ApiError::new(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}"));
        if e.is_syntax() || e.is_eof() {
            err.line = Some(e.line());
            err.column = Some(e.column());
        }
        err
    })
}

/// Reads a job body (a `jobs.toml` job table as a JSON object) into a spec, with the
/// jobs file's validation. `path_id` is the id from the URL (`PUT`), which the body
/// may omit.
fn job_from_body(body: &[u8], path_id: Option<&JobId>) -> Result<JobSpec, ApiError> {
    let mut value: serde_json::Value = parse_json(body)?;
    let Some(object) = value.as_object_mut() else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object: one job table of jobs.toml",
        ));
    };
    if let Some(id) = path_id {
        match object.get("id") {
            None => {
                object.insert("id".into(), json!(id.as_str()));
            }
            Some(serde_json::Value::String(s)) if s == id.as_str() => {}
            Some(_) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("the body's id must be `{id}`, as in the URL"),
                )
                .with_field("id"));
            }
        }
    }
    if let Some((key, _)) = object.iter().find(|(_, v)| v.is_null()) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("field `{key}`: null is not allowed; leave the field out"),
        )
        .with_field(key.clone()));
    }
    let table: toml::Value = toml::Value::try_from(&value)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid job: {e}")))?;
    let mut file = toml::Table::new();
    file.insert("job".into(), toml::Value::Array(vec![table]));
    let text = toml::to_string(&file)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid job: {e}")))?;
    let defs =
        jobs_file::parse(Path::new("request body"), &text, Timestamp::now()).map_err(file_error)?;
    match defs.as_slice() {
        [def] => Ok(JobSpec::from_definition(def)),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the body must define one job",
        )),
    }
}

/// A jobs-file error on a request body: its words and field, without the line (of a
/// text the client never saw).
fn file_error(e: JobsFileError) -> ApiError {
    let field = e
        .context
        .as_deref()
        .and_then(|c| c.split_once("field `"))
        .and_then(|(_, rest)| rest.split_once('`'))
        .or_else(|| {
            e.message
                .split_once("unknown field `")
                .and_then(|(_, rest)| rest.split_once('`'))
        })
        .or_else(|| {
            e.message
                .split_once("missing field `")
                .and_then(|(_, rest)| rest.split_once('`'))
        })
        .map(|(f, _)| f.to_owned());
    let text = match &e.context {
        Some(c) => format!("{c}: {}", e.message),
        None => e.message.clone(),
    };
    let err = ApiError::new(StatusCode::BAD_REQUEST, text);
    match field {
        Some(f) => err.with_field(f),
        None => err,
    }
}

fn file_owned(id: &JobId) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        format!("job `{id}` is defined in the jobs file: change the file and reload (SIGHUP)"),
    )
    .with_field("id")
}

/// `?next=` and `?limit=`.
#[derive(Debug, Deserialize)]
struct ListQuery {
    next: Option<String>,
    limit: Option<String>,
}

fn count_param(value: Option<&str>, name: &str, default: usize) -> Result<usize, ApiError> {
    match value {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_LIST).contains(&n) => Ok(n),
            _ => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("`{name}` must be a whole number from 1 to {MAX_LIST}, not `{v}`"),
            )
            .with_field(name)),
        },
    }
}

async fn list(
    State(state): State<JobsState>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let next = count_param(q.next.as_deref(), "next", DEFAULT_NEXT)?;
    let jobs: Vec<JobView> = state
        .scheduler()
        .list()
        .into_iter()
        .map(|info| state.view(info, next))
        .collect();
    Ok(Json(json!({ "jobs": jobs })).into_response())
}

async fn get_one(
    State(state): State<JobsState>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let id = valid_id(&id)?;
    let next = count_param(q.next.as_deref(), "next", DEFAULT_NEXT)?;
    let info = state.scheduler().get(&id).map_err(engine_error)?;
    Ok(Json(state.view(info, next)).into_response())
}

async fn create(State(state): State<JobsState>, body: Bytes) -> Result<Response, ApiError> {
    let spec = job_from_body(&body, None)?;
    let id = spec.id.clone();
    {
        let _guard = state.inner.control.lock().await;
        if let Some(cluster) = state.cluster() {
            if state.scheduler().get(&id).is_ok() {
                return Err(engine_error(EngineError::AlreadyExists(id)));
            }
            store_in_cluster(cluster.as_ref(), spec).await?;
        } else {
            state.scheduler().add(spec).await.map_err(engine_error)?;
        }
    }
    tracing::info!(job_id = %id, "job created through the API");
    let info = state.scheduler().get(&id).map_err(engine_error)?;
    Ok((StatusCode::CREATED, Json(state.view(info, DEFAULT_NEXT))).into_response())
}

async fn update(
    State(state): State<JobsState>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = valid_id(&id)?;
    let mut spec = job_from_body(&body, Some(&id))?;
    {
        let _guard = state.inner.control.lock().await;
        let current = state.scheduler().get(&id).map_err(engine_error)?;
        if state.is_file_owned(&id) {
            return Err(file_owned(&id));
        }
        spec.paused = current.spec.paused;
        if let Some(cluster) = state.cluster() {
            store_in_cluster(cluster.as_ref(), spec).await?;
        } else {
            state.scheduler().update(spec).await.map_err(engine_error)?;
        }
    }
    tracing::info!(job_id = %id, "job updated through the API");
    let info = state.scheduler().get(&id).map_err(engine_error)?;
    Ok(Json(state.view(info, DEFAULT_NEXT)).into_response())
}

async fn delete(
    State(state): State<JobsState>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let id = valid_id(&id)?;
    {
        let _guard = state.inner.control.lock().await;
        state.scheduler().get(&id).map_err(engine_error)?;
        if state.is_file_owned(&id) {
            return Err(file_owned(&id));
        }
        if let Some(cluster) = state.cluster() {
            cluster.remove(&id).await.map_err(cluster_error)?;
        } else {
            state.scheduler().remove(&id).await.map_err(engine_error)?;
        }
    }
    tracing::info!(job_id = %id, "job deleted through the API");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn pause(
    State(state): State<JobsState>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let id = valid_id(&id)?;
    set_paused(&state, &id, true).await?;
    let info = state.scheduler().get(&id).map_err(engine_error)?;
    Ok(Json(state.view(info, DEFAULT_NEXT)).into_response())
}

async fn resume(
    State(state): State<JobsState>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let id = valid_id(&id)?;
    set_paused(&state, &id, false).await?;
    let info = state.scheduler().get(&id).map_err(engine_error)?;
    Ok(Json(state.view(info, DEFAULT_NEXT)).into_response())
}

/// Pauses or resumes a job: on this node, or for the whole cluster.
async fn set_paused(state: &JobsState, id: &JobId, paused: bool) -> Result<(), ApiError> {
    let Some(cluster) = state.cluster() else {
        return if paused {
            state.scheduler().pause(id).await.map_err(engine_error)
        } else {
            state.scheduler().resume(id).await.map_err(engine_error)
        };
    };
    let _guard = state.inner.control.lock().await;
    let mut spec = state.scheduler().get(id).map_err(engine_error)?.spec;
    if spec.paused != paused {
        spec.paused = paused;
        cluster.store(spec).await.map_err(cluster_error)?;
    }
    Ok(())
}

/// Validates `spec` (the scheduler does not see it first in cluster mode) and stores
/// it in the cluster.
async fn store_in_cluster(cluster: &dyn ClusterDefinitions, spec: JobSpec) -> Result<(), ApiError> {
    spec.validate().map_err(|source| {
        engine_error(EngineError::Spec {
            id: spec.id.clone(),
            source,
        })
    })?;
    cluster.store(spec).await.map_err(cluster_error)
}

fn cluster_error(error: ClusterWriteError) -> ApiError {
    match error {
        ClusterWriteError::Invalid { field, message } => {
            ApiError::new(StatusCode::BAD_REQUEST, message).with_field(field)
        }
        e @ ClusterWriteError::Unavailable(_) => {
            tracing::warn!(error = %e, "cluster write failed");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
    }
}

/// `POST …/trigger` body (optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerBody {
    /// Overlap decision for this fire instead of the job's policy.
    overlap: Option<serde_json::Value>,
}

async fn trigger(
    State(state): State<JobsState>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = valid_id(&id)?;
    let body: TriggerBody = if body.iter().all(u8::is_ascii_whitespace) {
        TriggerBody::default()
    } else {
        parse_json(&body)?
    };
    let overlap = match body.overlap {
        None => None,
        Some(v) => Some(
            serde_json::from_value::<OverlapPolicy>(v.clone()).map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "{v} is not an overlap policy: use \"allow\", \"skip\", \"buffer_one\", \
                     {{\"buffer_all\": {{\"max\": N}}}}, \"cancel_previous\" or \
                     \"terminate_previous\""
                    ),
                )
                .with_field("overlap")
            })?,
        ),
    };
    let outcome = state
        .scheduler()
        .trigger_now(&id, overlap)
        .map_err(engine_error)?;
    let body = match outcome {
        TriggerOutcome::Started(run_id) => json!({"outcome": "started", "run_id": run_id}),
        TriggerOutcome::Buffered => json!({"outcome": "buffered"}),
        TriggerOutcome::Skipped => json!({"outcome": "skipped"}),
    };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// `POST …/backfill` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackfillBody {
    from: String,
    to: String,
}

async fn backfill(
    State(state): State<JobsState>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = valid_id(&id)?;
    let body: BackfillBody = parse_json(&body)?;
    let instant = |text: &str, field: &str| {
        text.parse::<Timestamp>().map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("`{text}` is not an RFC 3339 instant: {e}"),
            )
            .with_field(field)
        })
    };
    let from = instant(&body.from, "from")?;
    let to = instant(&body.to, "to")?;
    let report = state
        .scheduler()
        .backfill(&id, from, to)
        .await
        .map_err(engine_error)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"queued": report.queued, "already_recorded": report.already_recorded})),
    )
        .into_response())
}

async fn runs(
    State(state): State<JobsState>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let id = valid_id(&id)?;
    let limit = count_param(q.limit.as_deref(), "limit", DEFAULT_RUNS)?;
    state.scheduler().get(&id).map_err(engine_error)?;
    let runs: Vec<RunRecord> = state
        .scheduler()
        .runs(&id, limit)
        .await
        .map_err(engine_error)?;
    Ok(Json(json!({ "runs": runs })).into_response())
}

/// The OpenAPI document of the jobs API.
const OPENAPI: &str = include_str!("jobs_openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn healthz(State(state): State<JobsState>) -> Response {
    match state.cluster() {
        Some(cluster) => Json(json!({"status": "ok", "cluster": cluster.health()})).into_response(),
        None => Json(json!({"status": "ok"})).into_response(),
    }
}

async fn metrics(State(state): State<JobsState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render_metrics(&state),
    )
        .into_response()
}

/// The Prometheus text exposition of the scheduler's metrics.
fn render_metrics(state: &JobsState) -> String {
    let m = state.scheduler().metrics();
    let jobs = state.scheduler().list();
    let paused = jobs.iter().filter(|j| j.spec.paused).count();
    let mut out = String::new();
    let counters: [(&str, &str, u64); 14] = [
        (
            "fires_total",
            "Fires that came due (run, buffered, skipped or missed).",
            m.fires,
        ),
        (
            "runs_started_total",
            "Runs that started their first attempt.",
            m.runs_started,
        ),
        ("retries_total", "Retry attempts made.", m.retries),
        (
            "missed_total",
            "Fires not run because they were missed (downtime, pause, late wake).",
            m.missed,
        ),
        (
            "skipped_total",
            "Fires not run because of the overlap policy.",
            m.skipped,
        ),
        (
            "not_claimed_total",
            "Fires whose claim was refused (already claimed).",
            m.not_claimed,
        ),
        (
            "duplicates_total",
            "Fires already in the ledger (not run again).",
            m.duplicates,
        ),
        (
            "store_errors_total",
            "Ledger writes that failed.",
            m.store_errors,
        ),
        (
            "timer_dispatched_total",
            "Timer expiries dispatched to the fire pool.",
            m.timer_pool.dispatched,
        ),
        (
            "timer_queued_total",
            "Timer expiries that waited for a fire-pool worker.",
            m.timer_pool.queued,
        ),
        (
            "timer_dropped_total",
            "Timer expiries dropped by the fire pool.",
            m.timer_pool.dropped,
        ),
        (
            "timer_completed_total",
            "Timer expiries handled by the fire pool.",
            m.timer_pool.completed,
        ),
        ("running", "Runs going now.", m.running),
        (
            "pool_waiting",
            "Runs waiting for a permit of their named pool.",
            m.pool_waiting,
        ),
    ];
    for (name, help, value) in counters {
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        let _ = writeln!(out, "# HELP sundial_scheduler_{name} {help}");
        let _ = writeln!(out, "# TYPE sundial_scheduler_{name} {kind}");
        let _ = writeln!(out, "sundial_scheduler_{name} {value}");
    }
    let _ = writeln!(
        out,
        "# HELP sundial_scheduler_runs_finished_total Runs that ended, by outcome."
    );
    let _ = writeln!(out, "# TYPE sundial_scheduler_runs_finished_total counter");
    for (outcome, value) in [
        ("succeeded", m.runs_succeeded),
        ("failed", m.runs_failed),
        ("timed_out", m.runs_timed_out),
        ("cancelled", m.runs_cancelled),
        ("lost", m.runs_lost),
    ] {
        let _ = writeln!(
            out,
            "sundial_scheduler_runs_finished_total{{outcome=\"{outcome}\"}} {value}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP sundial_scheduler_jobs Jobs in the scheduler, by state."
    );
    let _ = writeln!(out, "# TYPE sundial_scheduler_jobs gauge");
    let _ = writeln!(
        out,
        "sundial_scheduler_jobs{{state=\"active\"}} {}",
        jobs.len() - paused
    );
    let _ = writeln!(out, "sundial_scheduler_jobs{{state=\"paused\"}} {paused}");
    histogram(
        &mut out,
        "lateness_seconds",
        "Nominal fire instant to the start of the first attempt.",
        &m.lateness,
    );
    histogram(
        &mut out,
        "run_duration_seconds",
        "Run durations, first attempt start to end.",
        &m.duration,
    );
    if let Some(cluster) = state.cluster() {
        out.push_str(&cluster.metrics());
    }
    out
}

fn histogram(out: &mut String, name: &str, help: &str, h: &HistogramSnapshot) {
    let _ = writeln!(out, "# HELP sundial_scheduler_{name} {help}");
    let _ = writeln!(out, "# TYPE sundial_scheduler_{name} histogram");
    for (bound, count) in &h.buckets {
        let _ = writeln!(
            out,
            "sundial_scheduler_{name}_bucket{{le=\"{bound}\"}} {count}"
        );
    }
    let _ = writeln!(
        out,
        "sundial_scheduler_{name}_bucket{{le=\"+Inf\"}} {}",
        h.count
    );
    let _ = writeln!(out, "sundial_scheduler_{name}_sum {}", h.sum_seconds);
    let _ = writeln!(out, "sundial_scheduler_{name}_count {}", h.count);
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    async fn call(
        app: &Router,
        method: &str,
        uri: &str,
        body: &str,
    ) -> (StatusCode, serde_json::Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned()))
            .expect("request");
        let response = app.clone().oneshot(request).await.expect("answer");
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let value = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| json!({"text": String::from_utf8_lossy(&bytes)}))
        };
        (status, value)
    }

    fn file_job(id: &str, every: &str) -> JobSpec {
        let text = format!("[[job]]\nid = \"{id}\"\nevery = \"{every}\"\ncommand = [\"true\"]\n");
        let defs = jobs_file::parse(Path::new("jobs.toml"), &text, Timestamp::now()).expect("file");
        JobSpec::from_definition(&defs[0])
    }

    #[tokio::test]
    async fn create_get_pause_resume_delete_round_trip() {
        let state = JobsState::new(Scheduler::builder().build(), []);
        state.scheduler().start().await.expect("start");
        let app = jobs_router(state.clone());
        let (status, body) = call(
            &app,
            "POST",
            "/api/v1/jobs",
            r#"{"id": "hourly", "cron": "0 * * * *", "timezone": "Europe/Berlin", "command": ["true"]}"#,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["owner"], "api");
        assert_eq!(body["next_fires"].as_array().expect("fires").len(), 5);
        let (status, body) = call(&app, "POST", "/api/v1/jobs/hourly/pause", "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["paused"], true);
        assert!(body["next_fires"].as_array().expect("fires").is_empty() || body["paused"] == true);
        let (status, body) = call(&app, "POST", "/api/v1/jobs/hourly/resume", "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["paused"], false);
        let (status, body) = call(&app, "GET", "/api/v1/jobs", "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["jobs"][0]["id"], "hourly");
        let (status, _) = call(&app, "DELETE", "/api/v1/jobs/hourly", "").await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, body) = call(&app, "GET", "/api/v1/jobs/hourly", "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"], "no job `hourly`");
        state
            .scheduler()
            .shutdown(std::time::Duration::from_secs(1))
            .await;
    }

    #[tokio::test]
    async fn bad_input_names_the_field() {
        let state = JobsState::new(Scheduler::builder().build(), []);
        let app = jobs_router(state.clone());
        let cases = [
            (
                r#"{"id": "a", "cron": "61 * * * *", "command": ["true"]}"#,
                "cron",
            ),
            (
                r#"{"id": "a", "every": "soon", "command": ["true"]}"#,
                "every",
            ),
            (r#"{"id": "a b", "every": "1s", "command": ["true"]}"#, "id"),
            (
                r#"{"id": "a", "every": "1s", "command": ["true"], "retries": 3}"#,
                "retries",
            ),
            (
                r#"{"id": "a", "every": "1s", "command": ["true"], "overlap": "never"}"#,
                "overlap",
            ),
            (r#"{"id": "a", "every": "1s", "command": null}"#, "command"),
        ];
        for (body, field) in cases {
            let (status, answer) = call(&app, "POST", "/api/v1/jobs", body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
            assert_eq!(answer["field"], field, "{body}: {answer}");
        }
        let (status, answer) = call(&app, "POST", "/api/v1/jobs", "{\"id\": ").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(answer["line"], 1, "{answer}");
        let (status, _) = call(&app, "POST", "/api/v1/jobs/nope/trigger", "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = call(&app, "GET", "/api/v1/jobs/nope/runs", "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, answer) = call(&app, "GET", "/api/v1/jobs?next=0", "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(answer["field"], "next");
    }

    #[tokio::test]
    async fn every_documented_operation_is_served() {
        let state = JobsState::new(Scheduler::builder().build(), []);
        let app = jobs_router(state);
        let (status, doc) = call(&app, "GET", "/api/openapi.json", "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().expect("paths");
        let mut operations = 0;
        for (path, item) in paths {
            for (method, _) in item.as_object().expect("path item") {
                if method == "parameters" {
                    continue;
                }
                operations += 1;
                let uri = path.replace("{id}", "nope");
                let method = method.to_ascii_uppercase();
                let (status, answer) = call(&app, &method, &uri, "").await;
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                if status == StatusCode::NOT_FOUND {
                    // The handler's answer, not the router's.
                    assert_eq!(answer["error"], "no job `nope`", "{method} {path}");
                }
            }
        }
        assert_eq!(operations, 13);
    }

    #[tokio::test]
    async fn file_reload_keeps_api_jobs_and_guards_file_jobs() {
        let state = JobsState::new(Scheduler::builder().build(), [JobId::new("gone")]);
        state.scheduler().start().await.expect("start");
        // A job the previous file owned, left in the store while the daemon was down.
        state
            .scheduler()
            .add(file_job("gone", "1h"))
            .await
            .expect("add");
        let app = jobs_router(state.clone());
        let report = state
            .apply_file(vec![file_job("a", "1h"), file_job("b", "1h")])
            .await
            .expect("apply");
        assert_eq!(report.added, [JobId::new("a"), JobId::new("b")]);
        assert_eq!(report.removed, [JobId::new("gone")]);
        let (status, _) = call(
            &app,
            "POST",
            "/api/v1/jobs",
            r#"{"id": "api", "every": "1h", "command": ["true"]}"#,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, answer) = call(&app, "DELETE", "/api/v1/jobs/a", "").await;
        assert_eq!(status, StatusCode::CONFLICT, "{answer}");
        let (status, _) = call(
            &app,
            "PUT",
            "/api/v1/jobs/a",
            r#"{"every": "2h", "command": ["true"]}"#,
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT);
        let (status, answer) = call(
            &app,
            "PUT",
            "/api/v1/jobs/api",
            r#"{"id": "other", "every": "2h", "command": ["true"]}"#,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(answer["field"], "id");
        // The new file drops `b`, keeps `a` and leaves the API job alone.
        let report = state
            .apply_file(vec![file_job("a", "1h")])
            .await
            .expect("apply");
        assert_eq!(report.removed, [JobId::new("b")]);
        let ids: Vec<String> = state
            .scheduler()
            .list()
            .into_iter()
            .map(|j| j.spec.id.to_string())
            .collect();
        assert_eq!(ids, ["a", "api"]);
        assert_eq!(state.file_ids(), [JobId::new("a")]);
        let (_, body) = call(&app, "GET", "/metrics", "").await;
        let text = body["text"].as_str().expect("text");
        assert!(
            text.contains("sundial_scheduler_jobs{state=\"active\"} 2"),
            "{text}"
        );
        state
            .scheduler()
            .shutdown(std::time::Duration::from_secs(1))
            .await;
    }
}
