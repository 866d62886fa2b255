//! The analytics maintenance jobs, run through `sundial-scheduler` beside the
//! aggregator: the **daily close-out** of every app.
//!
//! One job, `analytics.close-out`, fires on a cron schedule (default `10 * * * *`, UTC:
//! ten minutes past every hour) and once at start. Each pass looks at every app in its
//! own time zone: the days before today *there* have ended, so their unique-device sets
//! are rewritten as one row each (reads of ended days then decode one bitmap per set;
//! see `docs/benchmarks-metrics.md` for what that buys), and raw-event rows older than
//! the raw-data retention are deleted. Running hourly closes every zone's day out
//! within the hour after its midnight, whatever its offset (including :30 and :45).
//!
//! A pass is idempotent and safe beside a running aggregator (see
//! [`Store::close_out`]); a missed run (the process was down) is caught up once at
//! start. The job lives in an in-memory job store: it is this process's own
//! housekeeping, not a user's job, so it never appears in `sundial run`'s ledger.

use std::sync::Arc;
use std::time::Duration;

use sundial_analytics::Store;
use sundial_analytics::aggregate::day_and_hour;
use sundial_scheduler::coordinator::LocalCoordinator;
use sundial_scheduler::engine::{HandlerError, Scheduler};
use sundial_scheduler::job::{ActionSpec, JobSpec, TriggerKindSpec, TriggerSpec};
use sundial_scheduler::store::MemoryJobStore;

/// The close-out job's id and handler name.
pub const CLOSE_OUT_JOB: &str = "analytics.close-out";

/// Maintenance settings (the `[metrics]` configuration section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceSettings {
    /// When the close-out runs: a cron expression in UTC.
    pub close_out_cron: String,
    /// Days of raw events kept per app (counted back from today in the app's zone);
    /// `None` keeps them forever.
    pub raw_retention_days: Option<u32>,
}

impl Default for MaintenanceSettings {
    fn default() -> Self {
        MaintenanceSettings {
            close_out_cron: "10 * * * *".to_owned(),
            raw_retention_days: Some(400),
        }
    }
}

/// Why maintenance could not start.
#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    /// The scheduler refused the job (e.g. a bad cron expression).
    #[error("cannot schedule the close-out job: {0}")]
    Schedule(String),
}

/// One close-out pass over every app, at `now_ms`.
pub async fn close_out_all(
    store: &dyn Store,
    raw_retention_days: Option<u32>,
    now_ms: i64,
) -> Result<sundial_analytics::CloseOut, sundial_analytics::StoreError> {
    let mut total = sundial_analytics::CloseOut::default();
    for app in store.list_apps().await? {
        let tz = jiff::tz::TimeZone::get(&app.timezone).unwrap_or(jiff::tz::TimeZone::UTC);
        let today = day_and_hour(now_ms, &tz).0;
        let raw_before =
            raw_retention_days.map(|days| today - i32::try_from(days).unwrap_or(i32::MAX));
        let done = store.close_out(app.id, today, raw_before).await?;
        if done.sets_compacted > 0 || done.raw_rows_deleted > 0 {
            tracing::info!(
                app_id = app.id,
                sets = done.sets_compacted,
                rows = done.rows_removed,
                raw_rows = done.raw_rows_deleted,
                "close-out"
            );
        }
        total.sets_compacted += done.sets_compacted;
        total.rows_removed += done.rows_removed;
        total.raw_rows_deleted += done.raw_rows_deleted;
    }
    metrics::counter!("sundial_close_out_runs_total").increment(1);
    metrics::counter!("sundial_close_out_sets_compacted_total").increment(total.sets_compacted);
    metrics::counter!("sundial_raw_event_rows_deleted_total").increment(total.raw_rows_deleted);
    Ok(total)
}

/// Starts the maintenance scheduler (and a first close-out pass). Shut it down with
/// [`Scheduler::shutdown`].
pub async fn start_maintenance(
    store: Arc<dyn Store>,
    settings: MaintenanceSettings,
) -> Result<Scheduler, MaintenanceError> {
    start_maintenance_with(
        store,
        settings,
        "serve",
        Arc::new(LocalCoordinator::new("serve")),
    )
    .await
}

/// [`start_maintenance`] on node `node_id` with `coordinator`: with a cluster's
/// coordinator, each scheduled close-out runs on one node of the cluster (the pass at
/// start-up runs on every node that starts; it is idempotent).
pub async fn start_maintenance_with(
    store: Arc<dyn Store>,
    settings: MaintenanceSettings,
    node_id: &str,
    coordinator: Arc<dyn sundial_scheduler::coordinator::Coordinator>,
) -> Result<Scheduler, MaintenanceError> {
    let scheduler = Scheduler::builder()
        .node_id(node_id)
        .store(Arc::new(MemoryJobStore::new()))
        .coordinator(coordinator)
        .build();
    let retention = settings.raw_retention_days;
    scheduler.register_async(CLOSE_OUT_JOB, move |_ctx| {
        let store = store.clone();
        async move {
            let now = jiff::Timestamp::now().as_millisecond();
            close_out_all(&*store, retention, now)
                .await
                .map(|_| ())
                .map_err(|e| {
                    tracing::warn!(error = %e, "close-out failed; the next run retries");
                    HandlerError::msg(e.to_string())
                })
        }
    });
    scheduler
        .start()
        .await
        .map_err(|e| MaintenanceError::Schedule(e.to_string()))?;
    let spec = JobSpec::new(
        CLOSE_OUT_JOB,
        TriggerSpec {
            kind: TriggerKindSpec::Cron {
                expr: settings.close_out_cron.clone(),
                timezone: "UTC".to_owned(),
            },
            start: None,
            end: None,
            max_fires: None,
        },
        ActionSpec::handler(CLOSE_OUT_JOB),
    );
    scheduler
        .add(spec)
        .await
        .map_err(|e| MaintenanceError::Schedule(e.to_string()))?;
    // Catch up at start: whatever ended while the process was down.
    let id = CLOSE_OUT_JOB.into();
    if let Err(e) = scheduler.trigger_now(&id, None) {
        tracing::warn!(error = %e, "cannot run the first close-out");
    }
    Ok(scheduler)
}

/// How long [`Scheduler::shutdown`] waits for a running close-out pass.
pub const MAINTENANCE_GRACE: Duration = Duration::from_secs(10);
