//! The jobs file (`jobs.toml`): a `[[job]]` table per job, read into validated
//! [`JobDefinition`]s.
//!
//! Every error names the file, the line and column, the job (by id, or by index when the
//! id itself is bad) and the field, and says what is wrong — a cron error keeps its caret
//! rendering. Unknown fields are errors (a typo must not silently become a default).
//! Loading is all-or-nothing: a file with one bad job defines no job, so a reload never
//! half-applies.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::executor::command::CommandSpec;
use crate::policy::{MisfireMode, MisfirePolicy, OverlapPolicy, RetryPolicy};
use crate::trigger::{Trigger, TriggerError};

/// A job as the file defines it, validated.
#[derive(Debug, Clone)]
pub struct JobDefinition {
    /// Unique id: letters, digits, `-`, `_`, `.`; 1 to 128 bytes.
    pub id: String,
    /// When it fires.
    pub trigger: Trigger,
    /// What a fire does.
    pub action: Action,
    /// Overlap, misfire, retry, jitter and concurrency settings.
    pub policies: Policies,
    /// The line of its `[[job]]` table, for messages.
    pub line: usize,
}

/// What a fire does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Run a program.
    Command(CommandSpec),
    /// Make an HTTP request.
    Http(HttpSpec),
}

/// An HTTP request made by a fire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpSpec {
    /// `GET`, `POST`, …
    pub method: String,
    /// `http://` or `https://` URL.
    pub url: String,
    /// Request headers.
    pub headers: BTreeMap<String, String>,
    /// Request body.
    pub body: Option<String>,
    /// Statuses that count as success (default: any 2xx).
    pub expect_status: Vec<u16>,
}

/// The policies of one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Policies {
    /// When a fire is due while a run is still going.
    pub overlap: OverlapPolicy,
    /// Runs of this job at once (with `overlap = "allow"`).
    pub max_concurrency: u32,
    /// The named worker pool the job's runs count against.
    pub pool: String,
    /// Catch-up after downtime.
    pub misfire: MisfirePolicy,
    /// Attempts, back-off, timeout, pause after failures.
    pub retry: RetryPolicy,
    /// Deterministic delay added to each fire, at most this much.
    pub jitter: Duration,
    /// What a cluster does with a fire whose node died (`fail` or `retry`).
    pub on_node_lost: NodeLost,
}

impl Default for Policies {
    /// Skip overlaps, one run at a time, the `default` pool, the default misfire and
    /// retry policies, no jitter, `fail` on node loss.
    fn default() -> Self {
        Self {
            overlap: OverlapPolicy::default(),
            max_concurrency: 1,
            pool: "default".to_owned(),
            misfire: MisfirePolicy::default(),
            retry: RetryPolicy::default(),
            jitter: Duration::ZERO,
            on_node_lost: NodeLost::default(),
        }
    }
}

/// Cluster policy for fires lost with their node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeLost {
    /// Record the fire as lost and alert (at most once).
    #[default]
    Fail,
    /// Run it again elsewhere under a new fencing token (at least once).
    Retry,
}

/// A jobs file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobsFileError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// Which job (id or `#index`) and field, when known.
    pub context: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for JobsFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": ")?;
        if let Some(context) = &self.context {
            write!(f, "{context}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for JobsFileError {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    job: Vec<Spanned<RawJob>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    id: Spanned<String>,
    cron: Option<Spanned<String>>,
    timezone: Option<Spanned<String>>,
    every: Option<Spanned<String>>,
    align: Option<bool>,
    delay: Option<Spanned<String>>,
    at: Option<Spanned<String>>,
    after: Option<Spanned<String>>,
    start: Option<Spanned<String>>,
    end: Option<Spanned<String>>,
    max_fires: Option<Spanned<u64>>,

    command: Option<Spanned<Vec<String>>>,
    env: Option<BTreeMap<String, String>>,
    cwd: Option<PathBuf>,
    user: Option<String>,
    output_cap: Option<Spanned<u64>>,
    kill_grace: Option<Spanned<String>>,
    http: Option<Spanned<RawHttp>>,

    timeout: Option<Spanned<String>>,
    overlap: Option<Spanned<String>>,
    buffer_max: Option<Spanned<u32>>,
    max_concurrency: Option<Spanned<u32>>,
    pool: Option<String>,
    misfire: Option<Spanned<String>>,
    misfire_grace: Option<Spanned<String>>,
    catchup_window: Option<Spanned<String>>,
    catchup_max: Option<Spanned<u32>>,
    max_attempts: Option<Spanned<u32>>,
    backoff: Option<Spanned<String>>,
    backoff_max: Option<Spanned<String>>,
    backoff_multiplier: Option<Spanned<f64>>,
    backoff_jitter: Option<Spanned<f64>>,
    pause_after_failures: Option<Spanned<u32>>,
    jitter: Option<Spanned<String>>,
    on_node_lost: Option<NodeLost>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default = "default_method")]
    method: String,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<String>,
    #[serde(default)]
    expect_status: Vec<u16>,
}

fn default_method() -> String {
    "GET".to_owned()
}

/// Reads and validates a jobs file; `now` anchors `every`, `delay` and `after` triggers.
pub fn load(path: &Path, now: Timestamp) -> Result<Vec<JobDefinition>, JobsFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| JobsFileError {
        path: path.to_owned(),
        line: None,
        column: None,
        context: None,
        message: format!("cannot read: {e}"),
    })?;
    parse(path, &text, now)
}

/// Validates the text of a jobs file (`path` is only used in messages).
pub fn parse(path: &Path, text: &str, now: Timestamp) -> Result<Vec<JobDefinition>, JobsFileError> {
    let locate = Locator::new(path, text);
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let (line, column) = e
            .span()
            .map(|span| locate.line_col(span.start))
            .map_or((None, None), |(l, c)| (Some(l), Some(c)));
        JobsFileError {
            path: path.to_owned(),
            line,
            column,
            context: None,
            message: e.message().to_owned(),
        }
    })?;
    let mut seen = HashSet::new();
    let mut jobs = Vec::with_capacity(raw.job.len());
    for (index, job) in raw.job.into_iter().enumerate() {
        let line = locate.line_col(job.span().start).0;
        let definition = build(job.into_inner(), index, line, now, &locate)?;
        if !seen.insert(definition.id.clone()) {
            return Err(JobsFileError {
                path: path.to_owned(),
                line: Some(line),
                column: None,
                context: Some(format!("job `{}`", definition.id)),
                message: "the id is already used by an earlier job".into(),
            });
        }
        jobs.push(definition);
    }
    Ok(jobs)
}

/// Turns byte offsets into line and column.
struct Locator<'a> {
    path: &'a Path,
    line_starts: Vec<usize>,
}

impl<'a> Locator<'a> {
    fn new(path: &'a Path, text: &str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { path, line_starts }
    }

    fn line_col(&self, offset: usize) -> (usize, usize) {
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self.line_starts[line.saturating_sub(1)];
        (line.max(1), offset - start + 1)
    }

    fn error<T>(
        &self,
        job: &str,
        field: &str,
        spanned: Option<&Spanned<T>>,
        line: usize,
        message: impl Into<String>,
    ) -> JobsFileError {
        let (line, column) = match spanned {
            Some(s) => {
                let (l, c) = self.line_col(s.span().start);
                (l, Some(c))
            }
            None => (line, None),
        };
        JobsFileError {
            path: self.path.to_owned(),
            line: Some(line),
            column,
            context: Some(format!("{job}: field `{field}`")),
            message: message.into(),
        }
    }
}

fn duration(value: &str) -> Result<Duration, String> {
    let parsed: SignedDuration = value
        .parse()
        .map_err(|_| format!("`{value}` is not a duration (e.g. 30s, 15m, 1h30m, 500ms)"))?;
    Duration::try_from(parsed).map_err(|_| format!("`{value}` is negative"))
}

fn instant(value: &str) -> Result<Timestamp, String> {
    value.parse().map_err(|_| {
        format!(
            "`{value}` is not an RFC 3339 instant with an offset (e.g. 2025-01-01T09:00:00+01:00)"
        )
    })
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[allow(clippy::too_many_lines)]
fn build(
    raw: RawJob,
    index: usize,
    line: usize,
    now: Timestamp,
    at: &Locator<'_>,
) -> Result<JobDefinition, JobsFileError> {
    let id = raw.id.get_ref().clone();
    if !valid_id(&id) {
        return Err(at.error(
            &format!("job #{index}"),
            "id",
            Some(&raw.id),
            line,
            format!("`{id}` is not a valid id: use 1 to 128 letters, digits, `-`, `_` or `.`"),
        ));
    }
    let job = format!("job `{id}`");
    let dur =
        |field: &str, v: &Option<Spanned<String>>| -> Result<Option<Duration>, JobsFileError> {
            v.as_ref()
                .map(|s| duration(s.get_ref()).map_err(|m| at.error(&job, field, Some(s), line, m)))
                .transpose()
        };

    // Exactly one trigger.
    let given: Vec<&str> = [
        ("cron", raw.cron.is_some()),
        ("every", raw.every.is_some()),
        ("delay", raw.delay.is_some()),
        ("at", raw.at.is_some()),
        ("after", raw.after.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    if given.len() != 1 {
        let message = if given.is_empty() {
            "no trigger: give one of cron, every, delay, at or after".to_owned()
        } else {
            format!(
                "more than one trigger ({}): give exactly one",
                given.join(", ")
            )
        };
        return Err(at.error::<()>(
            &job,
            given.first().copied().unwrap_or("cron"),
            None,
            line,
            message,
        ));
    }
    if raw.timezone.is_some() && raw.cron.is_none() {
        return Err(at.error(
            &job,
            "timezone",
            raw.timezone.as_ref(),
            line,
            "only applies to a `cron` trigger",
        ));
    }
    if raw.align.is_some() && raw.every.is_none() {
        return Err(at.error::<()>(
            &job,
            "align",
            None,
            line,
            "only applies to an `every` trigger",
        ));
    }
    let trigger_error = |field: &str, s: Option<&Spanned<String>>, e: TriggerError| {
        at.error(&job, field, s, line, e.to_string())
    };
    let mut trigger = if let Some(expr) = &raw.cron {
        let zone = match &raw.timezone {
            Some(name) => TimeZone::get(name.get_ref()).map_err(|_| {
                at.error(
                    &job,
                    "timezone",
                    Some(name),
                    line,
                    format!(
                        "`{}` is not an IANA time zone (e.g. Europe/Berlin)",
                        name.get_ref()
                    ),
                )
            })?,
            None => TimeZone::UTC,
        };
        let schedule =
            sundial_cron::Schedule::parse_with_seed(expr.get_ref(), sundial_cron::hash_seed(&id))
                .map_err(|e| at.error(&job, "cron", Some(expr), line, format!("\n{e}")))?;
        Trigger::cron(schedule, zone, now).map_err(|e| trigger_error("cron", Some(expr), e))?
    } else if let Some(every) = &raw.every {
        let period =
            duration(every.get_ref()).map_err(|m| at.error(&job, "every", Some(every), line, m))?;
        if raw.align.unwrap_or(false) {
            Trigger::every_aligned(period, Duration::ZERO)
        } else {
            Trigger::every(period, now)
        }
        .map_err(|e| trigger_error("every", Some(every), e))?
    } else if let Some(delay) = &raw.delay {
        let d =
            duration(delay.get_ref()).map_err(|m| at.error(&job, "delay", Some(delay), line, m))?;
        Trigger::delay(d, now).map_err(|e| trigger_error("delay", Some(delay), e))?
    } else if let Some(when) = &raw.at {
        Trigger::at(instant(when.get_ref()).map_err(|m| at.error(&job, "at", Some(when), line, m))?)
    } else if let Some(after) = &raw.after {
        let d =
            duration(after.get_ref()).map_err(|m| at.error(&job, "after", Some(after), line, m))?;
        Trigger::at(
            now.checked_add(d).map_err(|_| {
                at.error(&job, "after", Some(after), line, "is too far in the future")
            })?,
        )
    } else {
        unreachable!("exactly one trigger was checked above")
    };
    if let Some(start) = &raw.start {
        let t =
            instant(start.get_ref()).map_err(|m| at.error(&job, "start", Some(start), line, m))?;
        trigger = trigger
            .with_start(t)
            .map_err(|e| trigger_error("start", Some(start), e))?;
    }
    if let Some(end) = &raw.end {
        let t = instant(end.get_ref()).map_err(|m| at.error(&job, "end", Some(end), line, m))?;
        trigger = trigger
            .with_end(t)
            .map_err(|e| trigger_error("end", Some(end), e))?;
    }
    if let Some(max) = &raw.max_fires {
        trigger = trigger
            .with_max_fires(*max.get_ref())
            .map_err(|e| at.error(&job, "max_fires", Some(max), line, e.to_string()))?;
    }

    // Exactly one action.
    let action = match (&raw.command, &raw.http) {
        (Some(argv), None) => {
            if argv.get_ref().is_empty() || argv.get_ref()[0].is_empty() {
                return Err(at.error(
                    &job,
                    "command",
                    Some(argv),
                    line,
                    "must name a program: command = [\"/path/to/program\", \"arg\", …]",
                ));
            }
            let mut spec = CommandSpec::new(argv.get_ref().clone());
            spec.env = raw.env.clone().unwrap_or_default();
            spec.cwd = raw.cwd.clone();
            spec.user = raw.user.clone();
            if let Some(cap) = &raw.output_cap {
                spec.output_cap = usize::try_from(*cap.get_ref()).unwrap_or(usize::MAX);
            }
            if let Some(grace) = dur("kill_grace", &raw.kill_grace)? {
                spec.kill_grace = grace;
            }
            Action::Command(spec)
        }
        (None, Some(http)) => {
            for (field, set) in [
                ("env", raw.env.is_some()),
                ("cwd", raw.cwd.is_some()),
                ("user", raw.user.is_some()),
            ] {
                if set {
                    return Err(at.error::<()>(
                        &job,
                        field,
                        None,
                        line,
                        "only applies to a `command` job",
                    ));
                }
            }
            let h = http.get_ref();
            if !(h.url.starts_with("http://") || h.url.starts_with("https://")) {
                return Err(at.error(
                    &job,
                    "http.url",
                    Some(http),
                    line,
                    format!("`{}` must start with http:// or https://", h.url),
                ));
            }
            let method = h.method.to_ascii_uppercase();
            if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(at.error(
                    &job,
                    "http.method",
                    Some(http),
                    line,
                    format!("`{}` is not an HTTP method", h.method),
                ));
            }
            if let Some(bad) = h.expect_status.iter().find(|s| !(100..=599).contains(*s)) {
                return Err(at.error(
                    &job,
                    "http.expect_status",
                    Some(http),
                    line,
                    format!("{bad} is not an HTTP status"),
                ));
            }
            Action::Http(HttpSpec {
                method,
                url: h.url.clone(),
                headers: h.headers.clone(),
                body: h.body.clone(),
                expect_status: h.expect_status.clone(),
            })
        }
        (None, None) => {
            return Err(at.error::<()>(
                &job,
                "command",
                None,
                line,
                "no action: give `command = [...]` or `http = { url = ... }`",
            ));
        }
        (Some(argv), Some(_)) => {
            return Err(at.error(
                &job,
                "http",
                Some(argv),
                line,
                "give either `command` or `http`, not both",
            ));
        }
    };

    // Policies.
    let overlap = match raw.overlap.as_ref().map(|s| (s, s.get_ref().as_str())) {
        None => OverlapPolicy::default(),
        Some((_, "allow")) => OverlapPolicy::Allow,
        Some((_, "skip")) => OverlapPolicy::Skip,
        Some((_, "buffer_one")) => OverlapPolicy::BufferOne,
        Some((_, "buffer_all")) => OverlapPolicy::BufferAll { max: raw.buffer_max.as_ref().map_or(16, |m| *m.get_ref()) },
        Some((_, "cancel_previous")) => OverlapPolicy::CancelPrevious,
        Some((_, "terminate_previous")) => OverlapPolicy::TerminatePrevious,
        Some((s, other)) => return Err(at.error(&job, "overlap", Some(s), line, format!(
            "`{other}` is not an overlap policy (allow, skip, buffer_one, buffer_all, cancel_previous, terminate_previous)"))),
    };
    if let Some(b) = &raw.buffer_max
        && !matches!(overlap, OverlapPolicy::BufferAll { .. })
    {
        return Err(at.error(
            &job,
            "buffer_max",
            Some(b),
            line,
            "only applies with overlap = \"buffer_all\"",
        ));
    }
    let max_concurrency = match &raw.max_concurrency {
        Some(m) if *m.get_ref() == 0 => {
            return Err(at.error(&job, "max_concurrency", Some(m), line, "must be at least 1"));
        }
        Some(m) => *m.get_ref(),
        None => 1,
    };
    let mut misfire = MisfirePolicy::default();
    misfire.mode = match raw.misfire.as_ref().map(|s| (s, s.get_ref().as_str())) {
        None | Some((_, "run_once")) => MisfireMode::RunOnce,
        Some((_, "skip")) => MisfireMode::Skip,
        Some((_, "run_all")) => MisfireMode::RunAll {
            max: raw.catchup_max.as_ref().map_or(100, |m| *m.get_ref()),
        },
        Some((s, other)) => {
            return Err(at.error(
                &job,
                "misfire",
                Some(s),
                line,
                format!("`{other}` is not a misfire policy (skip, run_once, run_all)"),
            ));
        }
    };
    if let Some(m) = &raw.catchup_max
        && !matches!(misfire.mode, MisfireMode::RunAll { .. })
    {
        return Err(at.error(
            &job,
            "catchup_max",
            Some(m),
            line,
            "only applies with misfire = \"run_all\"",
        ));
    }
    if let Some(grace) = dur("misfire_grace", &raw.misfire_grace)? {
        misfire.grace = grace;
    }
    if let Some(window) = dur("catchup_window", &raw.catchup_window)? {
        misfire.window = window;
    }
    let mut retry = RetryPolicy::default();
    if let Some(m) = &raw.max_attempts {
        if *m.get_ref() == 0 {
            return Err(at.error(
                &job,
                "max_attempts",
                Some(m),
                line,
                "must be at least 1 (1 = no retry)",
            ));
        }
        retry.max_attempts = *m.get_ref();
    }
    if let Some(b) = dur("backoff", &raw.backoff)? {
        retry.initial_backoff = b;
    }
    if let Some(b) = dur("backoff_max", &raw.backoff_max)? {
        retry.max_backoff = b;
    }
    if let Some(m) = &raw.backoff_multiplier {
        let v = *m.get_ref();
        if !(1.0..=100.0).contains(&v) {
            return Err(at.error(
                &job,
                "backoff_multiplier",
                Some(m),
                line,
                "must be from 1 to 100",
            ));
        }
        retry.multiplier = v;
    }
    if let Some(j) = &raw.backoff_jitter {
        let v = *j.get_ref();
        if !(0.0..=1.0).contains(&v) {
            return Err(at.error(&job, "backoff_jitter", Some(j), line, "must be from 0 to 1"));
        }
        retry.jitter = v;
    }
    retry.attempt_timeout = dur("timeout", &raw.timeout)?;
    if let Some(p) = &raw.pause_after_failures {
        if *p.get_ref() == 0 {
            return Err(at.error(
                &job,
                "pause_after_failures",
                Some(p),
                line,
                "must be at least 1",
            ));
        }
        retry.pause_after_failures = Some(*p.get_ref());
    }
    let jitter = dur("jitter", &raw.jitter)?.unwrap_or(Duration::ZERO);

    Ok(JobDefinition {
        id,
        trigger,
        action,
        policies: Policies {
            overlap,
            max_concurrency,
            pool: raw.pool.unwrap_or_else(|| "default".to_owned()),
            misfire,
            retry,
            jitter,
            on_node_lost: raw.on_node_lost.unwrap_or_default(),
        },
        line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2024-03-01T00:00:00Z".parse().expect("ts")
    }

    fn load_str(text: &str) -> Result<Vec<JobDefinition>, JobsFileError> {
        parse(Path::new("jobs.toml"), text, now())
    }

    #[test]
    fn a_complete_file() {
        let jobs = load_str(
            r#"
[[job]]
id = "backup"
cron = "30 2 * * *"
timezone = "Europe/Berlin"
command = ["/usr/local/bin/backup", "--full"]
env = { TARGET = "s3" }
timeout = "1h"
overlap = "buffer_all"
buffer_max = 3
misfire = "run_all"
catchup_max = 5
max_attempts = 3
backoff = "10s"
jitter = "30s"

[[job]]
id = "ping"
every = "15m"
align = true
http = { method = "post", url = "https://example.invalid/ping", expect_status = [200, 204] }
"#,
        )
        .expect("valid");
        assert_eq!(jobs.len(), 2);
        let backup = &jobs[0];
        assert_eq!(backup.id, "backup");
        assert_eq!(backup.line, 2);
        assert_eq!(backup.policies.overlap, OverlapPolicy::BufferAll { max: 3 });
        assert_eq!(backup.policies.misfire.mode, MisfireMode::RunAll { max: 5 });
        assert_eq!(backup.policies.retry.max_attempts, 3);
        assert_eq!(
            backup.policies.retry.attempt_timeout,
            Some(Duration::from_secs(3600))
        );
        assert_eq!(backup.policies.jitter, Duration::from_secs(30));
        let Action::Command(spec) = &backup.action else {
            panic!("command")
        };
        assert_eq!(spec.env.get("TARGET").map(String::as_str), Some("s3"));
        // 02:30 Berlin on 2024-03-01 is 01:30 UTC.
        assert_eq!(
            backup.trigger.next_after(now(), 0),
            Some("2024-03-01T01:30:00Z".parse().expect("ts"))
        );
        let Action::Http(http) = &jobs[1].action else {
            panic!("http")
        };
        assert_eq!(http.method, "POST");
        assert_eq!(
            jobs[1].trigger.next_after(now(), 0),
            Some("2024-03-01T00:15:00Z".parse().expect("ts"))
        );
    }

    fn err(text: &str) -> String {
        load_str(text).expect_err("invalid").to_string()
    }

    #[test]
    fn errors_name_file_line_job_and_field() {
        let cases = [
            (
                "[[job]]\nid = \"a\"\ncron = \"0 25 * * *\"\ncommand = [\"true\"]\n",
                "jobs.toml:3:8: job `a`: field `cron`:",
            ),
            (
                "[[job]]\nid = \"a\"\ncron = \"0 2 * * *\"\ntimezone = \"Mars/Olympus\"\ncommand = [\"true\"]\n",
                "jobs.toml:4:12: job `a`: field `timezone`: `Mars/Olympus` is not an IANA time zone",
            ),
            (
                "[[job]]\nid = \"a\"\nevery = \"soon\"\ncommand = [\"true\"]\n",
                "jobs.toml:3:9: job `a`: field `every`: `soon` is not a duration",
            ),
            (
                "[[job]]\nid = \"a\"\ncommand = [\"true\"]\n",
                "jobs.toml:1: job `a`: field `cron`: no trigger",
            ),
            (
                "[[job]]\nid = \"a\"\nevery = \"1m\"\ncron = \"* * * * *\"\ncommand = [\"true\"]\n",
                "more than one trigger (cron, every)",
            ),
            ("[[job]]\nid = \"a\"\nevery = \"1m\"\n", "no action"),
            (
                "[[job]]\nid = \"a b\"\nevery = \"1m\"\ncommand = [\"true\"]\n",
                "jobs.toml:2:6: job #0: field `id`: `a b` is not a valid id",
            ),
            (
                "[[job]]\nid = \"a\"\nevery = \"1m\"\ncommand = []\n",
                "jobs.toml:4:11: job `a`: field `command`: must name a program",
            ),
            (
                "[[job]]\nid = \"a\"\nevery = \"1m\"\ncommand = [\"true\"]\noverlap = \"never\"\n",
                "jobs.toml:5:11: job `a`: field `overlap`: `never` is not an overlap policy",
            ),
            (
                "[[job]]\nid = \"a\"\nevery = \"1m\"\ncommand = [\"true\"]\nretries = 3\n",
                "jobs.toml:5:1: unknown field `retries`",
            ),
            (
                "[[job]]\nid = \"a\"\nevery = \"1m\"\ncommand = [\"true\"]\nmax_attempts = \"3\"\n",
                "jobs.toml:5:16: invalid type: string \"3\", expected u32",
            ),
            (
                "[[job]]\nid = \"a\"\nevery = \"1m\"\ncommand = [\"true\"]\n[[job]]\nid = \"a\"\nevery = \"2m\"\ncommand = [\"true\"]\n",
                "jobs.toml:5: job `a`: the id is already used",
            ),
            (
                "[[job]]\nid = \"a\"\nat = \"tomorrow\"\ncommand = [\"true\"]\n",
                "field `at`: `tomorrow` is not an RFC 3339 instant",
            ),
            (
                "[[job]]\nid = \"a\"\nevery = \"1m\"\nstart = \"2024-02-01T00:00:00Z\"\nend = \"2024-01-01T00:00:00Z\"\ncommand = [\"true\"]\n",
                "field `end`: end (2024-01-01T00:00:00Z) must be after start",
            ),
            (
                "[[job]]\nid = \"a\"\nevery = \"1m\"\nhttp = { url = \"ftp://x\" }\n",
                "field `http.url`: `ftp://x` must start with http://",
            ),
            (
                "[[job]]\nid = \"a\"\nevery = \"1m\"\ncommand = [\"true\"]\nbuffer_max = 2\n",
                "field `buffer_max`: only applies with overlap = \"buffer_all\"",
            ),
            (
                "[[job]]\nid = \"a\"\nevery = \"0s\"\ncommand = [\"true\"]\n",
                "field `every`: the interval must be at least 1 ms",
            ),
            (
                "[[job]]\nid = \"a\"\ncron = \"@reboot\"\ncommand = [\"true\"]\n",
                "field `cron`",
            ),
        ];
        for (text, expected) in cases {
            let message = err(text);
            assert!(
                message.contains(expected),
                "`{message}` should contain `{expected}`"
            );
        }
    }

    #[test]
    fn cron_errors_keep_the_caret() {
        let message = err("[[job]]\nid = \"a\"\ncron = \"0 0 32 * *\"\ncommand = [\"true\"]\n");
        assert!(message.contains('^'), "{message}");
        assert!(message.contains("32"), "{message}");
    }

    #[test]
    fn empty_file_has_no_jobs() {
        assert!(load_str("").expect("valid").is_empty());
    }
}
