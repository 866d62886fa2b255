//! `sundial config`: inspect the effective configuration.

use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

use crate::config::Config;

/// Arguments of `sundial config`.
#[derive(Args, Debug)]
pub(crate) struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Print the effective configuration (defaults, file, environment and flags merged).
    Show {
        /// Output format.
        #[arg(long, value_enum, default_value_t = ShowFormat::Toml)]
        format: ShowFormat,
    },
    /// Validate the configuration and exit: status 0 when valid, 2 with the error when not.
    Check,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ShowFormat {
    Toml,
    Json,
}

/// Runs `sundial config …` against the already loaded configuration.
pub(crate) fn run(args: ConfigArgs, config: &Config) -> anyhow::Result<ExitCode> {
    match args.command {
        ConfigCommand::Show { format } => match format {
            ShowFormat::Toml => print!("{}", config.to_toml()),
            ShowFormat::Json => println!("{}", serde_json::to_string_pretty(config)?),
        },
        ConfigCommand::Check => println!("configuration is valid"),
    }
    Ok(ExitCode::SUCCESS)
}
