//! `sundial cron`: compute, check and explain cron expressions with `sundial-cron`.
//!
//! - `next EXPR [--tz ZONE] [--from RFC3339] [--count N] [--seed S]` prints fire times,
//!   one RFC 3339 timestamp with offset per line.
//! - `check EXPR` says whether the expression is valid and prints its normal form.
//! - `explain EXPR [--lang en|zh]` prints a human description.
//!
//! Exit status: 0 on success; 2 for an invalid expression (the caret message goes to
//! stderr, nothing to stdout) or an invalid `--tz`/`--from`; 1 when the expression
//! never fires (for example `0 0 30 2 *`).

use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use sundial_cron::jiff::tz::TimeZone;
use sundial_cron::jiff::{Timestamp, ZonedDateTime};
use sundial_cron::{Kind, Lang, Schedule};

/// Arguments of `sundial cron`.
#[derive(Args, Debug)]
pub(crate) struct CronArgs {
    #[command(subcommand)]
    command: CronCommand,
}

#[derive(Subcommand, Debug)]
enum CronCommand {
    /// Print the next fire times of an expression.
    ///
    /// The expression is one argument: quote it, e.g. `sundial cron next '30 2 * * MON-FRI'`.
    /// Times are evaluated in the expression's CRON_TZ= zone if it has one, else in
    /// --tz, and printed in --tz (default: the CRON_TZ= zone, else UTC).
    Next {
        /// The cron expression (5, 6 or 7 fields, an @alias, or @every <duration>).
        expr: String,
        /// IANA time zone to evaluate and print in, e.g. `Europe/Berlin`.
        #[arg(long, value_name = "ZONE")]
        tz: Option<String>,
        /// Start instant (exclusive), RFC 3339 with offset, e.g. `2024-03-10T00:00:00-05:00`.
        /// Default: now.
        #[arg(long, value_name = "RFC3339")]
        from: Option<String>,
        /// How many fire times to print.
        #[arg(long, short = 'n', default_value_t = 5, value_name = "N")]
        count: usize,
        #[command(flatten)]
        seed: SeedArg,
    },
    /// Check an expression: prints its normal form (exit 0) or the error (exit 2).
    Check {
        /// The cron expression.
        expr: String,
        #[command(flatten)]
        seed: SeedArg,
    },
    /// Describe an expression in words.
    Explain {
        /// The cron expression.
        expr: String,
        /// Language of the description.
        #[arg(long, value_enum, default_value_t = LangArg::En)]
        lang: LangArg,
        #[command(flatten)]
        seed: SeedArg,
    },
}

#[derive(Args, Debug)]
struct SeedArg {
    /// Seed for hashed `H` values: the job id. It is hashed exactly as the scheduler
    /// hashes a job's id, so the times shown are the ones that job gets.
    #[arg(long, value_name = "JOB_ID")]
    seed: Option<String>,
}

impl SeedArg {
    fn value(&self) -> u64 {
        match &self.seed {
            None => 0,
            Some(job_id) => sundial_cron::hash_seed(job_id),
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LangArg {
    /// English.
    En,
    /// Simplified Chinese.
    Zh,
}

/// Parses the expression or prints the caret error; `None` means "exit 2".
fn parse(expr: &str, seed: &SeedArg) -> Option<Schedule> {
    match Schedule::parse_with_seed(expr, seed.value()) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("error: {e}");
            None
        }
    }
}

fn usage_error(message: std::fmt::Arguments<'_>) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

/// Runs `sundial cron …`.
pub(crate) fn run(args: CronArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        CronCommand::Next {
            expr,
            tz,
            from,
            count,
            seed,
        } => Ok(next(&expr, tz.as_deref(), from.as_deref(), count, &seed)),
        CronCommand::Check { expr, seed } => Ok(match parse(&expr, &seed) {
            Some(s) => {
                println!("valid: {s}");
                ExitCode::SUCCESS
            }
            None => ExitCode::from(2),
        }),
        CronCommand::Explain { expr, lang, seed } => Ok(match parse(&expr, &seed) {
            Some(s) => {
                let lang = match lang {
                    LangArg::En => Lang::En,
                    LangArg::Zh => Lang::Zh,
                };
                println!("{}", s.describe(lang));
                ExitCode::SUCCESS
            }
            None => ExitCode::from(2),
        }),
    }
}

fn next(
    expr: &str,
    tz: Option<&str>,
    from: Option<&str>,
    count: usize,
    seed: &SeedArg,
) -> ExitCode {
    let Some(schedule) = parse(expr, seed) else {
        return ExitCode::from(2);
    };
    let zone = match tz {
        Some(name) => match TimeZone::get(name) {
            Ok(z) => z,
            Err(e) => return usage_error(format_args!("invalid --tz `{name}`: {e}")),
        },
        None => schedule.timezone().cloned().unwrap_or(TimeZone::UTC),
    };
    let start = match from {
        None => Timestamp::now(),
        Some(text) => match text.parse::<Timestamp>() {
            Ok(t) => t,
            Err(e) => {
                return usage_error(format_args!(
                    "invalid --from `{text}`: {e} (expected RFC 3339 with an offset, e.g. 2024-03-10T00:00:00Z)"
                ));
            }
        },
    };
    if let Kind::Every(_) = schedule.kind() {
        eprintln!(
            "note: `{schedule}` is an interval trigger, not a calendar: the scheduler runs the job at that interval, counted from when the job starts; the times below assume a start at {}",
            format_time(&start.to_zoned_datetime(zone.clone()))
        );
    }
    let mut printed = 0;
    for t in schedule.iter_after(start, &zone).take(count) {
        println!("{}", format_time(&t.to_zoned_datetime(zone.clone())));
        printed += 1;
    }
    if printed == 0 && count > 0 {
        eprintln!(
            "error: `{expr}` never fires after {}: no matching time up to the end of {} (check day-of-month against month, e.g. 30 February)",
            format_time(&start.to_zoned_datetime(zone)),
            sundial_cron::MAX_YEAR
        );
        return ExitCode::FAILURE;
    }
    if printed < count {
        eprintln!(
            "note: only {printed} fire time(s) up to the end of {}",
            sundial_cron::MAX_YEAR
        );
    }
    ExitCode::SUCCESS
}

/// RFC 3339 with the zone's offset; fractional seconds only when present.
fn format_time(z: &ZonedDateTime) -> String {
    z.strftime("%Y-%m-%dT%H:%M:%S%.f%:z").to_string()
}
