//! The claim protocol against a real etcd (one member, started by the test): each
//! fire is claimed once across nodes, a retried claim recognises its own, a node with
//! an unknown or stale definition cannot claim, a run whose node died is reaped and its
//! completion fenced out, collected fires cannot be claimed again, skewed clocks stop
//! claiming, and definitions reach every node's scheduler (updates, deletes, and a
//! watch that fell behind a compaction).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::etcd::EtcdCluster;
use jiff::{SignedDuration, Timestamp};
use sundial_cluster_etcd::{
    ApplyReport, Cluster, ClusterConfig, ClusterUrl, DefinitionSource, apply_definitions,
    cluster_status,
};
use sundial_scheduler::coordinator::{ClaimOptions, Coordinator, CoordinatorError};
use sundial_scheduler::engine::{OffsetClock, Scheduler};
use sundial_scheduler::job::{ActionSpec, Fire, JobId, JobSpec, RunState, TriggerSpec};
use sundial_scheduler::jobs_file::NodeLost;

fn config(etcd: &EtcdCluster, prefix: &str, node: &str) -> ClusterConfig {
    let url: ClusterUrl = etcd.url(prefix).parse().expect("url");
    let mut c = ClusterConfig::new(url, node);
    c.takeover_delay = Duration::from_millis(100);
    c.session_ttl = Duration::from_secs(3);
    c.session_margin = Duration::from_millis(500);
    c.clock_publish_interval = Duration::from_millis(200);
    c
}

/// Stores `specs` as definitions from `source` under `prefix`.
async fn apply(
    node: &Cluster,
    prefix: &str,
    specs: Vec<JobSpec>,
    source: DefinitionSource,
    prune: bool,
) -> Result<ApplyReport, sundial_cluster_etcd::ClusterError> {
    apply_definitions(node.etcd(), prefix, specs, source, prune, "test").await
}

fn fire(job: &str, at: Timestamp) -> Fire {
    Fire {
        job_id: JobId::new(job),
        nominal: at,
    }
}

fn options(policy: NodeLost) -> ClaimOptions {
    ClaimOptions {
        deadline: Timestamp::now() + SignedDuration::from_secs(10),
        on_node_lost: policy,
    }
}

fn spec(id: &str, every: &str) -> JobSpec {
    JobSpec::new(
        id,
        TriggerSpec::every(
            every.parse::<SignedDuration>().expect("d").unsigned_abs(),
            Timestamp::UNIX_EPOCH,
        ),
        ActionSpec::handler("noop"),
    )
}

async fn wait_until(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let give_up = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fire_is_claimed_once_and_retries_recognise_their_own_claim() {
    let etcd = EtcdCluster::start(1);
    let nodes = [
        Cluster::join(config(&etcd, "once", "a")).await.expect("a"),
        Cluster::join(config(&etcd, "once", "b")).await.expect("b"),
        Cluster::join(config(&etcd, "once", "c")).await.expect("c"),
    ];
    let coordinators: Vec<_> = nodes.iter().map(Cluster::coordinator).collect();
    let base = Timestamp::now();
    let mut tokens = Vec::new();
    for k in 0..20 {
        let f = fire("job", base + SignedDuration::from_secs(k));
        let opts = options(NodeLost::Fail);
        let claims =
            futures::future::join_all(coordinators.iter().map(|c| c.claim(&f, &opts))).await;
        let won: Vec<_> = claims
            .into_iter()
            .enumerate()
            .filter_map(|(i, r)| r.expect("etcd answers").map(|t| (i, t)))
            .collect();
        assert_eq!(
            won.len(),
            1,
            "fire {k}: exactly one node claims it: {won:?}"
        );
        let (winner, token) = won[0];
        // A retry of the same claim (its reply lost) is recognised, with the same token.
        let again = coordinators[winner]
            .claim(&f, &options(NodeLost::Fail))
            .await
            .expect("ok");
        assert_eq!(again, Some(token));
        tokens.push(token);
        coordinators[winner]
            .release(&f, token, RunState::Succeeded)
            .await
            .expect("released");
        // Released fires stay taken.
        for c in &coordinators {
            if c.node_id() != coordinators[winner].node_id() {
                assert_eq!(
                    c.claim(&f, &options(NodeLost::Fail)).await.expect("ok"),
                    None
                );
            }
        }
    }
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "tokens increase: {tokens:?}"
    );
    for n in &nodes {
        n.leave().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_run_is_reaped_and_its_completion_fenced_out() {
    let etcd = EtcdCluster::start(1);
    let a = Cluster::join(config(&etcd, "reap", "a")).await.expect("a");
    let b = Cluster::join(config(&etcd, "reap", "b")).await.expect("b");
    let (ca, cb) = (a.coordinator(), b.coordinator());
    let f = fire("lost", Timestamp::now());
    let g = fire("again", Timestamp::now());
    // Whoever claims first: make a the claimer by claiming only there.
    let token = ca
        .claim(&f, &options(NodeLost::Fail))
        .await
        .expect("ok")
        .expect("claimed");
    let retry_token = ca
        .claim(&g, &options(NodeLost::Retry))
        .await
        .expect("ok")
        .expect("claimed");
    // a dies without releasing (its lease is revoked, as a crash would let it expire).
    a.leave().await;
    let endpoints = etcd.endpoints();
    let etcd_client = sundial_cluster_etcd::Etcd::connect(&endpoints)
        .await
        .expect("etcd");
    wait_until(
        "the lost fires to be reaped",
        Duration::from_secs(10),
        async || {
            let status = cluster_status(&etcd_client, "/reap/")
                .await
                .expect("status");
            status.in_flight.is_empty()
        },
    )
    .await;
    assert!(b.health().fires_reaped >= 2, "{:?}", b.health());
    let lost = cb.lost_runs().await.expect("ok");
    assert!(
        lost.iter()
            .any(|l| l.fire == f && l.node_id == "a" && l.token == token)
    );
    // The dead run's completion is fenced out.
    assert!(matches!(
        ca.release(&f, token, RunState::Succeeded).await,
        Err(CoordinatorError::NotHeld { .. })
    ));
    // `fail`: never claimed again. `retry`: claimable once more, under a new token.
    assert_eq!(
        cb.claim(&f, &options(NodeLost::Fail)).await.expect("ok"),
        None
    );
    let new = cb
        .claim(&g, &options(NodeLost::Retry))
        .await
        .expect("ok")
        .expect("reclaimed");
    assert!(new > retry_token);
    assert_eq!(
        cb.claim(&g, &options(NodeLost::Retry)).await.expect("ok"),
        Some(new)
    );
    b.leave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_nodes_that_know_the_current_definition_claim() {
    let etcd = EtcdCluster::start(1);
    let synced = Cluster::join(config(&etcd, "defs", "synced"))
        .await
        .expect("join");
    let unaware = Cluster::join(config(&etcd, "defs", "unaware"))
        .await
        .expect("join");
    let scheduler = Scheduler::builder().node_id("synced").build();
    scheduler.register_async("noop", |_| async { Ok(()) });
    synced.attach(&scheduler);
    let report: ApplyReport = apply(
        &synced,
        "/defs/",
        vec![spec("j", "1h")],
        DefinitionSource::File,
        true,
    )
    .await
    .expect("applied");
    assert_eq!(report.added, ["j"]);
    synced.sync_definitions(&scheduler);
    assert!(synced.definitions_ready(Duration::from_secs(5)).await);
    assert!(
        synced
            .wait_applied(report.revision, Duration::from_secs(5))
            .await
    );
    let f = fire("j", Timestamp::now());
    // The node that never loaded definitions treats `j` as a code job, which the stored
    // definition shadows: refused.
    assert_eq!(
        unaware
            .coordinator()
            .claim(&f, &options(NodeLost::Fail))
            .await
            .expect("ok"),
        None
    );
    assert!(
        synced
            .coordinator()
            .claim(&f, &options(NodeLost::Fail))
            .await
            .expect("ok")
            .is_some()
    );
    // Applying the same file again changes nothing (no new revision for claims to miss).
    let again = apply(
        &synced,
        "/defs/",
        vec![spec("j", "1h")],
        DefinitionSource::File,
        true,
    )
    .await
    .expect("applied");
    assert_eq!(again.unchanged, ["j"]);
    // An update reaches the scheduler; a removal too, and its fires are refused.
    let upd = apply(
        &synced,
        "/defs/",
        vec![spec("j", "2h")],
        DefinitionSource::File,
        true,
    )
    .await
    .expect("applied");
    assert_eq!(upd.updated, ["j"]);
    assert!(
        synced
            .wait_applied(upd.revision, Duration::from_secs(5))
            .await
    );
    let info = scheduler.get(&JobId::new("j")).expect("job");
    assert_eq!(info.spec.trigger, spec("j", "2h").trigger);
    // A fixed-delay job is refused in cluster mode, naming the job.
    let delay = JobSpec::new(
        "d",
        TriggerSpec::delay(Duration::from_secs(60), Timestamp::UNIX_EPOCH),
        ActionSpec::handler("noop"),
    );
    let err = apply(&synced, "/defs/", vec![delay], DefinitionSource::Api, false)
        .await
        .expect_err("refused")
        .to_string();
    assert!(
        err.contains("job `d`") && err.contains("fixed-delay"),
        "{err}"
    );
    let removed = apply(&synced, "/defs/", vec![], DefinitionSource::File, true)
        .await
        .expect("applied");
    assert_eq!(removed.removed, ["j"]);
    let g = fire("j", Timestamp::now() + SignedDuration::from_secs(1));
    wait_until(
        "the job to be removed",
        Duration::from_secs(5),
        async || scheduler.get(&JobId::new("j")).is_err(),
    )
    .await;
    assert_eq!(
        synced
            .coordinator()
            .claim(&g, &options(NodeLost::Fail))
            .await
            .expect("ok"),
        None
    );
    scheduler.shutdown(Duration::from_secs(1)).await;
    synced.leave().await;
    unaware.leave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_survive_a_compaction_and_an_etcd_restart() {
    let mut etcd = EtcdCluster::start(1);
    let node = Cluster::join(config(&etcd, "compact", "n"))
        .await
        .expect("join");
    let scheduler = Scheduler::builder().node_id("n").build();
    scheduler.register_async("noop", |_| async { Ok(()) });
    node.attach(&scheduler);
    node.sync_definitions(&scheduler);
    assert!(node.definitions_ready(Duration::from_secs(5)).await);
    // Many writes, then a compaction, then more: the node ends with the last state.
    for i in 0..20 {
        apply(
            &node,
            "/compact/",
            vec![spec(&format!("j{i}"), "1h")],
            DefinitionSource::Api,
            false,
        )
        .await
        .expect("applied");
    }
    etcd.compact();
    let last = apply(
        &node,
        "/compact/",
        vec![spec("late", "1h")],
        DefinitionSource::Api,
        false,
    )
    .await
    .expect("applied");
    assert!(
        node.wait_applied(last.revision, Duration::from_secs(5))
            .await
    );
    assert_eq!(scheduler.list().len(), 21);
    // etcd goes away and comes back (the watch breaks; the node lists again from a
    // compacted history): a change made after it still arrives.
    etcd.restart(0);
    etcd.wait_healthy(Duration::from_secs(20));
    etcd.compact();
    let after = apply(
        &node,
        "/compact/",
        vec![spec("after", "1h")],
        DefinitionSource::Api,
        false,
    )
    .await
    .expect("applied after the restart");
    assert!(
        node.wait_applied(after.revision, Duration::from_secs(10))
            .await
    );
    assert!(scheduler.get(&JobId::new("after")).is_ok());
    assert_eq!(scheduler.list().len(), 22);
    scheduler.shutdown(Duration::from_secs(1)).await;
    node.leave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_far_from_the_median_clock_stops_claiming() {
    let etcd = EtcdCluster::start(1);
    let mut clusters = Vec::new();
    for (node, offset) in [("fast", 700), ("slow", -400), ("exact", 0)] {
        let mut c = config(&etcd, "skew", node);
        c.clock = Arc::new(OffsetClock::new(SignedDuration::from_millis(offset)));
        clusters.push(Cluster::join(c).await.expect("join"));
    }
    wait_until(
        "the fast node to stop claiming",
        Duration::from_secs(10),
        async || {
            clusters.iter().all(|c| c.health().skew_ms.is_some())
                && !clusters[0].health().claiming
                && clusters[1].health().claiming
                && clusters[2].health().claiming
        },
    )
    .await;
    let skew = clusters[0].health().skew_ms.expect("measured");
    assert!(
        (600..=800).contains(&skew),
        "fast node measures ~+700 ms: {skew}"
    );
    // It leaves fires to the others…
    let f = fire("s", Timestamp::now());
    let opts = options(NodeLost::Fail);
    let (fast, exact) = (clusters[0].coordinator(), clusters[2].coordinator());
    let (by_fast, by_exact) = tokio::join!(fast.claim(&f, &opts), exact.claim(&f, &opts));
    assert_eq!(by_fast.expect("ok"), None);
    assert!(by_exact.expect("ok").is_some());
    // …and takes one only as a last resort, when nobody else did (late, not early).
    let g = fire("s", Timestamp::now() + SignedDuration::from_secs(1));
    assert!(fast.claim(&g, &opts).await.expect("ok").is_some());
    let client = sundial_cluster_etcd::Etcd::connect(&etcd.endpoints())
        .await
        .expect("etcd");
    let status = cluster_status(&client, "/skew/").await.expect("status");
    assert_eq!(status.nodes.len(), 3);
    assert!(status.nodes.iter().any(|n| n.node == "fast" && !n.claiming));
    for c in &clusters {
        c.leave().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collected_fires_cannot_be_claimed_again() {
    let etcd = EtcdCluster::start(1);
    let mut c = config(&etcd, "gc", "a");
    c.fire_retention = Duration::from_secs(4);
    c.collect_interval = Duration::from_millis(200);
    let a = Cluster::join(c).await.expect("join");
    let b = Cluster::join(config(&etcd, "gc", "b")).await.expect("join");
    let scheduler = Scheduler::builder().node_id("a").build();
    scheduler.register_async("noop", |_| async { Ok(()) });
    a.attach(&scheduler);
    scheduler.add(spec("old", "1h")).await.expect("job");
    let old = fire("old", Timestamp::now() - SignedDuration::from_secs(2));
    let token = a
        .coordinator()
        .claim(&old, &options(NodeLost::Fail))
        .await
        .expect("ok")
        .expect("claimed");
    a.coordinator()
        .release(&old, token, RunState::Succeeded)
        .await
        .expect("released");
    // a leads (it joined first); its collector moves the watermark past the fire.
    wait_until(
        "the old fire key to be collected",
        Duration::from_secs(10),
        async || {
            let mut client = etcd_client(&etcd).await;
            client
                .get(
                    "/gc/fires/old/",
                    Some(etcd_client::GetOptions::new().with_prefix()),
                )
                .await
                .map(|r| r.kvs().is_empty())
                .unwrap_or(false)
        },
    )
    .await;
    // A node that wakes up late with that fire due cannot take it again.
    assert_eq!(
        b.coordinator()
            .claim(&old, &options(NodeLost::Fail))
            .await
            .expect("ok"),
        None
    );
    scheduler.shutdown(Duration::from_secs(1)).await;
    a.leave().await;
    b.leave().await;
}

async fn etcd_client(etcd: &EtcdCluster) -> etcd_client::Client {
    etcd_client::Client::connect(etcd.endpoints(), None)
        .await
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_id_has_one_live_process() {
    let etcd = EtcdCluster::start(1);
    let first = Cluster::join(config(&etcd, "dup", "same"))
        .await
        .expect("join");
    let err = Cluster::join(config(&etcd, "dup", "same"))
        .await
        .expect_err("a second live process with the id is refused")
        .to_string();
    assert!(err.contains("node id `same` is in use"), "{err}");
    // Once the first is gone (its record no longer refreshed), the id can be used.
    first.leave().await;
    let again = Cluster::join(config(&etcd, "dup", "same"))
        .await
        .expect("rejoin");
    assert!(again.health().session);
    again.leave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_outage_delays_claims_until_their_grace_runs_out() {
    let mut etcd = EtcdCluster::start(1);
    let node = Cluster::join(config(&etcd, "outage", "n"))
        .await
        .expect("join");
    let c = node.coordinator();
    etcd.kill(0);
    // Past its deadline, a claim gives up: the engine counts the fire missed, once.
    let short = ClaimOptions {
        deadline: Timestamp::now() + SignedDuration::from_millis(1500),
        on_node_lost: NodeLost::Fail,
    };
    let f = fire("o", Timestamp::now());
    assert!(matches!(
        c.claim(&f, &short).await,
        Err(CoordinatorError::Unavailable(_))
    ));
    // Within its deadline, a claim waits for etcd to come back.
    let g = fire("o", Timestamp::now() + SignedDuration::from_secs(1));
    let waiting = tokio::spawn({
        let c = c.clone();
        async move {
            let long = ClaimOptions {
                deadline: Timestamp::now() + SignedDuration::from_secs(60),
                on_node_lost: NodeLost::Fail,
            };
            c.claim(&g, &long).await
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    etcd.restart(0);
    let token = waiting
        .await
        .expect("task")
        .expect("claimed after the outage");
    assert!(token.is_some(), "the delayed fire was claimed");
    node.leave().await;
}
