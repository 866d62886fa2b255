//! `sundial token`: long-lived API tokens for scripts, created for an account, listed,
//! and revoked.
//!
//! A token is printed once, when it is created; the store keeps only its SHA-256, so a
//! lost token cannot be shown again — revoke it and create another. Tokens act with
//! their account's role and app grants.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use sundial_analytics::account::{AccountStore, AccountStoreError, NewToken, TokenInfo, TokenKind};

use crate::cmd::account::audit;
use crate::cmd::{StoreArgs, open_store, runtime};
use crate::config::Config;

/// Arguments of `sundial token`.
#[derive(Args, Debug)]
pub(crate) struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
    /// Create an API token for an account and print it (once).
    Create {
        /// The account the token acts as.
        #[arg(long)]
        username: String,
        /// A name to recognise the token by (e.g. the script that uses it).
        #[arg(long)]
        name: String,
        /// Expire after this many days (default: never).
        #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..))]
        expires_in_days: Option<u32>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List API tokens (never the tokens themselves).
    List {
        /// Only this account's tokens.
        #[arg(long)]
        username: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a token by id.
    Revoke {
        /// The token's id (from `token list`).
        id: i64,
        #[command(flatten)]
        store: StoreArgs,
    },
}

impl TokenArgs {
    /// The store flags of whichever subcommand was given.
    pub(crate) fn store_args(&self) -> &StoreArgs {
        match &self.command {
            TokenCommand::Create { store, .. }
            | TokenCommand::List { store, .. }
            | TokenCommand::Revoke { store, .. } => store,
        }
    }
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn token_json(t: &TokenInfo, username: &str) -> serde_json::Value {
    serde_json::json!({
        "id": t.id,
        "username": username,
        "name": t.name,
        "created_at": rfc3339(t.created_at_ms),
        "expires_at": t.expires_at_ms.map(rfc3339),
    })
}

/// Runs `sundial token …`.
pub(crate) fn run(args: TokenArgs, config: &Config) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let store = open_store(config).await?;
        let code = match args.command {
            TokenCommand::Create {
                username,
                name,
                expires_in_days,
                json,
                ..
            } => match store.account_by_username(&username).await? {
                None => {
                    eprintln!("error: no account {username:?}");
                    ExitCode::from(2)
                }
                Some(account) => {
                    let (token, token_hash) = sundial_server::auth::new_token(TokenKind::Api)?;
                    let expires_at_ms = expires_in_days.map(|d| {
                        jiff::Timestamp::now()
                            .as_millisecond()
                            .saturating_add(i64::from(d) * 86_400_000)
                    });
                    let created = store
                        .create_token(NewToken {
                            account_id: account.id,
                            kind: TokenKind::Api,
                            name,
                            token_hash,
                            expires_at_ms,
                        })
                        .await;
                    match created {
                        Ok(info) => {
                            audit(
                                &store,
                                "token.create",
                                format!("token:{}", info.id),
                                format!("for={username} name={:?}", info.name),
                            )
                            .await;
                            if json {
                                let mut v = token_json(&info, &username);
                                v["token"] = serde_json::json!(token);
                                println!("{}", serde_json::to_string_pretty(&v)?);
                            } else {
                                println!(
                                    "Created API token {} ({:?}) for {username:?}.",
                                    info.id, info.name
                                );
                                println!("  token: {token}");
                                println!(
                                    "It is shown only now. Send it as `Authorization: Bearer \
                                     TOKEN`."
                                );
                            }
                            ExitCode::SUCCESS
                        }
                        Err(AccountStoreError::Invalid(e)) => {
                            eprintln!("error: {e}");
                            ExitCode::from(2)
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            },
            TokenCommand::List { username, json, .. } => {
                let accounts = store.list_accounts().await?;
                let filter = match &username {
                    None => None,
                    Some(name) => match accounts.iter().find(|a| a.username == *name) {
                        Some(a) => Some(a.id),
                        None => {
                            eprintln!("error: no account {name:?}");
                            store.close().await;
                            return Ok(ExitCode::from(2));
                        }
                    },
                };
                let tokens = store.list_api_tokens(filter).await?;
                let name_of = |id: i64| {
                    accounts
                        .iter()
                        .find(|a| a.id == id)
                        .map_or("?", |a| a.username.as_str())
                };
                if json {
                    let rows: Vec<_> = tokens
                        .iter()
                        .map(|t| token_json(t, name_of(t.account_id)))
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                } else if tokens.is_empty() {
                    println!("No API tokens.");
                } else {
                    println!("{:>4}  {:<16}  {:<24}  EXPIRES", "ID", "USERNAME", "NAME");
                    for t in &tokens {
                        println!(
                            "{:>4}  {:<16}  {:<24}  {}",
                            t.id,
                            name_of(t.account_id),
                            t.name,
                            t.expires_at_ms.map_or_else(|| "never".to_owned(), rfc3339)
                        );
                    }
                }
                ExitCode::SUCCESS
            }
            TokenCommand::Revoke { id, .. } => match store.revoke_token(id).await {
                Ok(()) => {
                    audit(&store, "token.revoke", format!("token:{id}"), String::new()).await;
                    println!("Revoked token {id}.");
                    ExitCode::SUCCESS
                }
                Err(AccountStoreError::NoSuchToken(_)) => {
                    eprintln!("error: no token {id}");
                    ExitCode::from(2)
                }
                Err(e) => return Err(e.into()),
            },
        };
        store.close().await;
        Ok(code)
    })
}
