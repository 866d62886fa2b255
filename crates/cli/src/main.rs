//! `sundial`: the command-line entry point.
//!
//! This crate is the only one that installs a tracing subscriber, reads configuration
//! and picks backends. It parses the command line, loads the configuration (file, then
//! `SUNDIAL_*` environment, then flags), installs logging and runs one subcommand.
//!
//! Exit status: 0 on success, 1 when a command fails at run time, 2 for bad input
//! (command line, configuration, or an argument a command rejects).

mod cmd;
mod config;
mod logging;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, LogFormat, LogOverrides, Overrides, ServeOverrides, StoreOverrides};

/// Sundial: a scheduled-task framework and a self-hosted mobile analytics platform.
#[derive(Parser, Debug)]
#[command(name = "sundial", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// Configuration file (TOML). See sundial.example.toml for every key.
    #[arg(long, global = true, env = "SUNDIAL_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Log filter: error, warn, info, debug, trace, or directives such as
    /// `info,sundial_scheduler=debug`. Overrides `log.level`.
    #[arg(long, global = true, value_name = "FILTER")]
    log_level: Option<String>,

    /// Log format. Overrides `log.format`.
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    log_format: Option<LogFormat>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create, list, re-password and delete the accounts of the analytics API.
    Account(cmd::account::AccountArgs),
    /// Create and list analytics apps.
    App(cmd::app::AppArgs),
    /// Cluster mode on etcd: members, leader, clock skew, fires in flight.
    Cluster(cmd::cluster::ClusterArgs),
    /// Inspect the effective configuration.
    Config(cmd::config::ConfigArgs),
    /// Cron expressions: next fire times, validation, plain-language explanations.
    Cron(cmd::cron::CronArgs),
    /// Store job definitions in the cluster (`job apply jobs.toml --cluster …`).
    Job(cmd::cluster::JobArgs),
    /// Rebuild an app's aggregates from its raw events (e.g. after its time zone changed).
    Recompute(cmd::recompute::RecomputeArgs),
    /// Run the scheduler daemon: the jobs of a jobs.toml file and its REST API.
    Run(cmd::run::RunArgs),
    /// Run the analytics platform: ingest HTTP API, event bus, aggregator, store.
    Serve(cmd::serve::ServeArgs),
    /// Create, list and revoke API tokens.
    Token(cmd::token::TokenArgs),
}

impl Command {
    /// The store flags of commands that touch the store.
    fn store_args(&self) -> Option<&cmd::StoreArgs> {
        match self {
            Command::App(args) => Some(args.store_args()),
            Command::Account(args) => Some(args.store_args()),
            Command::Token(args) => Some(args.store_args()),
            Command::Recompute(args) => Some(&args.store),
            Command::Run(args) => Some(&args.store),
            Command::Serve(args) => Some(&args.store),
            Command::Config(_) | Command::Cron(_) | Command::Cluster(_) | Command::Job(_) => None,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let store_args = cli.command.store_args().cloned().unwrap_or_default();
    let overrides = Overrides {
        data_dir: store_args.data_dir,
        log: (cli.log_level.is_some() || cli.log_format.is_some()).then(|| LogOverrides {
            level: cli.log_level.clone(),
            format: cli.log_format,
        }),
        store: store_args
            .store_url
            .map(|url| StoreOverrides { url: Some(url) }),
        serve: match &cli.command {
            Command::Serve(args) => Some(ServeOverrides {
                listen: args.listen.clone(),
                bus: args.bus.clone(),
                role: args.role,
                tls_cert: args.tls_cert.clone(),
                tls_key: args.tls_key.clone(),
            }),
            _ => None,
        },
    };
    let config = match Config::load(cli.config.as_deref(), &overrides) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = logging::init(&config.log) {
        eprintln!("error: cannot install logging: {e:#}");
        return ExitCode::from(2);
    }
    tracing::debug!(config_file = ?cli.config, "configuration loaded");
    let result = match cli.command {
        Command::App(args) => cmd::app::run(args, &config),
        Command::Account(args) => cmd::account::run(args, &config),
        Command::Token(args) => cmd::token::run(args, &config),
        Command::Config(args) => cmd::config::run(args, &config),
        Command::Cron(args) => cmd::cron::run(args),
        Command::Recompute(args) => cmd::recompute::run(args, &config),
        Command::Run(args) => cmd::run::run(args, &config),
        Command::Serve(args) => {
            cmd::serve::run(&config, args.cluster.as_deref(), args.node_id.as_deref())
        }
        Command::Cluster(args) => cmd::cluster::run_cluster(args),
        Command::Job(args) => cmd::cluster::run_job(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            tracing::debug!(error = ?e, "command failed");
            eprintln!("error: {}", render_error(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, dropping a cause whose text the previous
/// message already contains (drivers often repeat their source in their own message).
fn render_error(error: &anyhow::Error) -> String {
    let mut out = error.to_string();
    let mut last = out.clone();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !last.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        last = text;
    }
    out
}
