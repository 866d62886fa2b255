//! `sundial recompute`: rebuild an app's aggregates from its raw-event archive (after
//! its time zone changed, or to repair them). See `sundial_storage_sql::recompute` for
//! how the rebuild is swapped in safely, and docs/metrics.md for when to use it.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use sundial_analytics::Store as _;
use sundial_analytics::metrics::{date_of, parse_day};
use sundial_storage_sql::RecomputeError;

use crate::cmd::{StoreArgs, open_store, runtime};
use crate::config::Config;

/// Arguments of `sundial recompute`.
#[derive(Args, Debug)]
pub(crate) struct RecomputeArgs {
    /// The app's id (`sundial app list`).
    #[arg(long, value_name = "ID")]
    app: i64,
    /// First day to rebuild, YYYY-MM-DD in the app's zone (with --to; default: every
    /// day with raw events).
    #[arg(long, value_name = "DATE", requires = "to")]
    from: Option<String>,
    /// Last day to rebuild, YYYY-MM-DD (with --from).
    #[arg(long, value_name = "DATE", requires = "from")]
    to: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
}

/// Runs `sundial recompute`.
pub(crate) fn run(args: RecomputeArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let range = match (&args.from, &args.to) {
        (Some(from), Some(to)) => {
            let parsed = parse_day("from", from).and_then(|f| Ok((f, parse_day("to", to)?)));
            match parsed {
                Ok((f, t)) if f <= t => Some((f, t)),
                Ok(_) => {
                    eprintln!("error: --from ({from}) is after --to ({to})");
                    return Ok(ExitCode::from(2));
                }
                Err(e) => {
                    eprintln!(
                        "error: {}",
                        e.to_string().replace("parameter `", "--").replace('`', "")
                    );
                    return Ok(ExitCode::from(2));
                }
            }
        }
        _ => None,
    };
    runtime()?.block_on(async {
        let store = open_store(config).await?;
        let Some(app) = store.app_by_id(args.app).await? else {
            eprintln!(
                "error: no app with id {} (see `sundial app list`)",
                args.app
            );
            store.close().await;
            return Ok(ExitCode::from(2));
        };
        eprintln!(
            "recomputing app {} ({}) in {}{}",
            app.id,
            app.name,
            app.timezone,
            range.map_or_else(
                || " from every retained raw event".to_owned(),
                |(f, t)| format!(", days {} to {}", date_of(f), date_of(t))
            )
        );
        let started = Instant::now();
        let mut last_shown = Instant::now();
        let mut progress = |done: u64, total: u64| {
            if last_shown.elapsed().as_millis() >= 500 || done == total {
                last_shown = Instant::now();
                let pct = (done * 100).checked_div(total).unwrap_or(100);
                eprint!("\r  raw rows {done}/{total} ({pct}%)");
                let _ = std::io::stderr().flush();
            }
        };
        let outcome = store.recompute_app(app.id, range, &mut progress).await;
        eprintln!();
        let code = match outcome {
            Ok(done) => {
                let secs = started.elapsed().as_secs_f64();
                if args.json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "app": app.id,
                            "events": done.events,
                            "from": range.map(|r| date_of(r.0).to_string()),
                            "to": range.map(|r| date_of(r.1).to_string()),
                            "retained_from": done.retained.map(|r| date_of(r.0).to_string()),
                            "retained_to": done.retained.map(|r| date_of(r.1).to_string()),
                            "seconds": secs,
                        })
                    );
                } else {
                    println!("recomputed {} events in {secs:.1} s", done.events);
                    if let Some((f, t)) = done.retained {
                        println!("raw events cover {} to {}", date_of(f), date_of(t));
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e @ (RecomputeError::Concurrent(_) | RecomputeError::Incomplete { .. })) => {
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
            Err(e) => return Err(e.into()),
        };
        store.close().await;
        Ok(code)
    })
}
