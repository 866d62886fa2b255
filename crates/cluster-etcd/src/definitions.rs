//! Job definitions in etcd (`jobs/<id>`), and keeping a node's scheduler equal to them.
//!
//! [`apply_definitions`] writes a set of specs (a jobs file, or one job from the REST
//! API): each put is guarded by the revision it read, so two writers cannot silently
//! overwrite each other; an unchanged spec is not written (its revision, which claims
//! compare, does not move); with `prune`, definitions of the same source that the set
//! no longer names are deleted. A stored job's `paused` flag is kept by file applies,
//! so a pause made through the API survives a reload of the file.
//!
//! [`sync`] lists `jobs/`, reconciles the scheduler with it, then watches from the
//! list's revision + 1 (with progress notifications). A compacted or cancelled watch,
//! a broken stream and a periodic timer (`reconcile_interval`, for a watch that died
//! silently) all lead back to list-and-reconcile. Ordering that keeps claims honest:
//! a removal is recorded before the scheduler drops the job (its fires are refused at
//! once); an update is recorded after the scheduler re-armed it (a fire of the old
//! schedule still carries the old revision, and etcd refuses it).

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use etcd_client::{Compare, CompareOp, EventType, GetOptions, KeyValue, Txn, TxnOp, WatchOptions};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sundial_scheduler::engine::{EngineError, Scheduler};
use sundial_scheduler::job::{JobId, JobSpec, TriggerKindSpec};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ClusterError;
use crate::client::{Etcd, backoff};
use crate::coordinator::{CoordinatorShared, Definition};
use crate::keys::Keys;

/// Who wrote a stored definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefinitionSource {
    /// A jobs file (`sundial job apply`, or `sundial run --jobs` in cluster mode).
    File,
    /// The REST API.
    Api,
}

/// What `jobs/<id>` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredDefinition {
    /// The job.
    pub spec: JobSpec,
    /// Who wrote it.
    pub source: DefinitionSource,
    /// When.
    pub updated_at: Timestamp,
    /// By which node or tool.
    #[serde(default)]
    pub updated_by: String,
}

/// What [`apply_definitions`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApplyReport {
    /// Jobs created.
    pub added: Vec<String>,
    /// Jobs whose definition changed.
    pub updated: Vec<String>,
    /// Jobs deleted (with `prune`).
    pub removed: Vec<String>,
    /// Jobs left as they were.
    pub unchanged: Vec<String>,
    /// etcd's revision after the last write (0 when nothing was written).
    pub revision: i64,
}

type Listed = (i64, BTreeMap<String, (StoredDefinition, i64)>);

async fn list(etcd: &Etcd, keys: &Keys) -> Result<Listed, ClusterError> {
    let prefix = keys.jobs();
    let resp = etcd
        .call(
            "list jobs",
            Some(Instant::now() + Duration::from_secs(5)),
            |mut c| {
                let prefix = prefix.clone();
                async move { c.get(prefix, Some(GetOptions::new().with_prefix())).await }
            },
        )
        .await?;
    let mut out = BTreeMap::new();
    for kv in resp.kvs() {
        let (id, def) = decode(keys, kv)?;
        out.insert(id, (def, kv.mod_revision()));
    }
    Ok((resp.header().map_or(0, |h| h.revision()), out))
}

fn decode(keys: &Keys, kv: &KeyValue) -> Result<(String, StoredDefinition), ClusterError> {
    let key = String::from_utf8_lossy(kv.key()).into_owned();
    let id = keys
        .child(&keys.jobs(), kv.key())
        .unwrap_or_default()
        .to_owned();
    let def: StoredDefinition =
        serde_json::from_slice(kv.value()).map_err(|e| ClusterError::Corrupt {
            key,
            reason: e.to_string(),
        })?;
    Ok((id, def))
}

/// Writes `specs` as definitions from `source` (see the module docs); with `prune`,
/// deletes the definitions from `source` that `specs` does not name.
///
/// # Errors
///
/// An invalid spec (nothing written), etcd errors, or a definition changed by another
/// writer between the read and the write (run it again).
pub async fn apply_definitions(
    etcd: &Etcd,
    prefix: &str,
    specs: Vec<JobSpec>,
    source: DefinitionSource,
    prune: bool,
    by: &str,
) -> Result<ApplyReport, ClusterError> {
    for spec in &specs {
        spec.validate().map_err(|e| ClusterError::Definition {
            id: spec.id.to_string(),
            reason: e.to_string(),
        })?;
        if matches!(spec.trigger.kind, TriggerKindSpec::Delay { .. }) {
            return Err(ClusterError::Definition {
                id: spec.id.to_string(),
                reason: "a fixed-delay trigger (`delay`) cannot run in cluster mode: its \
                         next fire depends on when the previous run ended on one node; \
                         use `every` or `cron`"
                    .to_owned(),
            });
        }
    }
    let keys = Keys::new(prefix);
    let (_, stored) = list(etcd, &keys).await?;
    let mut report = ApplyReport::default();
    let mut ops: Vec<(String, Option<Vec<u8>>, i64)> = Vec::new();
    let named: std::collections::HashSet<String> = specs.iter().map(|s| s.id.to_string()).collect();
    for mut spec in specs {
        let id = spec.id.to_string();
        let seen = stored.get(&id);
        if let Some((def, _)) = seen
            && source == DefinitionSource::File
        {
            spec.paused = def.spec.paused;
        }
        // The API pauses and resumes file jobs; they stay the file's.
        let source = match seen {
            Some((def, _)) if source == DefinitionSource::Api => def.source,
            _ => source,
        };
        match seen {
            // Same definition up to anchors (the phase of an `every` loaded at another
            // instant): keep the stored one, so every node keeps the same lattice.
            Some((def, _)) if def.spec.same_definition(&spec) && def.spec.paused == spec.paused => {
                report.unchanged.push(id);
                continue;
            }
            Some(_) => report.updated.push(id.clone()),
            None => report.added.push(id.clone()),
        }
        let def = StoredDefinition {
            spec,
            source,
            updated_at: Timestamp::now(),
            updated_by: by.to_owned(),
        };
        let value = serde_json::to_vec(&def).map_err(|e| ClusterError::Definition {
            id: id.clone(),
            reason: e.to_string(),
        })?;
        ops.push((id, Some(value), seen.map_or(0, |(_, rev)| *rev)));
    }
    if prune {
        for (id, (def, rev)) in &stored {
            if def.source == source && !named.contains(id) {
                report.removed.push(id.clone());
                ops.push((id.clone(), None, *rev));
            }
        }
    }
    for (id, value, rev) in ops {
        let key = keys.job(&id);
        let guard = if rev == 0 {
            Compare::create_revision(key.clone(), CompareOp::Equal, 0)
        } else {
            Compare::mod_revision(key.clone(), CompareOp::Equal, rev)
        };
        let op = match value {
            Some(value) => TxnOp::put(key, value, None),
            None => TxnOp::delete(key, None),
        };
        let txn = Txn::new().when([guard]).and_then([op]);
        let resp = etcd
            .txn(
                "write job",
                Some(Instant::now() + Duration::from_secs(5)),
                txn,
            )
            .await?;
        if !resp.succeeded() {
            return Err(ClusterError::Definition {
                id,
                reason: "changed by another writer meanwhile; apply again".to_owned(),
            });
        }
        report.revision = resp.header().map_or(report.revision, |h| h.revision());
    }
    Ok(report)
}

/// Deletes the definition of `id`; etcd's revision after it, or `None` if there
/// was none.
///
/// # Errors
///
/// etcd errors.
pub async fn delete_definition(
    etcd: &Etcd,
    prefix: &str,
    id: &str,
) -> Result<Option<i64>, ClusterError> {
    let key = Keys::new(prefix).job(id);
    let resp = etcd
        .call(
            "delete job",
            Some(Instant::now() + Duration::from_secs(5)),
            |mut c| {
                let key = key.clone();
                async move { c.delete(key, None).await }
            },
        )
        .await?;
    Ok((resp.deleted() > 0).then(|| resp.header().map_or(0, |h| h.revision())))
}

fn record(shared: &CoordinatorShared, id: &str, definition: Definition) {
    shared
        .definitions
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(id.to_owned(), definition);
}

/// Makes the scheduler equal to `stored`.
async fn reconcile(
    shared: &CoordinatorShared,
    scheduler: &Scheduler,
    stored: &BTreeMap<String, (StoredDefinition, i64)>,
) {
    for info in scheduler.list() {
        let id = info.spec.id.as_str();
        if !stored.contains_key(id) {
            record(shared, id, Definition::Removed);
        }
    }
    let desired: Vec<JobSpec> = stored
        .values()
        .filter(|(def, _)| {
            let ok = def.spec.validate().is_ok();
            if !ok {
                tracing::error!(job_id = %def.spec.id, "stored job definition does not validate; not scheduled");
            }
            ok
        })
        .map(|(def, _)| def.spec.clone())
        .collect();
    match scheduler.reconcile(desired).await {
        Ok(report) => tracing::debug!(?report, "job definitions reconciled"),
        Err(e) => tracing::error!(error = %e, "cannot apply the stored job definitions"),
    }
    for (id, (_, rev)) in stored {
        record(shared, id, Definition::Stored(*rev));
    }
}

/// Applies one watched change.
async fn apply_event(
    shared: &CoordinatorShared,
    scheduler: &Scheduler,
    kind: EventType,
    kv: &KeyValue,
) {
    let keys = &shared.keys;
    let Some(id) = keys.child(&keys.jobs(), kv.key()).map(str::to_owned) else {
        return;
    };
    let job = JobId::new(&id);
    match kind {
        EventType::Delete => {
            record(shared, &id, Definition::Removed);
            match scheduler.remove(&job).await {
                Ok(()) | Err(EngineError::NotFound(_)) => {}
                Err(e) => tracing::warn!(job_id = id, error = %e, "cannot remove the job"),
            }
            tracing::info!(job_id = id, "job definition deleted");
        }
        EventType::Put => {
            let def = match decode(keys, kv) {
                Ok((_, def)) => def,
                Err(e) => {
                    tracing::error!(error = %e, "job definition ignored");
                    return;
                }
            };
            let result = match scheduler.update(def.spec.clone()).await {
                Err(EngineError::NotFound(_)) => scheduler.add(def.spec).await,
                other => other,
            };
            match result {
                Ok(()) => {
                    record(shared, &id, Definition::Stored(kv.mod_revision()));
                    tracing::info!(
                        job_id = id,
                        revision = kv.mod_revision(),
                        "job definition applied"
                    );
                }
                Err(e) => tracing::error!(job_id = id, error = %e, "job definition not applied"),
            }
        }
    }
}

/// Keeps `scheduler` equal to the stored definitions until `stop`.
pub(crate) async fn sync(
    shared: Arc<CoordinatorShared>,
    scheduler: Scheduler,
    stop: CancellationToken,
) {
    let mut attempt = 0u32;
    while !stop.is_cancelled() {
        let (revision, stored) = match list(&shared.etcd, &shared.keys).await {
            Ok(listed) => listed,
            Err(e) => {
                attempt += 1;
                tracing::warn!(error = %e, "cannot list the job definitions");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff(attempt)) => continue,
                }
            }
        };
        attempt = 0;
        reconcile(&shared, &scheduler, &stored).await;
        shared.definitions_ready.send_replace(true);
        shared.applied_revision.send_if_modified(|r| {
            let moved = revision > *r;
            *r = (*r).max(revision);
            moved
        });
        follow(&shared, &scheduler, revision + 1, &stop).await;
    }
}

/// Watches `jobs/` from `start` until the watch breaks or it is time to re-list.
async fn follow(
    shared: &CoordinatorShared,
    scheduler: &Scheduler,
    start: i64,
    stop: &CancellationToken,
) {
    let prefix = shared.keys.jobs();
    let (_, mut client) = shared.etcd.client();
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(start)
        .with_progress_notify();
    let Ok(Ok(mut stream)) =
        tokio::time::timeout(Duration::from_secs(2), client.watch(prefix, Some(options))).await
    else {
        tokio::time::sleep(Duration::from_millis(200)).await;
        return;
    };
    let relist_at = Instant::now() + shared.config.reconcile_interval;
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(relist_at) => return,
            m = stream.message() => m,
        };
        let resp = match message {
            Ok(Some(resp)) => resp,
            Ok(None) | Err(_) => return,
        };
        if resp.compact_revision() > 0 {
            tracing::warn!(
                compacted = resp.compact_revision(),
                "job definitions watch fell behind a compaction: listing again"
            );
            return;
        }
        if resp.canceled() {
            return;
        }
        for event in resp.events() {
            if let Some(kv) = event.kv() {
                apply_event(shared, scheduler, event.event_type(), kv).await;
            }
        }
        if let Some(revision) = resp.header().map(|h| h.revision()) {
            shared.applied_revision.send_if_modified(|r| {
                let moved = revision > *r;
                *r = (*r).max(revision);
                moved
            });
        }
    }
}
