//! `sundial app`: create and list analytics apps.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use sundial_analytics::{App, NewApp, Store, StoreError};

use crate::cmd::{StoreArgs, open_store, runtime};
use crate::config::Config;

/// Arguments of `sundial app`.
#[derive(Args, Debug)]
pub(crate) struct AppArgs {
    #[command(subcommand)]
    command: AppCommand,
}

#[derive(Subcommand, Debug)]
enum AppCommand {
    /// Create an app and print its id, key and secret.
    Create {
        /// The app's display name.
        name: String,
        /// IANA time zone whose calendar days the metrics use.
        #[arg(long, default_value = "UTC", value_name = "ZONE")]
        timezone: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List apps (without their secrets).
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

impl AppArgs {
    /// The store flags of whichever subcommand was given.
    pub(crate) fn store_args(&self) -> &StoreArgs {
        match &self.command {
            AppCommand::Create { store, .. } | AppCommand::List { store, .. } => store,
        }
    }
}

/// Runs `sundial app …`.
pub(crate) fn run(args: AppArgs, config: &Config) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let store = open_store(config).await?;
        let code = match args.command {
            AppCommand::Create {
                name,
                timezone,
                json,
                ..
            } => match store.create_app(NewApp { name, timezone }).await {
                Ok(app) => {
                    print_created(&app, json)?;
                    ExitCode::SUCCESS
                }
                Err(StoreError::Invalid(e)) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
                Err(e) => return Err(e.into()),
            },
            AppCommand::List { json, .. } => {
                print_list(&store.list_apps().await?, json)?;
                ExitCode::SUCCESS
            }
        };
        store.close().await;
        Ok(code)
    })
}

fn print_created(app: &App, json: bool) -> anyhow::Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "id": app.id,
                "name": app.name,
                "timezone": app.timezone,
                "app_key": app.app_key,
                "app_secret": app.app_secret,
            }))?
        );
    } else {
        println!(
            "Created app {} ({:?}, time zone {})",
            app.id, app.name, app.timezone
        );
        println!("  app key:    {}", app.app_key);
        println!("  app secret: {}", app.app_secret);
        println!("Give the app key to your SDKs; keep the secret for request signing.");
    }
    Ok(())
}

fn print_list(apps: &[App], json: bool) -> anyhow::Result<()> {
    if json {
        let rows: Vec<_> = apps
            .iter()
            .map(|a| {
                serde_json::json!({
                    "id": a.id,
                    "name": a.name,
                    "timezone": a.timezone,
                    "app_key": a.app_key,
                    "require_signature": a.require_signature,
                    "created_at": jiff::Timestamp::from_millisecond(a.created_at_ms)
                        .map(|t| t.to_string())
                        .unwrap_or_default(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if apps.is_empty() {
        println!("No apps yet: create one with `sundial app create NAME --timezone ZONE`.");
        return Ok(());
    }
    let name_width = apps
        .iter()
        .map(|a| a.name.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    let zone_width = apps
        .iter()
        .map(|a| a.timezone.len())
        .max()
        .unwrap_or(8)
        .max(9);
    println!(
        "{:>4}  {:<name_width$}  {:<zone_width$}  APP KEY",
        "ID", "NAME", "TIME ZONE"
    );
    for a in apps {
        println!(
            "{:>4}  {:<name_width$}  {:<zone_width$}  {}",
            a.id, a.name, a.timezone, a.app_key
        );
    }
    Ok(())
}
