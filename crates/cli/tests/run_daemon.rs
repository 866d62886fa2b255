//! `sundial run` end to end: `--check`, commands run on schedule with their
//! environment, the REST API, SIGHUP reloads, and restart after `kill -9` on the same
//! SQLite file.
//!
//! Every daemon listens on 127.0.0.1 port 0 and logs to a file in its temporary
//! directory. Nothing asserts on elapsed time: tests poll (generously) for behaviour.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use common::{Reply, http, sundial, wait_until};
use jiff::Timestamp;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

const PATIENCE: Duration = Duration::from_secs(60);

/// A running `sundial run`.
struct Daemon {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Daemon {
    /// `sundial run --jobs JOBS --data-dir DATA --listen 127.0.0.1:0 EXTRA…`.
    fn start(jobs: &Path, data: &Path, extra: &[&str], log: PathBuf) -> Daemon {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let mut child = sundial()
            .args(["--log-level", "info", "run", "--listen", "127.0.0.1:0"])
            .arg("--jobs")
            .arg(jobs)
            .arg("--data-dir")
            .arg(data)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .expect("spawn sundial run");
        let addr = common::wait_listening(&mut child, &log, "sundial run");
        Daemon { child, addr, log }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid"))
    }

    fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).expect("signal");
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn call(&self, method: &str, path: &str, body: &str) -> Reply {
        http(self.addr, method, path, body.as_bytes(), &[])
    }

    fn json(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        let reply = self.call(method, path, body);
        let value = if reply.body.is_empty() {
            Value::Null
        } else {
            reply.json()
        };
        (reply.status, value)
    }

    fn runs(&self, job: &str) -> Vec<Value> {
        let (status, body) = self.json("GET", &format!("/api/v1/jobs/{job}/runs?limit=1000"), "");
        assert_eq!(status, 200, "{body}");
        body["runs"].as_array().expect("runs").clone()
    }

    fn job_ids(&self) -> Vec<String> {
        let (status, body) = self.json("GET", "/api/v1/jobs", "");
        assert_eq!(status, 200, "{body}");
        body["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .map(|j| j["id"].as_str().expect("id").to_owned())
            .collect()
    }

    /// SIGKILL, as a crash.
    fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and a clean exit.
    fn stop(mut self) {
        self.signal(Signal::SIGTERM);
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "exit {status}: {}", self.log_text());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write file");
}

/// A shell command as a TOML array.
fn sh(script: &str) -> String {
    format!("[\"sh\", \"-c\", {}]", toml_string(script))
}

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).expect("string")
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn ts(v: &Value) -> Timestamp {
    v.as_str().expect("timestamp").parse().expect("RFC 3339")
}

/// On drop (also when a test fails): kills the process whose id is in the file (a
/// job's command left behind by `kill -9` of the daemon).
struct KillPidIn(PathBuf);

impl Drop for KillPidIn {
    fn drop(&mut self) {
        if let Ok(text) = std::fs::read_to_string(&self.0)
            && let Ok(pid) = text.trim().parse::<i32>()
        {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// On drop (also when a test fails): creates the file a waiting job's command polls
/// for, so that it ends.
struct Release(PathBuf);

impl Drop for Release {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.0, "");
    }
}

#[test]
fn check_prints_next_fires_and_rejects_bad_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("jobs.toml");
    write(
        &good,
        "[[job]]\nid = \"nightly\"\ncron = \"0 3 * * *\"\ntimezone = \"Europe/Berlin\"\n\
         command = [\"true\"]\n\n[[job]]\nid = \"ping\"\nevery = \"90s\"\n\
         http = { url = \"http://127.0.0.1:9/\" }\n",
    );
    let out = sundial()
        .args(["run", "--check"])
        .arg(&good)
        .output()
        .expect("run --check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(": OK, 2 jobs"), "{stdout}");
    assert!(
        stdout.contains("job `nightly` (line 1): cron `0 3 * * *` in Europe/Berlin"),
        "{stdout}"
    );
    assert!(
        stdout.contains("job `ping` (line 7): every 1m 30s"),
        "{stdout}"
    );
    let nightly: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("job `nightly`"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    assert_eq!(nightly.len(), 5, "{stdout}");
    for fire in &nightly {
        assert!(fire.contains("T03:00:00+0"), "{fire}");
        assert!(fire.ends_with("[Europe/Berlin]"), "{fire}");
    }

    let out = sundial()
        .args(["run", "--json", "--count", "3", "--check"])
        .arg(&good)
        .output()
        .expect("run --check --json");
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["ok"], true);
    assert_eq!(v["jobs"][1]["id"], "ping");
    let fires: Vec<Timestamp> = v["jobs"][1]["next_fires"]
        .as_array()
        .expect("fires")
        .iter()
        .map(ts)
        .collect();
    assert_eq!(fires.len(), 3);
    assert_eq!(fires[1].duration_since(fires[0]).as_secs(), 90);
    assert_eq!(fires[2].duration_since(fires[1]).as_secs(), 90);

    let bad = dir.path().join("bad.toml");
    for (text, expected) in [
        (
            "[[job]]\nid = \"a\"\ncron = \"61 * * * *\"\ncommand = [\"true\"]\n",
            "bad.toml:3:8: job `a`: field `cron`",
        ),
        (
            "[[job]]\nid = \"a\"\nevery = \"1s\"\ncommand = [\"true\"]\nretries = 3\n",
            "bad.toml:5:1: unknown field `retries`",
        ),
        (
            "[[job]]\nid = \"a\"\nevery = \"1s\"\ncommand = [\"true\"]\noverlap = \"never\"\n",
            "bad.toml:5:11: job `a`: field `overlap`: `never` is not an overlap policy",
        ),
    ] {
        write(&bad, text);
        let out = sundial()
            .args(["run", "--check"])
            .arg(&bad)
            .output()
            .expect("run --check");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(out.stdout.is_empty());
        // The daemon refuses the same file before starting.
        let out = sundial()
            .args(["run", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("--jobs")
            .arg(&bad)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains(expected));
    }
}

#[test]
fn command_jobs_run_on_schedule_with_their_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("env.txt");
    let jobs = dir.path().join("jobs.toml");
    let script = format!(
        "echo \"$SUNDIAL_JOB_ID $SUNDIAL_RUN_ID $SUNDIAL_FIRE_TIME $SUNDIAL_ATTEMPT \
         $SUNDIAL_NODE_ID $SUNDIAL_FENCING_TOKEN\" >> '{}'; echo \"tail of $SUNDIAL_RUN_ID\"",
        out.display()
    );
    write(
        &jobs,
        &format!(
            "[[job]]\nid = \"tick\"\nevery = \"1s\"\ncommand = {}\n",
            sh(&script)
        ),
    );
    let daemon = Daemon::start(
        &jobs,
        &dir.path().join("data"),
        &["--node-id", "node-a"],
        dir.path().join("run.log"),
    );
    wait_until(PATIENCE, "three runs", || lines(&out).len() >= 3);
    let seen = lines(&out);
    let mut fires = Vec::new();
    for line in &seen {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields.len(), 6, "{line}");
        assert_eq!(fields[0], "tick");
        assert_eq!(fields[1].len(), 32, "run id: {line}");
        fires.push(
            fields[2]
                .parse::<Timestamp>()
                .expect("SUNDIAL_FIRE_TIME is RFC 3339"),
        );
        assert_eq!(fields[3], "1", "attempt");
        assert_eq!(fields[4], "node-a");
        assert!(fields[5].parse::<u64>().expect("token") > 0);
    }
    for pair in fires.windows(2) {
        let gap = pair[1].duration_since(pair[0]);
        assert!(
            gap.as_secs() >= 1 && gap.subsec_nanos() == 0,
            "fires on the 1s lattice: {pair:?}"
        );
    }
    // The ledger has them, with their output tail.
    wait_until(PATIENCE, "a finished run in the ledger", || {
        daemon
            .runs("tick")
            .iter()
            .any(|r| r["state"] == "succeeded")
    });
    let runs = daemon.runs("tick");
    let run = runs
        .iter()
        .find(|r| r["state"] == "succeeded")
        .expect("succeeded run");
    let run_id = run["run_id"].as_str().expect("run id");
    assert!(
        run["output"]
            .as_str()
            .expect("output")
            .contains(&format!("tail of {run_id}")),
        "{run}"
    );
    assert_eq!(run["node_id"], "node-a");
    let line = seen
        .iter()
        .chain(lines(&out).iter())
        .find(|l| l.contains(run_id))
        .cloned()
        .expect("the run wrote its line");
    assert!(
        line.contains(&ts(&run["nominal"]).to_string()),
        "{line} vs {run}"
    );
    let (status, job) = daemon.json("GET", "/api/v1/jobs/tick", "");
    assert_eq!(status, 200);
    assert_eq!(job["owner"], "file");
    assert!(job["fires"].as_u64().expect("fires") >= 3, "{job}");
    let metrics = daemon.call("GET", "/metrics", "");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .body
            .contains("sundial_scheduler_runs_finished_total{outcome=\"succeeded\"}"),
        "{}",
        metrics.body
    );
    assert_eq!(daemon.call("GET", "/healthz", "").status, 200);
    daemon.stop();
}

#[test]
fn rest_api_round_trip_and_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let jobs = dir.path().join("jobs.toml");
    write(
        &jobs,
        "[[job]]\nid = \"from-file\"\ncron = \"0 0 1 1 *\"\ncommand = [\"true\"]\n",
    );
    let marker = dir.path().join("api-ran");
    let daemon = Daemon::start(
        &jobs,
        &dir.path().join("data"),
        &[],
        dir.path().join("run.log"),
    );

    let body = json!({
        "id": "api-job",
        "cron": "0 * * * *",
        "timezone": "America/New_York",
        "command": ["sh", "-c", format!("echo ran >> '{}'; echo api-output", marker.display())],
    })
    .to_string();
    let (status, job) = daemon.json("POST", "/api/v1/jobs", &body);
    assert_eq!(status, 201, "{job}");
    assert_eq!(job["owner"], "api");
    assert_eq!(job["next_fires"].as_array().expect("fires").len(), 5);
    let (status, _) = daemon.json("POST", "/api/v1/jobs", &body);
    assert_eq!(status, 409, "same id twice");
    assert_eq!(daemon.job_ids(), ["api-job", "from-file"]);

    let (status, job) = daemon.json("POST", "/api/v1/jobs/api-job/pause", "");
    assert_eq!((status, job["paused"].clone()), (200, json!(true)));
    let (status, job) = daemon.json("POST", "/api/v1/jobs/api-job/resume", "");
    assert_eq!((status, job["paused"].clone()), (200, json!(false)));

    let (status, outcome) = daemon.json("POST", "/api/v1/jobs/api-job/trigger", "");
    assert_eq!(status, 202, "{outcome}");
    assert_eq!(outcome["outcome"], "started");
    let run_id = outcome["run_id"].as_str().expect("run id").to_owned();
    wait_until(PATIENCE, "the triggered run to succeed", || {
        daemon
            .runs("api-job")
            .iter()
            .any(|r| r["run_id"] == run_id.as_str() && r["state"] == "succeeded")
    });
    let runs = daemon.runs("api-job");
    assert_eq!(runs.len(), 1);
    assert!(
        runs[0]["output"]
            .as_str()
            .expect("output")
            .contains("api-output")
    );
    assert_eq!(lines(&marker), ["ran"]);

    // Update: the new definition shows; the paused flag is kept.
    let (status, job) = daemon.json(
        "PUT",
        "/api/v1/jobs/api-job",
        r#"{"every": "2h", "command": ["true"]}"#,
    );
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["spec"]["trigger"]["kind"], "every");

    // Errors.
    for (method, path, body, want, field) in [
        (
            "POST",
            "/api/v1/jobs",
            r#"{"id": "x", "cron": "61 * * * *", "command": ["true"]}"#,
            400,
            Some("cron"),
        ),
        (
            "POST",
            "/api/v1/jobs",
            r#"{"id": "x", "every": "1s"}"#,
            400,
            Some("command"),
        ),
        (
            "POST",
            "/api/v1/jobs",
            r#"{"id": "x", "every": "1s", "command": ["true"], "bogus": 1}"#,
            400,
            Some("bogus"),
        ),
        ("POST", "/api/v1/jobs", r#"{"id": "x", "#, 400, None),
        ("POST", "/api/v1/jobs", r#"[1, 2]"#, 400, None),
        ("GET", "/api/v1/jobs/nope", "", 404, None),
        ("DELETE", "/api/v1/jobs/nope", "", 404, None),
        ("POST", "/api/v1/jobs/nope/pause", "", 404, None),
        ("POST", "/api/v1/jobs/nope/trigger", "", 404, None),
        ("GET", "/api/v1/jobs/nope/runs", "", 404, None),
        (
            "GET",
            "/api/v1/jobs/api-job/runs?limit=0",
            "",
            400,
            Some("limit"),
        ),
        (
            "POST",
            "/api/v1/jobs/api-job/trigger",
            r#"{"overlap": "sometimes"}"#,
            400,
            Some("overlap"),
        ),
        (
            "POST",
            "/api/v1/jobs/api-job/backfill",
            r#"{"from": "yesterday", "to": "2024-01-01T00:00:00Z"}"#,
            400,
            Some("from"),
        ),
        (
            "POST",
            "/api/v1/jobs/api-job/backfill",
            r#"{"from": "2024-01-02T00:00:00Z", "to": "2024-01-01T00:00:00Z"}"#,
            400,
            Some("to"),
        ),
        (
            "PUT",
            "/api/v1/jobs/api-job",
            r#"{"id": "other", "every": "1h", "command": ["true"]}"#,
            400,
            Some("id"),
        ),
        (
            "PUT",
            "/api/v1/jobs/from-file",
            r#"{"every": "1h", "command": ["true"]}"#,
            409,
            Some("id"),
        ),
        ("DELETE", "/api/v1/jobs/from-file", "", 409, Some("id")),
    ] {
        let (status, answer) = daemon.json(method, path, body);
        assert_eq!(status, want, "{method} {path} {body}: {answer}");
        assert!(
            answer["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{answer}"
        );
        if let Some(field) = field {
            assert_eq!(answer["field"], field, "{method} {path} {body}: {answer}");
        }
    }

    // Backfill: hourly fires in a past range run once each, not again.
    let from = "2024-01-01T00:00:00Z";
    let to = "2024-01-01T02:00:00Z";
    daemon.json(
        "PUT",
        "/api/v1/jobs/api-job",
        r#"{"cron": "0 * * * *", "command": ["true"]}"#,
    );
    let backfill = json!({"from": from, "to": to}).to_string();
    let (status, report) = daemon.json("POST", "/api/v1/jobs/api-job/backfill", &backfill);
    assert_eq!(status, 202, "{report}");
    assert_eq!(report["queued"], 3, "{report}");
    wait_until(PATIENCE, "the backfilled runs", || {
        daemon
            .runs("api-job")
            .iter()
            .filter(|r| r["state"] == "succeeded" && ts(&r["nominal"]) <= to.parse().expect("ts"))
            .count()
            == 3
    });
    let (_, report) = daemon.json("POST", "/api/v1/jobs/api-job/backfill", &backfill);
    assert_eq!(
        (report["queued"].clone(), report["already_recorded"].clone()),
        (json!(0), json!(3))
    );

    let (status, _) = daemon.json("DELETE", "/api/v1/jobs/api-job", "");
    assert_eq!(status, 204);
    let (status, _) = daemon.json("GET", "/api/v1/jobs/api-job", "");
    assert_eq!(status, 404);
    assert_eq!(daemon.job_ids(), ["from-file"]);
    daemon.stop();
}

#[test]
fn sighup_reloads_without_disturbing_a_running_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let jobs = dir.path().join("jobs.toml");
    let release = dir.path().join("release");
    let _release = Release(release.clone());
    let started = dir.path().join("slow-started");
    let added_ran = dir.path().join("added-ran");
    let slow = format!(
        "[[job]]\nid = \"slow\"\nevery = \"{{every}}\"\ncommand = {}\n",
        sh(&format!(
            "touch '{}'; while [ ! -e '{}' ]; do sleep 0.1; done; echo slow-done",
            started.display(),
            release.display()
        ))
    );
    let old = "[[job]]\nid = \"old\"\ncron = \"0 0 1 1 *\"\ncommand = [\"true\"]\n";
    write(&jobs, &format!("{}\n{old}", slow.replace("{every}", "1h")));
    let daemon = Daemon::start(
        &jobs,
        &dir.path().join("data"),
        &[],
        dir.path().join("run.log"),
    );
    assert_eq!(daemon.job_ids(), ["old", "slow"]);
    let (status, _) = daemon.json(
        "POST",
        "/api/v1/jobs",
        r#"{"id": "by-api", "cron": "0 0 1 1 *", "command": ["true"]}"#,
    );
    assert_eq!(status, 201);
    let (status, outcome) = daemon.json("POST", "/api/v1/jobs/slow/trigger", "");
    assert_eq!(
        (status, outcome["outcome"].clone()),
        (202, json!("started"))
    );
    let slow_run = outcome["run_id"].as_str().expect("run id").to_owned();
    wait_until(PATIENCE, "the slow run to start", || started.exists());

    // A bad file is logged with its line and changes nothing.
    write(
        &jobs,
        "[[job]]\nid = \"broken\"\nevery = \"often\"\ncommand = [\"true\"]\n",
    );
    daemon.signal(Signal::SIGHUP);
    wait_until(PATIENCE, "the reload error in the log", || {
        daemon
            .log_text()
            .contains("jobs.toml:3:9: job `broken`: field `every`")
    });
    assert_eq!(daemon.job_ids(), ["by-api", "old", "slow"]);

    // The new file adds `added`, drops `old`, changes `slow`'s period.
    let added = format!(
        "[[job]]\nid = \"added\"\nevery = \"1s\"\ncommand = {}\n",
        sh(&format!("echo ran >> '{}'", added_ran.display()))
    );
    write(
        &jobs,
        &format!("{}\n{added}", slow.replace("{every}", "2h")),
    );
    daemon.signal(Signal::SIGHUP);
    wait_until(PATIENCE, "the reloaded job table", || {
        daemon.job_ids() == ["added", "by-api", "slow"]
    });
    wait_until(PATIENCE, "the added job to run", || {
        !lines(&added_ran).is_empty()
    });
    let (_, job) = daemon.json("GET", "/api/v1/jobs/slow", "");
    assert_eq!(job["running"], 1, "the slow run goes on: {job}");
    assert_eq!(job["spec"]["trigger"]["period"]["secs"], 7200, "{job}");
    assert_eq!(job["owner"], "file");
    let (_, job) = daemon.json("GET", "/api/v1/jobs/by-api", "");
    assert_eq!(job["owner"], "api");
    let runs = daemon.runs("slow");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["state"], "running");

    write(&release, "");
    wait_until(PATIENCE, "the slow run to finish", || {
        daemon
            .runs("slow")
            .iter()
            .any(|r| r["run_id"] == slow_run.as_str() && r["state"] == "succeeded")
    });
    let runs = daemon.runs("slow");
    assert!(
        runs[0]["output"]
            .as_str()
            .expect("output")
            .contains("slow-done")
    );
    daemon.stop();

    // The API job and file ownership survive a restart; `old` stays gone.
    let daemon = Daemon::start(
        &jobs,
        &dir.path().join("data"),
        &[],
        dir.path().join("run.log"),
    );
    assert_eq!(daemon.job_ids(), ["added", "by-api", "slow"]);
    daemon.stop();
}

#[test]
fn restart_after_kill_9_marks_the_run_lost_and_applies_the_misfire_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let jobs = dir.path().join("jobs.toml");
    let fires = dir.path().join("fires.txt");
    let lock = dir.path().join("first.lock");
    let sleeper = dir.path().join("sleeper.pid");
    let _sleeper = KillPidIn(sleeper.clone());
    // The first run sleeps (in flight at the crash); later runs return at once.
    let script = format!(
        "echo \"$SUNDIAL_FIRE_TIME $SUNDIAL_RUN_ID\" >> '{}'; \
         if mkdir '{}' 2>/dev/null; then echo $$ > '{}'; exec sleep 600; fi",
        fires.display(),
        lock.display(),
        sleeper.display()
    );
    write(
        &jobs,
        &format!(
            "[[job]]\nid = \"tick\"\nevery = \"2s\"\nmisfire = \"run_once\"\n\
             misfire_grace = \"100ms\"\ncommand = {}\n",
            sh(&script)
        ),
    );
    let log = dir.path().join("run.log");
    let daemon = Daemon::start(&jobs, &data, &["--node-id", "n1"], log.clone());
    wait_until(PATIENCE, "the first run to be in flight", || {
        sleeper.exists() && daemon.runs("tick").iter().any(|r| r["state"] == "running")
    });
    let in_flight = daemon
        .runs("tick")
        .into_iter()
        .find(|r| r["state"] == "running")
        .expect("running run");
    let lost_id = in_flight["run_id"].as_str().expect("id").to_owned();
    daemon.kill9();
    let killed_at = Timestamp::now();
    // Stay down for a few fires (not an assertion: a wait).
    while Timestamp::now().duration_since(killed_at).as_secs() < 7 {
        std::thread::sleep(Duration::from_millis(200));
    }
    let restarted_at = Timestamp::now();
    let daemon = Daemon::start(&jobs, &data, &["--node-id", "n1"], log);
    wait_until(PATIENCE, "a run after the restart", || {
        daemon
            .runs("tick")
            .iter()
            .any(|r| r["state"] == "succeeded" && r["run_id"] != lost_id.as_str())
    });
    let runs = daemon.runs("tick");
    let lost = runs
        .iter()
        .find(|r| r["run_id"] == lost_id.as_str())
        .expect("the in-flight run is still in the ledger");
    assert_eq!(lost["state"], "lost", "{lost}");
    // No fire ran twice: every nominal instant once in the ledger and in the file.
    let mut nominal: Vec<Timestamp> = runs.iter().map(|r| ts(&r["nominal"])).collect();
    let count = nominal.len();
    nominal.sort();
    nominal.dedup();
    assert_eq!(nominal.len(), count, "{runs:?}");
    let mut written: Vec<String> = lines(&fires)
        .iter()
        .map(|l| l.split(' ').next().expect("fire").to_owned())
        .collect();
    let count = written.len();
    written.sort();
    written.dedup();
    assert_eq!(
        written.len(),
        count,
        "a fire ran twice: {:?}",
        lines(&fires)
    );
    // run_once: of the fires missed while down, at most one ran; the rest are counted.
    let caught_up = runs
        .iter()
        .filter(|r| {
            let t = ts(&r["nominal"]);
            t > killed_at && t < restarted_at
        })
        .count();
    assert!(caught_up <= 1, "{runs:?}");
    let metrics = daemon.call("GET", "/metrics", "").body;
    let missed: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sundial_scheduler_missed_total "))
        .and_then(|v| v.parse().ok())
        .expect("missed counter");
    assert!(missed >= 2, "{metrics}");
    let lost_count = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sundial_scheduler_runs_finished_total{outcome=\"lost\"} "))
        .expect("lost counter");
    assert_eq!(lost_count, "1");
    daemon.stop();
}

/// A fresh schema in the PostgreSQL of `SUNDIAL_TEST_POSTGRES_URL` (required: the test
/// panics when it is unset or unreachable) and the store URL that uses it.
fn postgres_schema_url() -> (String, String) {
    let base = std::env::var("SUNDIAL_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!("SUNDIAL_TEST_POSTGRES_URL is required; run `bash scripts/services.sh`")
    });
    let schema = format!(
        "sundial_run_{}",
        sundial_analytics::app::random_token(6).expect("entropy")
    );
    common::block_on(async {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&base)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL is not reachable at {base}: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut conn)
            .await
            .expect("create schema");
    });
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");
    (url, schema)
}

#[test]
fn jobs_and_runs_persist_in_postgresql_across_a_restart() {
    let (url, schema) = postgres_schema_url();
    let dir = tempfile::tempdir().expect("tempdir");
    let jobs = dir.path().join("jobs.toml");
    write(
        &jobs,
        "[[job]]\nid = \"tick\"\nevery = \"1s\"\ncommand = [\"sh\", \"-c\", \"echo pg-run\"]\n",
    );
    let data = dir.path().join("data");
    let log = dir.path().join("run.log");
    let store = ["--store", url.as_str()];
    let daemon = Daemon::start(&jobs, &data, &store, log.clone());
    let (status, _) = daemon.json(
        "POST",
        "/api/v1/jobs",
        r#"{"id": "by-api", "cron": "0 0 1 1 *", "command": ["true"]}"#,
    );
    assert_eq!(status, 201);
    wait_until(PATIENCE, "two succeeded runs", || {
        daemon
            .runs("tick")
            .iter()
            .filter(|r| r["state"] == "succeeded")
            .count()
            >= 2
    });
    daemon.stop();
    // Restarted on the same database: the API job is still there, the ledger too.
    let daemon = Daemon::start(&jobs, &data, &store, log);
    assert_eq!(daemon.job_ids(), ["by-api", "tick"]);
    let recorded = daemon.runs("tick").len();
    assert!(recorded >= 2);
    wait_until(PATIENCE, "a run after the restart", || {
        daemon.runs("tick").len() > recorded
    });
    let runs = lines_of_runs(&daemon.runs("tick"));
    daemon.stop();
    assert!(
        runs.iter()
            .all(|(_, state, output)| { state != "succeeded" || output.contains("pg-run") })
    );
    let mut nominal: Vec<&String> = runs.iter().map(|(n, _, _)| n).collect();
    let count = nominal.len();
    nominal.sort();
    nominal.dedup();
    assert_eq!(nominal.len(), count, "a fire ran twice: {runs:?}");
    common::block_on(async {
        use sqlx::Connection as _;
        let base = std::env::var("SUNDIAL_TEST_POSTGRES_URL").expect("url");
        if let Ok(mut conn) = sqlx::PgConnection::connect(&base).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(&mut conn)
                .await;
        }
    });
}

/// `(nominal, state, output)` of each run.
fn lines_of_runs(runs: &[Value]) -> Vec<(String, String, String)> {
    runs.iter()
        .map(|r| {
            (
                r["nominal"].as_str().expect("nominal").to_owned(),
                r["state"].as_str().expect("state").to_owned(),
                r["output"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}
