//! The members: who is alive, who claims, and how far this node's clock is off.
//!
//! Every node publishes a [`NodeRecord`] with its wall clock on its session lease.
//! This task lists `nodes/`, then watches it. A record received is a clock sample: the
//! sender's wall clock minus this node's at receipt (on one host or a LAN the watch
//! delivers within milliseconds, far below the skew bound). This node's skew is
//! its own clock minus the median of all members' (itself at 0); beyond
//! `max_clock_skew` the node stops claiming and says so in its record, so peers stop
//! treating it as a preferred owner. A member whose key is deleted (lease expired or
//! revoked) wakes housekeeping.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use etcd_client::{EventType, GetOptions, KeyValue, WatchOptions};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::backoff;
use crate::coordinator::{CoordinatorShared, Member};

/// What `nodes/<node>` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The node id.
    pub node: String,
    /// Its session lease (its incarnation).
    pub lease: i64,
    /// Its wall clock when it wrote this, Unix milliseconds.
    pub wall_ms: i64,
    /// Whether it claims fires.
    pub claiming: bool,
    /// Its clock minus the members' median as it measured, in milliseconds.
    pub skew_ms: Option<i64>,
    /// Its Sundial version.
    pub version: String,
}

/// The median of `values` (sorted in place; the mean of the middle two when even).
pub(crate) fn median(values: &mut [i64]) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        i64::midpoint(values[mid - 1], values[mid])
    })
}

/// Whether the node `me` may claim: its clock is within `bound` of the members'
/// median, or no member's is and `me` has the smallest id (with two nodes, or clocks
/// all over the place, someone must keep running the fires, and every node agrees on
/// who from the same samples). `offsets` are the other members' clocks minus `me`'s.
pub(crate) fn may_claim(me: &str, offsets: &[(&str, i64)], bound: i64) -> (Option<i64>, bool) {
    if offsets.is_empty() {
        return (None, true);
    }
    let mut all: Vec<i64> = offsets.iter().map(|(_, o)| *o).collect();
    all.push(0);
    let median = median(&mut all).unwrap_or(0);
    let skew = -median;
    if skew.abs() <= bound {
        return (Some(skew), true);
    }
    let anyone_within = offsets.iter().any(|(_, o)| (o - median).abs() <= bound);
    let smallest = offsets.iter().all(|(id, _)| me < *id);
    (Some(skew), !anyone_within && smallest)
}

fn recompute_skew(shared: &CoordinatorShared) {
    let members = shared
        .members
        .read()
        .unwrap_or_else(PoisonError::into_inner);
    let me = shared.node_id();
    let offsets: Vec<(&str, i64)> = members
        .iter()
        .filter(|(id, _)| id.as_str() != me)
        .map(|(id, m)| (id.as_str(), m.offset_ms))
        .collect();
    let bound = i64::try_from(shared.config.max_clock_skew.as_millis()).unwrap_or(i64::MAX);
    let (skew, ok) = may_claim(me, &offsets, bound);
    drop(members);
    let was = shared.skew_ok.swap(ok, Ordering::Relaxed);
    if was != ok {
        if ok {
            tracing::info!(skew_ms = skew, "clock back within bounds: claiming again");
        } else {
            tracing::error!(
                skew_ms = skew,
                bound_ms = bound,
                "clock too far from the members' median: not claiming fires"
            );
        }
    }
    *shared
        .skew_ms
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = skew;
}

fn apply_record(shared: &CoordinatorShared, kv: &KeyValue) {
    let Ok(record) = serde_json::from_slice::<NodeRecord>(kv.value()) else {
        tracing::warn!(key = %String::from_utf8_lossy(kv.key()), "unreadable node record ignored");
        return;
    };
    let now = shared.config.clock.now().as_millisecond();
    let member = Member {
        lease: record.lease,
        claiming: record.claiming,
        offset_ms: record.wall_ms - now,
    };
    shared
        .members
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(record.node, member);
}

/// Lists and watches the members until `stop`.
pub(crate) async fn run(shared: Arc<CoordinatorShared>, stop: CancellationToken) {
    let prefix = shared.keys.nodes();
    let mut attempt = 0u32;
    while !stop.is_cancelled() {
        let listed = shared
            .etcd
            .call(
                "list nodes",
                Some(Instant::now() + Duration::from_secs(5)),
                |mut c| {
                    let prefix = prefix.clone();
                    async move { c.get(prefix, Some(GetOptions::new().with_prefix())).await }
                },
            )
            .await;
        let resp = match listed {
            Ok(resp) => resp,
            Err(e) => {
                attempt += 1;
                tracing::debug!(error = %e, "cannot list the members");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff(attempt)) => continue,
                }
            }
        };
        attempt = 0;
        let revision = resp.header().map_or(0, |h| h.revision());
        {
            let mut members = shared
                .members
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let before: Vec<String> = members.keys().cloned().collect();
            members.clear();
            drop(members);
            for kv in resp.kvs() {
                apply_record(&shared, kv);
            }
            let members = shared
                .members
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            if before.iter().any(|id| !members.contains_key(id)) {
                shared.member_left.notify_one();
            }
        }
        recompute_skew(&shared);
        watch(&shared, &prefix, revision + 1, &stop).await;
    }
}

/// Follows `nodes/` from `start` until the watch breaks (then the caller re-lists).
async fn watch(shared: &CoordinatorShared, prefix: &str, start: i64, stop: &CancellationToken) {
    let (_, mut client) = shared.etcd.client();
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(start)
        .with_progress_notify();
    let opened =
        tokio::time::timeout(Duration::from_secs(2), client.watch(prefix, Some(options))).await;
    let Ok(Ok(mut stream)) = opened else {
        tokio::time::sleep(Duration::from_millis(200)).await;
        return;
    };
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => return,
            m = stream.message() => m,
        };
        let Ok(Some(resp)) = message else { return };
        if resp.canceled() || resp.compact_revision() > 0 {
            return;
        }
        let mut left = false;
        for event in resp.events() {
            let Some(kv) = event.kv() else { continue };
            match event.event_type() {
                EventType::Put => apply_record(shared, kv),
                EventType::Delete => {
                    if let Some(node) = shared.keys.child(prefix, kv.key()) {
                        shared
                            .members
                            .write()
                            .unwrap_or_else(PoisonError::into_inner)
                            .remove(node);
                        tracing::info!(node_id = node, "member left the cluster");
                        left = true;
                    }
                }
            }
        }
        if !resp.events().is_empty() {
            recompute_skew(shared);
        }
        if left {
            shared.member_left.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_off_the_median_stops_and_someone_always_claims() {
        // +700, -400, 0: only the fast node stops.
        assert_eq!(
            may_claim("fast", &[("slow", -1100), ("exact", -700)], 500),
            (Some(700), false)
        );
        assert_eq!(
            may_claim("slow", &[("fast", 1100), ("exact", 400)], 500),
            (Some(-400), true)
        );
        assert_eq!(
            may_claim("exact", &[("fast", 700), ("slow", -400)], 500),
            (Some(0), true)
        );
        // Two nodes 1.2 s apart: nobody is within the bound of the median; the
        // smallest id keeps claiming, and both agree.
        assert_eq!(may_claim("a", &[("b", 1200)], 500), (Some(-600), true));
        assert_eq!(may_claim("b", &[("a", -1200)], 500), (Some(600), false));
        // Alone: always.
        assert_eq!(may_claim("solo", &[], 500), (None, true));
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [0, -1100, -700]), Some(-700));
        assert_eq!(median(&mut [0, 700]), Some(350));
        assert_eq!(median(&mut [5]), Some(5));
    }
}
