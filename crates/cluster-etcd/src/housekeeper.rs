//! Housekeeping: one elected node reaps fires lost with their node and collects old
//! fire keys; every node runs the fires offered again under `on_node_lost = retry`.
//!
//! The leader is whoever created `election` on its session lease (create-if-absent);
//! the key goes with that lease, and the others try again every half second. Nothing
//! here is on the firing path: a fire is claimed and run without the leader, and a
//! cluster without one only delays reaping and collection.
//!
//! **Reaping**: an in-flight key `inflight/N/J/T` whose lease is no longer the lease of
//! `nodes/N` belongs to a dead incarnation. Its fire key, if it still names that
//! incarnation, is rewritten to `lost` (`on_node_lost = fail`: at most once) or
//! `retry` (plus a `retries/J/T` key: at least once), in one transaction guarded by the
//! fire key's revision — the same revision the dead run's completion is guarded by, so
//! exactly one of the two wins.
//!
//! **Collection**: every minute, for each job, the watermark moves to
//! now − `fire_retention` (never past its oldest in-flight fire) and the fire keys
//! below it are deleted, in one transaction that only ever raises the watermark.
//! Claims compare the watermark, so a fire whose key was collected cannot be claimed
//! again by a node that wakes up late.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use etcd_client::{
    Compare, CompareOp, DeleteOptions, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions,
};
use jiff::Timestamp;
use sundial_scheduler::coordinator::LostClaim;
use sundial_scheduler::job::{FencingToken, Fire, JobId};
use sundial_scheduler::jobs_file::NodeLost;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::CallError;
use crate::coordinator::{CoordinatorShared, FireRecord, FireState};
use crate::keys;
use crate::members::NodeRecord;

fn soon() -> Option<Instant> {
    Some(Instant::now() + Duration::from_secs(3))
}

/// Campaigns for housekeeping and does it while leading, until `stop`.
pub(crate) async fn run(shared: Arc<CoordinatorShared>, stop: CancellationToken) {
    let mut last_collect: Option<Instant> = None;
    while !stop.is_cancelled() {
        let leading = match shared.live_lease() {
            Some(lease) => campaign(&shared, lease).await.unwrap_or(false),
            None => false,
        };
        let was = shared.leader.swap(leading, Ordering::Relaxed);
        if was != leading {
            tracing::info!(
                node_id = shared.node_id(),
                leading,
                "housekeeping leadership changed"
            );
        }
        if leading {
            if let Err(e) = reap(&shared).await {
                tracing::debug!(error = %e, "reaping lost fires failed; next round retries");
            }
            if last_collect.is_none_or(|t| t.elapsed() >= shared.config.collect_interval) {
                last_collect = Some(Instant::now());
                if let Err(e) = collect(&shared).await {
                    tracing::warn!(error = %e, "collecting old fire keys failed");
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = shared.member_left.notified() => {}
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
    shared.leader.store(false, Ordering::Relaxed);
}

/// Becomes or stays leader if the election key is free or already ours.
async fn campaign(shared: &CoordinatorShared, lease: i64) -> Result<bool, CallError> {
    let key = shared.keys.election();
    let node = shared.node_id().to_owned();
    let txn = Txn::new()
        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key.clone(),
            node.clone(),
            Some(PutOptions::new().with_lease(lease)),
        )])
        .or_else([TxnOp::get(key, None)]);
    let resp = shared.etcd.txn("campaign", soon(), txn).await?;
    if resp.succeeded() {
        return Ok(true);
    }
    Ok(resp.op_responses().into_iter().any(|op| match op {
        etcd_client::TxnOpResponse::Get(get) => get
            .kvs()
            .first()
            .is_some_and(|kv| kv.lease() == lease && kv.value() == node.as_bytes()),
        _ => false,
    }))
}

/// The current lease of every live node.
async fn live_leases(shared: &CoordinatorShared) -> Result<HashMap<String, i64>, CallError> {
    let prefix = shared.keys.nodes();
    let resp = shared
        .etcd
        .call("list nodes", soon(), |mut c| {
            let prefix = prefix.clone();
            async move { c.get(prefix, Some(GetOptions::new().with_prefix())).await }
        })
        .await?;
    Ok(resp
        .kvs()
        .iter()
        .filter_map(|kv| serde_json::from_slice::<NodeRecord>(kv.value()).ok())
        .map(|r| (r.node, r.lease))
        .collect())
}

/// Reaps the in-flight fires of dead incarnations.
async fn reap(shared: &CoordinatorShared) -> Result<(), CallError> {
    let prefix = shared.keys.inflight_all();
    let inflight = shared
        .etcd
        .call("list in-flight", soon(), |mut c| {
            let prefix = prefix.clone();
            async move { c.get(prefix, Some(GetOptions::new().with_prefix())).await }
        })
        .await?;
    if inflight.kvs().is_empty() {
        return Ok(());
    }
    let live = live_leases(shared).await?;
    for kv in inflight.kvs() {
        let Some((node, job, at)) = shared.keys.parse_inflight(kv.key()) else {
            continue;
        };
        let lease: i64 = std::str::from_utf8(kv.value())
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if live.get(&node) == Some(&lease) {
            continue;
        }
        reap_one(shared, kv.key(), kv.mod_revision(), &node, &job, at, lease).await?;
    }
    Ok(())
}

async fn reap_one(
    shared: &CoordinatorShared,
    inflight_key: &[u8],
    inflight_rev: i64,
    node: &str,
    job: &str,
    at: Timestamp,
    lease: i64,
) -> Result<(), CallError> {
    let k = &shared.keys;
    let fire_key = k.fire(job, at);
    let got = shared
        .etcd
        .call("read fire", soon(), |mut c| {
            let key = fire_key.clone();
            async move { c.get(key, None).await }
        })
        .await?;
    let fire_kv = got.kvs().first();
    let record = fire_kv.and_then(FireRecord::decode);
    let ours = record
        .as_ref()
        .is_some_and(|r| r.node == node && r.lease == lease && r.state == FireState::Claimed);
    let Some((fire_kv, mut record)) = fire_kv.zip(record).filter(|_| ours) else {
        // The fire moved on (released and collected, or reclaimed): the in-flight key
        // is stale. Delete it unless it changed meanwhile.
        let key = inflight_key.to_vec();
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                inflight_rev,
            )])
            .and_then([TxnOp::delete(key, None)]);
        shared.etcd.txn("drop stale in-flight", soon(), txn).await?;
        return Ok(());
    };
    let token = fire_kv.mod_revision();
    let retry = record.on_node_lost == NodeLost::Retry;
    record.state = if retry {
        FireState::Retry
    } else {
        FireState::Lost
    };
    let value = serde_json::to_vec(&record).unwrap_or_default();
    let mut ops = vec![
        TxnOp::put(fire_key.clone(), value, None),
        TxnOp::delete(inflight_key.to_vec(), None),
    ];
    if retry {
        ops.push(TxnOp::put(k.retry(job, at), "", None));
    }
    let txn = Txn::new()
        .when([Compare::mod_revision(fire_key, CompareOp::Equal, token)])
        .and_then(ops);
    let resp = shared.etcd.txn("reap", soon(), txn).await?;
    if resp.succeeded() {
        shared.counters.fires_reaped.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            job_id = job,
            nominal = %at,
            node_id = node,
            policy = if retry { "retry" } else { "fail" },
            "fire lost with its node"
        );
        shared
            .lost
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(LostClaim {
                fire: Fire {
                    job_id: JobId::new(job),
                    nominal: record.nominal,
                },
                node_id: node.to_owned(),
                token: FencingToken(token.unsigned_abs()),
            });
        shared.fires_lost.notify_one();
    }
    Ok(())
}

/// Moves each job's watermark and deletes the fire keys below it.
async fn collect(shared: &CoordinatorShared) -> Result<(), CallError> {
    let k = &shared.keys;
    let mut jobs: HashSet<String> = shared
        .definitions
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .keys()
        .cloned()
        .collect();
    if let Some(scheduler) = shared.scheduler.get() {
        jobs.extend(
            scheduler
                .list()
                .into_iter()
                .map(|j| j.spec.id.as_str().to_owned()),
        );
    }
    // The oldest in-flight fire per job bounds its watermark.
    let prefix = k.inflight_all();
    let inflight = shared
        .etcd
        .call("list in-flight", soon(), |mut c| {
            let prefix = prefix.clone();
            async move {
                c.get(
                    prefix,
                    Some(GetOptions::new().with_prefix().with_keys_only()),
                )
                .await
            }
        })
        .await?;
    let mut oldest: BTreeMap<String, Timestamp> = BTreeMap::new();
    for kv in inflight.kvs() {
        if let Some((_, job, at)) = k.parse_inflight(kv.key()) {
            let entry = oldest.entry(job).or_insert(at);
            *entry = (*entry).min(at);
        }
    }
    let retention = jiff::SignedDuration::try_from(shared.config.fire_retention)
        .unwrap_or(jiff::SignedDuration::from_hours(24));
    let now = shared.config.clock.now();
    for job in jobs {
        let mut mark = now.checked_sub(retention).unwrap_or(Timestamp::UNIX_EPOCH);
        if let Some(at) = oldest.get(&job) {
            mark = mark.min(
                at.checked_sub(jiff::SignedDuration::from_millis(1))
                    .unwrap_or(*at),
            );
        }
        let wm = k.watermark(&job);
        let padded = keys::instant(mark);
        let from = k.fires_of(&job);
        let txn = Txn::new()
            .when([Compare::value(wm.clone(), CompareOp::Less, padded.clone())])
            .and_then([
                TxnOp::put(wm.clone(), padded.clone(), None),
                TxnOp::delete(
                    from.clone(),
                    Some(DeleteOptions::new().with_range(format!("{from}{padded}"))),
                ),
            ]);
        let resp = shared.etcd.txn("collect fires", soon(), txn).await?;
        if resp.succeeded() {
            let deleted: i64 = resp
                .op_responses()
                .into_iter()
                .map(|op| match op {
                    etcd_client::TxnOpResponse::Delete(d) => d.deleted(),
                    _ => 0,
                })
                .sum();
            if deleted > 0 {
                tracing::info!(job_id = job, deleted, watermark = %mark, "old fire keys collected");
            }
        }
    }
    Ok(())
}

/// Runs fires offered again (`retries/J/T`) on this node: at once if it is the job's
/// preferred owner, else after the takeover delay if nobody took it. The claim decides.
pub(crate) async fn retries(shared: Arc<CoordinatorShared>, stop: CancellationToken) {
    let prefix = shared.keys.retries();
    while !stop.is_cancelled() {
        let listed = shared
            .etcd
            .call("list retries", soon(), |mut c| {
                let prefix = prefix.clone();
                async move { c.get(prefix, Some(GetOptions::new().with_prefix())).await }
            })
            .await;
        let Ok(resp) = listed else {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => continue,
            }
        };
        for kv in resp.kvs() {
            offer(&shared, kv.key());
        }
        let start = resp.header().map_or(0, |h| h.revision()) + 1;
        let (_, mut client) = shared.etcd.client();
        let options = WatchOptions::new().with_prefix().with_start_revision(start);
        let Ok(Ok(mut stream)) = tokio::time::timeout(
            Duration::from_secs(2),
            client.watch(prefix.clone(), Some(options)),
        )
        .await
        else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        loop {
            let message = tokio::select! {
                () = stop.cancelled() => return,
                m = stream.message() => m,
            };
            let Ok(Some(resp)) = message else { break };
            if resp.canceled() {
                break;
            }
            for event in resp.events() {
                if event.event_type() == EventType::Put
                    && let Some(kv) = event.kv()
                {
                    offer(&shared, kv.key());
                }
            }
        }
    }
}

fn offer(shared: &Arc<CoordinatorShared>, key: &[u8]) {
    let Some((job, at)) = shared.keys.parse_retry(key) else {
        return;
    };
    let Some(scheduler) = shared.scheduler.get().cloned() else {
        return;
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        if !shared.is_preferred(&job) {
            tokio::time::sleep(shared.config.takeover_delay).await;
        }
        let id = JobId::new(&job);
        match scheduler.backfill(&id, at, at).await {
            Ok(report) => {
                tracing::info!(job_id = job, nominal = %at, ?report, "lost fire offered again")
            }
            Err(e) => {
                tracing::warn!(job_id = job, nominal = %at, error = %e, "cannot run a lost fire again")
            }
        }
    });
}
