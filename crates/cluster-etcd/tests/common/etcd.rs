//! Real etcd for tests: one or more members started from Debian's `etcd` binary
//! (etcd-server 3.4) on 127.0.0.1 with temporary data directories, killed on drop.
//!
//! A missing binary fails the test loudly (install it with `apt-get install -y
//! etcd-server`, or run `scripts/services.sh`): tests that need etcd never skip.
#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One member's fixed settings.
struct Member {
    name: String,
    client: u16,
    peer: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// A running etcd cluster.
pub struct EtcdCluster {
    members: Vec<Member>,
    initial: String,
    token: String,
    _root: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn etcd_binary() -> &'static str {
    for candidate in ["/usr/bin/etcd", "/usr/local/bin/etcd"] {
        if std::path::Path::new(candidate).exists() {
            return candidate;
        }
    }
    panic!("etcd is not installed: run `apt-get install -y etcd-server` or scripts/services.sh");
}

impl EtcdCluster {
    /// Starts `n` members and waits until the cluster answers.
    pub fn start(n: usize) -> Self {
        let root = tempfile::tempdir().expect("tempdir");
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client: free_port(),
                peer: free_port(),
                dir: root.path().join(format!("m{i}")),
                child: None,
            })
            .collect();
        let initial = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Self {
            members,
            initial,
            token: format!("sundial-test-{}-{}", std::process::id(), free_port()),
            _root: root,
        };
        for i in 0..n {
            cluster.spawn(i, true);
        }
        cluster.wait_healthy(Duration::from_secs(30));
        cluster
    }

    fn spawn(&mut self, i: usize, new: bool) {
        let m = &mut self.members[i];
        std::fs::create_dir_all(&m.dir).expect("member dir");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(m.dir.with_extension("log"))
            .expect("log file");
        let child = Command::new(etcd_binary())
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(m.dir.join("data"))
            .arg("--listen-client-urls")
            .arg(format!("http://127.0.0.1:{}", m.client))
            .arg("--advertise-client-urls")
            .arg(format!("http://127.0.0.1:{}", m.client))
            .arg("--listen-peer-urls")
            .arg(format!("http://127.0.0.1:{}", m.peer))
            .arg("--initial-advertise-peer-urls")
            .arg(format!("http://127.0.0.1:{}", m.peer))
            .arg("--initial-cluster")
            .arg(&self.initial)
            .arg("--initial-cluster-state")
            .arg(if new { "new" } else { "existing" })
            .arg("--initial-cluster-token")
            .arg(&self.token)
            // Quick elections on one machine: 100 ms heartbeats, 1 s election timeout.
            .arg("--heartbeat-interval")
            .arg("100")
            .arg("--election-timeout")
            .arg("1000")
            .arg("--log-level")
            .arg("warn")
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start etcd");
        m.child = Some(child);
    }

    /// Client endpoints, `http://127.0.0.1:PORT`.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client))
            .collect()
    }

    /// `etcd://127.0.0.1:P1,127.0.0.1:P2/PREFIX`.
    pub fn url(&self, prefix: &str) -> String {
        let hosts: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client))
            .collect();
        format!("etcd://{}/{prefix}", hosts.join(","))
    }

    fn etcdctl(&self, endpoints: &[String], args: &[&str]) -> Option<String> {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", endpoints.join(",")))
            .arg("--command-timeout=2s")
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn live(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|i| self.members[*i].child.is_some())
            .collect()
    }

    /// Waits until every running member reports healthy.
    pub fn wait_healthy(&self, within: Duration) {
        let give_up = Instant::now() + within;
        loop {
            let ok = self.live().iter().all(|i| {
                let ep = vec![self.endpoints()[*i].clone()];
                self.etcdctl(&ep, &["endpoint", "health"]).is_some()
            });
            if ok {
                return;
            }
            assert!(
                Instant::now() < give_up,
                "etcd did not become healthy in {within:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The index of the current leader, if one is known.
    pub fn leader(&self) -> Option<usize> {
        for i in self.live() {
            let ep = vec![self.endpoints()[i].clone()];
            let Some(json) = self.etcdctl(&ep, &["endpoint", "status", "-w", "json"]) else {
                continue;
            };
            let v: serde_json::Value = serde_json::from_str(&json).ok()?;
            let status = &v[0]["Status"];
            let member = status["header"]["member_id"].as_u64();
            let leader = status["leader"].as_u64();
            if member.is_some() && member == leader {
                return Some(i);
            }
        }
        None
    }

    /// SIGKILLs member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Restarts member `i` on its data directory.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i, false);
    }

    /// Whether member `i` runs.
    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].child.is_some()
    }

    /// Compacts the key space at the current revision.
    pub fn compact(&self) -> i64 {
        let eps: Vec<String> = self
            .live()
            .iter()
            .map(|i| self.endpoints()[*i].clone())
            .collect();
        let json = self
            .etcdctl(&eps, &["endpoint", "status", "-w", "json"])
            .expect("status");
        let v: serde_json::Value = serde_json::from_str(&json).expect("json");
        let rev = v[0]["Status"]["header"]["revision"]
            .as_i64()
            .expect("revision");
        self.etcdctl(&eps, &["compact", &rev.to_string()])
            .expect("compact");
        rev
    }

    /// Members.
    pub fn len(&self) -> usize {
        self.members.len()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
