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

/// Inserts `rows` in multi-row statements of the sizes [`chunk_sizes`] gives:
/// `insert_rows!(tx, numbered, numbered, (head, tail), columns, rows, |query, row| query.bind(..)…)`.
macro_rules! insert_rows {
    ($tx:ident, $numbered:expr, $sql:expr, $cols:expr, $rows:expr, |$q:ident, $row:ident| $bind:expr) => {{
        let rows = $rows;
        let mut at = 0;
        for size in chunk_sizes(rows.len()) {
            // Audited: the text is constants and numbered placeholders only.
            let sql = sqlx::AssertSqlSafe(values_sql($sql.0, $sql.1, $cols, size, $numbered, 1));
            let mut $q = sqlx::query(sql);
            for $row in &rows[at..at + size] {
                $q = $bind;
            }
            at += size;
            $q.execute(&mut *$tx).await.map_err(backend_error)?;
        }
    }};
}

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
        const HEAD: &str = "SELECT event_id FROM event_ids WHERE app_id = ";
        let numbered = matches!(self.backend, Backend::Postgres(_));
        let mut known = HashSet::new();
        on_backend!(self, pool => {
            let mut conn = pool.acquire().await.map_err(backend_error)?;
            let mut at = 0;
            for size in chunk_sizes(ids.len()) {
                // `… app_id = $1 AND event_id IN ($2, …)`: the first placeholder is
                // the app, the rest one per id.
                let list = values_sql("", "", size, 1, numbered, 2);
                let first = if numbered { "$1" } else { "?" };
                // Audited: constants and placeholders only.
                let sql = sqlx::AssertSqlSafe(format!("{HEAD}{first} AND event_id IN {list}"));
                let mut query = sqlx::query_as::<_, (String,)>(sql).bind(app_id);
                for id in &ids[at..at + size] {
                    query = query.bind(id);
                }
                at += size;
                for (id,) in query.fetch_all(&mut *conn).await.map_err(backend_error)? {
                    known.insert(id);
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
        // Rows go in multi-row statements (see `chunk_sizes`); each `(head, tail)` pair
        // surrounds the `VALUES` rows.
        const DEVICE: (&str, &str) = (
            "INSERT INTO devices (app_id, device_no, device_id, first_ts_ms, first_day) VALUES ",
            " ON CONFLICT (app_id, device_no) DO UPDATE SET \
             first_ts_ms = excluded.first_ts_ms, first_day = excluded.first_day",
        );
        const USER: (&str, &str) = (
            "INSERT INTO app_users (app_id, user_id, first_ts_ms) VALUES ",
            " ON CONFLICT (app_id, user_id) DO UPDATE SET first_ts_ms = excluded.first_ts_ms \
             WHERE excluded.first_ts_ms < app_users.first_ts_ms",
        );
        const SET_SIZE: (&str, &str) = (
            "INSERT INTO set_sizes (app_id, day, kind, dim, value, size) VALUES ",
            " ON CONFLICT (app_id, kind, dim, day, value) \
             DO UPDATE SET size = excluded.size, version = set_sizes.version + 1",
        );
        const STALE_COHORT: &str = "DELETE FROM retention_cells WHERE app_id = $1 \
             AND kind IN ('new', 'active') AND cohort_day = $2";
        const STALE_AT: &str = "DELETE FROM retention_cells WHERE app_id = $1 AND at_day = $2";
        const RAW: &str =
            "INSERT INTO raw_events (app_id, day, events, payload) VALUES ($1, $2, $3, $4)";
        const EVENT_ID: (&str, &str) = (
            "INSERT INTO event_ids (app_id, event_id, ts_ms) VALUES ",
            " ON CONFLICT (app_id, event_id) DO NOTHING",
        );
        const SET_DELTA: (&str, &str) = (
            "INSERT INTO day_sets (app_id, day, kind, dim, value, seq, added, removed) VALUES ",
            "",
        );
        const SET_CLEAR: &str = "DELETE FROM day_sets WHERE app_id = $1 AND day = $2 AND kind = $3 \
             AND dim = $4 AND value = $5";
        const DAY: (&str, &str) = (
            "INSERT INTO day_counters (app_id, day, dim, value, launches, usage_secs, usage_reports, new_registered) VALUES ",
            " ON CONFLICT (app_id, day, dim, value) DO UPDATE SET \
             launches = day_counters.launches + excluded.launches, \
             usage_secs = day_counters.usage_secs + excluded.usage_secs, \
             usage_reports = day_counters.usage_reports + excluded.usage_reports, \
             new_registered = day_counters.new_registered + excluded.new_registered",
        );
        const HOUR: (&str, &str) = (
            "INSERT INTO hour_counters (app_id, day, hour, launches, new_users) VALUES ",
            " ON CONFLICT (app_id, day, hour) DO UPDATE SET \
             launches = hour_counters.launches + excluded.launches, \
             new_users = hour_counters.new_users + excluded.new_users",
        );
        const EVENT: (&str, &str) = (
            "INSERT INTO event_counters (app_id, day, name, seg_key, seg_value, count, sum, dur_secs) VALUES ",
            " ON CONFLICT (app_id, day, name, seg_key, seg_value) DO UPDATE SET \
             count = event_counters.count + excluded.count, \
             sum = event_counters.sum + excluded.sum, \
             dur_secs = event_counters.dur_secs + excluded.dur_secs",
        );
        const POSITION: &str = "INSERT INTO consumer_positions (consumer, next_position) VALUES ($1, $2) \
             ON CONFLICT (consumer) DO UPDATE SET next_position = excluded.next_position";

        let next = i64::try_from(next)
            .map_err(|_| StoreError::Backend(format!("bus position {next} out of range").into()))?;
        // One row per key in a statement: PostgreSQL refuses to update a row twice in
        // one `INSERT … ON CONFLICT DO UPDATE`. A user can be listed twice (first seen,
        // then seen earlier in the same batch): keep the earliest instant.
        let users = earliest_per_user(&changes.users);
        // Compactions first: delete the set's rows, then insert its one row below.
        let mut set_rows: Vec<(&SetKey, i64, Vec<u8>, Option<Vec<u8>>)> =
            Vec::with_capacity(changes.sets.len());
        let mut compacted: Vec<&SetKey> = Vec::new();
        for change in &changes.sets {
            match change {
                SetChange::Delta {
                    key,
                    seq,
                    added,
                    removed,
                } => {
                    let removed = (!removed.is_empty()).then(|| encode(removed));
                    set_rows.push((key, i64::from(*seq), encode(added), removed));
                }
                SetChange::Compact { key, members } => {
                    compacted.push(key);
                    set_rows.push((key, 0, encode(members), None));
                }
            }
        }
        // Retention cells that read a changed day are no longer right.
        let stale: std::collections::BTreeSet<(i64, i64)> = changes
            .set_sizes
            .iter()
            .filter(|(key, _)| key.dim.is_empty())
            .map(|(key, _)| (key.app_id, i64::from(key.day)))
            .collect();
        let day_counters: Vec<_> = changes.day_counters.iter().collect();
        let hour_counters: Vec<_> = changes.hour_counters.iter().collect();
        let event_counters: Vec<_> = changes.event_counters.iter().collect();

        // `$n` placeholders on PostgreSQL; `?` on SQLite, where sqlx looks each numbered
        // one up by name (a scan of every name: quadratic in a statement's parameters).
        let numbered = matches!(self.backend, Backend::Postgres(_));
        on_writer!(self, pool => {
            let mut tx = pool.begin().await.map_err(backend_error)?;
            insert_rows!(tx, numbered, DEVICE, 5, &changes.devices, |q, d| q
                .bind(d.app_id)
                .bind(i64::from(d.device_no))
                .bind(&d.device_id)
                .bind(d.first_ts_ms)
                .bind(i64::from(d.first_day)));
            insert_rows!(tx, numbered, USER, 3, &users, |q, u| q.bind(u.0).bind(u.1).bind(u.2));
            insert_rows!(tx, numbered, EVENT_ID, 3, &changes.event_ids, |q, e| q
                .bind(e.0)
                .bind(&e.1)
                .bind(e.2));
            for key in &compacted {
                sqlx::query(SET_CLEAR)
                    .bind(key.app_id)
                    .bind(i64::from(key.day))
                    .bind(key.kind)
                    .bind(key.dim)
                    .bind(&key.value)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend_error)?;
            }
            insert_rows!(tx, numbered, SET_DELTA, 8, &set_rows, |q, r| q
                .bind(r.0.app_id)
                .bind(i64::from(r.0.day))
                .bind(r.0.kind)
                .bind(r.0.dim)
                .bind(&r.0.value)
                .bind(r.1)
                .bind(&r.2)
                .bind(&r.3));
            insert_rows!(tx, numbered, SET_SIZE, 6, &changes.set_sizes, |q, s| q
                .bind(s.0.app_id)
                .bind(i64::from(s.0.day))
                .bind(s.0.kind)
                .bind(s.0.dim)
                .bind(&s.0.value)
                .bind(i64::try_from(s.1).unwrap_or(i64::MAX)));
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
            insert_rows!(tx, numbered, DAY, 8, &day_counters, |q, e| {
                let ((app_id, day, dim, value), c) = *e;
                q.bind(*app_id)
                    .bind(i64::from(*day))
                    .bind(*dim)
                    .bind(value)
                    .bind(c.launches)
                    .bind(c.usage_secs)
                    .bind(c.usage_reports)
                    .bind(c.new_registered)
            });
            insert_rows!(tx, numbered, HOUR, 5, &hour_counters, |q, e| {
                let ((app_id, day, hour), c) = *e;
                q.bind(*app_id)
                    .bind(i64::from(*day))
                    .bind(i64::from(*hour))
                    .bind(c.launches)
                    .bind(c.new_users)
            });
            insert_rows!(tx, numbered, EVENT, 8, &event_counters, |q, e| {
                let ((app_id, day, name, seg_key, seg_value), c) = *e;
                q.bind(*app_id)
                    .bind(i64::from(*day))
                    .bind(name)
                    .bind(seg_key)
                    .bind(seg_value)
                    .bind(c.count)
                    .bind(c.sum)
                    .bind(c.dur_secs)
            });
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

/// `(app, user, ts)` with one entry per `(app, user)`: the earliest `ts`, in the order
/// of first appearance.
fn earliest_per_user(users: &[(i64, String, i64)]) -> Vec<(i64, &str, i64)> {
    let mut at: std::collections::HashMap<(i64, &str), usize> =
        std::collections::HashMap::with_capacity(users.len());
    let mut out: Vec<(i64, &str, i64)> = Vec::with_capacity(users.len());
    for (app_id, user, ts) in users {
        match at.get(&(*app_id, user.as_str())) {
            Some(&i) => out[i].2 = out[i].2.min(*ts),
            None => {
                at.insert((*app_id, user.as_str()), out.len());
                out.push((*app_id, user, *ts));
            }
        }
    }
    out
}

/// Most rows in one multi-row statement: 256 rows of at most 8 columns stay far below
/// both backends' limits on bound parameters (SQLite 32,766, PostgreSQL 65,535).
const MAX_ROWS_PER_STATEMENT: usize = 256;

/// How `n` rows are split into statements: full ones of [`MAX_ROWS_PER_STATEMENT`]
/// rows, then the rest by descending powers of two. So at most nine statement texts
/// per table ever exist, and each stays in the connection's prepared-statement cache.
pub(crate) fn chunk_sizes(mut n: usize) -> impl Iterator<Item = usize> {
    let mut size = MAX_ROWS_PER_STATEMENT;
    std::iter::from_fn(move || {
        while size > 0 {
            if n >= size {
                n -= size;
                return Some(size);
            }
            size /= 2;
        }
        None
    })
}

/// `head` + `rows` groups of `cols` placeholders + `tail`: `($1, $2), ($3, $4)` when
/// `numbered` (from `$first`), else `(?, ?), (?, ?)`.
pub(crate) fn values_sql(
    head: &str,
    tail: &str,
    cols: usize,
    rows: usize,
    numbered: bool,
    first: usize,
) -> String {
    use std::fmt::Write as _;
    let mut sql = String::with_capacity(head.len() + tail.len() + rows * cols * 7);
    sql.push_str(head);
    let mut n = first.saturating_sub(1);
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for col in 0..cols {
            n += 1;
            if col > 0 {
                sql.push_str(", ");
            }
            if numbered {
                // Writing to a String cannot fail.
                let _ = write!(sql, "${n}");
            } else {
                sql.push('?');
            }
        }
        sql.push(')');
    }
    sql.push_str(tail);
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_split_into_few_statement_sizes() {
        assert_eq!(chunk_sizes(0).count(), 0);
        assert_eq!(chunk_sizes(1).collect::<Vec<_>>(), vec![1]);
        assert_eq!(
            chunk_sizes(700).collect::<Vec<_>>(),
            vec![256, 256, 128, 32, 16, 8, 4]
        );
        for n in 0..2_000 {
            assert_eq!(chunk_sizes(n).sum::<usize>(), n);
            assert!(chunk_sizes(n).all(|s| s.is_power_of_two() && s <= MAX_ROWS_PER_STATEMENT));
        }
        assert_eq!(
            values_sql(
                "INSERT INTO t (a, b) VALUES ",
                " ON CONFLICT DO NOTHING",
                2,
                2,
                true,
                1
            ),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) ON CONFLICT DO NOTHING"
        );
        assert_eq!(
            values_sql("INSERT INTO t (a) VALUES ", "", 1, 3, false, 1),
            "INSERT INTO t (a) VALUES (?), (?), (?)"
        );
        assert_eq!(values_sql("IN ", "", 3, 1, true, 2), "IN ($2, $3, $4)");
    }

    #[test]
    fn users_keep_their_earliest_instant_once() {
        let users = vec![
            (1, "u".to_owned(), 50),
            (2, "u".to_owned(), 70),
            (1, "v".to_owned(), 10),
            (1, "u".to_owned(), 40),
        ];
        assert_eq!(
            earliest_per_user(&users),
            vec![(1, "u", 40), (2, "u", 70), (1, "v", 10)]
        );
    }
}
