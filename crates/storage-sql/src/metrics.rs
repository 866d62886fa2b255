//! The metrics engine's reads ([`MetricsSource`]) on both backends: one range query per
//! call, so that a 90-day answer costs a handful of round trips, not one per day.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use roaring::RoaringBitmap;
use sundial_analytics::aggregate::{Day, DayCounts, HourCounts, RawEvents, SET_ACTIVE, SET_NEW};
use sundial_analytics::metrics::{EventCounterRow, MetricsSource};
use sundial_analytics::{CloseOut, Event, StoreError};

use crate::aggregates::fold_set_rows;
use crate::{Backend, SqlStore, backend_error};

/// Retention cells are materialised for offsets up to this many days…
const CELL_MAX_OFFSET: Day = 30;
/// …of the cohorts of this many days before today.
const CELL_COHORT_DAYS: Day = 366;

/// A `day_sets` row's bitmaps: added, removed.
type SetRow = (Vec<u8>, Option<Vec<u8>>);

fn day(value: i64) -> Day {
    // Days are written from `Day` values: they always fit.
    Day::try_from(value).unwrap_or(Day::MAX)
}

#[async_trait]
impl MetricsSource for SqlStore {
    async fn day_counters(
        &self,
        app_id: i64,
        dim: &str,
        from: Day,
        to: Day,
    ) -> Result<Vec<(Day, String, DayCounts)>, StoreError> {
        const SQL: &str = "SELECT day, value, launches, usage_secs, usage_reports, new_registered FROM day_counters \
                           WHERE app_id = $1 AND dim = $2 AND day BETWEEN $3 AND $4";
        let rows: Vec<(i64, String, i64, f64, i64, i64)> = on_backend!(self, pool => sqlx::query_as(SQL)
            .bind(app_id)
            .bind(dim)
            .bind(i64::from(from))
            .bind(i64::from(to))
            .fetch_all(pool)
            .await
            .map_err(backend_error)?);
        Ok(rows
            .into_iter()
            .map(
                |(d, value, launches, usage_secs, usage_reports, new_registered)| {
                    (
                        day(d),
                        value,
                        DayCounts {
                            launches,
                            usage_secs,
                            usage_reports,
                            new_registered,
                        },
                    )
                },
            )
            .collect())
    }

    async fn set_sizes(
        &self,
        app_id: i64,
        kind: &str,
        dim: &str,
        from: Day,
        to: Day,
    ) -> Result<Vec<(Day, String, u64)>, StoreError> {
        const SQL: &str = "SELECT day, value, size FROM set_sizes \
                           WHERE app_id = $1 AND kind = $2 AND dim = $3 AND day BETWEEN $4 AND $5";
        let rows: Vec<(i64, String, i64)> = on_backend!(self, pool => sqlx::query_as(SQL)
            .bind(app_id)
            .bind(kind)
            .bind(dim)
            .bind(i64::from(from))
            .bind(i64::from(to))
            .fetch_all(pool)
            .await
            .map_err(backend_error)?);
        Ok(rows
            .into_iter()
            .map(|(d, value, size)| (day(d), value, u64::try_from(size).unwrap_or(0)))
            .collect())
    }

    async fn set_size_sum_before(
        &self,
        app_id: i64,
        kind: &str,
        before: Day,
    ) -> Result<u64, StoreError> {
        const SQL: &str = "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM set_sizes \
                           WHERE app_id = $1 AND kind = $2 AND dim = '' AND day < $3";
        let (sum,): (i64,) = on_backend!(self, pool => sqlx::query_as(SQL)
            .bind(app_id)
            .bind(kind)
            .bind(i64::from(before))
            .fetch_one(pool)
            .await
            .map_err(backend_error)?);
        Ok(u64::try_from(sum).unwrap_or(0))
    }

    async fn sets(
        &self,
        app_id: i64,
        kind: &str,
        dim: &str,
        value: Option<&str>,
        from: Day,
        to: Day,
    ) -> Result<BTreeMap<(Day, String), RoaringBitmap>, StoreError> {
        const ALL: &str = "SELECT day, value, added, removed FROM day_sets \
                           WHERE app_id = $1 AND kind = $2 AND dim = $3 AND day BETWEEN $4 AND $5 \
                           ORDER BY day, value, seq";
        const ONE: &str = "SELECT day, value, added, removed FROM day_sets \
                           WHERE app_id = $1 AND kind = $2 AND dim = $3 AND day BETWEEN $4 AND $5 \
                           AND value = $6 ORDER BY day, value, seq";
        type Row = (i64, String, Vec<u8>, Option<Vec<u8>>);
        let rows: Vec<Row> = on_backend!(self, pool => {
            let query = sqlx::query_as(if value.is_some() { ONE } else { ALL })
                .bind(app_id)
                .bind(kind)
                .bind(dim)
                .bind(i64::from(from))
                .bind(i64::from(to));
            let query = match value {
                Some(v) => query.bind(v),
                None => query,
            };
            query.fetch_all(pool).await.map_err(backend_error)?
        });
        let mut grouped: BTreeMap<(Day, String), Vec<(Vec<u8>, Option<Vec<u8>>)>> = BTreeMap::new();
        for (d, value, added, removed) in rows {
            grouped
                .entry((day(d), value))
                .or_default()
                .push((added, removed));
        }
        let mut out = BTreeMap::new();
        for (key, rows) in grouped {
            out.insert(key, fold_set_rows(rows)?);
        }
        Ok(out)
    }

    async fn hour_counters(
        &self,
        app_id: i64,
        from: Day,
        to: Day,
    ) -> Result<Vec<(Day, u8, HourCounts)>, StoreError> {
        const SQL: &str = "SELECT day, hour, launches, new_users FROM hour_counters \
                           WHERE app_id = $1 AND day BETWEEN $2 AND $3";
        let rows: Vec<(i64, i64, i64, i64)> = on_backend!(self, pool => sqlx::query_as(SQL)
            .bind(app_id)
            .bind(i64::from(from))
            .bind(i64::from(to))
            .fetch_all(pool)
            .await
            .map_err(backend_error)?);
        Ok(rows
            .into_iter()
            .map(|(d, hour, launches, new_users)| {
                (
                    day(d),
                    u8::try_from(hour).unwrap_or(0),
                    HourCounts {
                        launches,
                        new_users,
                    },
                )
            })
            .collect())
    }

    async fn event_counters(
        &self,
        app_id: i64,
        from: Day,
        to: Day,
        seg_key: Option<&str>,
    ) -> Result<Vec<EventCounterRow>, StoreError> {
        const TOTALS: &str = "SELECT day, name, seg_key, seg_value, count, sum, dur_secs \
                              FROM event_counters WHERE app_id = $1 AND day BETWEEN $2 AND $3 \
                              AND seg_key = ''";
        const SEGMENT: &str = "SELECT day, name, seg_key, seg_value, count, sum, dur_secs \
                               FROM event_counters WHERE app_id = $1 AND day BETWEEN $2 AND $3 \
                               AND (seg_key = '' OR seg_key = $4)";
        type Row = (i64, String, String, String, i64, f64, f64);
        let rows: Vec<Row> = on_backend!(self, pool => {
            let query = sqlx::query_as(if seg_key.is_some() { SEGMENT } else { TOTALS })
                .bind(app_id)
                .bind(i64::from(from))
                .bind(i64::from(to));
            let query = match seg_key {
                Some(k) => query.bind(k),
                None => query,
            };
            query.fetch_all(pool).await.map_err(backend_error)?
        });
        Ok(rows
            .into_iter()
            .map(
                |(d, name, seg_key, seg_value, count, sum, dur_secs)| EventCounterRow {
                    day: day(d),
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

    async fn raw_events(&self, app_id: i64, from: Day, to: Day) -> Result<Vec<Event>, StoreError> {
        const SQL: &str =
            "SELECT payload FROM raw_events WHERE app_id = $1 AND day BETWEEN $2 AND $3";
        let rows: Vec<(Vec<u8>,)> = on_backend!(self, pool => sqlx::query_as(SQL)
            .bind(app_id)
            .bind(i64::from(from))
            .bind(i64::from(to))
            .fetch_all(pool)
            .await
            .map_err(backend_error)?);
        let mut events = Vec::new();
        for (payload,) in rows {
            events.extend(
                RawEvents::decode(&payload).map_err(|e| {
                    StoreError::Backend(format!("corrupt raw-event row: {e}").into())
                })?,
            );
        }
        Ok(events)
    }

    async fn retention_cells(
        &self,
        app_id: i64,
        kind: &str,
        from: Day,
        to: Day,
    ) -> Result<HashMap<(Day, u32), u64>, StoreError> {
        const SQL: &str = "SELECT cohort_day, day_offset, count FROM retention_cells \
                           WHERE app_id = $1 AND kind = $2 AND cohort_day BETWEEN $3 AND $4";
        let rows: Vec<(i64, i64, i64)> = on_backend!(self, pool => sqlx::query_as(SQL)
            .bind(app_id)
            .bind(kind)
            .bind(i64::from(from))
            .bind(i64::from(to))
            .fetch_all(pool)
            .await
            .map_err(backend_error)?);
        Ok(rows
            .into_iter()
            .map(|(d, n, c)| {
                (
                    (day(d), u32::try_from(n).unwrap_or(u32::MAX)),
                    u64::try_from(c).unwrap_or(0),
                )
            })
            .collect())
    }

    async fn registered_before(&self, app_id: i64, before: Day) -> Result<u64, StoreError> {
        const SQL: &str = "SELECT CAST(COALESCE(SUM(new_registered), 0) AS BIGINT) FROM day_counters \
                           WHERE app_id = $1 AND dim = '' AND value = '' AND day < $2";
        let (sum,): (i64,) = on_backend!(self, pool => sqlx::query_as(SQL)
            .bind(app_id)
            .bind(i64::from(before))
            .fetch_one(pool)
            .await
            .map_err(backend_error)?);
        Ok(u64::try_from(sum).unwrap_or(0))
    }
}

impl SqlStore {
    /// Fills `set_sizes` from `day_sets` for a store aggregated before migration 0005
    /// (migration 0009 marks such a store). Runs once, at open.
    pub(crate) async fn backfill_set_sizes(&self) -> Result<(), StoreError> {
        const DONE: &str = "DELETE FROM pending_upgrades WHERE name = 'fill_set_sizes'";
        const ROWS: &str = "SELECT app_id, day, kind, dim, value, added, removed FROM day_sets \
                            ORDER BY app_id, day, kind, dim, value, seq";
        const INSERT: &str = "INSERT INTO set_sizes (app_id, day, kind, dim, value, size) \
                              VALUES ($1, $2, $3, $4, $5, $6) \
                              ON CONFLICT (app_id, kind, dim, day, value) DO NOTHING";
        if !self.upgrade_pending("fill_set_sizes").await? {
            return Ok(());
        }
        type Row = (i64, i64, String, String, String, Vec<u8>, Option<Vec<u8>>);
        let rows: Vec<Row> = on_backend!(self, pool => sqlx::query_as(ROWS)
            .fetch_all(pool).await.map_err(backend_error)?);
        let mut folded: BTreeMap<(i64, i64, String, String, String), Vec<SetRow>> = BTreeMap::new();
        for (app_id, day, kind, dim, value, added, removed) in rows {
            folded
                .entry((app_id, day, kind, dim, value))
                .or_default()
                .push((added, removed));
        }
        on_backend!(self, pool => {
            let mut tx = pool.begin().await.map_err(backend_error)?;
            for ((app_id, day, kind, dim, value), rows) in folded {
                let size = fold_set_rows(rows)?.len();
                sqlx::query(INSERT)
                    .bind(app_id)
                    .bind(day)
                    .bind(kind)
                    .bind(dim)
                    .bind(value)
                    .bind(i64::try_from(size).unwrap_or(i64::MAX))
                    .execute(&mut *tx)
                    .await
                    .map_err(backend_error)?;
            }
            sqlx::query(DONE).execute(&mut *tx).await.map_err(backend_error)?;
            tx.commit().await.map_err(backend_error)?;
        });
        tracing::info!("set sizes filled in from the stored sets (migration 0005)");
        Ok(())
    }
}

impl SqlStore {
    /// Whether migration 0009 marked the data upgrade `name` as still to do.
    async fn upgrade_pending(&self, name: &str) -> Result<bool, StoreError> {
        const SQL: &str = "SELECT COUNT(*) FROM pending_upgrades WHERE name = $1";
        let (n,): (i64,) = on_backend!(self, pool => sqlx::query_as(SQL)
            .bind(name)
            .fetch_one(pool)
            .await
            .map_err(backend_error)?);
        Ok(n > 0)
    }

    /// Fills `day_counters.new_registered` from `app_users` for a store aggregated
    /// before migration 0005 (migration 0009 marks such a store). Runs once, at open.
    pub(crate) async fn backfill_registered(&self) -> Result<(), StoreError> {
        const DONE: &str = "DELETE FROM pending_upgrades WHERE name = 'fill_registered'";
        const APPS: &str = "SELECT id, timezone FROM apps";
        const FIRSTS: &str = "SELECT first_ts_ms FROM app_users WHERE app_id = $1";
        const UPSERT: &str = "INSERT INTO day_counters \
             (app_id, day, dim, value, launches, usage_secs, usage_reports, new_registered) \
             VALUES ($1, $2, '', '', 0, 0, 0, $3) ON CONFLICT (app_id, day, dim, value) \
             DO UPDATE SET new_registered = day_counters.new_registered + excluded.new_registered";
        if !self.upgrade_pending("fill_registered").await? {
            return Ok(());
        }
        let apps: Vec<(i64, String)> = on_backend!(self, pool => sqlx::query_as(APPS)
            .fetch_all(pool).await.map_err(backend_error)?);
        let mut per_day: BTreeMap<(i64, Day), i64> = BTreeMap::new();
        for (app_id, zone) in apps {
            let tz = jiff::tz::TimeZone::get(&zone).unwrap_or(jiff::tz::TimeZone::UTC);
            let firsts: Vec<(i64,)> = on_backend!(self, pool => sqlx::query_as(FIRSTS)
                .bind(app_id).fetch_all(pool).await.map_err(backend_error)?);
            for (ts,) in firsts {
                let d = sundial_analytics::aggregate::day_and_hour(ts, &tz).0;
                *per_day.entry((app_id, d)).or_default() += 1;
            }
        }
        // All apps and the marker in one transaction: a crash redoes the whole fill.
        on_backend!(self, pool => {
            let mut tx = pool.begin().await.map_err(backend_error)?;
            for ((app_id, d), n) in &per_day {
                sqlx::query(UPSERT)
                    .bind(app_id)
                    .bind(i64::from(*d))
                    .bind(*n)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend_error)?;
            }
            sqlx::query(DONE).execute(&mut *tx).await.map_err(backend_error)?;
            tx.commit().await.map_err(backend_error)?;
        });
        tracing::info!("registered users per day filled in from app_users (migration 0005)");
        Ok(())
    }
}

impl SqlStore {
    /// The daily close-out of one app: every unique-device set of a day before
    /// `before` that is stored as several delta rows is rewritten as one row (reads of
    /// ended days then decode one bitmap per set), and raw-event rows of days before
    /// `raw_before` (the raw-data retention) are deleted.
    ///
    /// Safe beside a running aggregator: a set's rows are folded up to the highest
    /// sequence number read and replaced by one row carrying that number, so deltas
    /// committed meanwhile (higher numbers) still apply after it. On PostgreSQL the
    /// rows read are locked until the rewrite commits; on SQLite the transaction fails
    /// (and the pass is retried next time) if another writer got in between.
    pub(crate) async fn close_out_app(
        &self,
        app_id: i64,
        before: Day,
        raw_before: Option<Day>,
    ) -> Result<CloseOut, StoreError> {
        const KEYS: &str = "SELECT day, kind, dim, value FROM day_sets \
                            WHERE app_id = $1 AND day < $2 \
                            GROUP BY day, kind, dim, value HAVING COUNT(*) > 1";
        const ROWS_SQLITE: &str = "SELECT seq, added, removed FROM day_sets WHERE app_id = $1 \
                                   AND day = $2 AND kind = $3 AND dim = $4 AND value = $5 ORDER BY seq";
        const ROWS_PG: &str = "SELECT seq, added, removed FROM day_sets WHERE app_id = $1 \
                               AND day = $2 AND kind = $3 AND dim = $4 AND value = $5 ORDER BY seq \
                               FOR UPDATE";
        const DELETE: &str = "DELETE FROM day_sets WHERE app_id = $1 AND day = $2 AND kind = $3 \
                              AND dim = $4 AND value = $5 AND seq <= $6";
        const INSERT: &str = "INSERT INTO day_sets (app_id, day, kind, dim, value, seq, added, removed) \
                              VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)";
        const RAW: &str = "DELETE FROM raw_events WHERE app_id = $1 AND day < $2";
        let mut report = CloseOut::default();
        let keys: Vec<(i64, String, String, String)> = on_backend!(self, pool => sqlx::query_as(KEYS)
            .bind(app_id)
            .bind(i64::from(before))
            .fetch_all(pool)
            .await
            .map_err(backend_error)?);
        let rows_sql = match self.backend {
            Backend::Sqlite(_) => ROWS_SQLITE,
            Backend::Postgres(_) => ROWS_PG,
        };
        for (d, kind, dim, value) in keys {
            on_backend!(self, pool => {
                let mut tx = pool.begin().await.map_err(backend_error)?;
                let rows: Vec<(i64, Vec<u8>, Option<Vec<u8>>)> = sqlx::query_as(rows_sql)
                    .bind(app_id)
                    .bind(d)
                    .bind(&kind)
                    .bind(&dim)
                    .bind(&value)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(backend_error)?;
                let Some(last) = rows.last().map(|r| r.0) else {
                    continue;
                };
                let n = rows.len() as u64;
                let members = fold_set_rows(rows.into_iter().map(|(_, a, r)| (a, r)))?;
                let mut bytes = Vec::with_capacity(members.serialized_size());
                // Writing into a Vec cannot fail.
                let _ = members.serialize_into(&mut bytes);
                sqlx::query(DELETE)
                    .bind(app_id)
                    .bind(d)
                    .bind(&kind)
                    .bind(&dim)
                    .bind(&value)
                    .bind(last)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend_error)?;
                sqlx::query(INSERT)
                    .bind(app_id)
                    .bind(d)
                    .bind(&kind)
                    .bind(&dim)
                    .bind(&value)
                    .bind(last)
                    .bind(bytes)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend_error)?;
                tx.commit().await.map_err(backend_error)?;
                report.sets_compacted += 1;
                report.rows_removed += n - 1;
            });
        }
        report.retention_cells = self.materialize_retention(app_id, before).await?;
        if let Some(raw_before) = raw_before {
            report.raw_rows_deleted = on_backend!(self, pool => sqlx::query(RAW)
                .bind(app_id)
                .bind(i64::from(raw_before))
                .execute(pool)
                .await
                .map_err(backend_error)?
                .rows_affected());
        }
        Ok(report)
    }
}

impl SqlStore {
    /// Writes the classic daily retention cells (offsets 0..=30) of the cohorts of the
    /// last year whose day `cohort + offset` has ended (is before `today`) and that are
    /// not stored yet. A cell is written only when its cohort and its day have
    /// activity (otherwise it is 0 and readers know it from the set sizes), and only if
    /// neither day's sets changed between reading them and writing the cell: the sets'
    /// size versions are checked again in the writing transaction (on PostgreSQL with
    /// the rows locked, so an aggregator commit waits and then invalidates what it must).
    async fn materialize_retention(&self, app_id: i64, today: Day) -> Result<u64, StoreError> {
        const VERSIONS: &str = "SELECT kind, day, size, version FROM set_sizes WHERE app_id = $1 \
             AND kind IN ('new', 'active') AND dim = '' AND value = '' AND day BETWEEN $2 AND $3";
        const VERSIONS_PG: &str = "SELECT kind, day, size, version FROM set_sizes WHERE app_id = $1 \
             AND kind IN ('new', 'active') AND dim = '' AND value = '' AND day BETWEEN $2 AND $3 \
             FOR SHARE";
        const EXISTING: &str = "SELECT kind, cohort_day, day_offset FROM retention_cells \
             WHERE app_id = $1 AND cohort_day >= $2";
        const INSERT: &str = "INSERT INTO retention_cells \
             (app_id, kind, cohort_day, day_offset, at_day, count) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (app_id, kind, cohort_day, day_offset) DO NOTHING";
        let first = today - CELL_COHORT_DAYS;
        type Versions = HashMap<(String, i64), (i64, i64)>;
        let read_versions = |rows: Vec<(String, i64, i64, i64)>| -> Versions {
            rows.into_iter()
                .map(|(kind, d, size, version)| ((kind, d), (size, version)))
                .collect()
        };
        let rows: Vec<(String, i64, i64, i64)> = on_backend!(self, pool => sqlx::query_as(VERSIONS)
            .bind(app_id)
            .bind(i64::from(first))
            .bind(i64::from(today - 1))
            .fetch_all(pool)
            .await
            .map_err(backend_error)?);
        let versions = read_versions(rows);
        let existing: Vec<(String, i64, i64)> = on_backend!(self, pool => sqlx::query_as(EXISTING)
            .bind(app_id)
            .bind(i64::from(first))
            .fetch_all(pool)
            .await
            .map_err(backend_error)?);
        let existing: std::collections::HashSet<(String, i64, i64)> =
            existing.into_iter().collect();
        let has = |kind: &str, d: Day| {
            versions
                .get(&(kind.to_owned(), i64::from(d)))
                .is_some_and(|(size, _)| *size > 0)
        };
        let mut missing: Vec<(&'static str, Day, Day)> = Vec::new();
        for kind in [SET_NEW, SET_ACTIVE] {
            for cohort in first..today {
                if !has(kind, cohort) {
                    continue;
                }
                for n in 0..=CELL_MAX_OFFSET {
                    let at = cohort + n;
                    if at < today
                        && has(SET_ACTIVE, at)
                        && !existing.contains(&(kind.to_owned(), i64::from(cohort), i64::from(n)))
                    {
                        missing.push((kind, cohort, n));
                    }
                }
            }
        }
        if missing.is_empty() {
            return Ok(0);
        }
        let lo = missing.iter().map(|m| m.1).min().unwrap_or(first);
        let hi = missing.iter().map(|m| m.1 + m.2).max().unwrap_or(today - 1);
        let active = self.sets(app_id, SET_ACTIVE, "", Some(""), lo, hi).await?;
        let new = if missing.iter().any(|m| m.0 == SET_NEW) {
            self.sets(app_id, SET_NEW, "", Some(""), lo, hi).await?
        } else {
            BTreeMap::new()
        };
        let empty = RoaringBitmap::new();
        fn total<'a>(
            sets: &'a BTreeMap<(Day, String), RoaringBitmap>,
            d: Day,
            empty: &'a RoaringBitmap,
        ) -> &'a RoaringBitmap {
            sets.get(&(d, String::new())).unwrap_or(empty)
        }
        let mut cells = Vec::with_capacity(missing.len());
        for (kind, cohort, n) in missing {
            let members = if kind == SET_NEW {
                total(&new, cohort, &empty)
            } else {
                total(&active, cohort, &empty)
            };
            let count = members.intersection_len(total(&active, cohort + n, &empty));
            cells.push((kind, cohort, n, count));
        }
        let check_sql = match self.backend {
            Backend::Sqlite(_) => VERSIONS,
            Backend::Postgres(_) => VERSIONS_PG,
        };
        let mut written = 0_u64;
        on_backend!(self, pool => {
            let mut tx = pool.begin().await.map_err(backend_error)?;
            let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(check_sql)
                .bind(app_id)
                .bind(i64::from(first))
                .bind(i64::from(today - 1))
                .fetch_all(&mut *tx)
                .await
                .map_err(backend_error)?;
            let now = read_versions(rows);
            let unchanged = |kind: &str, d: Day| {
                let key = (kind.to_owned(), i64::from(d));
                versions.get(&key) == now.get(&key)
            };
            for (kind, cohort, n, count) in cells {
                if !unchanged(kind, cohort) || !unchanged(SET_ACTIVE, cohort + n) {
                    continue;
                }
                sqlx::query(INSERT)
                    .bind(app_id)
                    .bind(kind)
                    .bind(i64::from(cohort))
                    .bind(i64::from(n))
                    .bind(i64::from(cohort + n))
                    .bind(i64::try_from(count).unwrap_or(i64::MAX))
                    .execute(&mut *tx)
                    .await
                    .map_err(backend_error)?;
                written += 1;
            }
            tx.commit().await.map_err(backend_error)?;
        });
        Ok(written)
    }
}
