//! The queries: one function per endpoint of the query API, each returning the
//! serialisable answer (field names are the HTTP API's contract).

use std::collections::{BTreeMap, HashMap};

use roaring::{MultiOps as _, RoaringBitmap};
use serde::Serialize;

use super::sessions::{self, LAUNCH_BUCKETS, SESSION_BUCKETS};
use super::{AppClock, MetricsSource, QueryError, date_of};
use crate::aggregate::{BREAKDOWN_DIMENSIONS, Day, DayCounts, SET_ACTIVE, SET_NEW};

type Sets = BTreeMap<(Day, String), RoaringBitmap>;

fn set_of<'a>(sets: &'a Sets, day: Day, empty: &'a RoaringBitmap) -> &'a RoaringBitmap {
    sets.get(&(day, String::new())).unwrap_or(empty)
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

// ---------------------------------------------------------------------------------
// overview

/// `GET /api/v1/apps/{app}/overview`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Overview {
    /// The app's reporting zone.
    pub timezone: String,
    /// One entry per day of the range.
    pub days: Vec<OverviewDay>,
}

/// One day of the overview.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct OverviewDay {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// `open_app` events (= sessions begun).
    pub launches: i64,
    /// Sum of `usage_time` durations.
    pub usage_secs: f64,
    /// Number of `usage_time` reports.
    pub usage_reports: i64,
    /// `usage_secs / launches`, `null` without launches.
    pub avg_session_secs: Option<f64>,
    /// Distinct devices with any event.
    pub active_users: u64,
    /// Devices whose first event ever is on this day.
    pub new_users: u64,
    /// `active_users - new_users`.
    pub returning_users: u64,
    /// Devices with first day on or before this day.
    pub total_users: u64,
    /// Distinct `user_id`s first seen on or before this day.
    pub registered_users: u64,
}

/// The overview of `from..=to`.
pub async fn overview(
    src: &dyn MetricsSource,
    clock: &AppClock,
    from: Day,
    to: Day,
) -> Result<Overview, QueryError> {
    let app = clock.app_id;
    let counters: HashMap<Day, DayCounts> = src
        .day_counters(app, "", from, to)
        .await?
        .into_iter()
        .map(|(day, _, c)| (day, c))
        .collect();
    let active = sizes(src, app, SET_ACTIVE, from, to).await?;
    let new = sizes(src, app, SET_NEW, from, to).await?;
    let mut total = src.set_size_sum_before(app, SET_NEW, from).await?;
    let mut registered = src.registered_before(app, from).await?;
    let mut days = Vec::with_capacity(usize::try_from(to - from + 1).unwrap_or(0));
    for day in from..=to {
        let c = counters.get(&day).copied().unwrap_or_default();
        let active_users = active.get(&day).copied().unwrap_or(0);
        let new_users = new.get(&day).copied().unwrap_or(0);
        total += new_users;
        registered = registered.saturating_add_signed(c.new_registered);
        days.push(OverviewDay {
            date: date_of(day).to_string(),
            launches: c.launches,
            usage_secs: c.usage_secs,
            usage_reports: c.usage_reports,
            avg_session_secs: (c.launches > 0).then(|| c.usage_secs / c.launches as f64),
            active_users,
            new_users,
            returning_users: active_users.saturating_sub(new_users),
            total_users: total,
            registered_users: registered,
        });
    }
    Ok(Overview {
        timezone: clock.timezone.clone(),
        days,
    })
}

async fn sizes(
    src: &dyn MetricsSource,
    app: i64,
    kind: &str,
    from: Day,
    to: Day,
) -> Result<HashMap<Day, u64>, QueryError> {
    Ok(src
        .set_sizes(app, kind, "", from, to)
        .await?
        .into_iter()
        .map(|(day, _, n)| (day, n))
        .collect())
}

// ---------------------------------------------------------------------------------
// active users

/// Calendar periods for `?calendar=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Calendar {
    /// ISO weeks, Monday first.
    Week,
    /// Calendar months.
    Month,
}

impl Calendar {
    /// Parses `week` or `month`.
    pub fn parse(text: &str) -> Result<Self, QueryError> {
        match text {
            "week" => Ok(Calendar::Week),
            "month" => Ok(Calendar::Month),
            other => Err(QueryError::param(
                "calendar",
                format!("`{other}` is not one of week, month"),
            )),
        }
    }

    /// The first and last day of the period holding `day`.
    fn period(self, day: Day) -> (Day, Day) {
        let date = date_of(day);
        match self {
            Calendar::Week => {
                let monday = day - i32::from(date.weekday().to_monday_zero_offset());
                (monday, monday + 6)
            }
            Calendar::Month => {
                let first = day - i32::from(date.day()) + 1;
                (first, first + i32::from(date.days_in_month()) - 1)
            }
        }
    }

    fn label(self, start: Day) -> String {
        let date = date_of(start);
        match self {
            Calendar::Week => {
                let week = date.iso_week_date();
                format!("{}-W{:02}", week.year(), week.week())
            }
            Calendar::Month => format!("{:04}-{:02}", date.year(), date.month()),
        }
    }
}

/// `GET /api/v1/apps/{app}/active`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Active {
    /// The app's reporting zone.
    pub timezone: String,
    /// Rolling figures per day (without `?calendar=`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days: Option<Vec<ActiveDay>>,
    /// `week` or `month` (with `?calendar=`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub calendar: Option<&'static str>,
    /// Calendar uniques per period intersecting the range (with `?calendar=`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub periods: Option<Vec<ActivePeriod>>,
}

/// One day of rolling active users.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ActiveDay {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Distinct devices active on the day.
    pub dau: u64,
    /// Distinct devices active in the 7 days ending on the day.
    pub wau: u64,
    /// Distinct devices active in the 30 days ending on the day.
    pub mau: u64,
    /// `dau / wau` (`null` when `wau` is 0).
    pub dau_wau: Option<f64>,
    /// `dau / mau` (`null` when `mau` is 0).
    pub dau_mau: Option<f64>,
}

/// Distinct active devices of one calendar period.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ActivePeriod {
    /// `2024-W47` or `2024-11`.
    pub period: String,
    /// Its first day.
    pub from: String,
    /// Its last day.
    pub to: String,
    /// Distinct devices active in it.
    pub users: u64,
    /// Whether the period has ended in the app's zone.
    pub complete: bool,
}

/// Active users of `from..=to`, rolling or by calendar period.
pub async fn active(
    src: &dyn MetricsSource,
    clock: &AppClock,
    from: Day,
    to: Day,
    calendar: Option<Calendar>,
) -> Result<Active, QueryError> {
    let app = clock.app_id;
    let empty = RoaringBitmap::new();
    if let Some(calendar) = calendar {
        let first = calendar.period(from).0;
        let last = calendar.period(to).1;
        let sets = src.sets(app, SET_ACTIVE, "", Some(""), first, last).await?;
        let mut periods = Vec::new();
        let mut start = first;
        while start <= last {
            let (p_from, p_to) = calendar.period(start);
            let mut users = RoaringBitmap::new();
            for day in p_from..=p_to {
                users |= set_of(&sets, day, &empty);
            }
            periods.push(ActivePeriod {
                period: calendar.label(p_from),
                from: date_of(p_from).to_string(),
                to: date_of(p_to).to_string(),
                users: users.len(),
                complete: p_to < clock.today,
            });
            start = p_to + 1;
        }
        return Ok(Active {
            timezone: clock.timezone.clone(),
            days: None,
            calendar: Some(match calendar {
                Calendar::Week => "week",
                Calendar::Month => "month",
            }),
            periods: Some(periods),
        });
    }
    let sets = src
        .sets(app, SET_ACTIVE, "", Some(""), from - 29, to)
        .await?;
    let mut days = Vec::new();
    for day in from..=to {
        let dau = set_of(&sets, day, &empty).len();
        let wau = (day - 6..=day)
            .map(|d| set_of(&sets, d, &empty))
            .union()
            .len();
        let mau = (day - 29..=day)
            .map(|d| set_of(&sets, d, &empty))
            .union()
            .len();
        days.push(ActiveDay {
            date: date_of(day).to_string(),
            dau,
            wau,
            mau,
            dau_wau: ratio(dau, wau),
            dau_mau: ratio(dau, mau),
        });
    }
    Ok(Active {
        timezone: clock.timezone.clone(),
        days: Some(days),
        calendar: None,
        periods: None,
    })
}

// ---------------------------------------------------------------------------------
// retention

/// Which devices make a cohort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CohortKind {
    /// The new users of the cohort's period.
    New,
    /// The active users of the cohort's period.
    Active,
}

impl CohortKind {
    /// The kind of day set whose members make the cohort (also its name in answers:
    /// `new`, `active`).
    pub fn set_kind(self) -> &'static str {
        match self {
            CohortKind::New => SET_NEW,
            CohortKind::Active => SET_ACTIVE,
        }
    }
}

/// How a cohort member counts as retained after N periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionMode {
    /// Active in period +N.
    Classic,
    /// Active in any period at or after +N.
    Unbounded,
}

/// Cohort period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// Calendar days.
    Day,
    /// ISO weeks.
    Week,
}

/// Retention parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionQuery {
    /// Cohort kind.
    pub kind: CohortKind,
    /// Retention mode.
    pub mode: RetentionMode,
    /// Cohort period.
    pub period: Period,
    /// Offsets (in periods) to report.
    pub offsets: Vec<u32>,
}

/// The most periods an offset may be.
pub const MAX_RETENTION_OFFSET: u32 = 366;

impl RetentionQuery {
    /// Parses `kind`, `mode`, `period` and `days` (comma-separated offsets); each
    /// defaults when absent (`new`, `classic`, `day`, `1,2,3,7,14,30` or for weeks
    /// `1,2,3,4,5,6,7,8`).
    pub fn parse(
        kind: Option<&str>,
        mode: Option<&str>,
        period: Option<&str>,
        days: Option<&str>,
    ) -> Result<Self, QueryError> {
        let kind = match kind.unwrap_or("new") {
            "new" => CohortKind::New,
            "active" => CohortKind::Active,
            other => {
                return Err(QueryError::param(
                    "kind",
                    format!("`{other}` is not one of new, active"),
                ));
            }
        };
        let mode = match mode.unwrap_or("classic") {
            "classic" => RetentionMode::Classic,
            "unbounded" => RetentionMode::Unbounded,
            other => {
                return Err(QueryError::param(
                    "mode",
                    format!("`{other}` is not one of classic, unbounded"),
                ));
            }
        };
        let period = match period.unwrap_or("day") {
            "day" => Period::Day,
            "week" => Period::Week,
            other => {
                return Err(QueryError::param(
                    "period",
                    format!("`{other}` is not one of day, week"),
                ));
            }
        };
        let offsets = match days {
            None => match period {
                Period::Day => vec![1, 2, 3, 7, 14, 30],
                Period::Week => (1..=8).collect(),
            },
            Some(text) => {
                let mut offsets = Vec::new();
                for (i, part) in text.split(',').enumerate() {
                    let n: u32 = part.trim().parse().map_err(|_| {
                        QueryError::param(
                            "days",
                            format!("item {i} (`{part}`) is not a non-negative integer"),
                        )
                    })?;
                    if n > MAX_RETENTION_OFFSET {
                        return Err(QueryError::param(
                            "days",
                            format!("item {i} ({n}) is over {MAX_RETENTION_OFFSET}"),
                        ));
                    }
                    if !offsets.contains(&n) {
                        offsets.push(n);
                    }
                }
                offsets
            }
        };
        Ok(RetentionQuery {
            kind,
            mode,
            period,
            offsets,
        })
    }
}

impl RetentionQuery {
    /// The answer for `cohorts`, naming the query's parameters.
    fn answer(&self, clock: &AppClock, cohorts: Vec<Cohort>) -> Retention {
        Retention {
            timezone: clock.timezone.clone(),
            kind: self.kind.set_kind(),
            mode: match self.mode {
                RetentionMode::Classic => "classic",
                RetentionMode::Unbounded => "unbounded",
            },
            period: match self.period {
                Period::Day => "day",
                Period::Week => "week",
            },
            cohorts,
        }
    }
}

/// `GET /api/v1/apps/{app}/retention`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Retention {
    /// The app's reporting zone.
    pub timezone: String,
    /// `new` or `active`.
    #[schema(value_type = String)]
    pub kind: &'static str,
    /// `classic` or `unbounded`.
    #[schema(value_type = String)]
    pub mode: &'static str,
    /// `day` or `week`.
    #[schema(value_type = String)]
    pub period: &'static str,
    /// One cohort per period of the range (weeks: the ISO weeks the range touches).
    pub cohorts: Vec<Cohort>,
}

/// One cohort's row.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Cohort {
    /// The cohort's day (weeks: its Monday).
    pub date: String,
    /// Members.
    pub size: u64,
    /// Offset → cell (`{"count","ratio"}`); `null` while the offset's period has not
    /// ended.
    #[schema(value_type = Object)]
    pub retained: BTreeMap<String, Option<Cell>>,
}

/// One retention cell.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Cell {
    /// Members retained.
    pub count: u64,
    /// `count / size` (0 for an empty cohort).
    pub ratio: f64,
}

/// The retention matrix for the cohorts of `from..=to`.
pub async fn retention(
    src: &dyn MetricsSource,
    clock: &AppClock,
    from: Day,
    to: Day,
    query: &RetentionQuery,
) -> Result<Retention, QueryError> {
    let app = clock.app_id;
    let len = match query.period {
        Period::Day => 1,
        Period::Week => 7,
    };
    let first = match query.period {
        Period::Day => from,
        Period::Week => Calendar::Week.period(from).0,
    };
    let last = match query.period {
        Period::Day => to,
        Period::Week => Calendar::Week.period(to).0,
    };
    if query.mode == RetentionMode::Classic
        && query.period == Period::Day
        && let Some(answer) = retention_from_cells(src, clock, from, to, query).await?
    {
        return Ok(answer);
    }
    let cohort_starts: Vec<Day> = (first..=last).step_by(len as usize).collect();
    let max_offset = i32::try_from(query.offsets.iter().copied().max().unwrap_or(0)).unwrap_or(0);
    let min_offset = i32::try_from(query.offsets.iter().copied().min().unwrap_or(0)).unwrap_or(0);
    // Activity needed: from the earliest cell to the latest (unbounded: up to today).
    let act_from = first + min_offset * len;
    let act_to = match query.mode {
        RetentionMode::Classic => (last + (max_offset + 1) * len - 1).min(clock.today),
        RetentionMode::Unbounded => clock.today,
    };
    let cohort_kind = query.kind.set_kind();
    let cohort_sets = src
        .sets(app, cohort_kind, "", Some(""), first, last + len - 1)
        .await?;
    let active_sets = if act_from <= act_to {
        src.sets(app, SET_ACTIVE, "", Some(""), act_from, act_to)
            .await?
    } else {
        Sets::new()
    };
    let empty = RoaringBitmap::new();
    let period_union = |sets: &Sets, start: Day| {
        let mut u = RoaringBitmap::new();
        for d in start..start + len {
            u |= set_of(sets, d, &empty);
        }
        u
    };
    // Unbounded: the union of every period from `start` on, built from the end.
    let mut suffix: HashMap<Day, RoaringBitmap> = HashMap::new();
    if query.mode == RetentionMode::Unbounded && act_from <= act_to {
        let mut acc = RoaringBitmap::new();
        let mut start = first + ((act_to - first).div_euclid(len)) * len;
        while start >= act_from {
            acc |= period_union(&active_sets, start);
            suffix.insert(start, acc.clone());
            start -= len;
        }
    }
    let mut cohorts = Vec::with_capacity(cohort_starts.len());
    for start in cohort_starts {
        let members = period_union(&cohort_sets, start);
        let size = members.len();
        let mut retained = BTreeMap::new();
        for &n in &query.offsets {
            let at = start + i32::try_from(n).unwrap_or(0) * len;
            let ended = at + len - 1 < clock.today;
            let cell = ended.then(|| {
                let count = match query.mode {
                    RetentionMode::Classic => {
                        members.intersection_len(&period_union(&active_sets, at))
                    }
                    RetentionMode::Unbounded => {
                        suffix.get(&at).map_or(0, |u| members.intersection_len(u))
                    }
                };
                Cell {
                    count,
                    ratio: ratio(count, size).unwrap_or(0.0),
                }
            });
            retained.insert(n.to_string(), cell);
        }
        cohorts.push(Cohort {
            date: date_of(start).to_string(),
            size,
            retained,
        });
    }
    Ok(query.answer(clock, cohorts))
}

/// Classic daily retention from materialised cells and set sizes alone, when every
/// cell it needs is materialised (or known to be 0); `None` otherwise.
async fn retention_from_cells(
    src: &dyn MetricsSource,
    clock: &AppClock,
    from: Day,
    to: Day,
    query: &RetentionQuery,
) -> Result<Option<Retention>, QueryError> {
    let app = clock.app_id;
    let kind = query.kind.set_kind();
    let max_offset = i32::try_from(query.offsets.iter().copied().max().unwrap_or(0)).unwrap_or(0);
    let sizes: HashMap<Day, u64> = src
        .set_sizes(app, kind, "", from, to)
        .await?
        .into_iter()
        .map(|(d, _, n)| (d, n))
        .collect();
    let active: HashMap<Day, u64> = src
        .set_sizes(
            app,
            SET_ACTIVE,
            "",
            from,
            (to + max_offset).min(clock.today),
        )
        .await?
        .into_iter()
        .map(|(d, _, n)| (d, n))
        .collect();
    let cells = src.retention_cells(app, kind, from, to).await?;
    let mut cohorts = Vec::new();
    for day in from..=to {
        let size = sizes.get(&day).copied().unwrap_or(0);
        let mut retained = BTreeMap::new();
        for &n in &query.offsets {
            let at = day + i32::try_from(n).unwrap_or(0);
            let cell = if at < clock.today {
                let count = if size == 0 || active.get(&at).copied().unwrap_or(0) == 0 {
                    0
                } else {
                    match cells.get(&(day, n)) {
                        Some(count) => *count,
                        None => return Ok(None),
                    }
                };
                Some(Cell {
                    count,
                    ratio: ratio(count, size).unwrap_or(0.0),
                })
            } else {
                None
            };
            retained.insert(n.to_string(), cell);
        }
        cohorts.push(Cohort {
            date: date_of(day).to_string(),
            size,
            retained,
        });
    }
    Ok(Some(query.answer(clock, cohorts)))
}

// ---------------------------------------------------------------------------------
// lifecycle

/// `GET /api/v1/apps/{app}/lifecycle`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Lifecycle {
    /// The app's reporting zone.
    pub timezone: String,
    /// One entry per day.
    pub days: Vec<LifecycleDay>,
}

/// One day's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LifecycleDay {
    /// `YYYY-MM-DD`.
    #[serde(serialize_with = "serialize_day")]
    #[schema(value_type = String, format = Date)]
    pub date: Day,
    /// First seen on the day.
    pub new: u64,
    /// Active on the day and the day before.
    pub returning: u64,
    /// Active on the day, not the day before, and not new.
    pub resurrecting: u64,
    /// Active the day before, not on the day.
    pub dormant: u64,
}

fn serialize_day<S: serde::Serializer>(day: &Day, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&date_of(*day))
}

/// The lifecycle of `from..=to`.
pub async fn lifecycle(
    src: &dyn MetricsSource,
    clock: &AppClock,
    from: Day,
    to: Day,
) -> Result<Lifecycle, QueryError> {
    let app = clock.app_id;
    let active = src
        .sets(app, SET_ACTIVE, "", Some(""), from - 1, to)
        .await?;
    let new = src.sets(app, SET_NEW, "", Some(""), from, to).await?;
    let empty = RoaringBitmap::new();
    let days = (from..=to)
        .map(|day| {
            let today = set_of(&active, day, &empty);
            let before = set_of(&active, day - 1, &empty);
            let fresh = set_of(&new, day, &empty);
            let back = today - before;
            LifecycleDay {
                date: day,
                new: fresh.len(),
                returning: today.intersection_len(before),
                resurrecting: back.len() - back.intersection_len(fresh),
                dormant: before.len() - before.intersection_len(today),
            }
        })
        .collect();
    Ok(Lifecycle {
        timezone: clock.timezone.clone(),
        days,
    })
}

// ---------------------------------------------------------------------------------
// distributions

/// `?kind=` of the distribution endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DistributionKind {
    /// Sessions by length.
    SessionLength,
    /// Active devices by launches that day.
    LaunchesPerDevice,
    /// Launches by hour of day.
    HourLaunches,
    /// New users by the hour of their first event.
    HourNew,
    /// Distinct devices active in each hour.
    HourActive,
    /// Active devices by days since their first day.
    Freshness,
}

impl DistributionKind {
    /// Parses the `kind` parameter.
    pub fn parse(text: &str) -> Result<Self, QueryError> {
        Ok(match text {
            "session_length" => Self::SessionLength,
            "launches_per_device" => Self::LaunchesPerDevice,
            "hour_launches" => Self::HourLaunches,
            "hour_new" => Self::HourNew,
            "hour_active" => Self::HourActive,
            "freshness" => Self::Freshness,
            other => {
                return Err(QueryError::param(
                    "kind",
                    format!(
                        "`{other}` is not one of session_length, launches_per_device, \
                         hour_launches, hour_new, hour_active, freshness"
                    ),
                ));
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::SessionLength => "session_length",
            Self::LaunchesPerDevice => "launches_per_device",
            Self::HourLaunches => "hour_launches",
            Self::HourNew => "hour_new",
            Self::HourActive => "hour_active",
            Self::Freshness => "freshness",
        }
    }
}

/// `GET /api/v1/apps/{app}/distribution`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Distribution {
    /// The app's reporting zone.
    pub timezone: String,
    /// The distribution's kind.
    #[schema(value_type = String)]
    pub kind: &'static str,
    /// Bucket labels, in order.
    pub buckets: Vec<String>,
    /// Per day, a count per bucket (in `buckets` order).
    pub days: Vec<DistributionDay>,
    /// The days' counts summed per bucket.
    pub total: Vec<u64>,
}

/// One day of a distribution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DistributionDay {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// A count per bucket.
    pub counts: Vec<u64>,
}

/// Raw-event rows are filed under the day of the zone the app had when they were
/// aggregated; after a time-zone change an event's day can differ by up to two, so
/// raw reads take this margin and re-derive each event's day.
const RAW_DAY_MARGIN: Day = 2;

/// Freshness buckets: 0..=30 days since the first day, then 31+.
const FRESHNESS_DAYS: i32 = 30;

/// A distribution over `from..=to`.
pub async fn distribution(
    src: &dyn MetricsSource,
    clock: &AppClock,
    from: Day,
    to: Day,
    kind: DistributionKind,
) -> Result<Distribution, QueryError> {
    let app = clock.app_id;
    let hours = || (0..24).map(|h: u8| h.to_string()).collect::<Vec<_>>();
    let (buckets, rows): (Vec<String>, BTreeMap<Day, Vec<u64>>) = match kind {
        DistributionKind::SessionLength => {
            let events = src
                .raw_events(app, from - 1 - RAW_DAY_MARGIN, to + 1 + RAW_DAY_MARGIN)
                .await?;
            let rows = sessions::session_lengths(&events, &clock.tz, from, to);
            (
                SESSION_BUCKETS.iter().map(|b| b.0.to_owned()).collect(),
                rows.into_iter().map(|(d, r)| (d, r.to_vec())).collect(),
            )
        }
        DistributionKind::LaunchesPerDevice => {
            let events = src
                .raw_events(app, from - RAW_DAY_MARGIN, to + RAW_DAY_MARGIN)
                .await?;
            let rows = sessions::launches_per_device(&events, &clock.tz, from, to);
            (
                LAUNCH_BUCKETS.iter().map(|b| b.0.to_owned()).collect(),
                rows.into_iter().map(|(d, r)| (d, r.to_vec())).collect(),
            )
        }
        DistributionKind::HourLaunches | DistributionKind::HourNew => {
            let mut rows: BTreeMap<Day, Vec<u64>> = (from..=to).map(|d| (d, vec![0; 24])).collect();
            for (day, hour, c) in src.hour_counters(app, from, to).await? {
                let n = if kind == DistributionKind::HourLaunches {
                    c.launches
                } else {
                    c.new_users
                };
                if let Some(row) = rows.get_mut(&day) {
                    row[usize::from(hour.min(23))] = u64::try_from(n).unwrap_or(0);
                }
            }
            (hours(), rows)
        }
        DistributionKind::HourActive => {
            let mut rows: BTreeMap<Day, Vec<u64>> = (from..=to).map(|d| (d, vec![0; 24])).collect();
            for (day, value, n) in src.set_sizes(app, SET_ACTIVE, "hour", from, to).await? {
                if let (Some(row), Ok(hour)) = (rows.get_mut(&day), value.parse::<usize>())
                    && hour < 24
                {
                    row[hour] = n;
                }
            }
            (hours(), rows)
        }
        DistributionKind::Freshness => {
            let active = src.sets(app, SET_ACTIVE, "", Some(""), from, to).await?;
            let new = src
                .sets(app, SET_NEW, "", Some(""), from - FRESHNESS_DAYS, to)
                .await?;
            let empty = RoaringBitmap::new();
            let mut rows = BTreeMap::new();
            for day in from..=to {
                let members = set_of(&active, day, &empty);
                let mut row = Vec::with_capacity(32);
                let mut seen = 0;
                for k in 0..=FRESHNESS_DAYS {
                    let n = members.intersection_len(set_of(&new, day - k, &empty));
                    seen += n;
                    row.push(n);
                }
                row.push(members.len() - seen);
                rows.insert(day, row);
            }
            let mut labels: Vec<String> = (0..=FRESHNESS_DAYS).map(|k| k.to_string()).collect();
            labels.push(format!("{}+", FRESHNESS_DAYS + 1));
            (labels, rows)
        }
    };
    let mut total = vec![0; buckets.len()];
    let days = rows
        .into_iter()
        .map(|(day, counts)| {
            for (t, c) in total.iter_mut().zip(&counts) {
                *t += c;
            }
            DistributionDay {
                date: date_of(day).to_string(),
                counts,
            }
        })
        .collect();
    Ok(Distribution {
        timezone: clock.timezone.clone(),
        kind: kind.name(),
        buckets,
        days,
        total,
    })
}

// ---------------------------------------------------------------------------------
// breakdowns

/// `?metric=` of the breakdown endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakdownMetric {
    /// `open_app` events.
    Launches,
    /// Distinct active devices.
    ActiveUsers,
    /// New devices.
    NewUsers,
}

impl BreakdownMetric {
    /// Parses the `metric` parameter (default `active_users`).
    pub fn parse(text: Option<&str>) -> Result<Self, QueryError> {
        Ok(match text.unwrap_or("active_users") {
            "launches" => Self::Launches,
            "active_users" => Self::ActiveUsers,
            "new_users" => Self::NewUsers,
            other => {
                return Err(QueryError::param(
                    "metric",
                    format!("`{other}` is not one of launches, active_users, new_users"),
                ));
            }
        })
    }
}

/// Checks the `dimension` parameter.
pub fn parse_dimension(text: Option<&str>) -> Result<&'static str, QueryError> {
    let Some(text) = text else {
        return Err(QueryError::param(
            "dimension",
            format!("required: one of {}", BREAKDOWN_DIMENSIONS.join(", ")),
        ));
    };
    BREAKDOWN_DIMENSIONS
        .iter()
        .copied()
        .find(|d| *d == text)
        .ok_or_else(|| {
            QueryError::param(
                "dimension",
                format!("`{text}` is not one of {}", BREAKDOWN_DIMENSIONS.join(", ")),
            )
        })
}

/// `GET /api/v1/apps/{app}/breakdown`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Breakdown {
    /// The app's reporting zone.
    pub timezone: String,
    /// The dimension.
    #[schema(value_type = String)]
    pub dimension: &'static str,
    /// The metric.
    #[schema(value_type = String)]
    pub metric: &'static str,
    /// The range's days, in order (each value's `counts` follows it).
    pub dates: Vec<String>,
    /// One entry per value seen in the range, largest total first.
    pub values: Vec<BreakdownValue>,
}

/// One dimension value's series.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct BreakdownValue {
    /// The value; `null` for events that did not report the dimension.
    pub value: Option<String>,
    /// Launches: the sum over the range; users: distinct devices over the range.
    pub total: u64,
    /// Per day of `dates`.
    pub counts: Vec<u64>,
}

/// A breakdown of `metric` by `dimension` over `from..=to`.
pub async fn breakdown(
    src: &dyn MetricsSource,
    clock: &AppClock,
    from: Day,
    to: Day,
    dimension: &'static str,
    metric: BreakdownMetric,
) -> Result<Breakdown, QueryError> {
    let app = clock.app_id;
    let width = usize::try_from(to - from + 1).unwrap_or(0);
    let index = |day: Day| usize::try_from(day - from).unwrap_or(0);
    let mut series: BTreeMap<String, (u64, Vec<u64>)> = BTreeMap::new();
    match metric {
        BreakdownMetric::Launches => {
            for (day, value, c) in src.day_counters(app, dimension, from, to).await? {
                if c.launches == 0 {
                    continue;
                }
                let n = u64::try_from(c.launches).unwrap_or(0);
                let entry = series.entry(value).or_insert_with(|| (0, vec![0; width]));
                entry.0 += n;
                entry.1[index(day)] += n;
            }
        }
        BreakdownMetric::ActiveUsers | BreakdownMetric::NewUsers => {
            let sets = src.sets(app, SET_ACTIVE, dimension, None, from, to).await?;
            let new = if metric == BreakdownMetric::NewUsers {
                src.sets(app, SET_NEW, "", Some(""), from, to).await?
            } else {
                Sets::new()
            };
            let empty = RoaringBitmap::new();
            // Each value's day sets (new users: intersected with the day's new set),
            // then one multi-way union per value for its distinct total.
            let mut fresh: BTreeMap<(Day, String), RoaringBitmap> = BTreeMap::new();
            if metric == BreakdownMetric::NewUsers {
                for ((day, value), members) in &sets {
                    fresh.insert((*day, value.clone()), members & set_of(&new, *day, &empty));
                }
            }
            let counted = if metric == BreakdownMetric::NewUsers {
                &fresh
            } else {
                &sets
            };
            let mut per_value: BTreeMap<&str, Vec<&RoaringBitmap>> = BTreeMap::new();
            for ((day, value), members) in counted {
                let n = members.len();
                if n == 0 {
                    continue;
                }
                let entry = series
                    .entry(value.clone())
                    .or_insert_with(|| (0, vec![0; width]));
                entry.1[index(*day)] = n;
                per_value.entry(value).or_default().push(members);
            }
            for (value, members) in per_value {
                if let Some(entry) = series.get_mut(value) {
                    entry.0 = members.into_iter().union().len();
                }
            }
        }
    }
    let mut values: Vec<BreakdownValue> = series
        .into_iter()
        .map(|(value, (total, counts))| BreakdownValue {
            value: (!value.is_empty()).then_some(value),
            total,
            counts,
        })
        .collect();
    values.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.value.cmp(&b.value)));
    Ok(Breakdown {
        timezone: clock.timezone.clone(),
        dimension,
        metric: match metric {
            BreakdownMetric::Launches => "launches",
            BreakdownMetric::ActiveUsers => "active_users",
            BreakdownMetric::NewUsers => "new_users",
        },
        dates: (from..=to).map(|d| date_of(d).to_string()).collect(),
        values,
    })
}

// ---------------------------------------------------------------------------------
// custom events

/// `GET /api/v1/apps/{app}/events`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Events {
    /// The app's reporting zone.
    pub timezone: String,
    /// The segment key asked for, if any.
    pub segment: Option<String>,
    /// The range's days, in order.
    pub dates: Vec<String>,
    /// One entry per event name seen in the range, by name.
    pub events: Vec<EventSeries>,
}

/// One event name's figures.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct EventSeries {
    /// The name.
    pub name: String,
    /// Sum of counts over the range.
    pub count: i64,
    /// Sum of sums over the range.
    pub sum: f64,
    /// Sum of durations over the range.
    pub dur_secs: f64,
    /// Per day of `dates`: counts.
    pub counts: Vec<i64>,
    /// Per day of `dates`: sums.
    pub sums: Vec<f64>,
    /// With `?segment=`: the same per value of that segment, largest count first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segments: Option<Vec<SegmentSeries>>,
}

/// One segment value's figures.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SegmentSeries {
    /// The value.
    pub value: String,
    /// Sum of counts over the range.
    pub count: i64,
    /// Sum of sums over the range.
    pub sum: f64,
    /// Per day: counts.
    pub counts: Vec<i64>,
    /// Per day: sums.
    pub sums: Vec<f64>,
}

/// Custom events over `from..=to`, optionally only `name`, optionally by `segment`.
pub async fn events(
    src: &dyn MetricsSource,
    clock: &AppClock,
    from: Day,
    to: Day,
    name: Option<&str>,
    segment: Option<&str>,
) -> Result<Events, QueryError> {
    let width = usize::try_from(to - from + 1).unwrap_or(0);
    let rows = src.event_counters(clock.app_id, from, to, segment).await?;
    let mut by_name: BTreeMap<String, EventSeries> = BTreeMap::new();
    let mut by_segment: BTreeMap<(String, String), SegmentSeries> = BTreeMap::new();
    for row in rows {
        if name.is_some_and(|n| n != row.name) {
            continue;
        }
        let i = usize::try_from(row.day - from)
            .unwrap_or(0)
            .min(width.saturating_sub(1));
        if row.seg_key.is_empty() {
            let series = by_name
                .entry(row.name.clone())
                .or_insert_with(|| EventSeries {
                    name: row.name.clone(),
                    count: 0,
                    sum: 0.0,
                    dur_secs: 0.0,
                    counts: vec![0; width],
                    sums: vec![0.0; width],
                    segments: segment.map(|_| Vec::new()),
                });
            series.count += row.count;
            series.sum += row.sum;
            series.dur_secs += row.dur_secs;
            series.counts[i] += row.count;
            series.sums[i] += row.sum;
        } else {
            let series = by_segment
                .entry((row.name.clone(), row.seg_value.clone()))
                .or_insert_with(|| SegmentSeries {
                    value: row.seg_value.clone(),
                    count: 0,
                    sum: 0.0,
                    counts: vec![0; width],
                    sums: vec![0.0; width],
                });
            series.count += row.count;
            series.sum += row.sum;
            series.counts[i] += row.count;
            series.sums[i] += row.sum;
        }
    }
    for ((event, _), series) in by_segment {
        if let Some(Some(list)) = by_name.get_mut(&event).map(|e| e.segments.as_mut()) {
            list.push(series);
        }
    }
    let mut events: Vec<EventSeries> = by_name.into_values().collect();
    for event in &mut events {
        if let Some(list) = &mut event.segments {
            list.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
        }
    }
    Ok(Events {
        timezone: clock.timezone.clone(),
        segment: segment.map(str::to_owned),
        dates: (from..=to).map(|d| date_of(d).to_string()).collect(),
        events,
    })
}

// ---------------------------------------------------------------------------------
// summary

/// `GET /api/v1/apps/{app}/summary`: the dashboard's KPI tiles.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Summary {
    /// The app's reporting zone.
    pub timezone: String,
    /// Today in that zone.
    pub date: String,
    /// Today so far, and the same weekday a week before.
    pub today: Comparison,
    /// Yesterday, and the same weekday a week before.
    pub yesterday: Comparison,
    /// The 7 days ending yesterday, and the 7 before.
    pub last_7_days: Comparison,
    /// The 30 days ending yesterday, and the 30 before.
    pub last_30_days: Comparison,
    /// `d1`, `d7`, `d30`: day-N retention of the new-user cohorts of the 30 days before today whose day N
    /// has ended, pooled (retained members / cohort members); `null` when no cohort
    /// qualifies.
    pub retention: BTreeMap<String, Option<f64>>,
    /// Devices seen so far.
    pub total_users: u64,
    /// Distinct user ids seen so far.
    pub registered_users: u64,
}

/// A period's figures and the period it is compared with.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Comparison {
    /// The period.
    pub current: Tile,
    /// The period compared with.
    pub previous: Tile,
}

/// Figures of a range of days.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Tile {
    /// First day.
    pub from: String,
    /// Last day.
    pub to: String,
    /// Launches.
    pub launches: i64,
    /// Usage seconds.
    pub usage_secs: f64,
    /// Distinct devices active in the range.
    pub active_users: u64,
    /// New devices in the range.
    pub new_users: u64,
}

/// The KPI summary at the clock's day.
pub async fn summary(src: &dyn MetricsSource, clock: &AppClock) -> Result<Summary, QueryError> {
    let app = clock.app_id;
    let today = clock.today;
    let first = today - 60;
    let counters: HashMap<Day, DayCounts> = src
        .day_counters(app, "", first, today)
        .await?
        .into_iter()
        .map(|(d, _, c)| (d, c))
        .collect();
    let active = src
        .sets(app, SET_ACTIVE, "", Some(""), first, today)
        .await?;
    let new = src.sets(app, SET_NEW, "", Some(""), first, today).await?;
    let empty = RoaringBitmap::new();
    let tile = |from: Day, to: Day| {
        let mut users = RoaringBitmap::new();
        let mut t = Tile {
            from: date_of(from).to_string(),
            to: date_of(to).to_string(),
            launches: 0,
            usage_secs: 0.0,
            active_users: 0,
            new_users: 0,
        };
        for day in from..=to {
            let c = counters.get(&day).copied().unwrap_or_default();
            t.launches += c.launches;
            t.usage_secs += c.usage_secs;
            users |= set_of(&active, day, &empty);
            t.new_users += set_of(&new, day, &empty).len();
        }
        t.active_users = users.len();
        t
    };
    let compare = |from: Day, to: Day, back: Day| Comparison {
        current: tile(from, to),
        previous: tile(from - back, to - back),
    };
    let mut retention = BTreeMap::new();
    for n in [1, 7, 30] {
        let mut kept = 0;
        let mut size = 0;
        for cohort in today - 30..today {
            if cohort + n >= today {
                continue;
            }
            let members = set_of(&new, cohort, &empty);
            size += members.len();
            kept += members.intersection_len(set_of(&active, cohort + n, &empty));
        }
        retention.insert(format!("d{n}"), ratio(kept, size));
    }
    let total_users = src.set_size_sum_before(app, SET_NEW, today + 1).await?;
    let registered_users = src.registered_before(app, today + 1).await?;
    Ok(Summary {
        timezone: clock.timezone.clone(),
        date: date_of(today).to_string(),
        today: compare(today, today, 7),
        yesterday: compare(today - 1, today - 1, 7),
        last_7_days: compare(today - 7, today - 1, 7),
        last_30_days: compare(today - 30, today - 1, 30),
        retention,
        total_users,
        registered_users,
    })
}
