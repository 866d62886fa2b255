//! The aggregator loop: bus → [`Aggregator`] → store, with the consumer position
//! committed in the store's transaction.
//!
//! On start (and after any failure) the loop reads its position from the store, opens
//! the bus consumer there and drops the aggregator's caches, so what it applies next
//! follows exactly what the store holds. A failing batch is retried with back-off and
//! reported through [`Readiness`]; it is never skipped. When the admin API deletes
//! an app's data or the app, or changes its time zone, it does so between batches
//! (through [`Readiness::lock_app_changes`]) and the next batch starts from fresh
//! caches. Aggregators in other processes (`--role aggregate`) do not see that signal:
//! restart them after such changes (docs/security.md).

use std::sync::Arc;
use std::time::{Duration, Instant};

use sundial_analytics::aggregate::{AggregateStore, Aggregator};
use sundial_analytics::bus::Bus;
use tokio_util::sync::CancellationToken;

use crate::state::Readiness;

/// Tuning of the aggregator loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregatorSettings {
    /// Consumer name (the store keeps one position per name). Default `aggregator`.
    pub consumer: String,
    /// Most bus messages (requests) per batch. Default 2,000.
    pub max_messages: usize,
    /// How long to wait for the first message of a batch. Default 100 ms.
    pub wait: Duration,
    /// After a small batch (under a quarter of `max_messages`) that left little on the
    /// bus (under a quarter too), the next one is read no sooner than this after it:
    /// a steady stream of requests is then applied in batches of this much traffic,
    /// not in one transaction (and one `fsync`) per handful of messages. Aggregates
    /// trail the bus by up to this much more; an aggregator that lags behind does not
    /// wait. Default 50 ms; zero turns it off.
    pub linger: Duration,
}

impl Default for AggregatorSettings {
    fn default() -> Self {
        AggregatorSettings {
            consumer: "aggregator".to_owned(),
            max_messages: 2_000,
            wait: Duration::from_millis(100),
            linger: Duration::from_millis(50),
        }
    }
}

/// Runs the aggregator until `shutdown` is cancelled.
pub async fn run_aggregator(
    bus: Arc<dyn Bus>,
    store: Arc<dyn AggregateStore>,
    settings: AggregatorSettings,
    readiness: Arc<Readiness>,
    shutdown: CancellationToken,
) {
    let mut aggregator = Aggregator::new(settings.consumer.clone());
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        match run_once(
            &*bus,
            &*store,
            &mut aggregator,
            &settings,
            &readiness,
            &shutdown,
        )
        .await
        {
            Ok(()) => return,
            Err(e) => {
                tracing::error!(error = %e, "aggregator failed; retrying from the committed position");
                metrics::counter!("sundial_aggregate_failures_total").increment(1);
                readiness.set_aggregator(Err(e));
                aggregator.reset();
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

async fn run_once(
    bus: &dyn Bus,
    store: &dyn AggregateStore,
    aggregator: &mut Aggregator,
    settings: &AggregatorSettings,
    readiness: &Readiness,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let position = store
        .consumer_position(aggregator.consumer())
        .await
        .map_err(|e| e.to_string())?;
    let mut consumer = bus
        .consumer(aggregator.consumer(), position)
        .await
        .map_err(|e| e.to_string())?;
    readiness.set_aggregator(Ok(()));
    tracing::info!(position, bus = bus.kind(), "aggregator started");
    let mut next = position;
    let mut seen_changes = *readiness.lock_app_changes().await;
    let mut lag_checked = Instant::now() - Duration::from_secs(10);
    // When the last small batch that left little behind was read (see `linger`).
    let mut caught_up_at: Option<Instant> = None;
    let small = (settings.max_messages / 4).max(1);
    loop {
        if let Some(left) = caught_up_at.and_then(|at| settings.linger.checked_sub(at.elapsed())) {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(left) => {}
            }
        }
        let batch = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            batch = consumer.next_batch(settings.max_messages, settings.wait) => batch,
        }
        .map_err(|e| e.to_string())?;
        caught_up_at = None;
        if let Some(last) = batch.last() {
            let started = Instant::now();
            // App data changed by the admin API since the last batch: reload caches.
            let changes = readiness.lock_app_changes().await;
            if *changes != seen_changes {
                aggregator.reset();
                seen_changes = *changes;
            }
            let report = aggregator
                .apply(store, &batch)
                .await
                .map_err(|e| e.to_string())?;
            drop(changes);
            next = last.position + 1;
            consumer.commit(next).await.map_err(|e| e.to_string())?;
            metrics::histogram!("sundial_aggregate_batch_seconds")
                .record(started.elapsed().as_secs_f64());
            metrics::counter!("sundial_aggregate_messages_total").increment(report.messages as u64);
            metrics::counter!("sundial_aggregate_events_total").increment(report.events);
            metrics::counter!("sundial_aggregate_duplicates_total").increment(report.duplicates);
            metrics::counter!("sundial_aggregate_orphaned_total").increment(report.orphaned);
            metrics::gauge!("sundial_aggregate_position").set(next as f64);
            if batch.len() < small
                && !settings.linger.is_zero()
                && bus
                    .end_position()
                    .await
                    .is_ok_and(|end| end.saturating_sub(next) < small as u64)
            {
                caught_up_at = Some(started);
            }
        }
        if lag_checked.elapsed() >= Duration::from_secs(1) {
            lag_checked = Instant::now();
            if let Ok(end) = bus.end_position().await {
                metrics::gauge!("sundial_bus_lag_messages").set(end.saturating_sub(next) as f64);
            }
        }
    }
}
