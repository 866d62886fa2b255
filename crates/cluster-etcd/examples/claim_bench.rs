//! Cluster claim throughput on a local 3-member etcd (issue #6's performance section).
//!
//! Starts a 3-member etcd cluster on 127.0.0.1 (Debian's `etcd`, temporary data
//! directories), joins 3 nodes, and offers fires open-loop at each rate of a sweep for
//! `SECS` seconds: every fire goes to all 3 nodes at once, as the nodes' timers would
//! fire it; each node claims it exactly as the scheduler does (the job's preferred owner
//! at once, the others after the takeover delay and only if it is still unclaimed), and
//! the winner releases it (the fenced completion). Reported per rate: fires claimed per
//! second, the winner's claim latency (p50, p99, max), etcd revisions (writes) per fire,
//! claims that did not win, and fires nobody claimed (overload: claims that gave up).
//!
//! ```text
//! cargo run --release -p sundial-cluster-etcd --example claim_bench -- [SECS] [RATES…]
//! ```
//! (defaults: 10 s at 250, 500, 1000 and 2000 fires/s over 100 jobs).

#[path = "../tests/common/etcd.rs"]
mod etcd;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use sundial_cluster_etcd::{Cluster, ClusterConfig, ClusterUrl};
use sundial_scheduler::coordinator::{ClaimOptions, Coordinator};
use sundial_scheduler::job::{Fire, JobId, RunState};
use sundial_scheduler::jobs_file::NodeLost;

const JOBS: u64 = 100;

async fn revision(endpoints: &[String]) -> i64 {
    let mut client = etcd_client::Client::connect(endpoints, None)
        .await
        .expect("etcd");
    client
        .get("/", None)
        .await
        .expect("get")
        .header()
        .map_or(0, |h| h.revision())
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10);
    let mut rates: Vec<u64> = args.filter_map(|s| s.parse().ok()).collect();
    if rates.is_empty() {
        rates = vec![250, 500, 1000, 2000];
    }
    let cluster = etcd::EtcdCluster::start(3);
    let url: ClusterUrl = cluster.url("bench").parse().expect("url");
    let mut nodes = Vec::new();
    for id in ["n1", "n2", "n3"] {
        let config = ClusterConfig::new(url.clone(), id);
        nodes.push(Cluster::join(config).await.expect("join"));
    }
    // Let the members see each other (preferred owners need the member list).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let coordinators: Vec<Arc<dyn Coordinator>> = nodes
        .iter()
        .map(|n| n.coordinator() as Arc<dyn Coordinator>)
        .collect();
    println!(
        "| offered fires/s | claimed fires/s | claim latency p50 | p99 | max | etcd writes per fire | claims not won per fire | fires unclaimed |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let base = Timestamp::now().as_second() * 1000;
    let mut epoch = 0i64;
    for rate in rates {
        epoch += 1;
        let won = Arc::new(AtomicU64::new(0));
        let lost = Arc::new(AtomicU64::new(0));
        let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
        let before = revision(&cluster.endpoints()).await;
        let interval = Duration::from_secs_f64(1.0 / rate as f64);
        let start = Instant::now();
        let total = rate * secs;
        let mut tasks = Vec::with_capacity(total as usize);
        for k in 0..total {
            let due = start + interval.mul_f64(k as f64);
            tokio::time::sleep_until(due.into()).await;
            // A distinct nominal instant per fire: job k % JOBS, instant by k.
            let fire = Fire {
                job_id: JobId::new(format!("job-{}", k % JOBS)),
                nominal: Timestamp::from_millisecond(
                    base + epoch * 1_000_000_000 + i64::try_from(k).expect("k"),
                )
                .expect("ts"),
            };
            for c in &coordinators {
                let (c, fire) = (c.clone(), fire.clone());
                let (won, lost, latencies) = (won.clone(), lost.clone(), latencies.clone());
                tasks.push(tokio::spawn(async move {
                    let options = ClaimOptions {
                        deadline: Timestamp::now() + SignedDuration::from_secs(60),
                        on_node_lost: NodeLost::Fail,
                    };
                    let asked = Instant::now();
                    match c.claim(&fire, &options).await {
                        Ok(Some(token)) => {
                            let took = asked.elapsed().as_micros() as u64;
                            latencies.lock().expect("lock").push(took);
                            won.fetch_add(1, Ordering::Relaxed);
                            let _ = c.release(&fire, token, RunState::Succeeded).await;
                        }
                        _ => {
                            lost.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }));
            }
        }
        let offered_for = start.elapsed();
        for t in tasks {
            let _ = t.await;
        }
        let elapsed = start.elapsed();
        let after = revision(&cluster.endpoints()).await;
        let won = won.load(Ordering::Relaxed);
        let mut lat = latencies.lock().expect("lock").clone();
        lat.sort_unstable();
        // Node records (1 write/s/node) are part of the cluster's cost, counted in.
        let writes = (after - before) as f64 / won.max(1) as f64;
        println!(
            "| {rate} | {:.0} | {:.1} ms | {:.1} ms | {:.1} ms | {writes:.2} | {:.2} | {} |",
            won as f64 / offered_for.as_secs_f64().max(elapsed.as_secs_f64() - 1.0),
            percentile(&lat, 0.5) as f64 / 1000.0,
            percentile(&lat, 0.99) as f64 / 1000.0,
            lat.last().copied().unwrap_or(0) as f64 / 1000.0,
            lost.load(Ordering::Relaxed) as f64 / won.max(1) as f64,
            total.saturating_sub(won),
        );
        // Never more than one claim per fire, whatever the load.
        assert!(won <= total, "a fire was claimed twice: {won} > {total}");
    }
    for n in &nodes {
        n.leave().await;
    }
}
