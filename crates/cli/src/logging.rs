//! Installs the process-wide `tracing` subscriber. Only the binary does this; library
//! crates only emit spans and events.
//!
//! Logs go to standard error so that standard output stays clean for command output
//! (`sundial cron next` prints timestamps there, `--json` commands print JSON).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the subscriber described by `config`. The filter was validated when the
/// configuration was loaded; a second install (tests) is ignored.
pub(crate) fn init(config: &LogConfig) -> anyhow::Result<()> {
    let filter = EnvFilter::builder().parse(&config.level)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match config.format {
        LogFormat::Pretty => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(true)
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    // A subscriber may already be installed (for example by a test harness); keep it.
    let _ = result;
    Ok(())
}
