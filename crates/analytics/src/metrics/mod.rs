//! The metrics engine: the definitions of `docs/metrics.md`, computed from the
//! aggregator's output.
//!
//! Everything here is pure logic over a [`MetricsSource`] (implemented by the SQL
//! store): counters are read as they are, unique-user figures are set operations on
//! the per-day roaring bitmaps of device numbers (exact, never estimated), and the two
//! distributions that need single events (session length, launches per device) are
//! computed from the raw-event archive by [`sessions`].
//!
//! Invariants the answers keep:
//! - every day of the requested range is present, with zeros when nothing happened;
//! - days are calendar days of the app's IANA zone ([`Day`]: days since 1970-01-01);
//! - a retention cell whose day has not ended yet in the app's zone is `None`, never 0;
//! - a request is validated whole before anything is read; a bad parameter is reported
//!   by name ([`QueryError::Param`]).

mod compute;
pub mod sessions;

pub use compute::*;

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use roaring::RoaringBitmap;

use crate::aggregate::{Day, DayCounts, HourCounts, day_and_hour};
use crate::event::Event;
use crate::store::StoreError;

/// The longest range a query may span, in days.
pub const MAX_RANGE_DAYS: i32 = 366;

/// A query that cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A parameter is missing, malformed or out of range; nothing was read.
    #[error("parameter `{name}`: {reason}")]
    Param {
        /// The parameter's name as it appears in the query string.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl QueryError {
    pub(crate) fn param(name: &'static str, reason: impl Into<String>) -> Self {
        QueryError::Param {
            name,
            reason: reason.into(),
        }
    }
}

/// One custom-event counter row as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct EventCounterRow {
    /// The day.
    pub day: Day,
    /// Event name.
    pub name: String,
    /// Segment key (empty for the total).
    pub seg_key: String,
    /// Segment value (empty for the total).
    pub seg_value: String,
    /// Sum of counts.
    pub count: i64,
    /// Sum of sums.
    pub sum: f64,
    /// Sum of durations (seconds).
    pub dur_secs: f64,
}

/// What the metrics engine reads. Every method covers the days `from..=to`.
#[async_trait]
pub trait MetricsSource: Send + Sync {
    /// Day counters of dimension `dim` (empty: the totals), as `(day, value, counts)`.
    async fn day_counters(
        &self,
        app_id: i64,
        dim: &str,
        from: Day,
        to: Day,
    ) -> Result<Vec<(Day, String, DayCounts)>, StoreError>;
    /// Sizes of the sets of `kind` and `dim`, as `(day, value, size)`.
    async fn set_sizes(
        &self,
        app_id: i64,
        kind: &str,
        dim: &str,
        from: Day,
        to: Day,
    ) -> Result<Vec<(Day, String, u64)>, StoreError>;
    /// The sum of the sizes of the total sets of `kind` on days before `before`.
    async fn set_size_sum_before(
        &self,
        app_id: i64,
        kind: &str,
        before: Day,
    ) -> Result<u64, StoreError>;
    /// The members of the sets of `kind` and `dim` (and `value`, when given), by
    /// `(day, value)`; absent keys are empty sets.
    async fn sets(
        &self,
        app_id: i64,
        kind: &str,
        dim: &str,
        value: Option<&str>,
        from: Day,
        to: Day,
    ) -> Result<BTreeMap<(Day, String), RoaringBitmap>, StoreError>;
    /// Hour counters, as `(day, hour, counts)`.
    async fn hour_counters(
        &self,
        app_id: i64,
        from: Day,
        to: Day,
    ) -> Result<Vec<(Day, u8, HourCounts)>, StoreError>;
    /// Custom-event counters; with `seg_key`, the totals and that segment's rows,
    /// without it the totals only.
    async fn event_counters(
        &self,
        app_id: i64,
        from: Day,
        to: Day,
        seg_key: Option<&str>,
    ) -> Result<Vec<EventCounterRow>, StoreError>;
    /// The counted events of the days (the raw-event archive), in no particular order.
    async fn raw_events(&self, app_id: i64, from: Day, to: Day) -> Result<Vec<Event>, StoreError>;
    /// Materialised classic daily retention counts of the cohorts of `kind` whose day is
    /// in `from..=to`, by (cohort day, offset). Cells may be missing (not materialised
    /// yet, or invalidated by late data); the rest are exact.
    async fn retention_cells(
        &self,
        app_id: i64,
        kind: &str,
        from: Day,
        to: Day,
    ) -> Result<HashMap<(Day, u32), u64>, StoreError>;
    /// The number of user ids whose earliest event is on a day before `before`.
    async fn registered_before(&self, app_id: i64, before: Day) -> Result<u64, StoreError>;
}

/// The app a query is about, and the instant it is asked at.
#[derive(Debug, Clone)]
pub struct AppClock {
    /// The app.
    pub app_id: i64,
    /// Its reporting zone's name, echoed in every answer.
    pub timezone: String,
    /// That zone.
    pub tz: TimeZone,
    /// The current day in that zone: days before it have ended.
    pub today: Day,
}

impl AppClock {
    /// The clock of app `app_id` in zone `timezone` at `now_ms` (epoch milliseconds).
    /// An unknown zone falls back to UTC (zones are validated when apps are written).
    pub fn new(app_id: i64, timezone: &str, now_ms: i64) -> Self {
        let tz = TimeZone::get(timezone).unwrap_or(TimeZone::UTC);
        let today = day_and_hour(now_ms, &tz).0;
        AppClock {
            app_id,
            timezone: timezone.to_owned(),
            tz,
            today,
        }
    }

    /// The first instant (epoch ms) of `day` in the app's zone.
    pub fn day_start_ms(&self, day: Day) -> i64 {
        day_start_ms(day, &self.tz)
    }
}

/// The first instant (epoch ms) of `day` in `tz` (the later instant when midnight falls
/// in a DST gap).
pub fn day_start_ms(day: Day, tz: &TimeZone) -> i64 {
    tz.to_ambiguous_timestamp(date_of(day).at(0, 0, 0, 0))
        .compatible()
        .map(|t| t.as_millisecond())
        .unwrap_or(i64::from(day) * 86_400_000)
}

/// The civil date of a day number.
pub fn date_of(day: Day) -> Date {
    EPOCH
        .checked_add(jiff::Span::new().days(i64::from(day)))
        .unwrap_or(EPOCH)
}

/// The day number of a civil date.
pub fn day_of(date: Date) -> Day {
    // Dates are bounded to years -9999..=9999: the difference always fits.
    date.since(EPOCH).map(|s| s.get_days()).unwrap_or(0)
}

const EPOCH: Date = jiff::civil::date(1970, 1, 1);

/// Parses a `YYYY-MM-DD` parameter.
pub fn parse_day(name: &'static str, text: &str) -> Result<Day, QueryError> {
    let date: Date = text.trim().parse().map_err(|_| {
        QueryError::param(
            name,
            format!("`{text}` is not a date of the form YYYY-MM-DD"),
        )
    })?;
    Ok(day_of(date))
}

/// Parses `from` and `to` (inclusive). A missing `to` is today in the app's zone, a
/// missing `from` is 29 days before `to` (30 days in all).
pub fn parse_range(
    from: Option<&str>,
    to: Option<&str>,
    clock: &AppClock,
) -> Result<(Day, Day), QueryError> {
    let to = match to {
        Some(text) => parse_day("to", text)?,
        None => clock.today,
    };
    let from = match from {
        Some(text) => parse_day("from", text)?,
        None => to - 29,
    };
    if from > to {
        return Err(QueryError::param(
            "from",
            format!("{} is after `to` ({})", date_of(from), date_of(to)),
        ));
    }
    if to - from + 1 > MAX_RANGE_DAYS {
        return Err(QueryError::param(
            "to",
            format!(
                "the range {}..{} spans {} days; at most {MAX_RANGE_DAYS} are allowed",
                date_of(from),
                date_of(to),
                to - from + 1
            ),
        ));
    }
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_numbers_round_trip() {
        assert_eq!(day_of(jiff::civil::date(1970, 1, 1)), 0);
        assert_eq!(day_of(jiff::civil::date(1969, 12, 31)), -1);
        assert_eq!(day_of(jiff::civil::date(2024, 11, 24)), 20_051);
        for day in [-800, -1, 0, 1, 20_051, 30_000] {
            assert_eq!(day_of(date_of(day)), day);
        }
    }

    #[test]
    fn ranges_are_checked_by_name() {
        let clock = AppClock::new(1, "UTC", 1_732_406_400_000);
        let (from, to) = parse_range(None, None, &clock).expect("defaults");
        assert_eq!((to, to - from), (clock.today, 29));
        let err =
            parse_range(Some("2024-11-02"), Some("2024-11-01"), &clock).expect_err("rejected");
        assert!(
            matches!(err, QueryError::Param { name: "from", .. }),
            "{err}"
        );
        let err =
            parse_range(Some("2023-01-01"), Some("2024-11-01"), &clock).expect_err("rejected");
        assert!(matches!(err, QueryError::Param { name: "to", .. }), "{err}");
        let err = parse_range(Some("2024-13-01"), None, &clock).expect_err("rejected");
        assert!(err.to_string().contains("`from`"), "{err}");
        assert!(parse_range(Some("2024-01-01"), Some("2024-12-31"), &clock).is_ok());
    }

    #[test]
    fn day_start_follows_the_zone() {
        let clock = AppClock::new(1, "Asia/Shanghai", 0);
        let day = day_of(jiff::civil::date(2024, 11, 24));
        // Midnight in Shanghai is 16:00 UTC the day before.
        assert_eq!(clock.day_start_ms(day), 1_732_377_600_000);
    }
}
