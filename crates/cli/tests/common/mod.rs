//! Shared by the `sundial serve` integration tests: running the binary, a minimal HTTP
//! client, and reading the store back.
//!
//! Servers listen on 127.0.0.1 port 0; the address is read from the `listening on`
//! line the binary prints on stdout. Every server is killed when its handle drops.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sundial_storage_sql::SqlStore;

/// The `sundial` binary with no `SUNDIAL_*` variables from the test environment.
pub(crate) fn sundial() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sundial"));
    for (key, _) in std::env::vars() {
        if key.starts_with("SUNDIAL_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// An app created through the CLI.
#[derive(Debug, Clone)]
pub(crate) struct TestApp {
    pub(crate) id: i64,
    pub(crate) key: String,
    pub(crate) secret: String,
}

/// `sundial app create NAME --timezone TZ --json` with the given store flags.
pub(crate) fn create_app(store_flags: &[&str], name: &str, timezone: &str) -> TestApp {
    let output = sundial()
        .args(["app", "create", name, "--timezone", timezone, "--json"])
        .args(store_flags)
        .output()
        .expect("run sundial app create");
    assert!(
        output.status.success(),
        "app create failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    TestApp {
        id: v["id"].as_i64().expect("id"),
        key: v["app_key"].as_str().expect("key").to_owned(),
        secret: v["app_secret"].as_str().expect("secret").to_owned(),
    }
}

/// Reads the child's stdout (piped) until its `listening on http://ADDR` line and returns
/// the address; if the child exits first, kills it and panics with its log.
pub(crate) fn wait_listening(child: &mut Child, log: &Path, what: &str) -> SocketAddr {
    let stdout = child.stdout.take().expect("stdout piped");
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(rest) = line.strip_prefix("listening on http://") {
                    return rest.parse().expect("address");
                }
            }
            _ => {
                let _ = child.kill();
                let text = std::fs::read_to_string(log).unwrap_or_default();
                panic!("{what} exited before listening:\n{text}");
            }
        }
    }
}

/// A running `sundial serve`.
pub(crate) struct Server {
    child: Child,
    pub(crate) addr: SocketAddr,
    pub(crate) log: PathBuf,
}

impl Server {
    /// Starts `sundial serve --listen 127.0.0.1:0 ARGS…`, logging to `log_dir`, and waits
    /// until it listens.
    pub(crate) fn start(args: &[&str], log_dir: &Path) -> Server {
        let log = log_dir.join(format!(
            "serve-{}.log",
            Instant::now().elapsed().as_nanos() ^ u128::from(std::process::id()) ^ rand_suffix()
        ));
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut child = sundial()
            .args(["--log-level", "info", "serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .expect("spawn sundial serve");
        let addr = wait_listening(&mut child, &log, "sundial serve");
        Server { child, addr, log }
    }

    /// SIGKILL, as a crash.
    pub(crate) fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and waits for a clean exit.
    pub(crate) fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let status = self.child.wait().expect("wait");
        assert!(
            status.success(),
            "serve exited with {status}: {}",
            self.log_text()
        );
    }

    /// What the server logged so far.
    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `POST path` with a JSON (or any) body.
    pub(crate) fn post(&self, path: &str, body: &[u8], headers: &[(&str, &str)]) -> Reply {
        http(self.addr, "POST", path, body, headers)
    }

    /// `GET path`.
    pub(crate) fn get(&self, path: &str) -> Reply {
        http(self.addr, "GET", path, b"", &[])
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> u128 {
    let mut b = [0_u8; 8];
    getrandom::fill(&mut b).expect("entropy");
    u128::from(u64::from_le_bytes(b))
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: String,
}

impl Reply {
    /// The body as JSON.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`).
pub(crate) fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> Reply {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        && !body.is_empty()
    {
        request.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("write head");
    stream.write_all(body).expect("write body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read reply");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").expect("HTTP head");
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    Reply { status, body }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n]);
        rest = &tail[n + 2..];
    }
    out
}

/// Runs a store call on one runtime shared by the whole test binary: a PostgreSQL pool's
/// connections belong to the runtime that opened them, so every call must use it.
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime")
        })
        .block_on(f)
}

/// Opens the store a server uses.
pub(crate) fn open_store(url: &str) -> SqlStore {
    block_on(SqlStore::connect(url)).expect("open store")
}

/// Polls `check` until it returns `true` or `timeout` passes (then panics with `what`).
pub(crate) fn wait_until(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// Today's day number in `timezone` (days since 1970-01-01), as the aggregator counts.
pub(crate) fn today(timezone: &str) -> i32 {
    let tz = jiff::tz::TimeZone::get(timezone).expect("zone");
    sundial_analytics::aggregate::day_and_hour(jiff::Timestamp::now().as_millisecond(), &tz).0
}

/// Epoch milliseconds now.
pub(crate) fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}
