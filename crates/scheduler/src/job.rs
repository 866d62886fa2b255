//! Jobs as data: identities, the serialisable job spec, run records.
//!
//! Everything here is plain data so that a [`JobStore`](crate::store::JobStore) can keep
//! it and a daemon can show it:
//!
//! - a [`JobSpec`] is what a job *is* (id, trigger, action, policies, paused flag), in a
//!   form that survives a restart: triggers keep their anchors (the phase of an `every`
//!   lattice, the registration of a `delay`), cron expressions keep their text and zone
//!   name, and closures are referred to by handler *name* so that jobs loaded from a
//!   store re-bind to code;
//! - a [`Fire`] is (job id, nominal instant): the identity everything once-per-fire keys
//!   on (claims, the ledger, de-duplication);
//! - a [`RunRecord`] is one row of the run ledger: one per fire that started, updated
//!   in place as its attempts go (its `attempt` is the last one made).
//!
//! Invariants: a spec that [`JobSpec::build_trigger`] accepts always rebuilds the same
//! trigger (same anchors, same cron `H` seed — the job id); [`RunId`]s are unique across
//! restarts (time-ordered prefix plus per-process random bits).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::executor::command::CommandSpec;
use crate::jobs_file::{Action, HttpSpec, JobDefinition, Policies};
use crate::trigger::{Trigger, TriggerError, TriggerKind};

/// A job's id: 1 to 128 bytes of letters, digits, `-`, `_`, `.` (as in `jobs.toml`).
/// Cheap to clone (reference-counted).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(Arc<str>);

impl JobId {
    /// A job id (not validated: [`JobSpec::validate`] does that).
    pub fn new(id: impl AsRef<str>) -> Self {
        Self(Arc::from(id.as_ref()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for JobId {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

/// A run's id: 128 bits, the first 48 the creation time in milliseconds (so ids sort
/// by time), the rest per-process random bits plus a counter. Shown as 32 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId(pub u128);

static RUN_COUNTER: AtomicU64 = AtomicU64::new(0);
static RUN_SALT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

impl RunId {
    /// A fresh id created at `now`.
    pub fn generate(now: Timestamp) -> Self {
        let salt = *RUN_SALT.get_or_init(|| {
            let mut b = [0u8; 8];
            if getrandom::fill(&mut b).is_err() {
                // No entropy source: the process id and start time still separate processes.
                let t = Timestamp::now().as_nanosecond() as u64;
                return t ^ u64::from(std::process::id()).rotate_left(32);
            }
            u64::from_le_bytes(b)
        });
        let ms = u128::from(now.as_millisecond().max(0).unsigned_abs()) & ((1 << 48) - 1);
        let n = RUN_COUNTER.fetch_add(1, Ordering::Relaxed);
        let low = u128::from(salt.wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
            | (u128::from(n & 0xffff) << 64);
        Self((ms << 80) | (low & ((1 << 80) - 1)))
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl std::str::FromStr for RunId {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u128::from_str_radix(s, 16).map(Self)
    }
}

impl Serialize for RunId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RunId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A fire: (job id, nominal instant). The identity of "once per fire".
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Fire {
    /// The job.
    pub job_id: JobId,
    /// The instant the schedule names for it (not when it ran).
    pub nominal: Timestamp,
}

/// A claim's fencing token: strictly increasing per coordinator, so a store can refuse
/// a write from a run whose claim was superseded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FencingToken(pub u64);

/// What a run is told about itself.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// The job.
    pub job_id: JobId,
    /// This run (the same for every attempt of the fire).
    pub run_id: RunId,
    /// The fire's nominal instant.
    pub nominal: Timestamp,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The node running it.
    pub node_id: Arc<str>,
    /// The coordinator's token for this fire's claim.
    pub fencing_token: FencingToken,
    /// Fires when the run should stop (cancel-previous, timeout, shutdown).
    pub cancel: CancellationToken,
}

/// When a job fires: a [`Trigger`] in storable form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerSpec {
    /// The kind and its parameters.
    #[serde(flatten)]
    pub kind: TriggerKindSpec,
    /// No fire before this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<Timestamp>,
    /// No fire after this instant (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Timestamp>,
    /// At most this many fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_fires: Option<u64>,
}

/// The kinds of [`TriggerSpec`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TriggerKindSpec {
    /// A cron expression in an IANA zone (`H` fields are seeded by the job id).
    Cron {
        /// The expression.
        expr: String,
        /// The IANA zone name (`UTC` for UTC).
        timezone: String,
    },
    /// Fixed rate on the lattice `phase + k·period`.
    Every {
        /// The period.
        period: Duration,
        /// A point of the lattice (the registration instant, or the epoch when aligned).
        phase: Timestamp,
    },
    /// Fixed delay after each completion; the first fire `delay` after `registered`.
    Delay {
        /// The pause.
        delay: Duration,
        /// The anchor of the first fire.
        registered: Timestamp,
    },
    /// Once, at an instant.
    At {
        /// The instant.
        at: Timestamp,
    },
}

impl TriggerSpec {
    /// A trigger spec without bounds.
    pub fn new(kind: TriggerKindSpec) -> Self {
        Self {
            kind,
            start: None,
            end: None,
            max_fires: None,
        }
    }

    /// A cron trigger in `timezone` (an IANA name).
    pub fn cron(expr: impl Into<String>, timezone: impl Into<String>) -> Self {
        Self::new(TriggerKindSpec::Cron {
            expr: expr.into(),
            timezone: timezone.into(),
        })
    }

    /// A fixed-rate trigger anchored at `phase`.
    pub fn every(period: Duration, phase: Timestamp) -> Self {
        Self::new(TriggerKindSpec::Every { period, phase })
    }

    /// A fixed-delay trigger anchored at `registered`.
    pub fn delay(delay: Duration, registered: Timestamp) -> Self {
        Self::new(TriggerKindSpec::Delay { delay, registered })
    }

    /// A one-shot trigger.
    pub fn at(at: Timestamp) -> Self {
        Self::new(TriggerKindSpec::At { at })
    }

    /// The storable form of a built trigger.
    pub fn from_trigger(trigger: &Trigger) -> Self {
        let kind = match trigger.kind() {
            TriggerKind::Cron { schedule, zone } => TriggerKindSpec::Cron {
                expr: schedule.to_string(),
                timezone: zone.iana_name().unwrap_or("UTC").to_owned(),
            },
            TriggerKind::Every { period, phase } => TriggerKindSpec::Every {
                period: *period,
                phase: *phase,
            },
            TriggerKind::Delay { delay, registered } => TriggerKindSpec::Delay {
                delay: *delay,
                registered: *registered,
            },
            TriggerKind::At(at) => TriggerKindSpec::At { at: *at },
        };
        Self {
            kind,
            start: trigger.start(),
            end: trigger.end(),
            max_fires: trigger.max_fires(),
        }
    }

    /// Builds the trigger; cron `H` fields are seeded with `job_id`.
    pub fn build(&self, job_id: &JobId) -> Result<Trigger, SpecError> {
        let bad = |e: TriggerError| SpecError::Trigger(e.to_string());
        let mut trigger = match &self.kind {
            TriggerKindSpec::Cron { expr, timezone } => {
                let zone =
                    TimeZone::get(timezone).map_err(|_| SpecError::Timezone(timezone.clone()))?;
                let schedule = sundial_cron::Schedule::parse_with_seed(
                    expr,
                    sundial_cron::hash_seed(job_id.as_str()),
                )
                .map_err(|e| SpecError::Cron(e.to_string()))?;
                // `@every` text anchors on the epoch lattice here; a jobs file stores
                // such jobs as `Every` with their registration as phase.
                Trigger::cron(schedule, zone, Timestamp::UNIX_EPOCH).map_err(bad)?
            }
            TriggerKindSpec::Every { period, phase } => {
                Trigger::every(*period, *phase).map_err(bad)?
            }
            TriggerKindSpec::Delay { delay, registered } => {
                Trigger::delay(*delay, *registered).map_err(bad)?
            }
            TriggerKindSpec::At { at } => Trigger::at(*at),
        };
        if let Some(start) = self.start {
            trigger = trigger.with_start(start).map_err(bad)?;
        }
        if let Some(end) = self.end {
            trigger = trigger.with_end(end).map_err(bad)?;
        }
        if let Some(n) = self.max_fires {
            trigger = trigger.with_max_fires(n).map_err(bad)?;
        }
        Ok(trigger)
    }

    /// The same trigger with its anchors (phase, registration) blanked, for comparing
    /// definitions that were loaded at different instants.
    fn without_anchors(&self) -> Self {
        let mut s = self.clone();
        match &mut s.kind {
            TriggerKindSpec::Every { phase, period } => {
                // An aligned lattice (phase on the epoch lattice) is part of the definition.
                let aligned = period.as_nanos() > 0
                    && phase.as_nanosecond().rem_euclid(period.as_nanos() as i128) == 0;
                if !aligned {
                    *phase = Timestamp::UNIX_EPOCH;
                }
            }
            TriggerKindSpec::Delay { registered, .. } => *registered = Timestamp::UNIX_EPOCH,
            TriggerKindSpec::Cron { .. } | TriggerKindSpec::At { .. } => {}
        }
        s
    }
}

/// What a fire does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ActionSpec {
    /// Call the code handler registered under this name
    /// ([`Scheduler::register_async`](crate::engine::Scheduler::register_async) and
    /// friends).
    Handler {
        /// The handler's name.
        name: String,
    },
    /// Run a program.
    Command(CommandSpec),
    /// Make an HTTP request.
    Http(HttpSpec),
}

impl ActionSpec {
    /// A handler action.
    pub fn handler(name: impl Into<String>) -> Self {
        Self::Handler { name: name.into() }
    }
}

/// A job: what it is, in storable form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Its id.
    pub id: JobId,
    /// When it fires.
    pub trigger: TriggerSpec,
    /// What a fire does.
    pub action: ActionSpec,
    /// Overlap, misfire, retry, jitter and concurrency.
    #[serde(default)]
    pub policies: Policies,
    /// Paused jobs keep their definition but do not fire.
    #[serde(default)]
    pub paused: bool,
}

/// A spec that cannot be turned into a running job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// The id is empty, too long or has characters outside `[A-Za-z0-9._-]`.
    #[error("`{0}` is not a valid job id: use 1 to 128 letters, digits, `-`, `_` or `.`")]
    InvalidId(String),
    /// The zone name is not an IANA zone.
    #[error("`{0}` is not an IANA time zone")]
    Timezone(String),
    /// The cron expression does not parse.
    #[error("invalid cron expression: {0}")]
    Cron(String),
    /// The trigger's parameters are inconsistent.
    #[error("invalid trigger: {0}")]
    Trigger(String),
}

impl JobSpec {
    /// A spec with default policies, not paused.
    pub fn new(id: impl Into<JobId>, trigger: TriggerSpec, action: ActionSpec) -> Self {
        Self {
            id: id.into(),
            trigger,
            action,
            policies: Policies::default(),
            paused: false,
        }
    }

    /// The same spec with `policies`.
    #[must_use]
    pub fn with_policies(mut self, policies: Policies) -> Self {
        self.policies = policies;
        self
    }

    /// The spec of a job read from `jobs.toml`.
    pub fn from_definition(def: &JobDefinition) -> Self {
        let action = match &def.action {
            Action::Command(c) => ActionSpec::Command(c.clone()),
            Action::Http(h) => ActionSpec::Http(h.clone()),
        };
        Self {
            id: JobId::new(&def.id),
            trigger: TriggerSpec::from_trigger(&def.trigger),
            action,
            policies: def.policies.clone(),
            paused: false,
        }
    }

    /// Checks the id and that the trigger builds.
    pub fn validate(&self) -> Result<Trigger, SpecError> {
        let id = self.id.as_str();
        let ok = !id.is_empty()
            && id.len() <= 128
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !ok {
            return Err(SpecError::InvalidId(id.to_owned()));
        }
        self.build_trigger()
    }

    /// The trigger this spec describes.
    pub fn build_trigger(&self) -> Result<Trigger, SpecError> {
        self.trigger.build(&self.id)
    }

    /// True when both specs define the same job, ignoring trigger anchors (a file
    /// reloaded later re-anchors its `every` and `delay` triggers) and the paused flag.
    pub fn same_definition(&self, other: &JobSpec) -> bool {
        self.id == other.id
            && self.trigger.without_anchors() == other.trigger.without_anchors()
            && self.action == other.action
            && self.policies == other.policies
    }
}

/// The states of a run in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Claimed and recorded, waiting for a worker or a pool permit.
    Scheduled,
    /// An attempt is going.
    Running,
    /// The last attempt succeeded.
    Succeeded,
    /// Every attempt failed.
    Failed,
    /// The last attempt passed its timeout.
    TimedOut,
    /// Cancelled (overlap policy, shutdown, removal).
    Cancelled,
    /// Its node went away while it ran (found at restart or by the coordinator).
    Lost,
}

impl RunState {
    /// The name used in stores and APIs (`scheduled`, `running`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Scheduled => "scheduled",
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::TimedOut => "timed_out",
            RunState::Cancelled => "cancelled",
            RunState::Lost => "lost",
        }
    }

    /// The state named `s` ([`RunState::as_str`]).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "scheduled" => RunState::Scheduled,
            "running" => RunState::Running,
            "succeeded" => RunState::Succeeded,
            "failed" => RunState::Failed,
            "timed_out" => RunState::TimedOut,
            "cancelled" => RunState::Cancelled,
            "lost" => RunState::Lost,
            _ => return None,
        })
    }

    /// True once the run has ended.
    pub fn is_final(self) -> bool {
        !matches!(self, RunState::Scheduled | RunState::Running)
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of the run ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run.
    pub run_id: RunId,
    /// The job.
    pub job_id: JobId,
    /// The fire's nominal instant.
    pub nominal: Timestamp,
    /// Current state.
    pub state: RunState,
    /// The last attempt made (1 = first).
    pub attempt: u32,
    /// The node that ran it.
    pub node_id: String,
    /// The claim's token.
    pub fencing_token: FencingToken,
    /// When it was recorded.
    pub scheduled_at: Timestamp,
    /// When its first attempt started.
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub finished_at: Option<Timestamp>,
    /// A command's exit status.
    pub exit_code: Option<i32>,
    /// An HTTP action's response status.
    pub http_status: Option<u16>,
    /// The output tail.
    pub output: String,
    /// The last error message.
    pub error: Option<String>,
}

impl RunRecord {
    /// The fire this run is for.
    pub fn fire(&self) -> Fire {
        Fire {
            job_id: self.job_id.clone(),
            nominal: self.nominal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn run_ids_are_unique_and_time_ordered() {
        let a = RunId::generate(ts("2024-01-01T00:00:00Z"));
        let b = RunId::generate(ts("2024-01-01T00:00:00Z"));
        let c = RunId::generate(ts("2024-01-01T00:00:01Z"));
        assert_ne!(a, b);
        assert!(c > a && c > b);
        assert_eq!(a.to_string().len(), 32);
        assert_eq!(a.to_string().parse::<RunId>().expect("hex"), a);
    }

    #[test]
    fn trigger_specs_round_trip_through_triggers_and_json() {
        let id = JobId::new("nightly");
        let spec = TriggerSpec {
            start: Some(ts("2024-01-01T00:00:00Z")),
            max_fires: Some(3),
            ..TriggerSpec::cron("H 2 * * *", "Europe/Berlin")
        };
        let trigger = spec.build(&id).expect("builds");
        let back = TriggerSpec::from_trigger(&trigger);
        // The normalised expression shows the hashed minute; it rebuilds the same fires.
        let again = back.build(&id).expect("builds");
        let after = ts("2024-03-01T00:00:00Z");
        assert_eq!(trigger.next_after(after, 0), again.next_after(after, 0));
        let json = serde_json::to_string(&back).expect("json");
        let parsed: TriggerSpec = serde_json::from_str(&json).expect("parses");
        assert_eq!(parsed, back);
        assert!(
            TriggerSpec::cron("* * * * *", "Mars/Olympus")
                .build(&id)
                .is_err()
        );
    }

    #[test]
    fn same_definition_ignores_anchors_only() {
        let a = JobSpec::new(
            "j",
            TriggerSpec::every(Duration::from_secs(90), ts("2024-01-01T00:00:07Z")),
            ActionSpec::handler("h"),
        );
        let mut b = a.clone();
        b.trigger = TriggerSpec::every(Duration::from_secs(90), ts("2024-02-01T00:00:13Z"));
        assert!(a.same_definition(&b));
        b.policies.max_concurrency = 4;
        assert!(!a.same_definition(&b));
        let aligned = JobSpec::new(
            "j",
            TriggerSpec::every(Duration::from_secs(60), ts("1970-01-01T00:00:00Z")),
            ActionSpec::handler("h"),
        );
        assert!(
            !aligned.same_definition(&a),
            "alignment is part of the definition"
        );
        assert!(
            JobSpec::new(
                "bad id",
                TriggerSpec::at(ts("2024-01-01T00:00:00Z")),
                ActionSpec::handler("h")
            )
            .validate()
            .is_err()
        );
    }
}
