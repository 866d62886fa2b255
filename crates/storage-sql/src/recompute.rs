//! `sundial recompute`: rebuilding an app's aggregates from its raw-event archive — after
//! its time zone changed, or to repair them.
//!
//! The rebuild is made beside the live data and swapped in at the end, so a crash or an
//! error at any point leaves the app as it was:
//!
//! 1. a *shadow* app (named `(recompute of app N)`) gets the app's device rows with the
//!    same device numbers, and its user ids; those first seen inside the recomputed
//!    range are marked unseen ([`UNSEEN_TS`]) so that their first replayed event makes
//!    them new on its day (in the app's current zone); those seen before keep their
//!    instant, so a range recompute does not make old users new;
//! 2. the raw events of the range (every retained day when no range is given) are
//!    replayed through the real aggregator into the shadow;
//! 3. one transaction checks that no event was aggregated for the app meanwhile (its
//!    raw-event archive did not grow; otherwise nothing is swapped and the command says
//!    why), replaces the app's per-day aggregates of the range by the shadow's, takes
//!    the devices' recomputed first days, deletes the shadow, and moves the data
//!    generation so that running aggregators drop their caches.
//!
//! Days outside the range keep their aggregates as they were. Raw rows stay filed under
//! the day of the zone they were aggregated in (readers re-derive days). Days older than
//! the raw-data retention have no raw events: a whole-app recompute is refused when the
//! archive does not reach back to the app's first aggregated day
//! ([`RecomputeError::Incomplete`]); a range inside the archive's span works.

use sundial_analytics::aggregate::{Aggregator, Day, RawEvents, UNSEEN_TS, day_and_hour};
use sundial_analytics::bus::BusMessage;
use sundial_analytics::record::EventRecord;
use sundial_analytics::{NewApp, Store, StoreError};

use crate::{Backend, SqlStore, backend_error};

/// Per-day aggregate tables (rows keyed by app and day).
const DAY_TABLES: [&str; 5] = [
    "day_sets",
    "set_sizes",
    "day_counters",
    "hour_counters",
    "event_counters",
];

/// Raw-event rows replayed per aggregator batch.
const ROWS_PER_BATCH: i64 = 64;

/// What a recompute did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recomputed {
    /// Events replayed.
    pub events: u64,
    /// The first and last day with raw events, in the app's current zone (`None` when
    /// the archive is empty).
    pub retained: Option<(Day, Day)>,
}

/// Why a recompute did not happen (the app is unchanged).
#[derive(Debug, thiserror::Error)]
pub enum RecomputeError {
    /// Events for the app were aggregated while the rebuild ran.
    #[error(
        "events for app {0} were aggregated during the recompute, so nothing was changed; \
         stop `sundial serve` (or its aggregator) for the app, then run it again"
    )]
    Concurrent(i64),
    /// A whole-app recompute was asked for, but the raw-event archive does not reach
    /// back to the app's first aggregated day (the raw-data retention deleted older
    /// days): rebuilding everything would empty those days.
    #[error(
        "app {app_id} has aggregates from {aggregated_from} but raw events only from \
         {raw_from}: a whole-app recompute would empty the days before; pass --from and \
         --to within the raw events' span"
    )]
    Incomplete {
        /// The app.
        app_id: i64,
        /// Its first aggregated day.
        aggregated_from: jiff::civil::Date,
        /// Its first raw-event day.
        raw_from: jiff::civil::Date,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn shadow_name(app_id: i64) -> String {
    format!("(recompute of app {app_id})")
}

impl SqlStore {
    /// Rebuilds app `app_id`'s aggregates of the days `range` (inclusive, app zone;
    /// every retained day when `None`) from its raw events. `progress` is called with
    /// (raw rows done, raw rows in all).
    pub async fn recompute_app(
        &self,
        app_id: i64,
        range: Option<(Day, Day)>,
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<Recomputed, RecomputeError> {
        let app = self
            .app_by_id(app_id)
            .await?
            .ok_or_else(|| StoreError::NoSuchApp(format!("id {app_id}")))?;
        let tz = jiff::tz::TimeZone::get(&app.timezone).unwrap_or(jiff::tz::TimeZone::UTC);
        // A shadow left by an interrupted run goes first.
        for leftover in self.list_apps().await? {
            if leftover.name == shadow_name(app_id) {
                self.delete_app(leftover.id).await?;
            }
        }

        let (max_raw, raw_rows, first_day, last_day) = self.raw_span(app_id).await?;
        if range.is_none() {
            const FIRST: &str = "SELECT MIN(day) FROM day_counters WHERE app_id = $1";
            let (aggregated,): (Option<i64>,) = on_backend!(self, pool => sqlx::query_as(FIRST)
                .bind(app_id)
                .fetch_one(pool)
                .await
                .map_err(backend_error)?);
            let aggregated = aggregated.and_then(|d| Day::try_from(d).ok());
            // One day of slack: the zone may have moved the first events a day.
            if let Some(aggregated) = aggregated
                && first_day.is_none_or(|raw| aggregated < raw - 1)
            {
                return Err(RecomputeError::Incomplete {
                    app_id,
                    aggregated_from: sundial_analytics::metrics::date_of(aggregated),
                    raw_from: sundial_analytics::metrics::date_of(first_day.unwrap_or(aggregated)),
                });
            }
        }
        let mut report = Recomputed::default();
        if let (Some(first), Some(last)) = (first_day, last_day) {
            report.retained = Some((first, last));
        }
        let start_ms = match range {
            Some((from, _)) => sundial_analytics::metrics::day_start_ms(from, &tz),
            None => i64::MIN,
        };
        let shadow = self
            .create_app(NewApp {
                name: shadow_name(app_id),
                timezone: app.timezone.clone(),
            })
            .await?;
        self.seed_shadow(app_id, shadow.id, start_ms).await?;

        // Replay. Raw rows are filed under the day of the zone at aggregation time:
        // read two days around the range and keep the events whose day (now) is in it.
        let (row_from, row_to) = match range {
            Some((from, to)) => (i64::from(from) - 2, i64::from(to) + 2),
            None => (i64::MIN, i64::MAX),
        };
        let consumer = format!("recompute-{}", shadow.id);
        let mut aggregator = Aggregator::new(consumer.clone());
        let mut position = 0_u64;
        let mut after = 0_i64;
        let mut done = 0_u64;
        const PAGE: &str = "SELECT id, payload FROM raw_events WHERE app_id = $1 AND id > $2 \
                            AND id <= $3 AND day BETWEEN $4 AND $5 ORDER BY id LIMIT $6";
        loop {
            let rows: Vec<(i64, Vec<u8>)> = on_backend!(self, pool => sqlx::query_as(PAGE)
                .bind(app_id)
                .bind(after)
                .bind(max_raw)
                .bind(row_from)
                .bind(row_to)
                .bind(ROWS_PER_BATCH)
                .fetch_all(pool)
                .await
                .map_err(backend_error)?);
            let Some(last) = rows.last() else {
                break;
            };
            after = last.0;
            let mut batch = Vec::with_capacity(rows.len());
            for (_, payload) in &rows {
                let mut events = RawEvents::decode(payload).map_err(|e| {
                    StoreError::Backend(format!("corrupt raw-event row: {e}").into())
                })?;
                if let Some((from, to)) = range {
                    events.retain(|e| (from..=to).contains(&day_and_hour(e.ts_ms, &tz).0));
                }
                if events.is_empty() {
                    continue;
                }
                report.events += events.len() as u64;
                batch.push(BusMessage {
                    position,
                    payload: EventRecord::new(shadow.id, 0, events).encode(),
                });
                position += 1;
            }
            done += rows.len() as u64;
            if !batch.is_empty() {
                aggregator
                    .apply(self, &batch)
                    .await
                    .map_err(|e| StoreError::Backend(e.to_string().into()))?;
            }
            progress(done, raw_rows);
        }
        self.swap_in(app_id, shadow.id, range, max_raw, &consumer)
            .await?;
        tracing::info!(app_id, events = report.events, "aggregates recomputed");
        Ok(report)
    }

    /// The app's raw archive: highest row id, row count, first and last day.
    async fn raw_span(
        &self,
        app_id: i64,
    ) -> Result<(i64, u64, Option<Day>, Option<Day>), StoreError> {
        const SQL: &str = "SELECT COALESCE(MAX(id), 0), COUNT(*), MIN(day), MAX(day) \
                           FROM raw_events WHERE app_id = $1";
        let (max, count, first, last): (i64, i64, Option<i64>, Option<i64>) = on_backend!(self, pool => sqlx::query_as(SQL)
                .bind(app_id)
                .fetch_one(pool)
                .await
                .map_err(backend_error)?);
        let day = |d: Option<i64>| d.and_then(|d| Day::try_from(d).ok());
        Ok((
            max,
            u64::try_from(count).unwrap_or(0),
            day(first),
            day(last),
        ))
    }

    /// Copies the app's devices and users into the shadow, unseen from `start_ms` on.
    async fn seed_shadow(&self, app_id: i64, shadow: i64, start_ms: i64) -> Result<(), StoreError> {
        const DEVICES: &str = "INSERT INTO devices (app_id, device_no, device_id, first_ts_ms, first_day) \
             SELECT $1, device_no, device_id, \
             CASE WHEN first_ts_ms < $3 THEN first_ts_ms ELSE $4 END, first_day \
             FROM devices WHERE app_id = $2";
        const USERS: &str = "INSERT INTO app_users (app_id, user_id, first_ts_ms) \
             SELECT $1, user_id, CASE WHEN first_ts_ms < $3 THEN first_ts_ms ELSE $4 END \
             FROM app_users WHERE app_id = $2";
        on_backend!(self, pool => {
            let mut tx = pool.begin().await.map_err(backend_error)?;
            for sql in [DEVICES, USERS] {
                sqlx::query(sql)
                    .bind(shadow)
                    .bind(app_id)
                    .bind(start_ms)
                    .bind(UNSEEN_TS)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend_error)?;
            }
            tx.commit().await.map_err(backend_error)?;
        });
        Ok(())
    }

    /// The swap: the shadow's aggregates of the range replace the app's, in one
    /// transaction, unless the app's raw archive grew meanwhile.
    async fn swap_in(
        &self,
        app_id: i64,
        shadow: i64,
        range: Option<(Day, Day)>,
        max_raw: i64,
        consumer: &str,
    ) -> Result<(), RecomputeError> {
        const GUARD: &str = "SELECT COALESCE(MAX(id), 0) FROM raw_events WHERE app_id = $1";
        const DEVICES: &str = "UPDATE devices SET \
             first_ts_ms = (SELECT s.first_ts_ms FROM devices s \
                            WHERE s.app_id = $2 AND s.device_no = devices.device_no), \
             first_day = (SELECT s.first_day FROM devices s \
                          WHERE s.app_id = $2 AND s.device_no = devices.device_no) \
             WHERE app_id = $1 AND device_no IN \
             (SELECT device_no FROM devices WHERE app_id = $2 AND first_ts_ms <> $3)";
        let (from, to) = range.map_or((i64::MIN, i64::MAX), |(f, t)| (i64::from(f), i64::from(t)));
        let outcome: Result<(), RecomputeError> = on_backend!(self, pool => {
            let mut tx = pool.begin().await.map_err(backend_error)?;
            let (now_max,): (i64,) = sqlx::query_as(GUARD)
                .bind(app_id)
                .fetch_one(&mut *tx)
                .await
                .map_err(backend_error)?;
            if now_max != max_raw {
                Err(RecomputeError::Concurrent(app_id))
            } else {
                for table in DAY_TABLES {
                    // Table names come from DAY_TABLES, not from input.
                    let delete =
                        format!("DELETE FROM {table} WHERE app_id = $1 AND day BETWEEN $2 AND $3");
                    let take = format!(
                        "UPDATE {table} SET app_id = $1 WHERE app_id = $2 AND day BETWEEN $3 AND $4"
                    );
                    sqlx::query(sqlx::AssertSqlSafe(delete))
                        .bind(app_id)
                        .bind(from)
                        .bind(to)
                        .execute(&mut *tx)
                        .await
                        .map_err(backend_error)?;
                    sqlx::query(sqlx::AssertSqlSafe(take))
                        .bind(app_id)
                        .bind(shadow)
                        .bind(from)
                        .bind(to)
                        .execute(&mut *tx)
                        .await
                        .map_err(backend_error)?;
                }
                // Materialised retention is rewritten by the next close-out.
                sqlx::query("DELETE FROM retention_cells WHERE app_id = $1")
                    .bind(app_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend_error)?;
                sqlx::query(DEVICES)
                    .bind(app_id)
                    .bind(shadow)
                    .bind(UNSEEN_TS)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend_error)?;
                sqlx::query("DELETE FROM consumer_positions WHERE consumer = $1")
                    .bind(consumer)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend_error)?;
                tx.commit().await.map_err(backend_error)?;
                Ok(())
            }
        });
        // The shadow goes whether the swap happened or not (what was swapped in now
        // belongs to the app; the rest is the shadow's).
        self.delete_app(shadow).await?;
        on_backend!(self, pool => {
            sqlx::query(crate::BUMP_GENERATION)
                .execute(pool)
                .await
                .map_err(backend_error)?;
        });
        outcome
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn shadow_names_fit_app_names() {
        let name = super::shadow_name(i64::MAX);
        assert!(name.len() <= sundial_analytics::app::MAX_APP_NAME_BYTES);
    }
}
