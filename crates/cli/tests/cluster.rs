//! Cluster mode end to end: a 3-member etcd cluster and 3 `sundial run --cluster`
//! nodes as separate processes, running every-second jobs whose command appends
//! `job fire-time node token wall-ms` to one shared file.
//!
//! - `chaos`: for `SUNDIAL_CHAOS_SECS` (default 60) seconds the test `kill -9`s
//!   scheduler nodes and the etcd leader at random (restarting them). Every expected
//!   fire must appear exactly once, except fires recorded as lost in etcd (their node
//!   died holding them, `on_node_lost = fail`); never twice. Failover time is reported.
//! - `skew`: the same jobs with one node's clock +700 ms and another's −400 ms: the
//!   fast node stops claiming, every fire still runs exactly once.
//! - `paused_node_is_fenced_out`: a node SIGSTOPped past its lease while running a
//!   fire is reaped; after SIGCONT it fails stop, rejoins under a new lease, and its
//!   completion is fenced out; nothing runs twice.
//! - `cli_tools`: `sundial job apply`, `sundial cluster status`, the REST API writing
//!   definitions to the cluster, and bad `--cluster` URLs.
//!
//! Nothing asserts on elapsed time except the exactly-once accounting, which allows
//! for the takeover delay and session TTL by construction.
#![cfg(feature = "etcd")]

mod common;
#[path = "../../cluster-etcd/tests/common/etcd.rs"]
mod etcd;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{http, sundial};
use etcd::EtcdCluster;
use jiff::Timestamp;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

/// A `sundial run --cluster` node.
struct Node {
    id: String,
    child: Option<Child>,
    addr: Option<SocketAddr>,
    data: PathBuf,
    log: PathBuf,
    extra_env: Vec<(String, String)>,
}

impl Node {
    fn new(dir: &Path, id: &str, extra_env: &[(&str, &str)]) -> Node {
        Node {
            id: id.to_owned(),
            child: None,
            addr: None,
            data: dir.join(id),
            log: dir.join(format!("{id}.log")),
            extra_env: extra_env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn start(&mut self, url: &str, jobs: Option<&Path>) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        let mut cmd = sundial();
        cmd.args(["--log-level", "info", "run", "--listen", "127.0.0.1:0"])
            .args(["--cluster", url, "--node-id", &self.id])
            .args(["--session-ttl", "6s", "--takeover-delay", "1s"])
            .arg("--data-dir")
            .arg(&self.data)
            .envs(self.extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(log);
        if let Some(jobs) = jobs {
            cmd.arg("--jobs").arg(jobs);
        }
        let mut child = cmd.spawn().expect("spawn sundial run");
        self.addr = Some(common::wait_listening(&mut child, &self.log, "sundial run"));
        self.child = Some(child);
    }

    fn pid(&self) -> Option<Pid> {
        self.child
            .as_ref()
            .map(|c| Pid::from_raw(i32::try_from(c.id()).expect("pid")))
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn stop(&mut self) {
        if let (Some(pid), Some(mut child)) = (self.pid(), self.child.take()) {
            let _ = kill(pid, Signal::SIGTERM);
            let _ = child.wait();
        }
    }

    fn get(&self, path: &str) -> String {
        http(self.addr.expect("started"), "GET", path, b"", &[]).body
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = kill(pid, Signal::SIGCONT);
        }
        self.kill9();
    }
}

/// A jobs file of every-second jobs appending to `out`.
fn jobs_file(dir: &Path, out: &Path, jobs: &[&str], extra: &str) -> PathBuf {
    let mut text = String::new();
    for job in jobs {
        text.push_str(&format!(
            "[[job]]\nid = \"{job}\"\nevery = \"1s\"\nalign = true\n{extra}\
             command = [\"sh\", \"-c\", \"echo \\\"$SUNDIAL_JOB_ID $SUNDIAL_FIRE_TIME $SUNDIAL_NODE_ID $SUNDIAL_FENCING_TOKEN $(date +%s%3N)\\\" >> {}\"]\n\n",
            out.display()
        ));
    }
    let path = dir.join("jobs.toml");
    std::fs::write(&path, text).expect("jobs file");
    path
}

/// One line of the shared file.
#[derive(Debug, Clone)]
struct Ran {
    job: String,
    nominal: Timestamp,
    node: String,
    wall_ms: i64,
}

fn read_runs(out: &Path) -> Vec<Ran> {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let job = f.next()?.to_owned();
            let nominal: Timestamp = f.next()?.parse().ok()?;
            let node = f.next()?.to_owned();
            let _token = f.next()?;
            let wall_ms = f.next()?.parse().ok()?;
            Some(Ran {
                job,
                nominal,
                node,
                wall_ms,
            })
        })
        .collect()
}

/// Fire keys in etcd: (job, instant ms) → state.
fn fire_states(etcd: &EtcdCluster, prefix: &str) -> BTreeMap<(String, i64), String> {
    let out = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", etcd.endpoints().join(",")))
        .args(["get", "--prefix", &format!("/{prefix}/fires/")])
        .output()
        .expect("etcdctl");
    assert!(out.status.success(), "etcdctl get failed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    let mut states = BTreeMap::new();
    for pair in lines.chunks(2) {
        let [key, value] = pair else { continue };
        let value: Value = serde_json::from_str(value).unwrap_or(Value::Null);
        let mut parts = key.rsplitn(3, '/');
        let (Some(ms), Some(job)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(ms) = ms.parse::<i64>() else { continue };
        states.insert(
            (job.to_owned(), ms),
            value["state"].as_str().unwrap_or("?").to_owned(),
        );
    }
    states
}

/// The exactly-once accounting over `[from, to)` (whole seconds): returns
/// (expected, ran once, lost) and panics on a duplicate or an unexplained gap.
fn account(
    runs: &[Ran],
    states: &BTreeMap<(String, i64), String>,
    jobs: &[&str],
    from: Timestamp,
    to: Timestamp,
) -> (usize, usize, usize) {
    let mut seen: BTreeMap<(String, i64), Vec<&Ran>> = BTreeMap::new();
    for r in runs {
        seen.entry((r.job.clone(), r.nominal.as_millisecond()))
            .or_default()
            .push(r);
    }
    let dups: Vec<_> = seen.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(dups.is_empty(), "fires that ran more than once: {dups:#?}");
    let (mut expected, mut once, mut lost) = (0, 0, 0);
    let mut gaps = Vec::new();
    let first = from.as_second() + 1;
    for job in jobs {
        for sec in first..to.as_second() {
            expected += 1;
            let key = (job.to_string(), sec * 1000);
            if seen.contains_key(&key) {
                once += 1;
            } else if states.get(&key).map(String::as_str) == Some("lost") {
                lost += 1;
            } else {
                gaps.push((key, states.get(&(job.to_string(), sec * 1000)).cloned()));
            }
        }
    }
    assert!(
        gaps.is_empty(),
        "fires neither run nor recorded lost: {gaps:?}"
    );
    (expected, once, lost)
}

/// Lateness (ms) of each run: its wall-clock start minus its nominal instant.
fn lateness(runs: &[Ran]) -> Vec<i64> {
    runs.iter()
        .map(|r| r.wall_ms - r.nominal.as_millisecond())
        .collect()
}

fn random_below(n: u64) -> u64 {
    let mut b = [0_u8; 8];
    getrandom::fill(&mut b).expect("entropy");
    u64::from_le_bytes(b) % n.max(1)
}

const JOBS: [&str; 3] = ["alpha", "beta", "gamma"];

fn chaos_secs() -> u64 {
    std::env::var("SUNDIAL_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
}

#[test]
fn chaos() {
    run_chaos("chaos", &[], chaos_secs());
}

/// The chaos run with one node's clock 700 ms fast and another's 400 ms slow.
#[test]
fn chaos_with_skewed_clocks() {
    run_chaos(
        "chaosskew",
        &[("n1", "700"), ("n2", "-400")],
        chaos_secs() * 2 / 3,
    );
}

/// Three nodes (clock offsets by node id), `secs` seconds of kills; asserts the
/// exactly-once accounting and reports it.
fn run_chaos(prefix: &str, offsets: &[(&str, &str)], secs: u64) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().to_owned();
    // SUNDIALTEST_KEEP_DIR=1 keeps the node logs and the fires file for a post-mortem.
    let _tmp = if std::env::var_os("SUNDIALTEST_KEEP_DIR").is_some() {
        eprintln!("{prefix}: keeping {}", tmp.keep().display());
        None
    } else {
        Some(tmp)
    };
    let mut etcd = EtcdCluster::start(3);
    let url = etcd.url(prefix);
    let out = &root.join("fires.txt");
    let jobs = jobs_file(&root, out, &JOBS, "");
    let mut nodes: Vec<Node> = ["n1", "n2", "n3"]
        .iter()
        .map(|id| {
            let env: Vec<(&str, &str)> = offsets
                .iter()
                .filter(|(n, _)| n == id)
                .map(|(_, ms)| ("SUNDIALTEST_CLOCK_OFFSET_MS", *ms))
                .collect();
            Node::new(&root, id, &env)
        })
        .collect();
    for node in &mut nodes {
        node.start(&url, Some(&jobs));
    }
    let started = Timestamp::now();
    let end = Instant::now() + Duration::from_secs(secs);
    let mut events = Vec::new();
    let mut node_kills = 0;
    let mut leader_kills = 0;
    let halfway = Instant::now() + Duration::from_secs(secs / 2);
    let mut delta_added: Option<Timestamp> = None;
    while Instant::now() < end {
        if delta_added.is_none() && Instant::now() >= halfway {
            // A definition change while runs go on: a fourth job, through `job apply`.
            let more = jobs_file(&root, out, &["alpha", "beta", "gamma", "delta"], "");
            let applied = sundial()
                .args(["job", "apply", "--cluster", &url])
                .arg(&more)
                .output()
                .expect("job apply");
            if applied.status.success() {
                delta_added = Some(Timestamp::now());
                events.push(format!("{} job apply: delta added", Timestamp::now()));
            }
        }
        std::thread::sleep(Duration::from_millis(4000 + random_below(4000)));
        if random_below(3) == 0 {
            if let Some(leader) = etcd.leader() {
                etcd.kill(leader);
                leader_kills += 1;
                events.push(format!("{} kill etcd leader m{leader}", Timestamp::now()));
                std::thread::sleep(Duration::from_millis(2000 + random_below(2000)));
                etcd.restart(leader);
                events.push(format!("{} restart etcd m{leader}", Timestamp::now()));
            }
        } else {
            let i = usize::try_from(random_below(3)).expect("index");
            nodes[i].kill9();
            node_kills += 1;
            events.push(format!("{} kill -9 {}", Timestamp::now(), nodes[i].id));
            std::thread::sleep(Duration::from_millis(1000 + random_below(3000)));
            nodes[i].start(&url, Some(&jobs));
            events.push(format!("{} restart {}", Timestamp::now(), nodes[i].id));
        }
    }
    let stopped = Timestamp::now();
    // Let the last fires finish and lost claims be reaped (TTL 6 s + housekeeping).
    std::thread::sleep(Duration::from_secs(10));
    for node in &mut nodes {
        node.stop();
    }
    etcd.wait_healthy(Duration::from_secs(20));
    let runs = read_runs(out);
    let states = fire_states(&etcd, prefix);
    eprintln!("chaos events:\n{}", events.join("\n"));
    // Skip the first 5 s (the nodes were starting) and the last 2 s.
    let from = started + jiff::SignedDuration::from_secs(5);
    let to = stopped - jiff::SignedDuration::from_secs(2);
    let (mut expected, mut once, mut lost) = account(&runs, &states, &JOBS, from, to);
    let added = delta_added.expect("delta was applied");
    let (e, o, l) = account(
        &runs,
        &states,
        &["delta"],
        added + jiff::SignedDuration::from_secs(3),
        to,
    );
    assert!(e > 0 && o > 0, "delta ran after it was added");
    (expected, once, lost) = (expected + e, once + o, lost + l);
    let mut late = lateness(&runs);
    late.sort_unstable();
    let max_late = late.last().copied().unwrap_or(0);
    let p50 = late.get(late.len() / 2).copied().unwrap_or(0);
    eprintln!(
        "{prefix} {secs}s: {node_kills} node kills, {leader_kills} etcd leader kills; \
         {expected} expected fires: {once} ran exactly once, {lost} recorded lost, 0 duplicates; \
         lateness p50 {p50} ms, max {max_late} ms (failover)"
    );
    assert!(
        once > expected * 8 / 10,
        "most fires ran: {once}/{expected}"
    );
    let per_node: BTreeSet<&str> = runs.iter().map(|r| r.node.as_str()).collect();
    assert!(per_node.len() >= 2, "load spread over nodes: {per_node:?}");
}

#[test]
fn skew() {
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = EtcdCluster::start(3);
    let url = etcd.url("skew");
    let out = dir.path().join("fires.txt");
    let jobs = jobs_file(dir.path(), &out, &JOBS, "");
    let offsets = [("n1", "700"), ("n2", "-400"), ("n3", "0")];
    let mut nodes: Vec<Node> = offsets
        .iter()
        .map(|(id, ms)| Node::new(dir.path(), id, &[("SUNDIALTEST_CLOCK_OFFSET_MS", ms)]))
        .collect();
    for node in &mut nodes {
        node.start(&url, Some(&jobs));
    }
    let started = Timestamp::now();
    std::thread::sleep(Duration::from_secs(20));
    let health: Value = serde_json::from_str(&nodes[0].get("/healthz")).expect("health");
    let metrics = nodes[0].get("/metrics");
    let stopped = Timestamp::now();
    std::thread::sleep(Duration::from_secs(3));
    for node in &mut nodes {
        node.stop();
    }
    assert_eq!(health["cluster"]["claiming"], false, "{health}");
    let skew = health["cluster"]["skew_ms"].as_i64().expect("skew");
    assert!((550..=850).contains(&skew), "{health}");
    assert!(metrics.contains("sundial_cluster_claiming 0"), "{metrics}");
    let runs = read_runs(&out);
    let states = fire_states(&etcd, "skew");
    let from = started + jiff::SignedDuration::from_secs(6);
    let to = stopped - jiff::SignedDuration::from_secs(2);
    let (expected, once, lost) = account(&runs, &states, &JOBS, from, to);
    assert_eq!(lost, 0);
    assert_eq!(once, expected);
    // After the first seconds, the fast node runs nothing.
    let fast_late: Vec<_> = runs
        .iter()
        .filter(|r| r.node == "n1" && r.nominal > from)
        .collect();
    assert!(
        fast_late.is_empty(),
        "the skewed node kept claiming: {fast_late:?}"
    );
    eprintln!("skew: {expected} fires ran exactly once on n2/n3; n1 measured {skew} ms");
}

#[test]
fn paused_node_is_fenced_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = EtcdCluster::start(1);
    let url = etcd.url("pause");
    let out = dir.path().join("fires.txt");
    // Slow jobs (2 s) so that a node is likely to be running one when paused.
    let mut text = String::new();
    for job in ["s1", "s2", "s3", "s4"] {
        text.push_str(&format!(
            "[[job]]\nid = \"{job}\"\nevery = \"3s\"\nalign = true\n\
             command = [\"sh\", \"-c\", \"sleep 2; echo \\\"$SUNDIAL_JOB_ID $SUNDIAL_FIRE_TIME $SUNDIAL_NODE_ID $SUNDIAL_FENCING_TOKEN $(date +%s%3N)\\\" >> {}\"]\n\n",
            out.display()
        ));
    }
    let jobs = dir.path().join("jobs.toml");
    std::fs::write(&jobs, text).expect("jobs");
    let mut nodes: Vec<Node> = ["p1", "p2", "p3"]
        .iter()
        .map(|id| Node::new(dir.path(), id, &[]))
        .collect();
    for node in &mut nodes {
        node.start(&url, Some(&jobs));
    }
    // Wait until p1 runs a fire, then stop it past its lease (6 s TTL).
    let status = || -> Value {
        let output = sundial()
            .args(["cluster", "status", "--json", "--cluster", &url])
            .output()
            .expect("status");
        serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
    };
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        let s = status();
        let busy = s["in_flight"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f["node"] == "p1"));
        if busy {
            break;
        }
        assert!(Instant::now() < give_up, "p1 never ran a fire: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = nodes[0].pid().expect("running");
    kill(pid, Signal::SIGSTOP).expect("SIGSTOP");
    std::thread::sleep(Duration::from_secs(10));
    kill(pid, Signal::SIGCONT).expect("SIGCONT");
    std::thread::sleep(Duration::from_secs(8));
    let metrics = nodes[0].get("/metrics");
    let health: Value = serde_json::from_str(&nodes[0].get("/healthz")).expect("health");
    for node in &mut nodes {
        node.stop();
    }
    let fail_stops = metric(&metrics, "sundial_cluster_fail_stops_total");
    let fenced = metric(&metrics, "sundial_cluster_completions_fenced_total");
    assert!(fail_stops >= 1, "p1 failed stop after its lease: {metrics}");
    assert!(fenced >= 1, "p1's completion was fenced out: {metrics}");
    assert_eq!(health["cluster"]["session"], true, "p1 rejoined: {health}");
    let states = fire_states(&etcd, "pause");
    assert!(
        states.values().any(|s| s == "lost"),
        "p1's fire was recorded lost: {states:?}"
    );
    // Never twice.
    let runs = read_runs(&out);
    let mut seen = BTreeSet::new();
    for r in &runs {
        assert!(
            seen.insert((r.job.clone(), r.nominal)),
            "ran twice: {} at {}",
            r.job,
            r.nominal
        );
    }
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).map(str::trim))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn cli_tools() {
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = EtcdCluster::start(1);
    let url = etcd.url("tools");
    let out = dir.path().join("fires.txt");
    let jobs = jobs_file(dir.path(), &out, &["a", "b"], "");
    // Bad URLs are exit 2, naming what is wrong.
    let bad = sundial()
        .args(["cluster", "status", "--cluster", "http://x:1"])
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("etcd://"));
    // `job apply` stores the file; a fixed-delay job is refused with its name.
    let applied = sundial()
        .args(["job", "apply", "--json", "--cluster", &url])
        .arg(&jobs)
        .output()
        .expect("apply");
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let report: Value = serde_json::from_slice(&applied.stdout).expect("json");
    assert_eq!(report["added"], serde_json::json!(["a", "b"]));
    let delay = dir.path().join("delay.toml");
    std::fs::write(
        &delay,
        "[[job]]\nid = \"d\"\ndelay = \"1m\"\ncommand = [\"true\"]\n",
    )
    .expect("write");
    let refused = sundial()
        .args(["job", "apply", "--cluster", &url])
        .arg(&delay)
        .output()
        .expect("apply");
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("job `d`"));
    // A node without --jobs runs what the cluster holds.
    let mut node = Node::new(dir.path(), "t1", &[]);
    node.start(&url, None);
    let listed: Value = serde_json::from_str(&node.get("/api/v1/jobs")).expect("jobs");
    assert_eq!(listed["jobs"].as_array().map(Vec::len), Some(2), "{listed}");
    // The REST API writes to the cluster: create, pause, delete.
    let addr = node.addr.expect("addr");
    let created = http(
        addr,
        "POST",
        "/api/v1/jobs",
        br#"{"id": "api-job", "cron": "0 3 * * *", "timezone": "UTC", "command": ["true"]}"#,
        &[("content-type", "application/json")],
    );
    assert_eq!(created.status, 201, "{}", created.body.clone());
    // A fixed-delay job cannot run in a cluster: 400 naming the field.
    let refused = http(
        addr,
        "POST",
        "/api/v1/jobs",
        br#"{"id": "slow", "delay": "1m", "command": ["true"]}"#,
        &[("content-type", "application/json")],
    );
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused.body.contains("\"field\":\"delay\""),
        "{}",
        refused.body
    );
    let paused = http(addr, "POST", "/api/v1/jobs/api-job/pause", b"", &[]);
    assert_eq!(paused.status, 200, "{}", paused.body.clone());
    let view: Value = serde_json::from_str(&paused.body.clone()).expect("json");
    assert_eq!(view["paused"], true);
    let status = sundial()
        .args(["cluster", "status", "--cluster", &url])
        .output()
        .expect("status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("1 node") && text.contains("3 jobs") && text.contains("t1"),
        "{text}"
    );
    let deleted = http(addr, "DELETE", "/api/v1/jobs/api-job", b"", &[]);
    assert_eq!(deleted.status, 204, "{}", deleted.body.clone());
    let listed: Value = serde_json::from_str(&node.get("/api/v1/jobs")).expect("jobs");
    assert_eq!(listed["jobs"].as_array().map(Vec::len), Some(2), "{listed}");
    // `sundial serve --cluster` joins too (its close-out claims through the cluster).
    let data = dir.path().join("serve-data");
    let data = data.to_str().expect("utf-8");
    let serve = common::Server::start(
        &[
            "--data-dir",
            data,
            "--cluster",
            &url,
            "--node-id",
            "analytics-1",
        ],
        dir.path(),
    );
    let status = sundial()
        .args(["cluster", "status", "--json", "--cluster", &url])
        .output()
        .expect("status");
    let status: Value = serde_json::from_slice(&status.stdout).expect("json");
    let names: Vec<&str> = status["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["node"].as_str())
        .collect();
    assert!(
        names.contains(&"analytics-1") && names.contains(&"t1"),
        "{status}"
    );
    serve.stop();
    node.stop();
}
