//! `sundial cluster status`: the members, the housekeeping leader, clock skew and
//! the fires in flight, read from etcd by any client (it does not join the cluster).

use std::time::Duration;

use etcd_client::{GetOptions, KeyValue};
use jiff::Timestamp;
use serde::Serialize;
use tokio::time::Instant;

use crate::ClusterError;
use crate::client::Etcd;
use crate::keys::Keys;
use crate::members::NodeRecord;

/// A member as `cluster status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeStatus {
    /// The node id.
    pub node: String,
    /// Its session lease (hex, as etcdctl shows leases).
    pub lease: String,
    /// Whether it claims fires.
    pub claiming: bool,
    /// Its clock minus the members' median, as it measured (ms).
    pub skew_ms: Option<i64>,
    /// Its clock minus this client's, from its last published record (ms; includes
    /// up to one publishing interval of staleness).
    pub clock_offset_ms: i64,
    /// Whether it leads housekeeping.
    pub leader: bool,
    /// Its fires in flight.
    pub in_flight: usize,
    /// Its Sundial version.
    pub version: String,
}

/// A fire being run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InFlight {
    /// The job.
    pub job: String,
    /// The nominal instant.
    pub nominal: Timestamp,
    /// The node running it.
    pub node: String,
    /// Its fencing token (the fire key's revision).
    pub token: i64,
    /// Whether its node is alive (false: housekeeping will reap it).
    pub node_alive: bool,
}

/// The cluster as stored in etcd.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterStatus {
    /// The key prefix.
    pub prefix: String,
    /// etcd's revision when read.
    pub revision: i64,
    /// Live members, by id.
    pub nodes: Vec<NodeStatus>,
    /// The housekeeping leader.
    pub leader: Option<String>,
    /// Job definitions stored.
    pub jobs: usize,
    /// Fires in flight, oldest first.
    pub in_flight: Vec<InFlight>,
}

async fn range(
    etcd: &Etcd,
    key: String,
    prefix: bool,
) -> Result<etcd_client::GetResponse, ClusterError> {
    let until = Some(Instant::now() + Duration::from_secs(5));
    Ok(etcd
        .call("status read", until, |mut c| {
            let key = key.clone();
            async move {
                let options = if prefix {
                    Some(GetOptions::new().with_prefix())
                } else {
                    None
                };
                c.get(key, options).await
            }
        })
        .await?)
}

/// Reads the cluster's state under `prefix`.
///
/// # Errors
///
/// etcd errors.
pub async fn cluster_status(etcd: &Etcd, prefix: &str) -> Result<ClusterStatus, ClusterError> {
    let keys = Keys::new(prefix);
    let nodes = range(etcd, keys.nodes(), true).await?;
    let now = Timestamp::now().as_millisecond();
    let leader = range(etcd, keys.election(), false)
        .await?
        .kvs()
        .first()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned());
    let jobs = range(etcd, keys.jobs(), true).await?.kvs().len();
    let inflight = range(etcd, keys.inflight_all(), true).await?;
    let records: Vec<NodeRecord> = nodes
        .kvs()
        .iter()
        .filter_map(|kv| serde_json::from_slice(kv.value()).ok())
        .collect();
    let mut in_flight = Vec::new();
    for kv in inflight.kvs() {
        let Some((node, job, nominal)) = keys.parse_inflight(kv.key()) else {
            continue;
        };
        let lease: i64 = String::from_utf8_lossy(kv.value()).parse().unwrap_or(0);
        let fire = range(etcd, keys.fire(&job, nominal), false).await?;
        let token = fire.kvs().first().map_or(0, KeyValue::mod_revision);
        in_flight.push(InFlight {
            node_alive: records.iter().any(|r| r.node == node && r.lease == lease),
            job,
            nominal,
            node,
            token,
        });
    }
    in_flight.sort_by_key(|f| (f.nominal, f.job.clone()));
    let nodes = records
        .iter()
        .map(|r| NodeStatus {
            node: r.node.clone(),
            lease: format!("{:x}", r.lease),
            claiming: r.claiming,
            skew_ms: r.skew_ms,
            clock_offset_ms: r.wall_ms - now,
            leader: leader.as_deref() == Some(r.node.as_str()),
            in_flight: in_flight.iter().filter(|f| f.node == r.node).count(),
            version: r.version.clone(),
        })
        .collect();
    Ok(ClusterStatus {
        prefix: prefix.to_owned(),
        revision: inflight.header().map_or(0, |h| h.revision()),
        nodes,
        leader,
        jobs,
        in_flight,
    })
}
