//! `sundial account`: create, list, re-password and delete the accounts that sign in
//! to the analytics API and dashboard.
//!
//! Passwords never appear on the command line (where `ps` and shell history would show
//! them): they are read from a terminal prompt without echo, or with
//! `--password-stdin` as the first line of standard input. They are hashed with
//! Argon2id before they reach the store. Every change is written to the audit log with
//! the actor `cli`.

use std::io::{BufRead as _, IsTerminal as _};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use sundial_analytics::account::{
    Account, AccountStore, AccountStoreError, AppScope, NewAccount, NewAuditEntry, Role,
};

use crate::cmd::{StoreArgs, open_store, runtime};
use crate::config::Config;

/// Arguments of `sundial account`.
#[derive(Args, Debug)]
pub(crate) struct AccountArgs {
    #[command(subcommand)]
    command: AccountCommand,
}

#[derive(Subcommand, Debug)]
enum AccountCommand {
    /// Create an account (asks for its password).
    Create {
        /// Login name: letters, digits, `.`, `_`, `-`, `@`.
        #[arg(long)]
        username: String,
        /// admin (manages apps, accounts, data) or viewer (reads metrics).
        #[arg(long, default_value = "viewer")]
        role: Role,
        /// Restrict a viewer to this app id (repeat for several); without it a viewer
        /// reads every app.
        #[arg(long = "grant", value_name = "APP_ID")]
        grants: Vec<i64>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List accounts.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Change an account's password (its sessions are signed out).
    Passwd {
        /// The account.
        #[arg(long)]
        username: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Delete an account and its sessions and tokens (never the last admin).
    Delete {
        /// The account.
        #[arg(long)]
        username: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

impl AccountArgs {
    /// The store flags of whichever subcommand was given.
    pub(crate) fn store_args(&self) -> &StoreArgs {
        match &self.command {
            AccountCommand::Create { store, .. }
            | AccountCommand::List { store, .. }
            | AccountCommand::Passwd { store, .. }
            | AccountCommand::Delete { store, .. } => store,
        }
    }
}

/// Reads a new password: one line of stdin with `--password-stdin`, else a prompt
/// (twice) on the terminal without echo.
fn read_new_password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_owned());
    }
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("standard input is not a terminal: pass the password with --password-stdin");
    }
    let first = rpassword::prompt_password("Password: ").context("cannot read the password")?;
    let again =
        rpassword::prompt_password("Password (again): ").context("cannot read the password")?;
    if first != again {
        anyhow::bail!("the passwords differ");
    }
    Ok(first)
}

/// Hashes a new password, or prints why it is not acceptable.
fn hash(password: &str) -> Result<String, String> {
    sundial_server::auth::hash_password(password).map_err(|e| e.to_string())
}

/// Appends a `cli` entry to the audit log.
pub(crate) async fn audit(store: &dyn AccountStore, action: &str, target: String, detail: String) {
    let entry = NewAuditEntry {
        at_ms: jiff::Timestamp::now().as_millisecond(),
        actor: "cli".to_owned(),
        action: action.to_owned(),
        target,
        detail,
        ip: None,
    };
    if let Err(e) = store.append_audit(entry).await {
        tracing::warn!(error = %e, "cannot append to the audit log");
    }
}

/// Runs `sundial account …`.
pub(crate) fn run(args: AccountArgs, config: &Config) -> anyhow::Result<ExitCode> {
    // Read the password before opening the store: a prompt should not hold a connection.
    let password = match &args.command {
        AccountCommand::Create { password_stdin, .. }
        | AccountCommand::Passwd { password_stdin, .. } => {
            let password = read_new_password(*password_stdin)?;
            match hash(&password) {
                Ok(h) => Some(h),
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(2));
                }
            }
        }
        _ => None,
    };
    runtime()?.block_on(async {
        let store = open_store(config).await?;
        let code = match args.command {
            AccountCommand::Create {
                username,
                role,
                grants,
                json,
                ..
            } => {
                let scope = if grants.is_empty() {
                    AppScope::All
                } else {
                    AppScope::from_grants(Some(grants))
                };
                let created = store
                    .create_account(NewAccount {
                        username,
                        role,
                        scope,
                        password_hash: password.unwrap_or_default(),
                    })
                    .await;
                match created {
                    Ok(account) => {
                        audit(
                            &store,
                            "account.create",
                            format!("account:{}", account.username),
                            format!("role={}", account.role),
                        )
                        .await;
                        if json {
                            println!("{}", serde_json::to_string_pretty(&account_json(&account))?);
                        } else {
                            println!(
                                "Created {} account {:?} (id {}).",
                                account.role, account.username, account.id
                            );
                        }
                        ExitCode::SUCCESS
                    }
                    Err(e) => user_error(e)?,
                }
            }
            AccountCommand::List { json, .. } => {
                let accounts = store.list_accounts().await?;
                print_list(&accounts, json)?;
                ExitCode::SUCCESS
            }
            AccountCommand::Passwd { username, .. } => {
                match store.account_by_username(&username).await? {
                    None => {
                        eprintln!("error: no account {username:?}");
                        ExitCode::from(2)
                    }
                    Some(account) => {
                        store
                            .set_password(account.id, &password.unwrap_or_default())
                            .await?;
                        audit(
                            &store,
                            "account.passwd",
                            format!("account:{username}"),
                            String::new(),
                        )
                        .await;
                        println!("Password of {username:?} changed; its sessions are signed out.");
                        ExitCode::SUCCESS
                    }
                }
            }
            AccountCommand::Delete { username, .. } => {
                match store.account_by_username(&username).await? {
                    None => {
                        eprintln!("error: no account {username:?}");
                        ExitCode::from(2)
                    }
                    Some(account) => match store.delete_account(account.id).await {
                        Ok(()) => {
                            audit(
                                &store,
                                "account.delete",
                                format!("account:{username}"),
                                String::new(),
                            )
                            .await;
                            println!("Deleted account {username:?}.");
                            ExitCode::SUCCESS
                        }
                        Err(e) => user_error(e)?,
                    },
                }
            }
        };
        store.close().await;
        Ok(code)
    })
}

/// Exit 2 with the message for errors the user can fix; others propagate.
fn user_error(e: AccountStoreError) -> anyhow::Result<ExitCode> {
    match e {
        AccountStoreError::Backend(_) => Err(e.into()),
        other => {
            eprintln!("error: {other}");
            Ok(ExitCode::from(2))
        }
    }
}

fn account_json(a: &Account) -> serde_json::Value {
    serde_json::json!({
        "id": a.id,
        "username": a.username,
        "role": a.role,
        "grants": a.scope.grants(),
        "created_at": jiff::Timestamp::from_millisecond(a.created_at_ms)
            .map(|t| t.to_string())
            .unwrap_or_default(),
    })
}

fn print_list(accounts: &[Account], json: bool) -> anyhow::Result<()> {
    if json {
        let rows: Vec<_> = accounts.iter().map(account_json).collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if accounts.is_empty() {
        println!(
            "No accounts yet: create an admin with `sundial account create --username admin \
             --role admin`."
        );
        return Ok(());
    }
    let width = accounts
        .iter()
        .map(|a| a.username.len())
        .max()
        .unwrap_or(8)
        .max(8);
    println!("{:>4}  {:<width$}  {:<6}  APPS", "ID", "USERNAME", "ROLE");
    for a in accounts {
        let apps = match a.scope.grants() {
            None => "all".to_owned(),
            Some(ids) => ids.iter().map(i64::to_string).collect::<Vec<_>>().join(","),
        };
        println!(
            "{:>4}  {:<width$}  {:<6}  {}",
            a.id, a.username, a.role, apps
        );
    }
    Ok(())
}
