//! Sundial's cluster mode on etcd: every fire runs exactly once across the nodes.
//!
//! A [`Cluster`] is one node's membership: it joins with a session lease, watches the
//! other members, takes part in the housekeeping election, and hands the scheduler an
//! [`EtcdCoordinator`] that claims fires. The protocol (docs/cluster.md has it with its
//! failure analysis):
//!
//! - **Per-fire claims.** A fire (job id, nominal instant) is claimed by one etcd
//!   transaction that creates `fires/<job>/<instant>` only if it does not exist, only
//!   while this node's session key still carries this node's lease, only if the job's
//!   definition is the revision this node scheduled it under, and only above the job's
//!   garbage-collection watermark. The fire key is not leased: it records that the
//!   fire was taken, whatever any clock says later. The transaction's revision is the
//!   fire's **fencing token**; the run's completion is a transaction guarded by it.
//! - **Liveness.** Each node keeps `nodes/<node>` on a session lease (TTL 10 s) and
//!   lists its running fires under `inflight/<node>/`. A node that cannot renew the
//!   lease before its last acknowledged keep-alive + TTL − margin stops claiming and
//!   aborts its running jobs (fail-stop), then joins again under a new lease.
//! - **Housekeeping** (one elected node, never on the firing path) reaps in-flight
//!   fires of nodes whose lease is gone (`on_node_lost = fail`: recorded lost;
//!   `retry`: offered again under a new fence) and garbage-collects old fire keys
//!   behind a per-job watermark.
//! - **Load spread.** Each job has a preferred owner (rendezvous hashing over the live,
//!   claiming nodes); other nodes try a fire only after a takeover delay, and only if
//!   it is still unclaimed. Correctness rests on the transaction alone.
//! - **Clock skew.** Nodes publish their wall clocks; a node more than
//!   `max_clock_skew` off the median of the members stops claiming.
//! - **Definitions** of `sundial run`'s jobs live under `jobs/`: listed, then watched
//!   (re-listed after a compaction, reconciled periodically) into the local scheduler.
//!
//! Everything is under one key prefix (default `/sundial/`), so several clusters can
//! share an etcd.

mod client;
mod coordinator;
mod definitions;
mod housekeeper;
mod keys;
mod members;
mod session;
mod status;
mod url;

use std::sync::Arc;
use std::time::Duration;

use sundial_scheduler::engine::{Clock, Scheduler, SystemClock};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use client::Etcd;
pub use coordinator::EtcdCoordinator;
pub use definitions::{
    ApplyReport, DefinitionSource, StoredDefinition, apply_definitions, delete_definition,
};
pub use members::NodeRecord;
pub use status::{ClusterStatus, InFlight, NodeStatus, cluster_status};
pub use url::ClusterUrl;

use crate::coordinator::CoordinatorShared;
use crate::keys::Keys;

/// Errors of the cluster layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// A `--cluster` URL that cannot be used.
    #[error("invalid cluster URL `{url}`: {reason}")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// etcd could not be reached (after retries) or refused a call.
    #[error("etcd: {0}")]
    Etcd(String),
    /// A value stored in etcd does not decode.
    #[error("etcd key `{key}` holds an unreadable value: {reason}")]
    Corrupt {
        /// The key.
        key: String,
        /// Why it does not decode.
        reason: String,
    },
    /// A job definition is invalid.
    #[error("job `{id}`: {reason}")]
    Definition {
        /// The job.
        id: String,
        /// What is wrong.
        reason: String,
    },
}

/// How one node takes part in the cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// etcd endpoints and key prefix.
    pub url: ClusterUrl,
    /// This node's id (stable across restarts).
    pub node_id: String,
    /// Session lease TTL (default 10 s).
    pub session_ttl: Duration,
    /// Safety margin: the node considers its session lost this long before
    /// last acknowledged keep-alive + TTL (default 2 s).
    pub session_margin: Duration,
    /// How long a node that is not a job's preferred owner waits before it tries a
    /// fire (default 1 s).
    pub takeover_delay: Duration,
    /// A node more than this off the members' median clock stops claiming
    /// (default 500 ms).
    pub max_clock_skew: Duration,
    /// How often the node publishes its wall clock (default 1 s).
    pub clock_publish_interval: Duration,
    /// Fire keys older than this are garbage-collected (default 24 h).
    pub fire_retention: Duration,
    /// How often the housekeeping leader collects old fire keys (default 60 s).
    pub collect_interval: Duration,
    /// How often the definitions are re-listed in case a watch died silently
    /// (default 30 s).
    pub reconcile_interval: Duration,
    /// The node's wall clock (the scheduler's).
    pub clock: Arc<dyn Clock>,
}

impl ClusterConfig {
    /// Defaults for `node_id` on `url`.
    pub fn new(url: ClusterUrl, node_id: impl Into<String>) -> Self {
        Self {
            url,
            node_id: node_id.into(),
            session_ttl: Duration::from_secs(10),
            session_margin: Duration::from_secs(2),
            takeover_delay: Duration::from_secs(1),
            max_clock_skew: Duration::from_millis(500),
            clock_publish_interval: Duration::from_secs(1),
            fire_retention: Duration::from_secs(24 * 3600),
            collect_interval: Duration::from_secs(60),
            reconcile_interval: Duration::from_secs(30),
            clock: Arc::new(SystemClock),
        }
    }
}

/// One node's membership of the cluster. See the crate docs.
#[derive(Debug, Clone)]
pub struct Cluster {
    shared: Arc<CoordinatorShared>,
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl Cluster {
    /// Connects to etcd and joins: opens a session (waits until etcd answers, up to
    /// the connect timeout), starts watching the members and campaigning for
    /// housekeeping.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Etcd`] when etcd cannot be reached.
    pub async fn join(config: ClusterConfig) -> Result<Self, ClusterError> {
        let etcd = Etcd::connect(&config.url.endpoints).await?;
        let keys = Keys::new(&config.url.prefix);
        let shared = Arc::new(CoordinatorShared::new(etcd, keys, config));
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        session::open_first(&shared).await?;
        tasks.spawn(session::run(shared.clone(), stop.clone()));
        tasks.spawn(members::run(shared.clone(), stop.clone()));
        tasks.spawn(housekeeper::run(shared.clone(), stop.clone()));
        Ok(Self {
            shared,
            tasks,
            stop,
        })
    }

    /// The coordinator to give the scheduler.
    pub fn coordinator(&self) -> Arc<EtcdCoordinator> {
        Arc::new(EtcdCoordinator::new(self.shared.clone()))
    }

    /// Binds the cluster to the node's scheduler: fail-stop aborts its runs, lost
    /// fires under `on_node_lost = retry` are offered to it, and the garbage
    /// collector learns its jobs.
    pub fn attach(&self, scheduler: &Scheduler) {
        self.shared.attach(scheduler.clone());
        self.tasks
            .spawn(housekeeper::retries(self.shared.clone(), self.stop.clone()));
    }

    /// Keeps `scheduler`'s jobs equal to the definitions stored in etcd (list, watch,
    /// re-list after compaction, periodic reconciliation): jobs that etcd does not hold
    /// are removed from it, so give it a scheduler of its own. Call after
    /// [`Cluster::attach`].
    pub fn sync_definitions(&self, scheduler: &Scheduler) {
        self.tasks.spawn(definitions::sync(
            self.shared.clone(),
            scheduler.clone(),
            self.stop.clone(),
        ));
    }

    /// Waits until the definitions stored in etcd have been applied to the scheduler
    /// once (after [`Cluster::sync_definitions`]), up to `timeout`; false on timeout.
    pub async fn definitions_ready(&self, timeout: Duration) -> bool {
        self.shared.definitions_ready(timeout).await
    }

    /// Stores one job definition (from the REST API) and waits, up to `timeout`,
    /// until this node's scheduler applied it.
    ///
    /// # Errors
    ///
    /// An invalid spec, etcd errors, a concurrent writer.
    pub async fn store_definition(
        &self,
        spec: sundial_scheduler::job::JobSpec,
        timeout: Duration,
    ) -> Result<(), ClusterError> {
        let report = apply_definitions(
            &self.shared.etcd,
            self.prefix(),
            vec![spec],
            DefinitionSource::Api,
            false,
            self.shared.node_id(),
        )
        .await?;
        self.wait_applied(report.revision, timeout).await;
        Ok(())
    }

    /// Deletes one job definition and waits, up to `timeout`, until this node's
    /// scheduler dropped it; false if there was none.
    ///
    /// # Errors
    ///
    /// etcd errors.
    pub async fn delete_definition(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<bool, ClusterError> {
        match delete_definition(&self.shared.etcd, self.prefix(), id).await? {
            Some(revision) => {
                self.wait_applied(revision, timeout).await;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Waits until definitions up to `revision` are applied here (false on timeout).
    pub async fn wait_applied(&self, revision: i64, timeout: Duration) -> bool {
        let mut rx = self.shared.applied_revision.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|r| *r >= revision))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Resolves when this node (as housekeeping leader) has reaped fires lost with
    /// their node; then [`Scheduler::reap_lost_runs`] marks their runs in a shared
    /// ledger.
    pub async fn lost_fires(&self) {
        self.shared.fires_lost.notified().await;
    }

    /// The etcd connection.
    pub fn etcd(&self) -> &Etcd {
        &self.shared.etcd
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        self.shared.keys.prefix()
    }

    /// This node's view: whether it may claim, its skew, whether it leads
    /// housekeeping. For `/healthz` and metrics.
    pub fn health(&self) -> NodeHealth {
        self.shared.health()
    }

    /// Leaves the cluster: stops the background tasks and revokes the session lease
    /// (the node key and its claims to liveness go at once; unfinished in-flight fires
    /// are then reaped as lost).
    pub async fn leave(&self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        session::revoke(&self.shared).await;
    }
}

/// A node's own view of its place in the cluster.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NodeHealth {
    /// The node id.
    pub node_id: String,
    /// Whether the node holds a live session.
    pub session: bool,
    /// Whether the node claims fires (live session and clock within bounds).
    pub claiming: bool,
    /// This node's clock minus the members' median, in milliseconds (None until
    /// another member was seen).
    pub skew_ms: Option<i64>,
    /// Whether this node leads housekeeping.
    pub leader: bool,
    /// Live members seen.
    pub members: usize,
    /// Fires claimed, lost claims (already taken elsewhere), fenced completions,
    /// and claims that gave up because etcd was unavailable.
    pub claims_won: u64,
    /// See `claims_won`.
    pub claims_taken_elsewhere: u64,
    /// See `claims_won`.
    pub completions_fenced: u64,
    /// See `claims_won`.
    pub claims_unavailable: u64,
    /// Fires this node reaped as lost (as housekeeping leader).
    pub fires_reaped: u64,
    /// Times this node lost its session and stopped (fail-stop).
    pub fail_stops: u64,
}
