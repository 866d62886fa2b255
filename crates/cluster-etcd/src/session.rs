//! The node's session: a lease that says the node is alive, and fail-stop.
//!
//! The node key `nodes/<node>` is put on the session lease, with the node's wall clock
//! (re-published every `clock_publish_interval`, which is how members measure skew).
//! Keep-alives go every TTL/4; each acknowledged one moves the session's deadline to
//! *the instant the keep-alive was sent* + TTL − margin, so the node gives the session
//! up before etcd can expire it, whatever the network delayed.
//!
//! When the deadline passes without an acknowledgement (etcd unreachable, the process
//! was paused, the lease was revoked), the node **fails stop**: the session is marked
//! gone (claims wait for a new one), every running run is aborted (their completions
//! would be fenced out anyway), and a new lease is granted as soon as etcd answers.
//! A new lease is a new incarnation: claims of the old one are reaped as lost.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use etcd_client::PutOptions;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ClusterError;
use crate::client::{CallError, backoff};
use crate::coordinator::{CoordinatorShared, SessionState};
use crate::members::NodeRecord;

fn ttl_secs(shared: &CoordinatorShared) -> i64 {
    i64::try_from(shared.config.session_ttl.as_secs().max(2)).unwrap_or(10)
}

/// The deadline for a keep-alive sent at `sent` and acknowledged with `ttl` seconds.
fn deadline(shared: &CoordinatorShared, sent: Instant, ttl: i64) -> Instant {
    let ttl = Duration::from_secs(ttl.max(0).unsigned_abs());
    sent + ttl.saturating_sub(shared.config.session_margin)
}

/// Puts the node key on `lease`.
async fn publish(shared: &CoordinatorShared, lease: i64, until: Instant) -> Result<(), CallError> {
    let record = NodeRecord {
        node: shared.node_id().to_owned(),
        lease,
        wall_ms: shared.config.clock.now().as_millisecond(),
        claiming: shared.claiming(),
        skew_ms: *shared
            .skew_ms
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let value = serde_json::to_vec(&record).unwrap_or_default();
    let key = shared.keys.node(shared.node_id());
    shared
        .etcd
        .call("publish node", Some(until), |mut c| {
            let (key, value) = (key.clone(), value.clone());
            async move {
                c.put(key, value, Some(PutOptions::new().with_lease(lease)))
                    .await
            }
        })
        .await
        .map(|_| ())
}

/// Grants a lease and publishes the node key on it; the new session state.
async fn open(shared: &CoordinatorShared, until: Instant) -> Result<SessionState, CallError> {
    let ttl = ttl_secs(shared);
    let sent = Instant::now();
    let grant = shared
        .etcd
        .call("grant lease", Some(until), |mut c| async move {
            c.lease_grant(ttl, None).await
        })
        .await?;
    let lease = grant.id();
    publish(shared, lease, until).await?;
    tracing::info!(node_id = shared.node_id(), lease, "cluster session opened");
    Ok(SessionState {
        lease: Some(lease),
        deadline: Some(deadline(shared, sent, grant.ttl())),
    })
}

/// The node record under this node's id, if any.
async fn read_record(shared: &CoordinatorShared) -> Result<Option<NodeRecord>, CallError> {
    let key = shared.keys.node(shared.node_id());
    let resp = shared
        .etcd
        .call(
            "read node",
            Some(Instant::now() + Duration::from_secs(5)),
            |mut c| {
                let key = key.clone();
                async move { c.get(key, None).await }
            },
        )
        .await?;
    Ok(resp
        .kvs()
        .first()
        .and_then(|kv| serde_json::from_slice(kv.value()).ok()))
}

/// Refuses to join when another live process publishes under this node id: two
/// processes with one id would take each other's in-flight fires for lost. A record
/// left by a dead process (its clock stops advancing) is taken over.
async fn check_unique(shared: &CoordinatorShared) -> Result<(), ClusterError> {
    let Some(first) = read_record(shared).await? else {
        return Ok(());
    };
    tokio::time::sleep(shared.config.clock_publish_interval * 2 + Duration::from_millis(200)).await;
    match read_record(shared).await? {
        Some(now) if now.lease == first.lease && now.wall_ms != first.wall_ms => {
            Err(ClusterError::Etcd(format!(
                "node id `{}` is in use by another live process (lease {:x}); give each \
                 process its own --node-id",
                shared.node_id(),
                now.lease
            )))
        }
        _ => Ok(()),
    }
}

/// Opens the first session (at join).
pub(crate) async fn open_first(shared: &Arc<CoordinatorShared>) -> Result<(), ClusterError> {
    check_unique(shared).await?;
    let state = open(shared, Instant::now() + Duration::from_secs(15)).await?;
    shared.session.send_replace(state);
    Ok(())
}

/// Revokes the session lease (leaving the cluster).
pub(crate) async fn revoke(shared: &CoordinatorShared) {
    let state = shared.session.send_replace(SessionState::default());
    if let Some(lease) = state.lease {
        let until = Instant::now() + Duration::from_secs(3);
        if let Err(e) = shared
            .etcd
            .call("revoke lease", Some(until), |mut c| async move {
                c.lease_revoke(lease).await
            })
            .await
        {
            tracing::warn!(error = %e, "cannot revoke the session lease; it expires by itself");
        }
    }
}

/// Gives the session up: no claims, abort running runs.
fn fail_stop(shared: &CoordinatorShared, why: &str) {
    shared.counters.fail_stops.fetch_add(1, Ordering::Relaxed);
    shared.session.send_replace(SessionState::default());
    let aborted = shared.scheduler.get().map_or(0, |s| s.abort_runs());
    tracing::error!(
        node_id = shared.node_id(),
        aborted,
        reason = why,
        "cluster session lost: stopped claiming and aborted running jobs (fail-stop)"
    );
}

/// Keeps the session alive, fails stop when it cannot, opens a new one afterwards.
pub(crate) async fn run(shared: Arc<CoordinatorShared>, stop: CancellationToken) {
    let mut attempt = 0u32;
    loop {
        let state = *shared.session.borrow();
        let (Some(lease), Some(deadline)) = (state.lease, state.deadline) else {
            // No session: open one as soon as etcd answers.
            tokio::select! {
                () = stop.cancelled() => return,
                opened = open(&shared, Instant::now() + Duration::from_secs(5)) => match opened {
                    Ok(state) => {
                        attempt = 0;
                        shared.session.send_replace(state);
                    }
                    Err(e) => {
                        attempt += 1;
                        tracing::warn!(error = %e, "cannot open a cluster session yet");
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                },
            }
            continue;
        };
        tokio::select! {
            () = stop.cancelled() => return,
            why = keep(&shared, lease, deadline) => fail_stop(&shared, &why),
        }
    }
}

/// Keeps `lease` alive until it cannot; returns why.
async fn keep(shared: &CoordinatorShared, lease: i64, mut until: Instant) -> String {
    let ttl = shared.config.session_ttl;
    let renew_every = (ttl / 4).max(Duration::from_millis(200));
    let mut publish_tick = tokio::time::interval(shared.config.clock_publish_interval);
    publish_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stream = None;
    let mut next_renewal = Instant::now() + renew_every;
    loop {
        if Instant::now() >= until {
            return "no keep-alive acknowledged in time".to_owned();
        }
        tokio::select! {
            () = tokio::time::sleep_until(until) => {
                return "no keep-alive acknowledged in time".to_owned();
            }
            _ = publish_tick.tick() => {
                let deadline = until.min(Instant::now() + Duration::from_secs(1));
                if let Err(e) = publish(shared, lease, deadline).await {
                    if matches!(e, CallError::Refused(_)) {
                        // "requested lease not found": etcd expired it.
                        return format!("lease gone: {e}");
                    }
                    tracing::debug!(error = %e, "cannot publish the node record");
                }
            }
            () = tokio::time::sleep_until(next_renewal) => {
                next_renewal = Instant::now() + renew_every;
                if stream.is_none() {
                    let (_, mut client) = shared.etcd.client();
                    match tokio::time::timeout(Duration::from_secs(1), client.lease_keep_alive(lease)).await {
                        Ok(Ok(pair)) => stream = Some(pair),
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "cannot open the keep-alive stream");
                            let (generation, _) = shared.etcd.client();
                            shared.etcd.rebuild(generation).await;
                            continue;
                        }
                        Err(_) => continue,
                    }
                }
                let Some((keeper, responses)) = stream.as_mut() else { continue };
                let sent = Instant::now();
                let answer = tokio::time::timeout(Duration::from_secs(1), async {
                    keeper.keep_alive().await?;
                    responses.message().await
                })
                .await;
                match answer {
                    Ok(Ok(Some(resp))) if resp.ttl() > 0 => {
                        until = deadline(shared, sent, resp.ttl());
                        let mut state = *shared.session.borrow();
                        if state.lease == Some(lease) {
                            state.deadline = Some(until);
                            shared.session.send_replace(state);
                        } else {
                            return "session replaced".to_owned();
                        }
                    }
                    Ok(Ok(Some(_))) => return "lease expired".to_owned(),
                    Ok(Ok(None) | Err(_)) | Err(_) => {
                        // The stream broke or did not answer (its member may be gone):
                        // rebuild the connection from the members that answer now and
                        // re-open the stream at once.
                        stream = None;
                        let (generation, _) = shared.etcd.client();
                        shared.etcd.rebuild(generation).await;
                        next_renewal = Instant::now();
                    }
                }
            }
        }
        // A claim that found the session gone marks its deadline as now.
        let state = *shared.session.borrow();
        if state.lease != Some(lease) {
            return "session replaced".to_owned();
        }
        if let Some(d) = state.deadline
            && d < until
        {
            until = d;
        }
    }
}
