//! The aggregator's tables on both backends: [`AggregateStore`] for [`SqlStore`].
//!
//! [`AggregateStore::commit`] writes a batch's [`Changes`] and the consumer position in
//! one transaction, so the aggregates and the position can never disagree. Counter rows
//! are upserts that *add* the batch's increments; set rows are appended deltas (or a
//! compaction that replaces a set's rows by one). The SQL is the same text on SQLite and
//! PostgreSQL; every integer column is bound as `i64`.

use std::collections::HashSet;

use async_trait::async_trait;
use roaring::RoaringBitmap;
use sundial_analytics::StoreError;
use sundial_analytics::aggregate::{
    AggregateStore, Changes, DeviceRow, SetChange, SetKey, StoredSet,
};

use crate::{Backend, SqlStore, backend_error};

fn encode(bitmap: &RoaringBitmap) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(bitmap.serialized_size());
    // Writing into a Vec cannot fail.
    let _ = bitmap.serialize_into(&mut bytes);
    bytes
}

fn decode(bytes: &[u8]) -> Result<RoaringBitmap, StoreError> {
    RoaringBitmap::deserialize_from(bytes)
        .map_err(|e| StoreError::Backend(format!("corrupt unique-device set: {e}").into()))
}

/// Folds a set's rows (in `seq` order) into its members.
pub(crate) fn fold_set_rows(
    rows: impl IntoIterator<Item = (Vec<u8>, Option<Vec<u8>>)>,
) -> Result<RoaringBitmap, StoreError> {
    let mut members = RoaringBitmap::new();
    for (added, removed) in rows {
        if members.is_empty() {
            // The first (often the only) row: decode in place, no union.
            members = decode(&added)?;
        } else {
            members |= decode(&added)?;
        }
        if let Some(removed) = removed {
            members -= decode(&removed)?;
        }
    }
    Ok(members)
}

#[async_trait]
impl AggregateStore for SqlStore {
    async fn consumer_position(&self, consumer: &str) -> Result<u64, StoreError> {
        const SQL: &str = "SELECT next_position FROM consumer_positions WHERE consumer = $1";
        let row: Option<(i64,)> = on_backend!(self, pool => sqlx::query_as(SQL)
            .bind(consumer)
            .fetch_optional(pool)
            .await
            .map_err(backend_error)?);
        Ok(row.map_or(0, |(p,)| u64::try_from(p).unwrap_or(0)))
    }

    async fn app_timezone(&self, app_id: i64) -> Result<Option<String>, StoreError> {
        const SQL: &str = "SELECT timezone FROM apps WHERE id = $1";
        let row: Option<(String,)> = on_backend!(self, pool => sqlx::query_as(SQL)
            .bind(app_id)
            .fetch_optional(pool)
            .await
            .map_err(backend_error)?);
        Ok(row.map(|(tz,)| tz))
    }

    async fn load_devices(&self, app_id: i64) -> Result<Vec<DeviceRow>, StoreError> {
        const SQL: &str = "SELECT device_no, device_id, first_ts_ms, first_day \
                           FROM devices WHERE app_id = $1";
        let rows: Vec<(i64, String, i64, i64)> = on_backend!(self, pool => sqlx::query_as(SQL)
            .bind(app_id)
            .fetch_all(pool)
            .await
            .map_err(backend_error)?);
        Ok(rows
            .into_iter()
            .map(|(no, device_id, first_ts_ms, first_day)| DeviceRow {
                app_id,
                device_no: u32::try_from(no).unwrap_or(u32::MAX),
                device_id,
                first_ts_ms,
                first_day: i32::try_from(first_day).unwrap_or(i32::MAX),
            })
            .collect())
    }

    async fn load_users(&self, app_id: i64) -> Result<Vec<(String, i64)>, StoreError> {
        const SQL: &str = "SELECT user_id, first_ts_ms FROM app_users WHERE app_id = $1";
        on_backend!(self, pool => sqlx::query_as(SQL)
            .bind(app_id)
            .fetch_all(pool)
            .await
            .map_err(backend_error))
    }

    async fn load_set(&self, key: &SetKey) -> Result<StoredSet, StoreError> {
        const SQL: &str = "SELECT seq, added, removed FROM day_sets \
                           WHERE app_id = $1 AND day = $2 AND kind = $3 AND dim = $4 \
                           AND value = $5 ORDER BY seq";
        let rows: Vec<(i64, Vec<u8>, Option<Vec<u8>>)> = on_backend!(self, pool => sqlx::query_as(SQL)
                .bind(key.app_id)
                .bind(i64::from(key.day))
                .bind(key.kind)
                .bind(key.dim)
                .bind(&key.value)
                .fetch_all(pool)
                .await
                .map_err(backend_error)?);
        let next_seq = rows
            .last()
            .map_or(0, |(seq, _, _)| i32::try_from(*seq + 1).unwrap_or(i32::MAX));
        let members = fold_set_rows(rows.into_iter().map(|(_, a, r)| (a, r)))?;
        Ok(StoredSet { members, next_seq })
    }

    async fn known_event_ids(
        &self,
        app_id: i64,
        ids: &[String],
    ) -> Result<HashSet<String>, StoreError> {
        const SQL: &str = "SELECT 1 FROM event_ids WHERE app_id = $1 AND event_id = $2";
        let mut known = HashSet::new();
        on_backend!(self, pool => {
            let mut conn = pool.acquire().await.map_err(backend_error)?;
            for id in ids {
                let hit: Option<(i32,)> = sqlx::query_as(SQL)
                    .bind(app_id)
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(backend_error)?;
                if hit.is_some() {
                    known.insert(id.clone());
                }
            }
        });
        Ok(known)
    }

    async fn data_generation(&self) -> Result<i64, StoreError> {
        const SQL: &str = "SELECT generation FROM data_generation WHERE id = 1";
        let (g,): (i64,) = on_backend!(self, pool => sqlx::query_as(SQL)
            .fetch_one(pool)
            .await
            .map_err(backend_error)?);
        Ok(g)
    }

    async fn commit(&self, changes: &Changes, consumer: &str, next: u64) -> Result<(), StoreError> {
        const DEVICE: &str = "INSERT INTO devices (app_id, device_no, device_id, first_ts_ms, first_day) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (app_id, device_no) DO UPDATE SET \
             first_ts_ms = excluded.first_ts_ms, first_day = excluded.first_day";
        const USER: &str = "INSERT INTO app_users (app_id, user_id, first_ts_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (app_id, user_id) DO UPDATE SET first_ts_ms = excluded.first_ts_ms \
             WHERE excluded.first_ts_ms < app_users.first_ts_ms";
        const SET_SIZE: &str = "INSERT INTO set_sizes (app_id, day, kind, dim, value, size) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (app_id, kind, dim, day, value) \
             DO UPDATE SET size = excluded.size, version = set_sizes.version + 1";
        const STALE_COHORT: &str = "DELETE FROM retention_cells WHERE app_id = $1 \
             AND kind IN ('new', 'active') AND cohort_day = $2";
        const STALE_AT: &str = "DELETE FROM retention_cells WHERE app_id = $1 AND at_day = $2";
        const RAW: &str =
            "INSERT INTO raw_events (app_id, day, events, payload) VALUES ($1, $2, $3, $4)";
        const EVENT_ID: &str = "INSERT INTO event_ids (app_id, event_id, ts_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (app_id, event_id) DO NOTHING";
        const SET_DELTA: &str = "INSERT INTO day_sets (app_id, day, kind, dim, value, seq, added, removed) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
        const SET_CLEAR: &str = "DELETE FROM day_sets WHERE app_id = $1 AND day = $2 AND kind = $3 \
             AND dim = $4 AND value = $5";
        const DAY: &str = "INSERT INTO day_counters (app_id, day, dim, value, launches, usage_secs, usage_reports, new_registered) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (app_id, day, dim, value) DO UPDATE SET \
             launches = day_counters.launches + excluded.launches, \
             usage_secs = day_counters.usage_secs + excluded.usage_secs, \
             usage_reports = day_counters.usage_reports + excluded.usage_reports, \
             new_registered = day_counters.new_registered + excluded.new_registered";
        const HOUR: &str = "INSERT INTO hour_counters (app_id, day, hour, launches, new_users) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (app_id, day, hour) DO UPDATE SET \
             launches = hour_counters.launches + excluded.launches, \
             new_users = hour_counters.new_users + excluded.new_users";
        const EVENT: &str = "INSERT INTO event_counters (app_id, day, name, seg_key, seg_value, count, sum, dur_secs) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (app_id, day, name, seg_key, seg_value) DO UPDATE SET \
             count = event_counters.count + excluded.count, \
             sum = event_counters.sum + excluded.sum, \
             dur_secs = event_counters.dur_secs + excluded.dur_secs";
        const POSITION: &str = "INSERT INTO consumer_positions (consumer, next_position) VALUES ($1, $2) \
             ON CONFLICT (consumer) DO UPDATE SET next_position = excluded.next_position";

        let next = i64::try_from(next)
            .map_err(|_| StoreError::Backend(format!("bus position {next} out of range").into()))?;
        on_backend!(self, pool => {
            let mut tx = pool.begin().await.map_err(backend_error)?;
            for d in &changes.devices {
                sqlx::query(DEVICE)
                    .bind(d.app_id)
                    .bind(i64::from(d.device_no))
                    .bind(&d.device_id)
                    .bind(d.first_ts_ms)
                    .bind(i64::from(d.first_day))
                    .execute(&mut *tx)
                    .await
                    .map_err(backend_error)?;
            }
            for (app_id, user, ts) in &changes.users {
                sqlx::query(USER).bind(app_id).bind(user).bind(ts)
                    .execute(&mut *tx).await.map_err(backend_error)?;
            }
            for (app_id, id, ts) in &changes.event_ids {
                sqlx::query(EVENT_ID).bind(app_id).bind(id).bind(ts)
                    .execute(&mut *tx).await.map_err(backend_error)?;
            }
            for change in &changes.sets {
                match change {
                    SetChange::Delta { key, seq, added, removed } => {
                        let removed = (!removed.is_empty()).then(|| encode(removed));
                        sqlx::query(SET_DELTA)
                            .bind(key.app_id)
                            .bind(i64::from(key.day))
                            .bind(key.kind)
                            .bind(key.dim)
                            .bind(&key.value)
                            .bind(i64::from(*seq))
                            .bind(encode(added))
                            .bind(removed)
                            .execute(&mut *tx)
                            .await
                            .map_err(backend_error)?;
                    }
                    SetChange::Compact { key, members } => {
                        sqlx::query(SET_CLEAR)
                            .bind(key.app_id)
                            .bind(i64::from(key.day))
                            .bind(key.kind)
                            .bind(key.dim)
                            .bind(&key.value)
                            .execute(&mut *tx)
                            .await
                            .map_err(backend_error)?;
                        sqlx::query(SET_DELTA)
                            .bind(key.app_id)
                            .bind(i64::from(key.day))
                            .bind(key.kind)
                            .bind(key.dim)
                            .bind(&key.value)
                            .bind(0_i64)
                            .bind(encode(members))
                            .bind(None::<Vec<u8>>)
                            .execute(&mut *tx)
                            .await
                            .map_err(backend_error)?;
                    }
                }
            }
            for (key, size) in &changes.set_sizes {
                sqlx::query(SET_SIZE)
                    .bind(key.app_id)
                    .bind(i64::from(key.day))
                    .bind(key.kind)
                    .bind(key.dim)
                    .bind(&key.value)
                    .bind(i64::try_from(*size).unwrap_or(i64::MAX))
                    .execute(&mut *tx)
                    .await
                    .map_err(backend_error)?;
            }
            // Retention cells that read a changed day are no longer right.
            let stale: std::collections::BTreeSet<(i64, i64)> = changes
                .set_sizes
                .iter()
                .filter(|(key, _)| key.dim.is_empty())
                .map(|(key, _)| (key.app_id, i64::from(key.day)))
                .collect();
            for (app_id, day) in stale {
                for sql in [STALE_COHORT, STALE_AT] {
                    sqlx::query(sql)
                        .bind(app_id)
                        .bind(day)
                        .execute(&mut *tx)
                        .await
                        .map_err(backend_error)?;
                }
            }
            for raw in &changes.raw {
                sqlx::query(RAW)
                    .bind(raw.app_id)
                    .bind(i64::from(raw.day))
                    .bind(i64::try_from(raw.events).unwrap_or(i64::MAX))
                    .bind(&raw.payload)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend_error)?;
            }
            for ((app_id, day, dim, value), c) in &changes.day_counters {
                sqlx::query(DAY)
                    .bind(app_id)
                    .bind(i64::from(*day))
                    .bind(*dim)
                    .bind(value)
                    .bind(c.launches)
                    .bind(c.usage_secs)
                    .bind(c.usage_reports)
                    .bind(c.new_registered)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend_error)?;
            }
            for ((app_id, day, hour), c) in &changes.hour_counters {
                sqlx::query(HOUR)
                    .bind(app_id)
                    .bind(i64::from(*day))
                    .bind(i64::from(*hour))
                    .bind(c.launches)
                    .bind(c.new_users)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend_error)?;
            }
            for ((app_id, day, name, seg_key, seg_value), c) in &changes.event_counters {
                sqlx::query(EVENT)
                    .bind(app_id)
                    .bind(i64::from(*day))
                    .bind(name)
                    .bind(seg_key)
                    .bind(seg_value)
                    .bind(c.count)
                    .bind(c.sum)
                    .bind(c.dur_secs)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend_error)?;
            }
            sqlx::query(POSITION)
                .bind(consumer)
                .bind(next)
                .execute(&mut *tx)
                .await
                .map_err(backend_error)?;
            tx.commit().await.map_err(backend_error)?;
        });
        Ok(())
    }
}
