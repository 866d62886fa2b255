//! The `command` executor: runs a job's program as a child process.
//!
//! The child gets its own process group, so that a timeout or a cancellation stops the
//! whole tree it started (SIGTERM to the group, then SIGKILL after a grace period), and
//! so does the end of the run: once the program itself exits, whatever it left running
//! in its group is killed, so a job never leaks processes into the next fire. A program
//! that detaches on purpose (`setsid`) leaves the group and is not followed; if it keeps
//! the output pipes open, its output is read for at most `kill_grace` after the program
//! ends, so the run still ends with the program.
//!
//! Standard output and standard error are read as they come and interleaved into one
//! bounded tail: memory stays under `output_cap` however much the program writes, and the
//! ledger keeps the last bytes (where errors usually are) with the total count.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// What to run and how.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CommandSpec {
    /// Program and arguments; the program is looked up in `PATH` when it has no `/`.
    pub argv: Vec<String>,
    /// Extra environment variables (the scheduler adds `SUNDIAL_JOB_ID` and friends).
    pub env: BTreeMap<String, String>,
    /// Working directory; the daemon's when `None`.
    pub cwd: Option<PathBuf>,
    /// Run as this user (needs the daemon to run as root).
    pub user: Option<String>,
    /// Bytes of output kept (the tail); the rest is counted, not kept.
    pub output_cap: usize,
    /// Time between SIGTERM and SIGKILL when stopping the process group.
    pub kill_grace: Duration,
}

impl CommandSpec {
    /// A spec with default settings: 64 KiB of output, 5 s kill grace.
    pub fn new(argv: Vec<String>) -> Self {
        Self {
            argv,
            env: BTreeMap::new(),
            cwd: None,
            user: None,
            output_cap: 64 * 1024,
            kill_grace: Duration::from_secs(5),
        }
    }
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandEnd {
    /// It exited with this status code.
    Exited(i32),
    /// A signal it did not ask for ended it (not a timeout or cancellation of ours).
    Signalled(i32),
    /// The attempt's timeout passed; the group was stopped.
    TimedOut,
    /// The run was cancelled; the group was stopped.
    Cancelled,
}

impl CommandEnd {
    /// True for exit status 0.
    pub fn success(self) -> bool {
        self == CommandEnd::Exited(0)
    }
}

/// The result of a command run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutcome {
    /// How it ended.
    pub end: CommandEnd,
    /// The last `output_cap` bytes of standard output and error, interleaved.
    pub output: Vec<u8>,
    /// Bytes written in all.
    pub output_total: u64,
    /// How long it ran.
    pub duration: Duration,
}

impl CommandOutcome {
    /// True when output was dropped because it exceeded the cap.
    pub fn truncated(&self) -> bool {
        self.output_total > self.output.len() as u64
    }
}

/// A command that could not be started.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// `argv` is empty.
    #[error("the command is empty")]
    Empty,
    /// The `user` does not exist.
    #[error("unknown user `{0}`")]
    UnknownUser(String),
    /// The program could not be started.
    #[error("cannot start `{program}`: {source}")]
    Spawn {
        /// `argv[0]`.
        program: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Waiting for the child failed.
    #[error("cannot wait for the command: {0}")]
    Wait(#[source] io::Error),
}

/// Runs `spec` to completion, stopping its process group after `timeout` or when `cancel`
/// fires.
pub async fn run(
    spec: &CommandSpec,
    timeout: Option<Duration>,
    cancel: &CancellationToken,
) -> Result<CommandOutcome, CommandError> {
    run_with_kill(spec, timeout, cancel, &CancellationToken::new()).await
}

/// As [`run`], and when `kill` fires the whole process group gets SIGKILL at once (no
/// SIGTERM, no grace): the `terminate_previous` overlap policy. The run ends as
/// [`CommandEnd::Cancelled`].
pub async fn run_with_kill(
    spec: &CommandSpec,
    timeout: Option<Duration>,
    cancel: &CancellationToken,
    kill: &CancellationToken,
) -> Result<CommandOutcome, CommandError> {
    let (program, args) = spec.argv.split_first().ok_or(CommandError::Empty)?;
    let mut command = Command::new(program);
    command
        .args(args)
        .envs(&spec.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &spec.cwd {
        command.current_dir(dir);
    }
    if let Some(name) = &spec.user {
        let user = nix::unistd::User::from_name(name)
            .ok()
            .flatten()
            .ok_or_else(|| CommandError::UnknownUser(name.clone()))?;
        command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    }
    let started = Instant::now();
    let mut child = command.spawn().map_err(|source| CommandError::Spawn {
        program: program.clone(),
        source,
    })?;
    let group = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);

    let tail = Arc::new(Mutex::new(Tail::new(spec.output_cap)));
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(drain(out, Arc::clone(&tail))));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(drain(err, Arc::clone(&tail))));
    }

    let deadline = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let end = tokio::select! {
        status = child.wait() => {
            let status = status.map_err(CommandError::Wait)?;
            match (status.code(), status.signal()) {
                (Some(code), _) => CommandEnd::Exited(code),
                (None, Some(signal)) => CommandEnd::Signalled(signal),
                (None, None) => CommandEnd::Exited(-1),
            }
        }
        () = deadline => {
            stop_group(group, &mut child, spec.kill_grace).await;
            CommandEnd::TimedOut
        }
        () = kill.cancelled() => {
            stop_group(group, &mut child, Duration::ZERO).await;
            CommandEnd::Cancelled
        }
        () = cancel.cancelled() => {
            tokio::select! {
                () = stop_group(group, &mut child, spec.kill_grace) => {}
                // Escalation while stopping: kill without waiting out the grace.
                () = kill.cancelled() => {
                    if let Some(pgid) = group {
                        let _ = killpg(pgid, Signal::SIGKILL);
                    }
                }
            }
            CommandEnd::Cancelled
        }
    };
    // Whatever the program left behind in its group goes with it; then the pipes close.
    if let Some(pgid) = group {
        let _ = killpg(pgid, Signal::SIGKILL);
    }
    // A process that left the group (`setsid`) may still hold the pipes open; its output
    // is not waited for beyond the grace period, so the run ends when its program does.
    let drain_deadline = tokio::time::Instant::now() + spec.kill_grace;
    for mut reader in readers {
        if tokio::time::timeout_at(drain_deadline, &mut reader)
            .await
            .is_err()
        {
            reader.abort();
            tracing::debug!(
                "output still open after the run ended (a detached process?); not waiting"
            );
        }
    }
    let duration = started.elapsed();
    let tail = match Arc::try_unwrap(tail) {
        Ok(mutex) => mutex
            .into_inner()
            .unwrap_or_else(|poison| poison.into_inner()),
        Err(shared) => shared.lock().unwrap_or_else(|p| p.into_inner()).clone(),
    };
    let (output, output_total) = tail.into_parts();
    Ok(CommandOutcome {
        end,
        output,
        output_total,
        duration,
    })
}

/// SIGTERM to the group, SIGKILL after `grace` if the leader has not exited.
async fn stop_group(group: Option<Pid>, child: &mut tokio::process::Child, grace: Duration) {
    if let Some(pgid) = group {
        let _ = killpg(pgid, Signal::SIGTERM);
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        if let Some(pgid) = group {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
        let _ = child.kill().await;
    }
}

async fn drain(mut pipe: impl AsyncRead + Unpin, tail: Arc<Mutex<Tail>>) {
    let mut buf = vec![0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => tail
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(&buf[..n]),
        }
    }
}

/// The last `cap` bytes written, and how many were written in all.
#[derive(Debug, Clone)]
struct Tail {
    cap: usize,
    buf: std::collections::VecDeque<u8>,
    total: u64,
}

impl Tail {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            buf: std::collections::VecDeque::with_capacity(cap.min(64 * 1024)),
            total: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let keep = &bytes[bytes.len().saturating_sub(self.cap)..];
        let overflow = (self.buf.len() + keep.len()).saturating_sub(self.cap);
        self.buf.drain(..overflow);
        self.buf.extend(keep);
    }

    fn into_parts(self) -> (Vec<u8>, u64) {
        (self.buf.into(), self.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> CommandSpec {
        CommandSpec::new(vec!["sh".into(), "-c".into(), script.into()])
    }

    #[test]
    fn tail_keeps_the_last_bytes() {
        let mut tail = Tail::new(5);
        tail.push(b"abc");
        tail.push(b"defg");
        tail.push(b"");
        assert_eq!(tail.clone().into_parts(), (b"cdefg".to_vec(), 7));
        tail.push(b"0123456789");
        assert_eq!(tail.into_parts(), (b"56789".to_vec(), 17));
    }

    #[tokio::test]
    async fn exit_status_env_cwd_and_output() {
        let mut spec = sh("echo out; echo err >&2; echo \"$SUNDIAL_JOB_ID\"; pwd; exit 3");
        spec.env.insert("SUNDIAL_JOB_ID".into(), "backup".into());
        spec.cwd = Some(std::env::temp_dir());
        let outcome = run(&spec, None, &CancellationToken::new())
            .await
            .expect("runs");
        assert_eq!(outcome.end, CommandEnd::Exited(3));
        assert!(!outcome.end.success());
        let text = String::from_utf8_lossy(&outcome.output);
        assert!(
            text.contains("out") && text.contains("err") && text.contains("backup"),
            "{text}"
        );
        let tmp = std::env::temp_dir().canonicalize().expect("tmp");
        assert!(text.contains(tmp.to_str().expect("utf-8")), "{text}");
        assert!(!outcome.truncated());
    }

    #[tokio::test]
    async fn output_is_capped() {
        let mut spec = sh("head -c 1000000 /dev/zero | tr '\\0' 'a'; printf END");
        spec.output_cap = 1024;
        let outcome = run(&spec, None, &CancellationToken::new())
            .await
            .expect("runs");
        assert!(outcome.end.success());
        assert_eq!(outcome.output.len(), 1024);
        assert_eq!(outcome.output_total, 1_000_003);
        assert!(outcome.output.ends_with(b"END"));
        assert!(outcome.truncated());
    }

    fn alive(pid: i32) -> bool {
        nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true)
    }

    /// Reads the pid a test script wrote and waits (up to 1 s) for that process to be
    /// gone; panics with `what` if it is still alive.
    async fn assert_gone(pidfile: &std::path::Path, what: &str) {
        let pid: i32 = std::fs::read_to_string(pidfile)
            .expect("the script wrote its pid")
            .trim()
            .parse()
            .expect("pid");
        for _ in 0..50 {
            if !alive(pid) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{what}: pid {pid}");
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pidfile = dir.path().join("child.pid");
        // The child ignores SIGTERM, so only the SIGKILL after the grace period ends it.
        let script = format!(
            "sh -c 'trap \"\" TERM; echo $$ > {}; sleep 600' & wait",
            pidfile.display()
        );
        let mut spec = sh(&script);
        spec.kill_grace = Duration::from_millis(300);
        let outcome = run(
            &spec,
            Some(Duration::from_millis(500)),
            &CancellationToken::new(),
        )
        .await
        .expect("runs");
        assert_eq!(outcome.end, CommandEnd::TimedOut);
        assert_gone(&pidfile, "grandchild survived the timeout").await;
    }

    #[tokio::test]
    async fn cancellation_stops_the_run() {
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            trigger.cancel();
        });
        let outcome = run(&sh("sleep 600"), None, &cancel).await.expect("runs");
        assert_eq!(outcome.end, CommandEnd::Cancelled);
    }

    #[tokio::test]
    async fn leftovers_are_cleaned_up_after_exit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pidfile = dir.path().join("bg.pid");
        let script = format!("sleep 600 & echo $! > {}; exit 0", pidfile.display());
        let outcome = run(&sh(&script), None, &CancellationToken::new())
            .await
            .expect("runs");
        assert!(outcome.end.success());
        assert_gone(&pidfile, "background process outlived its job").await;
    }

    #[tokio::test]
    async fn a_detached_process_holding_the_pipes_does_not_hold_the_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pidfile = dir.path().join("detached.pid");
        // setsid leaves the process group; the detached sleep inherits stdout.
        let script = format!(
            "setsid sh -c 'echo $$ > {}; exec sleep 600' & sleep 0.2; echo done",
            pidfile.display()
        );
        let mut spec = sh(&script);
        spec.kill_grace = Duration::from_millis(300);
        let started = Instant::now();
        let outcome = run(
            &spec,
            Some(Duration::from_secs(60)),
            &CancellationToken::new(),
        )
        .await
        .expect("runs");
        assert!(outcome.end.success());
        assert!(String::from_utf8_lossy(&outcome.output).contains("done"));
        // Clean up the detached process before asserting anything else.
        if let Ok(text) = std::fs::read_to_string(&pidfile)
            && let Ok(pid) = text.trim().parse::<i32>()
        {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        // Without the bound this run would last as long as the detached sleep (600 s).
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn start_failures_are_errors() {
        let cancel = CancellationToken::new();
        assert!(matches!(
            run(&CommandSpec::new(vec![]), None, &cancel).await,
            Err(CommandError::Empty)
        ));
        let missing = CommandSpec::new(vec!["/nonexistent/program".into()]);
        assert!(matches!(
            run(&missing, None, &cancel).await,
            Err(CommandError::Spawn { .. })
        ));
        let mut bad_user = sh("true");
        bad_user.user = Some("no-such-user-sundial".into());
        assert!(matches!(
            run(&bad_user, None, &cancel).await,
            Err(CommandError::UnknownUser(_))
        ));
    }
}
