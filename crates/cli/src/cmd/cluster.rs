//! Cluster mode on etcd (cargo feature `etcd`): `sundial cluster status`,
//! `sundial job apply`, and the glue that `sundial run --cluster` and
//! `sundial serve --cluster` use to join.
//!
//! A binary built without the feature keeps the flags and commands, and answers them
//! with exit 2 and how to build one that has it ([`unsupported`]).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

/// Why a binary without the `etcd` feature refuses cluster mode.
#[cfg(not(feature = "etcd"))]
pub(crate) const UNSUPPORTED: &str = "this sundial binary was built without cluster \
support: rebuild it with `cargo build --release -p sundial --features etcd` (needs \
protoc: `apt-get install -y protobuf-compiler`)";

/// Prints [`UNSUPPORTED`]; exit 2.
#[cfg(not(feature = "etcd"))]
pub(crate) fn unsupported() -> ExitCode {
    eprintln!("error: {UNSUPPORTED}");
    ExitCode::from(2)
}

/// Arguments of `sundial cluster`.
#[derive(Args, Debug)]
pub(crate) struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// Members, housekeeping leader, clock skew and fires in flight.
    Status(StatusArgs),
}

#[derive(Args, Debug)]
struct StatusArgs {
    /// The cluster: etcd://HOST:PORT[,HOST:PORT…][/PREFIX].
    #[arg(long, env = "SUNDIAL_CLUSTER", value_name = "URL")]
    cluster: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Arguments of `sundial job`.
#[derive(Args, Debug)]
pub(crate) struct JobArgs {
    #[command(subcommand)]
    command: JobCommand,
}

#[derive(Subcommand, Debug)]
enum JobCommand {
    /// Store the jobs of a jobs.toml file in the cluster: every node runs them (each
    /// fire once). Jobs a previous apply of a file stored and this file no longer
    /// names are deleted (unless --no-prune); jobs created through the REST API stay.
    Apply(ApplyArgs),
}

#[derive(Args, Debug)]
struct ApplyArgs {
    /// The jobs file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The cluster: etcd://HOST:PORT[,HOST:PORT…][/PREFIX].
    #[arg(long, env = "SUNDIAL_CLUSTER", value_name = "URL")]
    cluster: String,
    /// Keep file jobs the file no longer names.
    #[arg(long)]
    no_prune: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs `sundial cluster`.
pub(crate) fn run_cluster(args: ClusterArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ClusterCommand::Status(args) => imp::status(&args.cluster, args.json),
    }
}

/// Runs `sundial job`.
pub(crate) fn run_job(args: JobArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        JobCommand::Apply(args) => imp::apply(&args.file, &args.cluster, !args.no_prune, args.json),
    }
}

#[cfg(not(feature = "etcd"))]
mod imp {
    use std::path::Path;
    use std::process::ExitCode;

    pub(super) fn status(_url: &str, _json: bool) -> anyhow::Result<ExitCode> {
        Ok(super::unsupported())
    }

    pub(super) fn apply(
        _file: &Path,
        _url: &str,
        _prune: bool,
        _json: bool,
    ) -> anyhow::Result<ExitCode> {
        Ok(super::unsupported())
    }
}

#[cfg(feature = "etcd")]
pub(crate) use imp::{EtcdDefinitions, parse_url};

#[cfg(feature = "etcd")]
mod imp {
    use std::fmt::Write as _;
    use std::path::Path;
    use std::process::ExitCode;
    use std::time::Duration;

    use anyhow::Context as _;
    use jiff::Timestamp;
    use sundial_cluster_etcd::{
        Cluster, ClusterError, ClusterUrl, DefinitionSource, Etcd, apply_definitions,
        cluster_status,
    };
    use sundial_scheduler::job::{JobId, JobSpec};
    use sundial_scheduler::jobs_file;
    use sundial_server::ClusterWriteError;

    use crate::cmd::runtime;

    /// How long an API write waits for this node to apply it.
    const SETTLE: Duration = Duration::from_secs(3);

    /// Parses a `--cluster` URL; bad ones are exit-2 errors naming what is wrong.
    pub(crate) fn parse_url(text: &str) -> Result<ClusterUrl, String> {
        text.parse::<ClusterUrl>().map_err(|e| e.to_string())
    }

    pub(super) fn status(url: &str, json: bool) -> anyhow::Result<ExitCode> {
        let url = match parse_url(url) {
            Ok(url) => url,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(2));
            }
        };
        let status = runtime()?.block_on(async {
            let etcd = Etcd::connect(&url.endpoints).await?;
            cluster_status(&etcd, &url.prefix).await
        })?;
        if json {
            println!("{}", serde_json::to_string_pretty(&status)?);
            return Ok(ExitCode::SUCCESS);
        }
        let mut out = String::new();
        let _ = writeln!(
            out,
            "cluster {url} (etcd revision {}): {} node{}, {} job{}, leader {}",
            status.revision,
            status.nodes.len(),
            if status.nodes.len() == 1 { "" } else { "s" },
            status.jobs,
            if status.jobs == 1 { "" } else { "s" },
            status.leader.as_deref().unwrap_or("(none)")
        );
        let _ = writeln!(
            out,
            "{:<20} {:>8} {:>9} {:>10} {:>9}  lease",
            "NODE", "CLAIMING", "SKEW(ms)", "OFFSET(ms)", "IN-FLIGHT"
        );
        for node in &status.nodes {
            let _ = writeln!(
                out,
                "{:<20} {:>8} {:>9} {:>10} {:>9}  {}{}",
                node.node,
                if node.claiming { "yes" } else { "NO" },
                node.skew_ms.map_or("-".to_owned(), |s| s.to_string()),
                node.clock_offset_ms,
                node.in_flight,
                node.lease,
                if node.leader { "  (leader)" } else { "" }
            );
        }
        if !status.in_flight.is_empty() {
            let _ = writeln!(out, "fires in flight:");
            for fire in &status.in_flight {
                let _ = writeln!(
                    out,
                    "  {} at {} on {} (token {}){}",
                    fire.job,
                    fire.nominal,
                    fire.node,
                    fire.token,
                    if fire.node_alive {
                        ""
                    } else {
                        "  node gone: will be reaped"
                    }
                );
            }
        }
        print!("{out}");
        Ok(ExitCode::SUCCESS)
    }

    pub(super) fn apply(
        file: &Path,
        url: &str,
        prune: bool,
        json: bool,
    ) -> anyhow::Result<ExitCode> {
        let url = match parse_url(url) {
            Ok(url) => url,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(2));
            }
        };
        let definitions = match jobs_file::load(file, Timestamp::now()) {
            Ok(defs) => defs,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(2));
            }
        };
        let specs: Vec<JobSpec> = definitions.iter().map(JobSpec::from_definition).collect();
        let result = runtime()?.block_on(async {
            let etcd = Etcd::connect(&url.endpoints).await?;
            apply_definitions(
                &etcd,
                &url.prefix,
                specs,
                DefinitionSource::File,
                prune,
                "sundial job apply",
            )
            .await
        });
        let report = match result {
            Ok(report) => report,
            Err(e @ sundial_cluster_etcd::ClusterError::Definition { .. }) => {
                eprintln!("error: {}: {e}", file.display());
                return Ok(ExitCode::from(2));
            }
            Err(e) => return Err(e).context("cannot apply the jobs file"),
        };
        if json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            println!(
                "{}: {} added, {} updated, {} removed, {} unchanged",
                file.display(),
                report.added.len(),
                report.updated.len(),
                report.removed.len(),
                report.unchanged.len()
            );
        }
        Ok(ExitCode::SUCCESS)
    }

    /// The REST API's definitions, in the cluster.
    #[derive(Debug, Clone)]
    pub(crate) struct EtcdDefinitions {
        pub(crate) cluster: Cluster,
    }

    /// A refused definition is the client's error (400, naming the field); anything
    /// else, including a concurrent writer, is worth a retry (503).
    fn write_error(e: ClusterError) -> ClusterWriteError {
        match e {
            ClusterError::Definition { reason, .. } if !reason.contains("another writer") => {
                let field = if reason.contains("fixed-delay") {
                    "delay"
                } else {
                    "id"
                };
                ClusterWriteError::Invalid {
                    field: field.to_owned(),
                    message: reason,
                }
            }
            other => ClusterWriteError::Unavailable(other.to_string()),
        }
    }

    #[async_trait::async_trait]
    impl sundial_server::ClusterDefinitions for EtcdDefinitions {
        async fn store(&self, spec: JobSpec) -> Result<(), ClusterWriteError> {
            self.cluster
                .store_definition(spec, SETTLE)
                .await
                .map_err(write_error)
        }

        async fn remove(&self, id: &JobId) -> Result<(), ClusterWriteError> {
            self.cluster
                .delete_definition(id.as_str(), SETTLE)
                .await
                .map(|_| ())
                .map_err(write_error)
        }

        fn health(&self) -> serde_json::Value {
            serde_json::to_value(self.cluster.health()).unwrap_or_default()
        }

        fn metrics(&self) -> String {
            metrics_text(&self.cluster.health())
        }
    }

    /// Prometheus lines of a node's cluster view.
    pub(crate) fn metrics_text(h: &sundial_cluster_etcd::NodeHealth) -> String {
        let mut out = String::new();
        let gauge = |out: &mut String, name: &str, help: &str, value: i64| {
            let _ = writeln!(out, "# HELP sundial_cluster_{name} {help}");
            let _ = writeln!(out, "# TYPE sundial_cluster_{name} gauge");
            let _ = writeln!(out, "sundial_cluster_{name} {value}");
        };
        gauge(
            &mut out,
            "session",
            "1 while the node holds a live session lease.",
            i64::from(h.session),
        );
        gauge(
            &mut out,
            "claiming",
            "1 while the node claims fires (session live, clock within bounds).",
            i64::from(h.claiming),
        );
        gauge(
            &mut out,
            "clock_skew_ms",
            "This node's clock minus the members' median, milliseconds.",
            h.skew_ms.unwrap_or(0),
        );
        gauge(
            &mut out,
            "leader",
            "1 while the node leads housekeeping.",
            i64::from(h.leader),
        );
        gauge(
            &mut out,
            "members",
            "Live members seen.",
            i64::try_from(h.members).unwrap_or(i64::MAX),
        );
        let _ = writeln!(
            out,
            "# HELP sundial_cluster_claims_total Claims by outcome."
        );
        let _ = writeln!(out, "# TYPE sundial_cluster_claims_total counter");
        for (outcome, n) in [
            ("won", h.claims_won),
            ("taken_elsewhere", h.claims_taken_elsewhere),
            ("unavailable", h.claims_unavailable),
        ] {
            let _ = writeln!(
                out,
                "sundial_cluster_claims_total{{outcome=\"{outcome}\"}} {n}"
            );
        }
        for (name, help, n) in [
            (
                "completions_fenced_total",
                "Run completions refused: the fire was declared lost meanwhile.",
                h.completions_fenced,
            ),
            (
                "fires_reaped_total",
                "Fires this node reaped as lost with their node.",
                h.fires_reaped,
            ),
            (
                "fail_stops_total",
                "Times this node lost its session and stopped (fail-stop).",
                h.fail_stops,
            ),
        ] {
            let _ = writeln!(out, "# HELP sundial_cluster_{name} {help}");
            let _ = writeln!(out, "# TYPE sundial_cluster_{name} counter");
            let _ = writeln!(out, "sundial_cluster_{name} {n}");
        }
        out
    }
}
