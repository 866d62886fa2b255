//! Reading the aggregates back: per-day totals, unique-device sets and custom-event
//! counters. The metric queries of the query API build on these.

use roaring::RoaringBitmap;
use sundial_analytics::StoreError;
use sundial_analytics::aggregate::{AggregateStore as _, Day, SET_ACTIVE, SET_NEW, SetKey};

use crate::{Backend, SqlStore, backend_error};

/// One day's totals of an app.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DayTotals {
    /// The day (days since 1970-01-01 in the app's zone).
    pub day: Day,
    /// `open_app` events.
    pub launches: i64,
    /// Sum of `usage_time` durations.
    pub usage_secs: f64,
    /// `usage_time` events.
    pub usage_reports: i64,
    /// Distinct devices with any event.
    pub active_users: u64,
    /// Devices first seen that day.
    pub new_users: u64,
}

/// One custom-event counter row (the metrics engine's row type).
pub type EventTotals = sundial_analytics::metrics::EventCounterRow;

impl SqlStore {
    /// Totals for every day in `from..=to` (days without data are present with zeros).
    pub async fn day_totals(
        &self,
        app_id: i64,
        from: Day,
        to: Day,
    ) -> Result<Vec<DayTotals>, StoreError> {
        const SQL: &str = "SELECT day, launches, usage_secs, usage_reports FROM day_counters \
                           WHERE app_id = $1 AND dim = '' AND value = '' AND day BETWEEN $2 AND $3";
        let rows: Vec<(i64, i64, f64, i64)> = on_backend!(self, pool => sqlx::query_as(SQL)
            .bind(app_id)
            .bind(i64::from(from))
            .bind(i64::from(to))
            .fetch_all(pool)
            .await
            .map_err(backend_error)?);
        let mut days = Vec::new();
        for day in from..=to {
            let mut totals = DayTotals {
                day,
                ..DayTotals::default()
            };
            if let Some((_, launches, usage_secs, usage_reports)) =
                rows.iter().find(|r| r.0 == i64::from(day))
            {
                totals.launches = *launches;
                totals.usage_secs = *usage_secs;
                totals.usage_reports = *usage_reports;
            }
            totals.active_users = self.day_set(app_id, day, SET_ACTIVE, "", "").await?.len();
            totals.new_users = self.day_set(app_id, day, SET_NEW, "", "").await?.len();
            days.push(totals);
        }
        Ok(days)
    }

    /// The members of one unique-device set (`kind` is `active` or `new`; `dim` empty
    /// for the total, a breakdown dimension or `hour`).
    pub async fn day_set(
        &self,
        app_id: i64,
        day: Day,
        kind: &'static str,
        dim: &'static str,
        value: &str,
    ) -> Result<RoaringBitmap, StoreError> {
        let key = SetKey {
            app_id,
            day,
            kind,
            dim,
            value: value.to_owned(),
        };
        Ok(self.load_set(&key).await?.members)
    }

    /// Number of distinct devices an app has seen.
    pub async fn device_count(&self, app_id: i64) -> Result<u64, StoreError> {
        const SQL: &str = "SELECT COUNT(*) FROM devices WHERE app_id = $1";
        let (n,): (i64,) = on_backend!(self, pool => sqlx::query_as(SQL)
            .bind(app_id)
            .fetch_one(pool)
            .await
            .map_err(backend_error)?);
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Custom-event counters of `from..=to`, by day, name and segment.
    pub async fn event_totals(
        &self,
        app_id: i64,
        from: Day,
        to: Day,
    ) -> Result<Vec<EventTotals>, StoreError> {
        const SQL: &str = "SELECT day, name, seg_key, seg_value, count, sum, dur_secs \
                           FROM event_counters WHERE app_id = $1 AND day BETWEEN $2 AND $3 \
                           ORDER BY day, name, seg_key, seg_value";
        let rows: Vec<(i64, String, String, String, i64, f64, f64)> = on_backend!(self, pool => sqlx::query_as(SQL)
                .bind(app_id)
                .bind(i64::from(from))
                .bind(i64::from(to))
                .fetch_all(pool)
                .await
                .map_err(backend_error)?);
        Ok(rows
            .into_iter()
            .map(
                |(day, name, seg_key, seg_value, count, sum, dur_secs)| EventTotals {
                    day: i32::try_from(day).unwrap_or(i32::MAX),
                    name,
                    seg_key,
                    seg_value,
                    count,
                    sum,
                    dur_secs,
                },
            )
            .collect())
    }
}
