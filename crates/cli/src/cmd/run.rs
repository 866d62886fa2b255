//! `sundial run`: the scheduler daemon — the jobs of a `jobs.toml` file plus jobs
//! created through the REST API, run on the engine of `sundial-scheduler` with the run
//! ledger in the SQL store.
//!
//! - `sundial run --jobs FILE [--data-dir DIR | --store URL] [--listen ADDR]
//!   [--node-id ID] [--shutdown-grace 30s]` runs until SIGINT or SIGTERM.
//! - `sundial run --check FILE [--json] [--count N]` validates the file and prints each
//!   job's next fires; exit 2 (message `FILE:LINE:COL: job `x`: field `f`: …` on stderr)
//!   when it is bad.
//!
//! # Start-up and reload
//!
//! Start-up order: read and validate the jobs file (a bad file is exit 2 before
//! anything else happens), open the store, start the engine on what the store holds
//! (unfinished runs of this node id are marked lost, stored jobs re-armed with their
//! misfire policy applied from the ledger), apply the file, then listen. SIGHUP reads
//! the file again and applies it: running runs are never disturbed; a file that does
//! not validate is logged with its file and line and changes nothing.
//!
//! # Which jobs the file owns
//!
//! Jobs named in the file are file-owned; jobs created with `POST /api/v1/jobs` are
//! API-owned and persist in the store across restarts and reloads. Applying the file
//! adds, updates and removes file-owned jobs only (see
//! [`sundial_server::JobsState::apply_file`]). The ids the file owned at its last
//! apply are kept in `DATA_DIR/run-file-jobs.json`, so a job deleted from the file
//! while the daemon was down is removed at the next start instead of turning into an
//! API job.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use jiff::{SignedDuration, Timestamp};
use serde_json::json;
use sundial_scheduler::coordinator::LocalCoordinator;
use sundial_scheduler::engine::{Clock, OffsetClock, ReconcileReport, Scheduler, SystemClock};
use sundial_scheduler::job::{JobId, JobSpec, TriggerSpec};
use sundial_scheduler::jobs_file::{self, JobDefinition};
use sundial_scheduler::store::JobStore;
use sundial_scheduler::trigger::TriggerKind;
use sundial_server::JobsState;
use tokio::signal::unix::{SignalKind, signal};

use crate::cmd::{StoreArgs, open_store, runtime};
use crate::config::Config;

/// The file in the data directory that remembers which job ids the jobs file owns.
const OWNERSHIP_FILE: &str = "run-file-jobs.json";

/// Arguments of `sundial run`.
#[derive(Args, Debug)]
pub(crate) struct RunArgs {
    /// The jobs file to run (`[[job]]` tables; see docs/scheduler.md).
    #[arg(long, value_name = "FILE", required_unless_present_any = ["check", "cluster"])]
    jobs: Option<PathBuf>,
    /// Validate FILE and print each job's next fires instead of running (exit 2 when
    /// the file is bad).
    #[arg(long, value_name = "FILE", conflicts_with = "jobs")]
    check: Option<PathBuf>,
    /// With --check: print JSON instead of text.
    #[arg(long, requires = "check")]
    json: bool,
    /// With --check: how many next fires to print per job.
    #[arg(long, default_value_t = 5, value_name = "N", requires = "check")]
    count: usize,
    /// Address of the REST API (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8081", value_name = "HOST:PORT")]
    listen: String,
    /// This node's id, recorded with every run. Keep it stable across restarts: runs
    /// of this id left unfinished by a crash are marked lost at the next start.
    #[arg(long, default_value = "local", value_name = "ID")]
    node_id: String,
    /// On SIGINT/SIGTERM: how long running jobs may take to finish before they are
    /// cancelled (and, after as long again, killed), e.g. `30s`, `2m`.
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = parse_grace)]
    shutdown_grace: Duration,
    /// Run as a node of an etcd cluster: job definitions live in etcd (the --jobs
    /// file, if given, is applied there) and every fire runs on exactly one node:
    /// etcd://HOST:PORT[,HOST:PORT…][/PREFIX] (needs a build with the `etcd` feature;
    /// see docs/cluster.md).
    #[arg(long, value_name = "URL", conflicts_with = "check")]
    cluster: Option<String>,
    /// Cluster: the session lease TTL; a node that cannot renew it in time stops.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_grace, requires = "cluster")]
    session_ttl: Duration,
    /// Cluster: how long a node that is not a job's preferred owner waits before it
    /// takes a fire nobody claimed.
    #[arg(long, default_value = "1s", value_name = "DURATION", value_parser = parse_grace, requires = "cluster")]
    takeover_delay: Duration,
    /// Cluster: a node whose clock is further than this from the members' median
    /// stops claiming fires.
    #[arg(long, default_value = "500ms", value_name = "DURATION", value_parser = parse_grace, requires = "cluster")]
    max_clock_skew: Duration,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
}

/// Test-only: shifts this process's scheduler clock by this many milliseconds (to
/// test clock skew in a cluster on one machine). Not for production.
const TEST_CLOCK_OFFSET_ENV: &str = "SUNDIALTEST_CLOCK_OFFSET_MS";

/// The scheduler's wall clock: the system's, unless the test-only offset is set.
fn scheduler_clock() -> anyhow::Result<Arc<dyn Clock>> {
    match std::env::var(TEST_CLOCK_OFFSET_ENV) {
        Ok(text) => {
            let ms: i64 = text.trim().parse().with_context(|| {
                format!("{TEST_CLOCK_OFFSET_ENV} must be whole milliseconds, not `{text}`")
            })?;
            tracing::warn!(offset_ms = ms, "test-only clock offset in effect");
            Ok(Arc::new(OffsetClock::new(SignedDuration::from_millis(ms))))
        }
        Err(_) => Ok(Arc::new(SystemClock)),
    }
}

fn parse_grace(text: &str) -> Result<Duration, String> {
    let d: SignedDuration = text
        .parse()
        .map_err(|e| format!("`{text}` is not a duration such as 30s or 2m: {e}"))?;
    Duration::try_from(d).map_err(|_| format!("`{text}` must not be negative"))
}

/// Runs `sundial run`.
pub(crate) fn run(args: RunArgs, config: &Config) -> anyhow::Result<ExitCode> {
    if let Some(path) = &args.check {
        return Ok(check(path, args.count, args.json));
    }
    let definitions = match &args.jobs {
        Some(path) => match jobs_file::load(path, Timestamp::now()) {
            Ok(defs) => Some((path.clone(), defs)),
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(2));
            }
        },
        None => None,
    };
    let listen: SocketAddr = args
        .listen
        .parse()
        .with_context(|| format!("invalid listen address {}", args.listen))?;
    if let Some(url) = args.cluster.clone() {
        #[cfg(not(feature = "etcd"))]
        {
            let _ = url;
            return Ok(crate::cmd::cluster::unsupported());
        }
        #[cfg(feature = "etcd")]
        {
            let url = match crate::cmd::cluster::parse_url(&url) {
                Ok(url) => url,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            return runtime()?.block_on(cluster_node::daemon(
                args,
                url,
                definitions,
                listen,
                config,
            ));
        }
    }
    let Some((path, definitions)) = definitions else {
        anyhow::bail!("--jobs FILE is required");
    };
    runtime()?.block_on(daemon(args, path, definitions, listen, config))
}

/// `--check`: validates the file and prints the next fires; the exit code.
fn check(path: &Path, count: usize, as_json: bool) -> ExitCode {
    let now = Timestamp::now();
    let definitions = match jobs_file::load(path, now) {
        Ok(defs) => defs,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if as_json {
        let jobs: Vec<serde_json::Value> = definitions
            .iter()
            .map(|def| {
                json!({
                    "id": def.id,
                    "line": def.line,
                    "trigger": TriggerSpec::from_trigger(&def.trigger),
                    "next_fires": next_fires(def, now, count)
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>(),
                })
            })
            .collect();
        let out = json!({"file": path.display().to_string(), "ok": true, "jobs": jobs});
        println!("{out:#}");
    } else {
        println!(
            "{}: OK, {} job{}",
            path.display(),
            definitions.len(),
            if definitions.len() == 1 { "" } else { "s" }
        );
        for def in &definitions {
            println!("job `{}` (line {}): {}", def.id, def.line, describe(def));
            let fires = next_fires(def, now, count);
            if fires.is_empty() {
                println!("  (no further fires)");
            }
            for fire in fires {
                println!("  {fire}");
            }
        }
    }
    ExitCode::SUCCESS
}

/// The trigger in words, for `--check`.
fn describe(def: &JobDefinition) -> String {
    match def.trigger.kind() {
        TriggerKind::Cron { schedule, zone } => {
            format!("cron `{schedule}` in {}", zone.iana_name().unwrap_or("UTC"))
        }
        TriggerKind::Every { period, .. } => {
            format!(
                "every {:#}",
                SignedDuration::try_from(*period).unwrap_or_default()
            )
        }
        TriggerKind::Delay { delay, .. } => format!(
            "{:#} after each completion",
            SignedDuration::try_from(*delay).unwrap_or_default()
        ),
        TriggerKind::At(at) => format!("once at {at}"),
    }
}

/// The next `count` fires after `now`, shown in the job's zone for cron jobs, else UTC.
fn next_fires(def: &JobDefinition, now: Timestamp, count: usize) -> Vec<String> {
    let zone = match def.trigger.kind() {
        TriggerKind::Cron { zone, .. } => Some(zone.clone()),
        _ => None,
    };
    let mut out = Vec::with_capacity(count);
    let mut cursor = now;
    let mut fired = 0;
    while out.len() < count {
        let Some(next) = def.trigger.next_after(cursor, fired) else {
            break;
        };
        if next <= cursor {
            break;
        }
        out.push(match &zone {
            Some(zone) => next.to_zoned_datetime(zone.clone()).to_string(),
            None => next.to_string(),
        });
        cursor = next;
        fired += 1;
        if def.trigger.waits_for_completion() {
            // Later fires depend on when each run completes.
            break;
        }
    }
    out
}

/// The daemon proper.
async fn daemon(
    args: RunArgs,
    path: PathBuf,
    definitions: Vec<JobDefinition>,
    listen: SocketAddr,
    config: &Config,
) -> anyhow::Result<ExitCode> {
    let store = Arc::new(open_store(config).await?);
    let job_store: Arc<dyn JobStore> = store.clone();
    let scheduler = Scheduler::builder()
        .node_id(args.node_id.clone())
        .store(job_store)
        .clock(scheduler_clock()?)
        .coordinator(Arc::new(LocalCoordinator::new(&args.node_id)))
        .build();
    scheduler
        .start()
        .await
        .context("cannot start the scheduler on the store")?;
    let ownership = config.data_dir.join(OWNERSHIP_FILE);
    let state = JobsState::new(scheduler.clone(), read_ownership(&ownership)?);
    let specs: Vec<JobSpec> = definitions.iter().map(JobSpec::from_definition).collect();
    let report = state
        .apply_file(specs)
        .await
        .with_context(|| format!("cannot apply {}", path.display()))?;
    write_ownership(&ownership, &state.file_ids())?;
    log_report(&path, &report, "jobs file applied");
    for (job, handler) in scheduler.missing_handlers() {
        tracing::warn!(job_id = %job, handler, "stored job names a handler this daemon does not have");
    }

    let on_hangup = {
        let state = state.clone();
        move || {
            let (state, path, ownership) = (state.clone(), path.clone(), ownership.clone());
            async move { reload(&state, &path, &ownership).await }
        }
    };
    serve_api(
        listen,
        &args.node_id,
        store.backend_name(),
        state,
        on_hangup,
    )
    .await?;
    stop_scheduler(&scheduler, args.shutdown_grace).await;
    store.close().await;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Shuts the scheduler down with `grace` for running jobs, and says how it went.
async fn stop_scheduler(scheduler: &Scheduler, grace: Duration) {
    let report = scheduler.shutdown(grace).await;
    tracing::info!(
        drained = report.drained,
        cancelled = report.cancelled,
        "scheduler stopped"
    );
}

/// Serves the jobs API until SIGINT or SIGTERM, running `on_hangup` at each SIGHUP.
async fn serve_api<F, Fut>(
    listen: SocketAddr,
    node_id: &str,
    store: &str,
    state: JobsState,
    on_hangup: F,
) -> anyhow::Result<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    // Signal handlers first: SIGHUP's default action would end the process.
    let mut hangup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let local = listener.local_addr().unwrap_or(listen);
    tracing::info!(address = %local, node_id, store, "sundial run is listening");
    // A line on stdout for scripts and tests that start on port 0.
    println!("listening on http://{local}");

    let shutdown = tokio_util::sync::CancellationToken::new();
    let signals = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            loop {
                tokio::select! {
                    _ = hangup.recv() => on_hangup().await,
                    _ = terminate.recv() => break,
                    _ = interrupt.recv() => break,
                }
            }
            tracing::info!("shutting down");
            shutdown.cancel();
        }
    });
    let app = sundial_server::jobs_router(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await
        .context("HTTP server failed")?;
    shutdown.cancel();
    signals.abort();
    Ok(())
}

/// SIGHUP: read the file again and apply it; a bad file changes nothing.
async fn reload(state: &JobsState, path: &Path, ownership: &Path) {
    tracing::info!(jobs = %path.display(), "SIGHUP: reloading the jobs file");
    let definitions = match jobs_file::load(path, Timestamp::now()) {
        Ok(defs) => defs,
        Err(e) => {
            tracing::error!(error = %e, "jobs file not reloaded; the previous jobs keep running");
            return;
        }
    };
    let specs = definitions.iter().map(JobSpec::from_definition).collect();
    match state.apply_file(specs).await {
        Ok(report) => log_report(path, &report, "jobs file reloaded"),
        Err(e) => tracing::error!(error = %e, "jobs file reload failed part-way"),
    }
    if let Err(e) = write_ownership(ownership, &state.file_ids()) {
        tracing::error!(
            error = format!("{e:#}"),
            "cannot record the file-owned job ids"
        );
    }
}

fn log_report(path: &Path, report: &ReconcileReport, what: &str) {
    let ids = |v: &[JobId]| v.iter().map(JobId::as_str).collect::<Vec<_>>().join(",");
    tracing::info!(
        jobs = %path.display(),
        added = ids(&report.added),
        updated = ids(&report.updated),
        removed = ids(&report.removed),
        unchanged = report.unchanged.len(),
        "{what}"
    );
}

/// The file-owned ids recorded by the previous apply (none when never recorded).
fn read_ownership(path: &Path) -> anyhow::Result<Vec<JobId>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is corrupt (delete it to start over)", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Records the file-owned ids (write to a temporary file, then rename).
fn write_ownership(path: &Path, ids: &[JobId]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(ids).context("cannot encode the job ids")?;
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// `sundial run --cluster`: a node of an etcd cluster.
#[cfg(feature = "etcd")]
mod cluster_node {
    use super::*;
    use sundial_cluster_etcd::{
        Cluster, ClusterConfig, ClusterError, ClusterUrl, DefinitionSource, apply_definitions,
    };

    /// Applies the jobs file to the cluster's definitions; the ids it owns.
    async fn apply_file(
        cluster: &Cluster,
        path: &Path,
        definitions: &[JobDefinition],
    ) -> Result<Vec<JobId>, ClusterError> {
        let specs: Vec<JobSpec> = definitions.iter().map(JobSpec::from_definition).collect();
        let ids = specs.iter().map(|s| s.id.clone()).collect();
        let report = apply_definitions(
            cluster.etcd(),
            cluster.prefix(),
            specs,
            DefinitionSource::File,
            true,
            &cluster.health().node_id,
        )
        .await?;
        tracing::info!(
            jobs = %path.display(),
            added = report.added.join(","),
            updated = report.updated.join(","),
            removed = report.removed.join(","),
            unchanged = report.unchanged.len(),
            "jobs file applied to the cluster"
        );
        Ok(ids)
    }

    pub(super) async fn daemon(
        args: RunArgs,
        url: ClusterUrl,
        file: Option<(PathBuf, Vec<JobDefinition>)>,
        listen: SocketAddr,
        config: &Config,
    ) -> anyhow::Result<ExitCode> {
        let clock = scheduler_clock()?;
        let mut settings = ClusterConfig::new(url, args.node_id.clone());
        settings.session_ttl = args.session_ttl.max(Duration::from_secs(2));
        settings.session_margin = (settings.session_ttl / 4).min(Duration::from_secs(2));
        settings.takeover_delay = args.takeover_delay;
        settings.max_clock_skew = args.max_clock_skew;
        settings.clock = clock.clone();
        let cluster = Cluster::join(settings)
            .await
            .context("cannot join the cluster")?;
        let store = Arc::new(open_store(config).await?);
        let job_store: Arc<dyn JobStore> = store.clone();
        let scheduler = Scheduler::builder()
            .node_id(args.node_id.clone())
            .store(job_store)
            .clock(clock)
            .coordinator(cluster.coordinator())
            .build();
        cluster.attach(&scheduler);
        scheduler
            .start()
            .await
            .context("cannot start the scheduler on the store")?;
        let mut file_ids = Vec::new();
        if let Some((path, definitions)) = &file {
            match apply_file(&cluster, path, definitions).await {
                Ok(ids) => file_ids = ids,
                Err(e @ ClusterError::Definition { .. }) => {
                    eprintln!("error: {}: {e}", path.display());
                    cluster.leave().await;
                    return Ok(ExitCode::from(2));
                }
                Err(e) => return Err(e).context("cannot apply the jobs file to the cluster"),
            }
        }
        cluster.sync_definitions(&scheduler);
        // Fires this node reaps as housekeeping leader: their runs become `lost` in the
        // ledger when it is shared (PostgreSQL); a per-node ledger marks its own at the
        // dead node's next start.
        let reaper = tokio::spawn({
            let (cluster, scheduler) = (cluster.clone(), scheduler.clone());
            async move {
                loop {
                    cluster.lost_fires().await;
                    if let Err(e) = scheduler.reap_lost_runs().await {
                        tracing::warn!(error = %e, "cannot mark lost runs in the ledger");
                    }
                }
            }
        });
        if !cluster.definitions_ready(Duration::from_secs(15)).await {
            tracing::warn!("job definitions not loaded from etcd yet; they follow when it answers");
        }
        let definitions = Arc::new(crate::cmd::cluster::EtcdDefinitions {
            cluster: cluster.clone(),
        });
        let state = JobsState::with_cluster(scheduler.clone(), file_ids, definitions);
        let on_hangup = {
            let (cluster, state, file) = (cluster.clone(), state.clone(), file.clone());
            move || {
                let (cluster, state, file) = (cluster.clone(), state.clone(), file.clone());
                async move {
                    let Some((path, _)) = file else {
                        tracing::info!("SIGHUP: no jobs file to reload");
                        return;
                    };
                    let definitions = match jobs_file::load(&path, Timestamp::now()) {
                        Ok(defs) => defs,
                        Err(e) => {
                            tracing::error!(error = %e, "jobs file not reloaded; the cluster keeps the previous jobs");
                            return;
                        }
                    };
                    match apply_file(&cluster, &path, &definitions).await {
                        Ok(ids) => state.set_file_ids(ids),
                        Err(e) => {
                            tracing::error!(error = %e, "jobs file not applied to the cluster")
                        }
                    }
                }
            }
        };
        serve_api(
            listen,
            &args.node_id,
            store.backend_name(),
            state,
            on_hangup,
        )
        .await?;
        reaper.abort();
        stop_scheduler(&scheduler, args.shutdown_grace).await;
        cluster.leave().await;
        store.close().await;
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_parses_friendly_durations() {
        assert_eq!(parse_grace("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_grace("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_grace("-1s").is_err());
        assert!(parse_grace("soon").is_err());
    }

    #[test]
    fn ownership_round_trips_and_starts_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join(OWNERSHIP_FILE);
        assert!(read_ownership(&path).expect("missing is empty").is_empty());
        write_ownership(&path, &[JobId::new("a"), JobId::new("b")]).expect("write");
        assert_eq!(
            read_ownership(&path).expect("read"),
            [JobId::new("a"), JobId::new("b")]
        );
        std::fs::write(&path, b"{").expect("corrupt");
        assert!(read_ownership(&path).is_err());
    }

    #[test]
    fn next_fires_follow_the_trigger() {
        let text = "[[job]]\nid = \"a\"\ncron = \"0 3 * * *\"\ntimezone = \"Europe/Berlin\"\n\
                    command = [\"true\"]\n\n[[job]]\nid = \"d\"\ndelay = \"1m\"\ncommand = [\"true\"]\n";
        let now: Timestamp = "2024-03-30T12:00:00Z".parse().expect("ts");
        let defs = jobs_file::parse(Path::new("jobs.toml"), text, now).expect("parses");
        let fires = next_fires(&defs[0], now, 3);
        assert_eq!(
            fires,
            [
                "2024-03-31T03:00:00+02:00[Europe/Berlin]",
                "2024-04-01T03:00:00+02:00[Europe/Berlin]",
                "2024-04-02T03:00:00+02:00[Europe/Berlin]",
            ]
        );
        assert_eq!(describe(&defs[0]), "cron `0 3 * * *` in Europe/Berlin");
        // A fixed delay only knows its first fire.
        assert_eq!(next_fires(&defs[1], now, 3), ["2024-03-30T12:01:00Z"]);
    }
}
