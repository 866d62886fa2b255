//! The subcommands of `sundial`, one module each, and what several of them share.

pub(crate) mod account;
pub(crate) mod app;
pub(crate) mod cluster;
pub(crate) mod config;
pub(crate) mod cron;
pub(crate) mod recompute;
pub(crate) mod run;
pub(crate) mod serve;
pub(crate) mod token;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use sundial_storage_sql::SqlStore;

use crate::config::Config;

/// Where the store is: the same flags on every command that touches it.
#[derive(Args, Debug, Default, Clone)]
pub(crate) struct StoreArgs {
    /// Data directory for embedded storage (overrides `data_dir`).
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Store URL: sqlite://PATH or postgres://USER@HOST/DB (overrides `store.url`).
    #[arg(long = "store", value_name = "URL")]
    pub(crate) store_url: Option<String>,
}

/// Opens the configured store: `store.url` when set, else SQLite in `data_dir`.
pub(crate) async fn open_store(config: &Config) -> anyhow::Result<SqlStore> {
    if config.store.url.is_empty() {
        SqlStore::open_in(&config.data_dir)
            .await
            .with_context(|| format!("cannot open the store in {}", config.data_dir.display()))
    } else {
        Ok(SqlStore::connect(&config.store.url).await?)
    }
}

/// A Tokio runtime for commands that do I/O.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
