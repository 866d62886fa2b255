//! Triggers: when a job's fires are due.
//!
//! A trigger turns "the last nominal fire" into "the next nominal fire". Nominal instants
//! are the instants the schedule names — what a fire is identified by (job id, nominal
//! instant) and what lateness is measured from — never the instant a run actually started.
//!
//! Invariants:
//! - [`Trigger::next_after`] is strictly increasing: a result is always `> after`, so
//!   iterating can never fire the same nominal instant twice;
//! - cron triggers are evaluated in their IANA zone at every computation (never a frozen
//!   offset), so DST is handled by `sundial-cron`'s documented rules;
//! - fixed-rate triggers lie on a lattice `phase + k·period` that does not move when runs
//!   are late (no drift); fixed-delay triggers are computed from the completion of the
//!   previous run ([`Trigger::after_completion`]);
//! - `start`, `end` and `max_fires` bound every kind the same way.

use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use sundial_cron::{Kind as CronKind, Schedule};

/// The kind of a trigger and its parameters.
#[derive(Debug, Clone)]
pub enum TriggerKind {
    /// A cron schedule evaluated in `zone` (a `CRON_TZ=` prefix in the expression wins).
    /// An `@every` expression is turned into [`TriggerKind::Every`] by [`Trigger::cron`].
    Cron {
        /// The parsed expression.
        schedule: Schedule,
        /// The zone the calendar is read in.
        zone: TimeZone,
    },
    /// Fixed rate: fires at `phase + k·period` for every whole `k`. Late runs do not move
    /// the lattice.
    Every {
        /// The interval, at least one millisecond.
        period: Duration,
        /// Any instant on the lattice: the Unix epoch when phase-aligned (fires at :00,
        /// :15, … for 15 minutes), otherwise the instant the job was registered.
        phase: Timestamp,
    },
    /// Fixed delay: the next fire is `delay` after the previous run *completed*; the
    /// first is `delay` after registration (or at `start`).
    Delay {
        /// The pause between a completion and the next fire.
        delay: Duration,
        /// Registration instant, the origin of the first fire.
        registered: Timestamp,
    },
    /// One shot at an instant ("after a delay" is resolved to an instant on registration).
    At(Timestamp),
}

/// A trigger: its kind and the bounds common to every kind.
#[derive(Debug, Clone)]
pub struct Trigger {
    kind: TriggerKind,
    start: Option<Timestamp>,
    end: Option<Timestamp>,
    max_fires: Option<u64>,
}

/// A trigger that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TriggerError {
    /// An interval of zero (or under a millisecond).
    #[error("the interval must be at least 1 ms")]
    ZeroInterval,
    /// `end` is not after `start`.
    #[error("end ({end}) must be after start ({start})")]
    EmptyWindow {
        /// The start bound.
        start: Timestamp,
        /// The end bound.
        end: Timestamp,
    },
    /// `max_fires = 0`.
    #[error("max_fires must be at least 1")]
    ZeroFires,
}

impl Trigger {
    /// A cron trigger. `@every` expressions become fixed-rate triggers anchored at
    /// `registered` (their first fire is one interval after it).
    pub fn cron(
        schedule: Schedule,
        zone: TimeZone,
        registered: Timestamp,
    ) -> Result<Self, TriggerError> {
        match schedule.kind() {
            CronKind::Every(period) => Self::every(period, registered),
            _ => Ok(Self::new(TriggerKind::Cron { schedule, zone })),
        }
    }

    /// A fixed-rate trigger whose first fire is one period after `registered`.
    pub fn every(period: Duration, registered: Timestamp) -> Result<Self, TriggerError> {
        if period < Duration::from_millis(1) {
            return Err(TriggerError::ZeroInterval);
        }
        Ok(Self::new(TriggerKind::Every {
            period,
            phase: registered,
        }))
    }

    /// A fixed-rate trigger aligned to the Unix epoch plus `offset`: `every 15m` fires at
    /// :00, :15, :30, :45 (UTC lattice; for wall-clock alignment in a zone use cron).
    pub fn every_aligned(period: Duration, offset: Duration) -> Result<Self, TriggerError> {
        if period < Duration::from_millis(1) {
            return Err(TriggerError::ZeroInterval);
        }
        let phase = Timestamp::UNIX_EPOCH
            .checked_add(offset)
            .unwrap_or(Timestamp::UNIX_EPOCH);
        Ok(Self::new(TriggerKind::Every { period, phase }))
    }

    /// A fixed-delay trigger: first fire `delay` after `registered`, then `delay` after
    /// each completion.
    pub fn delay(delay: Duration, registered: Timestamp) -> Result<Self, TriggerError> {
        if delay < Duration::from_millis(1) {
            return Err(TriggerError::ZeroInterval);
        }
        Ok(Self::new(TriggerKind::Delay { delay, registered }))
    }

    /// A one-shot trigger.
    pub fn at(at: Timestamp) -> Self {
        Self::new(TriggerKind::At(at))
    }

    fn new(kind: TriggerKind) -> Self {
        Self {
            kind,
            start: None,
            end: None,
            max_fires: None,
        }
    }

    /// Fires before `start` do not happen; a fixed-delay trigger's first fire is at
    /// `start` when `start` is later than its first delay.
    pub fn with_start(mut self, start: Timestamp) -> Result<Self, TriggerError> {
        self.start = Some(start);
        self.check_window()
    }

    /// Fires after `end` (inclusive bound) do not happen.
    pub fn with_end(mut self, end: Timestamp) -> Result<Self, TriggerError> {
        self.end = Some(end);
        self.check_window()
    }

    /// At most `n` fires in all.
    pub fn with_max_fires(mut self, n: u64) -> Result<Self, TriggerError> {
        if n == 0 {
            return Err(TriggerError::ZeroFires);
        }
        self.max_fires = Some(n);
        Ok(self)
    }

    fn check_window(self) -> Result<Self, TriggerError> {
        if let (Some(start), Some(end)) = (self.start, self.end)
            && end <= start
        {
            return Err(TriggerError::EmptyWindow { start, end });
        }
        Ok(self)
    }

    /// The start bound, if any.
    pub fn start(&self) -> Option<Timestamp> {
        self.start
    }

    /// The end bound (inclusive), if any.
    pub fn end(&self) -> Option<Timestamp> {
        self.end
    }

    /// The cap on fires, if any.
    pub fn max_fires(&self) -> Option<u64> {
        self.max_fires
    }

    /// The kind and its parameters.
    pub fn kind(&self) -> &TriggerKind {
        &self.kind
    }

    /// True for fixed-delay triggers, whose next fire waits for a completion.
    pub fn waits_for_completion(&self) -> bool {
        matches!(self.kind, TriggerKind::Delay { .. })
    }

    /// The first nominal fire strictly after `after`, given that `fired` fires have
    /// happened. For a fixed-delay trigger this is only the *first* fire (later ones come
    /// from [`Trigger::after_completion`]); it returns `None` once `fired > 0`.
    pub fn next_after(&self, after: Timestamp, fired: u64) -> Option<Timestamp> {
        if self.max_fires.is_some_and(|max| fired >= max) {
            return None;
        }
        // Never before `start`: search from just before it.
        let from = match self.start {
            Some(start) if start > after => start
                .checked_sub(jiff::SignedDuration::from_nanos(1))
                .ok()?,
            _ => after,
        };
        let candidate = match &self.kind {
            TriggerKind::Cron { schedule, zone } => schedule.next_after(from, zone)?,
            TriggerKind::Every { period, phase } => next_on_lattice(*phase, *period, from)?,
            TriggerKind::Delay { delay, registered } => {
                if fired > 0 {
                    return None;
                }
                let first = registered.checked_add(*delay).ok()?;
                match self.start {
                    Some(start) if start > first => start,
                    _ => first,
                }
                .max(next_nanosecond(after)?)
            }
            TriggerKind::At(at) => {
                if fired > 0 || *at <= from {
                    return None;
                }
                *at
            }
        };
        self.within_end(candidate)
    }

    /// The next fire of a fixed-delay trigger whose previous run completed at
    /// `completed`; `fired` counts the fires so far. `None` for other kinds, whose
    /// schedule does not depend on completions.
    pub fn after_completion(&self, completed: Timestamp, fired: u64) -> Option<Timestamp> {
        let TriggerKind::Delay { delay, .. } = &self.kind else {
            return None;
        };
        if self.max_fires.is_some_and(|max| fired >= max) {
            return None;
        }
        let next = completed.checked_add(*delay).ok()?;
        let next = match self.start {
            Some(start) if start > next => start,
            _ => next,
        };
        self.within_end(next)
    }

    /// The nominal fires in `(after, until]`, at most `limit` of them, for catch-up and
    /// backfill. Fixed-delay triggers have no such list (their fires depend on runs).
    pub fn fires_between(
        &self,
        after: Timestamp,
        until: Timestamp,
        fired: u64,
        limit: usize,
    ) -> Vec<Timestamp> {
        let mut out = Vec::new();
        if self.waits_for_completion() {
            return out;
        }
        let mut cursor = after;
        let mut count = fired;
        while out.len() < limit {
            match self.next_after(cursor, count) {
                Some(t) if t <= until => {
                    out.push(t);
                    cursor = t;
                    count += 1;
                }
                _ => break,
            }
        }
        out
    }

    fn within_end(&self, t: Timestamp) -> Option<Timestamp> {
        match self.end {
            Some(end) if t > end => None,
            _ => Some(t),
        }
    }
}

fn next_nanosecond(t: Timestamp) -> Option<Timestamp> {
    t.checked_add(jiff::SignedDuration::from_nanos(1)).ok()
}

/// The first point of `phase + k·period` strictly after `after`.
fn next_on_lattice(phase: Timestamp, period: Duration, after: Timestamp) -> Option<Timestamp> {
    let period_ns = i128::try_from(period.as_nanos()).ok()?;
    let phase_ns = phase.as_nanosecond();
    let after_ns = after.as_nanosecond();
    let k = (after_ns - phase_ns).div_euclid(period_ns) + 1;
    let next_ns = phase_ns + k * period_ns;
    Timestamp::from_nanosecond(next_ns).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn zone(name: &str) -> TimeZone {
        TimeZone::get(name).expect("zone")
    }

    #[test]
    fn cron_trigger_in_zone() {
        let schedule = Schedule::parse("30 2 * * *").expect("cron");
        let trigger = Trigger::cron(
            schedule,
            zone("America/New_York"),
            ts("2024-03-01T00:00:00Z"),
        )
        .expect("trigger");
        // Spring forward on 2024-03-10: 02:30 does not exist and fires at 03:00 EDT.
        let after = ts("2024-03-09T12:00:00Z");
        assert_eq!(
            trigger.next_after(after, 0),
            Some(ts("2024-03-10T07:00:00Z"))
        );
        assert_eq!(
            trigger.next_after(ts("2024-03-10T07:00:00Z"), 1),
            Some(ts("2024-03-11T06:30:00Z"))
        );
    }

    #[test]
    fn at_every_in_cron_becomes_fixed_rate() {
        let schedule = Schedule::parse("@every 90s").expect("cron");
        let registered = ts("2024-01-01T00:00:00Z");
        let trigger = Trigger::cron(schedule, TimeZone::UTC, registered).expect("trigger");
        assert!(matches!(trigger.kind(), TriggerKind::Every { .. }));
        assert_eq!(
            trigger.next_after(registered, 0),
            Some(ts("2024-01-01T00:01:30Z"))
        );
        // Late evaluation does not move the lattice.
        assert_eq!(
            trigger.next_after(ts("2024-01-01T00:04:00Z"), 2),
            Some(ts("2024-01-01T00:04:30Z"))
        );
    }

    #[test]
    fn aligned_every() {
        let trigger =
            Trigger::every_aligned(Duration::from_secs(900), Duration::ZERO).expect("trigger");
        assert_eq!(
            trigger.next_after(ts("2024-01-01T10:07:12Z"), 0),
            Some(ts("2024-01-01T10:15:00Z"))
        );
        assert_eq!(
            trigger.next_after(ts("2024-01-01T10:15:00Z"), 1),
            Some(ts("2024-01-01T10:30:00Z"))
        );
        let offset = Trigger::every_aligned(Duration::from_secs(3600), Duration::from_secs(300))
            .expect("trigger");
        assert_eq!(
            offset.next_after(ts("2024-01-01T10:07:12Z"), 0),
            Some(ts("2024-01-01T11:05:00Z"))
        );
    }

    #[test]
    fn lattice_before_phase() {
        let phase = ts("2024-01-01T00:00:00Z");
        assert_eq!(
            next_on_lattice(phase, Duration::from_secs(60), ts("2023-12-31T23:58:30Z")),
            Some(ts("2023-12-31T23:59:00Z"))
        );
    }

    #[test]
    fn fixed_delay_waits_for_completion() {
        let registered = ts("2024-01-01T00:00:00Z");
        let trigger = Trigger::delay(Duration::from_secs(10), registered).expect("trigger");
        assert!(trigger.waits_for_completion());
        assert_eq!(
            trigger.next_after(registered, 0),
            Some(ts("2024-01-01T00:00:10Z"))
        );
        assert_eq!(trigger.next_after(registered, 1), None);
        assert_eq!(
            trigger.after_completion(ts("2024-01-01T00:00:37Z"), 1),
            Some(ts("2024-01-01T00:00:47Z"))
        );
        assert!(
            trigger
                .fires_between(registered, ts("2025-01-01T00:00:00Z"), 0, 10)
                .is_empty()
        );
    }

    #[test]
    fn one_shot() {
        let at = ts("2024-06-01T12:00:00Z");
        let trigger = Trigger::at(at);
        assert_eq!(trigger.next_after(ts("2024-06-01T11:00:00Z"), 0), Some(at));
        assert_eq!(
            trigger.next_after(at, 0),
            None,
            "the instant given is exclusive"
        );
        assert_eq!(trigger.next_after(ts("2024-06-01T11:00:00Z"), 1), None);
    }

    #[test]
    fn start_end_and_max_fires() {
        let trigger = Trigger::every_aligned(Duration::from_secs(60), Duration::ZERO)
            .and_then(|t| t.with_start(ts("2024-01-01T00:10:00Z")))
            .and_then(|t| t.with_end(ts("2024-01-01T00:12:00Z")))
            .expect("trigger");
        let fires = trigger.fires_between(
            ts("2024-01-01T00:00:00Z"),
            ts("2024-01-02T00:00:00Z"),
            0,
            100,
        );
        assert_eq!(
            fires,
            vec![
                ts("2024-01-01T00:10:00Z"),
                ts("2024-01-01T00:11:00Z"),
                ts("2024-01-01T00:12:00Z")
            ]
        );
        let capped = trigger.clone().with_max_fires(2).expect("trigger");
        assert_eq!(
            capped
                .fires_between(
                    ts("2024-01-01T00:00:00Z"),
                    ts("2024-01-02T00:00:00Z"),
                    0,
                    100
                )
                .len(),
            2
        );
        assert_eq!(capped.next_after(ts("2024-01-01T00:00:00Z"), 2), None);
    }

    #[test]
    fn bad_triggers() {
        assert_eq!(
            Trigger::every(Duration::ZERO, Timestamp::UNIX_EPOCH).err(),
            Some(TriggerError::ZeroInterval)
        );
        assert_eq!(
            Trigger::delay(Duration::from_micros(10), Timestamp::UNIX_EPOCH).err(),
            Some(TriggerError::ZeroInterval)
        );
        let t = Trigger::at(Timestamp::UNIX_EPOCH);
        assert_eq!(
            t.clone().with_max_fires(0).err(),
            Some(TriggerError::ZeroFires)
        );
        let start = ts("2024-01-02T00:00:00Z");
        let err = t
            .with_start(start)
            .and_then(|t| t.with_end(ts("2024-01-01T00:00:00Z")));
        assert!(matches!(err, Err(TriggerError::EmptyWindow { .. })));
    }

    #[test]
    fn strictly_increasing() {
        let schedule = Schedule::parse("*/7 * * * *").expect("cron");
        let trigger =
            Trigger::cron(schedule, zone("Europe/Berlin"), Timestamp::UNIX_EPOCH).expect("trigger");
        let mut t = ts("2024-10-27T00:00:00Z");
        for fired in 0..500 {
            let next = trigger.next_after(t, fired).expect("fires");
            assert!(next > t);
            t = next;
        }
    }
}
