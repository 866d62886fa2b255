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

use crate::config::{Config, LogFormat, LogOverrides, Overrides};

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
    /// Inspect the effective configuration.
    Config(cmd::config::ConfigArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides = Overrides {
        log: (cli.log_level.is_some() || cli.log_format.is_some()).then(|| LogOverrides {
            level: cli.log_level.clone(),
            format: cli.log_format,
        }),
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
        Command::Config(args) => cmd::config::run(args, &config),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            tracing::debug!(error = ?e, "command failed");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
