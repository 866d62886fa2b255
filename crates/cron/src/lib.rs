//! Cron expressions evaluated in IANA time zones with Debian cron's DST rules.
//!
//! `sundial-cron` parses the whole common cron dialect — 5 fields, 6 (seconds first) and
//! 7 (seconds first, year last), names, lists, ranges, steps, the Quartz extensions
//! (`?`, `L`, `L-n`, `LW`, `nW`, `nL`, `n#k`), the `@` aliases, `@every <duration>`,
//! Jenkins-style hashed `H` values and a `CRON_TZ=`/`TZ=` zone prefix — and computes fire
//! times in any IANA zone:
//!
//! ```
//! use jiff::{Timestamp, tz::TimeZone};
//! use sundial_cron::Schedule;
//!
//! let s = Schedule::parse("30 2 * * MON-FRI")?;
//! let ny = TimeZone::get("America/New_York")?;
//! let t: Timestamp = "2024-03-08T12:00:00Z".parse()?;
//! // Monday 2024-03-11 02:30 EDT (the Sunday spring-forward gap does not matter here).
//! assert_eq!(s.next_after(t, &ny).map(|t| t.to_string()), Some("2024-03-11T06:30:00Z".into()));
//! assert_eq!(s.to_string(), "30 2 * * 1-5");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Semantics in brief
//!
//! - **Vixie day rule**: if the day-of-month or the day-of-week field begins with `*`
//!   (including `*/n` and `?`), a day must match both; otherwise either.
//! - **DST** (Debian cron): a *fixed-time* job — neither the minute nor the hour field
//!   begins with `*` — whose wall time falls in a spring-forward gap fires at the first
//!   instant after the gap; in a fall-back fold it fires once, in the first copy. Other
//!   jobs fire at every real instant that matches (so in both copies of a fold, and not
//!   at all for wall times that do not exist).
//! - Instants given to [`Schedule::next_after`]/[`Schedule::prev_before`] are exclusive.
//! - Fire times lie in 1970–2199 (civil time in the evaluation zone); past that every
//!   search returns `None`, so no search is unbounded. A schedule that can never fire
//!   (`0 0 30 2 *`) parses and yields `None` quickly.
//!
//! # Module map
//!
//! - `parse`: text → compiled calendar, with spans for errors ([`ParseError`]).
//! - `calendar`: bitset fields and the civil-time search (jumps field by field).
//! - `search`: resolution of civil candidates in a zone (gaps, folds).
//! - `text`: `Display` normalisation and [`Schedule::describe`].
//! - `civil`: small integer date arithmetic used by the hot loop.

mod calendar;
mod civil;
mod error;
mod parse;
mod search;
mod text;

#[cfg(test)]
mod proptests;

use std::fmt;
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{Timestamp, ZonedDateTime};

/// The jiff version this crate's API uses (`Timestamp`, `TimeZone`, `ZonedDateTime`).
pub use jiff;

pub use calendar::{MAX_YEAR, MIN_YEAR};
pub use error::{ErrorKind, Field, ParseError};
pub use text::Lang;

use parse::{Body, Expr};

/// A parsed cron expression: a calendar or an `@every` interval, maybe with its own zone.
///
/// Cheap to clone (a few hundred bytes; the zone is reference-counted), `Send + Sync`.
#[derive(Clone, Debug)]
pub struct Schedule {
    expr: Expr,
}

/// What kind of trigger a schedule is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// A calendar: fires at wall-clock times matching the fields.
    Calendar,
    /// `@every <duration>`: an interval trigger. It has no calendar; the scheduler
    /// anchors it (for example at job start). [`Schedule::next_after`] treats the given
    /// instant as the anchor and returns `t + interval`.
    Every(Duration),
}

impl Schedule {
    /// Parses an expression; `H` values are hashed with seed 0.
    ///
    /// Equivalent to [`Schedule::parse_with_seed`]`(expr, 0)`.
    pub fn parse(expr: &str) -> Result<Schedule, ParseError> {
        Schedule::parse_with_seed(expr, 0)
    }

    /// Parses an expression, deriving `H` values from `seed` (typically a hash of the job
    /// id, see [`hash_seed`]). The derivation is stable across versions.
    pub fn parse_with_seed(expr: &str, seed: u64) -> Result<Schedule, ParseError> {
        Ok(Schedule {
            expr: parse::parse(expr, seed)?,
        })
    }

    /// Whether this is a calendar or an `@every` interval.
    pub fn kind(&self) -> Kind {
        match &self.expr.body {
            Body::Calendar(_) => Kind::Calendar,
            Body::Every(d) => Kind::Every(*d),
        }
    }

    /// The zone named by a `CRON_TZ=`/`TZ=` prefix, if any. It takes precedence over the
    /// zone passed to the search methods.
    pub fn timezone(&self) -> Option<&TimeZone> {
        self.expr.zone.as_ref().map(|(_, tz)| tz)
    }

    /// The IANA name from a `CRON_TZ=`/`TZ=` prefix, if any.
    pub fn timezone_name(&self) -> Option<&str> {
        self.expr.zone.as_ref().map(|(name, _)| name.as_str())
    }

    fn zone<'a>(&'a self, tz: &'a TimeZone) -> &'a TimeZone {
        self.timezone().unwrap_or(tz)
    }

    /// The first fire time strictly after `t`, evaluated in `tz` (or the schedule's own
    /// `CRON_TZ=` zone). `None` if there is none up to the end of 2199.
    ///
    /// For `@every d` this is `t + d` (the instant is taken as the anchor).
    pub fn next_after(&self, t: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        match &self.expr.body {
            Body::Calendar(c) => search::next_after(&c.cal, t, self.zone(tz)),
            Body::Every(d) => t.checked_add(*d).ok(),
        }
    }

    /// The last fire time strictly before `t`, evaluated in `tz` (or the schedule's own
    /// zone). `None` if there is none since the start of 1970.
    ///
    /// For `@every d` this is `t - d`.
    pub fn prev_before(&self, t: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        match &self.expr.body {
            Body::Calendar(c) => search::prev_before(&c.cal, t, self.zone(tz)),
            Body::Every(d) => t.checked_sub(*d).ok(),
        }
    }

    /// The first fire strictly after `t`, as a zoned date-time in the evaluation zone.
    pub fn next_zoned_after(&self, t: &ZonedDateTime) -> Option<ZonedDateTime> {
        let tz = self.zone(t.time_zone());
        self.next_after(t.timestamp(), tz)
            .map(|ts| ts.to_zoned_datetime(tz.clone()))
    }

    /// Upcoming fire times strictly after `t` (ascending; ends after 2199).
    pub fn iter_after(&self, t: Timestamp, tz: &TimeZone) -> Upcoming<'_> {
        Upcoming {
            schedule: self,
            tz: self.zone(tz).clone(),
            cursor: Some(t),
            forward: true,
        }
    }

    /// Past fire times strictly before `t` (descending; ends before 1970).
    pub fn iter_before(&self, t: Timestamp, tz: &TimeZone) -> Upcoming<'_> {
        Upcoming {
            schedule: self,
            tz: self.zone(tz).clone(),
            cursor: Some(t),
            forward: false,
        }
    }

    /// Whether the schedule fires at exactly this instant, evaluated in the schedule's
    /// own zone if it has one, else in the zoned date-time's zone. Always `false` for
    /// `@every`, which has no calendar.
    ///
    /// This honours the DST rules: a fixed-time job whose wall time falls in a gap
    /// "matches" the first instant after the gap, and only the first copy of a fold.
    pub fn matches(&self, zdt: &ZonedDateTime) -> bool {
        if !matches!(self.expr.body, Body::Calendar(_)) {
            return false;
        }
        let ts = zdt.timestamp();
        if ts.subsec_nanosecond() != 0 {
            return false;
        }
        let Ok(just_before) = ts.checked_sub(jiff::SignedDuration::from_nanos(1)) else {
            return false;
        };
        self.next_after(just_before, zdt.time_zone()) == Some(ts)
    }

    /// A human description in English or Simplified Chinese, e.g. "At 02:30, Monday
    /// through Friday" / "周一至周五 02:30".
    pub fn describe(&self, lang: Lang) -> String {
        text::describe(&self.expr, lang)
    }
}

/// The seed for [`Schedule::parse_with_seed`] derived from a job id (64-bit FNV-1a).
/// Stable across versions.
pub fn hash_seed(job_id: &str) -> u64 {
    job_id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl fmt::Display for Schedule {
    /// The normalised expression: names become numbers, `?` becomes `*`, aliases expand,
    /// `H` shows its hashed value, lists are sorted and merged into ranges. Parsing the
    /// output (with any seed) gives an equivalent schedule.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        text::normalise(&self.expr, f)
    }
}

impl std::str::FromStr for Schedule {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Schedule, ParseError> {
        Schedule::parse(s)
    }
}

impl PartialEq for Schedule {
    /// Schedules are equal when they have the same fields (after normalisation) and the
    /// same zone name.
    fn eq(&self, other: &Schedule) -> bool {
        self.expr.body == other.expr.body && self.timezone_name() == other.timezone_name()
    }
}

impl Eq for Schedule {}

/// Iterator over fire times, from [`Schedule::iter_after`] or [`Schedule::iter_before`].
#[derive(Clone, Debug)]
pub struct Upcoming<'a> {
    schedule: &'a Schedule,
    tz: TimeZone,
    cursor: Option<Timestamp>,
    forward: bool,
}

impl Iterator for Upcoming<'_> {
    type Item = Timestamp;

    fn next(&mut self) -> Option<Timestamp> {
        let t = self.cursor?;
        let next = if self.forward {
            self.schedule.next_after(t, &self.tz)
        } else {
            self.schedule.prev_before(t, &self.tz)
        };
        self.cursor = next;
        next
    }
}

impl std::iter::FusedIterator for Upcoming<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync_clone<T: Send + Sync + Clone>() {}

    #[test]
    fn types_are_send_sync_clone() {
        assert_send_sync_clone::<Schedule>();
        assert_send_sync_clone::<ParseError>();
        assert_send_sync_clone::<Upcoming<'static>>();
    }

    #[test]
    fn hash_seed_is_fnv1a() {
        assert_eq!(hash_seed(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash_seed("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
