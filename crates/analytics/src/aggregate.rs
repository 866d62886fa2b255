//! The aggregator: turns bus messages into the store's aggregates, exactly once.
//!
//! [`Aggregator::apply`] takes a batch of [`BusMessage`]s, works out every change in
//! memory ([`Changes`]) and hands them to [`AggregateStore::commit`] together with the
//! consumer position that follows the batch, which the store writes in **one
//! transaction**. A crash before that commit replays the batch; after it, the position
//! has moved on. Either way each message counts once.
//!
//! What is kept (see `docs/storage.md` for the tables):
//! - per app, a dense device number (`u32`, from 0) for each `device_id`, with the
//!   device's first-seen instant and day; a late event earlier than that moves both back
//!   (and the device from `new` of its old day to `new` of the true one);
//! - per day, sets of device numbers (roaring bitmaps): `active` (any event), `new`
//!   (first-seen on that day), active per breakdown dimension value and per hour of day;
//!   each batch writes only the members it added, as a delta row with a sequence number,
//!   and a key with many deltas is rewritten whole (compacted) in the same transaction;
//! - counters per day × dimension value (launches, usage seconds, usage reports), per
//!   day × hour (launches, new users), per day × custom event name × segment;
//! - the distinct `user_id`s of each app (registered users);
//! - the `event_id`s seen, so that an SDK's retry is accepted but counted once.
//!
//! How a batch is counted, cheaply: messages are read in place ([`ParsedRecord`]: the
//! binary record form is walked without copying its events), devices are looked up in
//! a compact table ([`devices`]), and events of the same app, day, hour and breakdown
//! values form one *group* whose devices and counters are summed first and only then
//! turned into set deltas and counter rows (seven set keys and six counters per group,
//! not per event). Only the `new` sets, where a device can leave one day and join
//! another within the batch, are updated event by event, in order.
//!
//! A *day* is the calendar day of the event's client timestamp in the app's IANA time
//! zone, as days since 1970-01-01 ([`Day`]); hours likewise. Days of 23 or 25 hours come
//! out right because the offset in force at each instant is applied.
//!
//! Invariants: the in-memory caches (devices, sets, users) always equal what the store
//! holds after the last successful commit. If a commit fails, [`Aggregator::reset`]
//! must be called (the caller replays from the store's position), because the caches
//! already contain the failed batch.

mod devices;

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use roaring::RoaringBitmap;

use crate::bus::BusMessage;
use crate::event::Event;
use crate::record::{EventView, EventsEncoder, KindView, ParsedRecord, RecordError};
use crate::store::StoreError;
use devices::DeviceTable;

/// Maps keyed by data from the bus: a fast hash (foldhash) instead of SipHash. Their
/// keys come from authenticated apps, and the aggregator's work per batch is bounded
/// by the batch, so hash flooding is not a concern.
type FastMap<K, V> = hashbrown::HashMap<K, V>;
type FastSet<K> = hashbrown::HashSet<K>;

/// A calendar day in an app's zone: days since 1970-01-01.
pub type Day = i32;

/// The dimensions that get per-value counters and active sets.
pub const BREAKDOWN_DIMENSIONS: [&str; 5] = [
    "platform",
    "app_version",
    "channel",
    "os_version",
    "country",
];

/// A set key's kind.
pub const SET_ACTIVE: &str = "active";
/// Devices whose first-seen day is the key's day.
pub const SET_NEW: &str = "new";

/// The first-seen instant of a device or user that is known (it keeps its number) but
/// has no event yet: `sundial recompute` seeds its rebuild with these, and the first
/// event replayed makes the device (user) new on its day, without moving it from an
/// earlier one.
pub const UNSEEN_TS: i64 = i64::MAX;

/// After this many delta rows a set is rewritten as one row.
pub const COMPACT_AFTER_DELTAS: i32 = 64;

/// Most set keys kept in memory before the cache is dropped and rebuilt on demand.
const MAX_CACHED_SETS: usize = 50_000;

/// Most bytes of set members (as serialized, about what they take in memory) kept in
/// memory before the cache is dropped and rebuilt on demand: a day's set of 1 M
/// devices is 128 KiB, so late events touching many days of a large app must not pile
/// them up without bound.
const MAX_CACHED_SET_BYTES: usize = 64 << 20;

/// Identifies one unique-device set.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SetKey {
    /// The app.
    pub app_id: i64,
    /// The day.
    pub day: Day,
    /// [`SET_ACTIVE`] or [`SET_NEW`].
    pub kind: &'static str,
    /// Empty for the total; a breakdown dimension, or `hour`.
    pub dim: &'static str,
    /// The dimension's value (empty when the device did not report it; `0`–`23` for
    /// hours).
    pub value: String,
}

/// A device as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    /// Its app.
    pub app_id: i64,
    /// Dense number within the app.
    pub device_no: u32,
    /// The SDK's device id.
    pub device_id: String,
    /// Earliest event timestamp seen (epoch ms).
    pub first_ts_ms: i64,
    /// That instant's day in the app's zone.
    pub first_day: Day,
}

/// A stored set: its members and the next delta sequence number.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredSet {
    /// Members (base row and deltas applied in order).
    pub members: RoaringBitmap,
    /// The sequence number the next delta row gets.
    pub next_seq: i32,
}

/// A change to one set.
#[derive(Debug, Clone, PartialEq)]
pub enum SetChange {
    /// Append a delta row.
    Delta {
        /// The set.
        key: SetKey,
        /// Its sequence number.
        seq: i32,
        /// Members added.
        added: RoaringBitmap,
        /// Members removed (a device whose first day moved back leaves `new` of the old
        /// day).
        removed: RoaringBitmap,
    },
    /// Replace every row of the set by one row (sequence 0) holding `members`.
    Compact {
        /// The set.
        key: SetKey,
        /// Its members.
        members: RoaringBitmap,
    },
}

/// Counter increments for one day × dimension value.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DayCounts {
    /// `open_app` events.
    pub launches: i64,
    /// Sum of `usage_time` durations.
    pub usage_secs: f64,
    /// `usage_time` events.
    pub usage_reports: i64,
    /// User ids whose earliest event is on this day (totals only; negative when users
    /// moved to an earlier day).
    pub new_registered: i64,
}

/// Counter increments for one day × hour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HourCounts {
    /// `open_app` events in that hour.
    pub launches: i64,
    /// Devices first seen in that hour (negative when devices moved away).
    pub new_users: i64,
}

/// Counter increments for one custom event name (and segment) on one day.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EventCounts {
    /// Sum of `count`.
    pub count: i64,
    /// Sum of `sum`.
    pub sum: f64,
    /// Sum of `dur`.
    pub dur_secs: f64,
}

/// `(app, day, dimension, value)`; dimension and value empty for the total.
pub type DayCounterKey = (i64, Day, &'static str, String);
/// `(app, day, hour)`.
pub type HourCounterKey = (i64, Day, u8);
/// `(app, day, name, segment key, segment value)`; the segment empty for the total.
pub type EventCounterKey = (i64, Day, String, String, String);

/// Everything one batch changes; applied by the store in one transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    /// Devices to insert or whose first-seen moved (upsert by app and number).
    pub devices: Vec<DeviceRow>,
    /// Set rows to write.
    pub sets: Vec<SetChange>,
    /// Day counter increments.
    pub day_counters: BTreeMap<DayCounterKey, DayCounts>,
    /// Hour counter increments.
    pub hour_counters: BTreeMap<HourCounterKey, HourCounts>,
    /// Custom event counter increments.
    pub event_counters: BTreeMap<EventCounterKey, EventCounts>,
    /// `(app, user_id, first ts)` of new users, and of known users seen earlier than
    /// before (upsert keeping the earliest instant).
    pub users: Vec<(i64, String, i64)>,
    /// `(app, event_id, ts)` to remember for de-duplication.
    pub event_ids: Vec<(i64, String, i64)>,
    /// Events counted in this batch.
    pub events_counted: u64,
    /// Events skipped as duplicates.
    pub duplicates: u64,
    /// The size of every set this batch changed, after the change.
    pub set_sizes: Vec<(SetKey, u64)>,
    /// The events counted, per app and day, for the raw-event archive.
    pub raw: Vec<RawEvents>,
}

/// Counted events of one app and day, as the raw-event archive keeps them.
#[derive(Debug, Clone, PartialEq)]
pub struct RawEvents {
    /// The app.
    pub app_id: i64,
    /// The day of the events in the app's zone.
    pub day: Day,
    /// How many events `payload` holds.
    pub events: u64,
    /// The events in the binary record form, zstd-compressed ([`RawEvents::encode`]).
    pub payload: Vec<u8>,
}

/// Most events in one raw-event archive row: a batch's events of one app and day are
/// split into rows of this size, each compressed on its own (a millisecond or two).
const RAW_ROW_EVENTS: u64 = 16_384;

/// Events counted between two yields to the runtime (about 2 ms of work): a batch of
/// 200,000 events is 150 ms of CPU, which must not hold a worker thread that HTTP
/// requests wait for.
const EVENTS_PER_SLICE: usize = 4_096;

/// Counts work and yields to the async runtime after every [`EVENTS_PER_SLICE`]
/// events' worth.
#[derive(Debug, Default)]
struct Pacer {
    done: usize,
}

impl Pacer {
    async fn step(&mut self, events: usize) {
        self.done += events;
        if self.done >= EVENTS_PER_SLICE {
            self.done = 0;
            YieldNow(false).await;
        }
    }
}

/// Returns `Pending` once, having woken itself: the runtime polls other ready tasks
/// before this one again (Tokio queues a task that woke itself during its poll at the
/// back). Written here because this crate does not depend on a runtime.
struct YieldNow(bool);

impl std::future::Future for YieldNow {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            std::task::Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    }
}

/// zstd level of the raw-event archive: the fastest.
const RAW_ZSTD_LEVEL: i32 = 1;

impl RawEvents {
    /// The archive form of `events`: a zstd frame holding their binary event block
    /// ([`crate::record::encode_events`]).
    pub fn encode(events: &[&Event]) -> Result<Vec<u8>, RecordError> {
        Self::compress(&crate::record::encode_events(events.iter().copied()))
    }

    /// The archive form of an events block ([`EventsEncoder::finish`]).
    pub fn compress(block: &[u8]) -> Result<Vec<u8>, RecordError> {
        zstd::bulk::compress(block, RAW_ZSTD_LEVEL).map_err(RecordError::Compression)
    }

    /// The events of a payload written by [`RawEvents::encode`]; the forms of earlier
    /// builds (a zstd frame of a JSON array, or a plain JSON array) are read too.
    pub fn decode(payload: &[u8]) -> Result<Vec<Event>, RecordError> {
        const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
        if payload.starts_with(&ZSTD_MAGIC) {
            let inner = zstd::stream::decode_all(payload).map_err(RecordError::Compression)?;
            Self::decode_plain(&inner)
        } else {
            Self::decode_plain(payload)
        }
    }

    fn decode_plain(bytes: &[u8]) -> Result<Vec<Event>, RecordError> {
        if bytes.first() == Some(&b'[') {
            Ok(serde_json::from_slice(bytes)?)
        } else {
            crate::record::decode_events(bytes)
        }
    }
}

/// What the aggregator needs from a store.
#[async_trait]
pub trait AggregateStore: Send + Sync {
    /// The first bus position not yet applied by `consumer` (0 when it never ran).
    async fn consumer_position(&self, consumer: &str) -> Result<u64, StoreError>;
    /// The app's time zone name, or `None` if the app does not exist.
    async fn app_timezone(&self, app_id: i64) -> Result<Option<String>, StoreError>;
    /// Every device of an app.
    async fn load_devices(&self, app_id: i64) -> Result<Vec<DeviceRow>, StoreError>;
    /// Every `user_id` of an app, with its first-seen instant (epoch ms).
    async fn load_users(&self, app_id: i64) -> Result<Vec<(String, i64)>, StoreError>;
    /// One set as stored (empty with `next_seq` 0 when absent).
    async fn load_set(&self, key: &SetKey) -> Result<StoredSet, StoreError>;
    /// Which of these event ids the app has already counted.
    async fn known_event_ids(
        &self,
        app_id: i64,
        ids: &[String],
    ) -> Result<HashSet<String>, StoreError>;
    /// A number that moves whenever app data changes behind the aggregator's back
    /// (data deleted, time zone changed, aggregates recomputed): a change means the
    /// caches must be dropped.
    async fn data_generation(&self) -> Result<i64, StoreError>;
    /// Applies `changes` and sets `consumer`'s position to `next`, atomically.
    async fn commit(&self, changes: &Changes, consumer: &str, next: u64) -> Result<(), StoreError>;
}

/// Why a batch could not be applied. After any error, call [`Aggregator::reset`].
#[derive(Debug, thiserror::Error)]
pub enum AggregateError {
    /// A message did not decode.
    #[error("bus message at position {position}: {source}")]
    Record {
        /// Its position.
        position: u64,
        /// Why.
        #[source]
        source: RecordError,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug)]
struct AppState {
    tz: TimeZone,
    devices: DeviceTable,
    users: FastMap<String, i64>,
}

/// What one batch reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Messages applied.
    pub messages: usize,
    /// Events counted.
    pub events: u64,
    /// Events skipped as duplicates of an earlier `event_id`.
    pub duplicates: u64,
    /// Events of apps that no longer exist (skipped).
    pub orphaned: u64,
}

/// The aggregator's state: caches of what the store holds.
#[derive(Debug)]
pub struct Aggregator {
    consumer: String,
    /// The committed position, once read from the store: messages below it were
    /// applied already and are skipped (a second guard behind the consumer's own).
    position: Option<u64>,
    apps: HashMap<i64, Option<AppState>>,
    sets: HashMap<SetKey, StoredSet>,
    /// The store's data generation the caches belong to.
    generation: Option<i64>,
}

/// The day and hour of `ts_ms` in `tz`.
pub fn day_and_hour(ts_ms: i64, tz: &TimeZone) -> (Day, u8) {
    let ts = Timestamp::from_millisecond(ts_ms).unwrap_or(Timestamp::UNIX_EPOCH);
    let offset_ms = i64::from(tz.to_offset(ts).seconds()) * 1_000;
    let local = ts.as_millisecond() + offset_ms;
    let day = local.div_euclid(86_400_000);
    let hour = local.rem_euclid(86_400_000) / 3_600_000;
    // Event timestamps are validated to recent instants: both fit.
    (
        i32::try_from(day).unwrap_or(i32::MAX),
        u8::try_from(hour).unwrap_or(0),
    )
}

impl Aggregator {
    /// An aggregator that commits its position as `consumer`.
    pub fn new(consumer: impl Into<String>) -> Self {
        Aggregator {
            consumer: consumer.into(),
            position: None,
            apps: HashMap::new(),
            sets: HashMap::new(),
            generation: None,
        }
    }

    /// The consumer name positions are committed under.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Forgets every cache; the next batch reloads what it needs from the store.
    pub fn reset(&mut self) {
        self.position = None;
        self.apps.clear();
        self.sets.clear();
        self.generation = None;
    }

    /// Applies `messages` (in position order) and commits them with the position after
    /// the last one.
    pub async fn apply(
        &mut self,
        store: &dyn AggregateStore,
        messages: &[BusMessage],
    ) -> Result<BatchReport, AggregateError> {
        let Some(last) = messages.last() else {
            return Ok(BatchReport::default());
        };
        let next = last.position + 1;
        let generation = store.data_generation().await?;
        if self.generation != Some(generation) {
            // App data changed behind our back (possibly in another process).
            self.apps.clear();
            self.sets.clear();
            self.generation = Some(generation);
        }
        let committed = match self.position {
            Some(p) => p,
            None => {
                let p = store.consumer_position(&self.consumer).await?;
                self.position = Some(p);
                p
            }
        };
        if next <= committed {
            return Ok(BatchReport::default());
        }
        let mut records = Vec::with_capacity(messages.len());
        for message in messages.iter().filter(|m| m.position >= committed) {
            let record =
                ParsedRecord::parse(&message.payload).map_err(|source| AggregateError::Record {
                    position: message.position,
                    source,
                })?;
            records.push((message.position, record));
        }
        let mut report = BatchReport {
            messages: records.len(),
            ..BatchReport::default()
        };
        let mut changes = Changes::default();
        let mut batch = BatchState::default();
        let mut raw: BTreeMap<(i64, Day), EventsEncoder<'_>> = BTreeMap::new();

        // Load what the batch touches: apps, and which event ids were counted before.
        // This walk also checks every event, so that counting below cannot fail half
        // way.
        let mut ids_by_app: HashMap<i64, Vec<String>> = HashMap::new();
        let mut pacer = Pacer::default();
        for (position, record) in &records {
            self.ensure_app(store, record.app_id).await?;
            pacer.step(record.len() / 4).await;
            for event in record.events() {
                let event = event.map_err(|source| AggregateError::Record {
                    position: *position,
                    source,
                })?;
                if let Some(id) = event.event_id {
                    ids_by_app
                        .entry(record.app_id)
                        .or_default()
                        .push(id.to_owned());
                }
            }
        }
        let mut known: HashMap<i64, HashSet<String>> = HashMap::new();
        for (app_id, ids) in &ids_by_app {
            known.insert(*app_id, store.known_event_ids(*app_id, ids).await?);
        }

        let mut raw_rows: Vec<(i64, Day, EventsEncoder<'_>)> = Vec::new();
        for (position, record) in &records {
            pacer.step(record.len()).await;
            let Some(Some(app)) = self.apps.get_mut(&record.app_id) else {
                report.orphaned += record.len() as u64;
                continue;
            };
            for event in record.events() {
                let event = event.map_err(|source| AggregateError::Record {
                    position: *position,
                    source,
                })?;
                if let Some(id) = event.event_id {
                    let seen_before = known.get(&record.app_id).is_some_and(|k| k.contains(id));
                    if seen_before || !batch.event_ids.insert((record.app_id, id)) {
                        changes.duplicates += 1;
                        continue;
                    }
                    changes
                        .event_ids
                        .push((record.app_id, id.to_owned(), event.ts_ms));
                }
                let day = count_event(record.app_id, app, &event, &mut changes, &mut batch);
                let encoder = raw.entry((record.app_id, day)).or_default();
                encoder.push(&event);
                if encoder.count() >= RAW_ROW_EVENTS {
                    raw_rows.push((record.app_id, day, std::mem::take(encoder)));
                }
                changes.events_counted += 1;
            }
        }
        batch.flush_groups(&mut changes);

        // Turn the batch's set additions into delta rows, loading sets on first touch.
        if self.sets.len() > MAX_CACHED_SETS
            || self
                .sets
                .values()
                .map(|s| s.members.serialized_size())
                .sum::<usize>()
                > MAX_CACHED_SET_BYTES
        {
            self.sets.clear();
        }
        for (key, delta) in batch.sets {
            if !self.sets.contains_key(&key) {
                let stored = store.load_set(&key).await?;
                self.sets.insert(key.clone(), stored);
            }
            let Some(cached) = self.sets.get_mut(&key) else {
                continue;
            };
            let added = &delta.added - &cached.members;
            let removed = &delta.removed & &cached.members;
            if added.is_empty() && removed.is_empty() {
                continue;
            }
            cached.members |= &added;
            cached.members -= &removed;
            changes.set_sizes.push((key.clone(), cached.members.len()));
            if cached.next_seq >= COMPACT_AFTER_DELTAS {
                changes.sets.push(SetChange::Compact {
                    key,
                    members: cached.members.clone(),
                });
                cached.next_seq = 1;
            } else {
                changes.sets.push(SetChange::Delta {
                    key,
                    seq: cached.next_seq,
                    added,
                    removed,
                });
                cached.next_seq += 1;
            }
        }

        raw_rows.extend(
            raw.into_iter()
                .filter(|(_, encoder)| encoder.count() > 0)
                .map(|((app_id, day), encoder)| (app_id, day, encoder)),
        );
        for (app_id, day, encoder) in raw_rows {
            pacer.step(RAW_ROW_EVENTS as usize).await;
            let events = encoder.count();
            let payload = RawEvents::compress(&encoder.finish()).map_err(|source| {
                AggregateError::Record {
                    position: last.position,
                    source,
                }
            })?;
            changes.raw.push(RawEvents {
                app_id,
                day,
                events,
                payload,
            });
        }

        report.events = changes.events_counted;
        report.duplicates = changes.duplicates;
        store.commit(&changes, &self.consumer, next).await?;
        self.position = Some(next);
        Ok(report)
    }

    async fn ensure_app(
        &mut self,
        store: &dyn AggregateStore,
        app_id: i64,
    ) -> Result<(), AggregateError> {
        if self.apps.contains_key(&app_id) {
            return Ok(());
        }
        let Some(zone) = store.app_timezone(app_id).await? else {
            self.apps.insert(app_id, None);
            return Ok(());
        };
        // Zones are validated when an app is created; fall back to UTC if the bundled
        // database ever lost one, rather than stopping the pipeline.
        let tz = TimeZone::get(&zone).unwrap_or(TimeZone::UTC);
        let rows = store.load_devices(app_id).await?;
        let devices = DeviceTable::from_rows(
            rows.into_iter()
                .map(|r| (r.device_no, r.device_id, r.first_ts_ms))
                .collect(),
        );
        let users = store.load_users(app_id).await?.into_iter().collect();
        self.apps
            .insert(app_id, Some(AppState { tz, devices, users }));
        Ok(())
    }
}

#[derive(Debug, Default)]
struct SetDelta {
    added: RoaringBitmap,
    removed: RoaringBitmap,
}

/// Events of one app, day, hour and breakdown values: what activity sets and counters
/// they add up to. Counting per group rather than per event keeps the per-event work
/// to one bitmap insertion and a few additions.
type GroupKey<'a> = (i64, Day, u8, [&'a str; 5]);

#[derive(Debug)]
struct Group<'a> {
    key: GroupKey<'a>,
    /// Devices active in the group.
    devices: RoaringBitmap,
    launches: i64,
    usage_secs: f64,
    usage_reports: i64,
}

#[derive(Debug, Default)]
struct BatchState<'a> {
    /// Every set's delta, once [`BatchState::flush_groups`] ran.
    sets: BTreeMap<SetKey, SetDelta>,
    /// Deltas of `new` sets, per app and day, in event order (a device whose first
    /// day moves back leaves one and joins another, so order matters here).
    new_sets: FastMap<(i64, Day), SetDelta>,
    event_ids: FastSet<(i64, &'a str)>,
    /// Index into `Changes::devices` of each device touched in this batch.
    device_rows: FastMap<(i64, u32), usize>,
    groups: Vec<Group<'a>>,
    group_index: FastMap<GroupKey<'a>, usize>,
    /// The group of the previous event (events of one request share most of the key).
    last_group: usize,
    /// The previous event's group key, borrowed from its own record.
    last_key: GroupKey<'a>,
    /// Custom event counters: `(app, day, name, segment key, segment value)`.
    event_counts: FastMap<(i64, Day, &'a str, &'a str, &'a str), EventCounts>,
}

impl<'a> BatchState<'a> {
    /// Adds `device` to the `new` set of the app's `day`.
    fn add_new(&mut self, app_id: i64, day: Day, device: u32) {
        let delta = self.new_sets.entry((app_id, day)).or_default();
        delta.added.insert(device);
        delta.removed.remove(device);
    }

    /// Removes `device` from the `new` set of the app's `day`.
    fn remove_new(&mut self, app_id: i64, day: Day, device: u32) {
        let delta = self.new_sets.entry((app_id, day)).or_default();
        delta.removed.insert(device);
        delta.added.remove(device);
    }

    fn group(&mut self, key: GroupKey<'a>) -> &mut Group<'a> {
        // The events of one record borrow their values from its one dimension table:
        // the same pointers, so the previous event's key usually matches without
        // comparing any bytes.
        let same_as_last = {
            let (app, day, hour, values) = &self.last_key;
            let (k_app, k_day, k_hour, k_values) = &key;
            app == k_app
                && day == k_day
                && hour == k_hour
                && values
                    .iter()
                    .zip(k_values)
                    .all(|(a, b)| (a.as_ptr() == b.as_ptr() && a.len() == b.len()) || a == b)
        };
        let index = match self.groups.get(self.last_group) {
            Some(_) if same_as_last => self.last_group,
            _ => {
                let next = self.groups.len();
                let index = *self.group_index.entry(key).or_insert(next);
                if index == next {
                    self.groups.push(Group {
                        key,
                        devices: RoaringBitmap::new(),
                        launches: 0,
                        usage_secs: 0.0,
                        usage_reports: 0,
                    });
                }
                self.last_group = index;
                index
            }
        };
        self.last_key = key;
        &mut self.groups[index]
    }

    /// Turns the groups, `new` sets and custom event counts into set deltas and
    /// counters.
    fn flush_groups(&mut self, changes: &mut Changes) {
        for ((app_id, day), delta) in self.new_sets.drain() {
            self.sets
                .insert(set_key(app_id, day, SET_NEW, "", ""), delta);
        }
        for group in std::mem::take(&mut self.groups) {
            let (app_id, day, hour, values) = group.key;
            let keys = [("", ""), ("hour", HOURS[usize::from(hour)])]
                .into_iter()
                .chain(BREAKDOWN_DIMENSIONS.iter().copied().zip(values));
            for (dim, value) in keys {
                let delta = self
                    .sets
                    .entry(set_key(app_id, day, SET_ACTIVE, dim, value))
                    .or_default();
                delta.added |= &group.devices;
                delta.removed -= &group.devices;
            }
            if group.launches > 0 || group.usage_reports > 0 {
                let totals = std::iter::once(("", ""));
                for (dim, value) in totals.chain(BREAKDOWN_DIMENSIONS.iter().copied().zip(values)) {
                    let c = changes
                        .day_counters
                        .entry((app_id, day, dim, value.to_owned()))
                        .or_default();
                    c.launches += group.launches;
                    c.usage_secs += group.usage_secs;
                    c.usage_reports += group.usage_reports;
                }
            }
            if group.launches > 0 {
                changes
                    .hour_counters
                    .entry((app_id, day, hour))
                    .or_default()
                    .launches += group.launches;
            }
        }
        self.group_index.clear();
        for ((app_id, day, name, seg_key, seg_value), c) in self.event_counts.drain() {
            let entry = changes
                .event_counters
                .entry((
                    app_id,
                    day,
                    name.to_owned(),
                    seg_key.to_owned(),
                    seg_value.to_owned(),
                ))
                .or_default();
            entry.count += c.count;
            entry.sum += c.sum;
            entry.dur_secs += c.dur_secs;
        }
    }
}

fn set_key(app_id: i64, day: Day, kind: &'static str, dim: &'static str, value: &str) -> SetKey {
    SetKey {
        app_id,
        day,
        kind,
        dim,
        value: value.to_owned(),
    }
}

const HOURS: [&str; 24] = [
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
    "17", "18", "19", "20", "21", "22", "23",
];

/// Counts one event; returns its day.
fn count_event<'a>(
    app_id: i64,
    app: &mut AppState,
    event: &EventView<'a>,
    changes: &mut Changes,
    batch: &mut BatchState<'a>,
) -> Day {
    let (day, hour) = day_and_hour(event.ts_ms, &app.tz);

    // The device: new, earlier than its first-seen, or known.
    let device = match app.devices.get(event.device_id) {
        None => {
            let no = app.devices.push(event.device_id, event.ts_ms);
            record_device(
                app_id,
                no,
                event.device_id,
                event.ts_ms,
                day,
                changes,
                batch,
            );
            batch.add_new(app_id, day, no);
            changes
                .hour_counters
                .entry((app_id, day, hour))
                .or_default()
                .new_users += 1;
            no
        }
        Some(no) => {
            let first_ts_ms = app.devices.first_ts(no);
            if first_ts_ms == UNSEEN_TS {
                app.devices.set_first_ts(no, event.ts_ms);
                record_device(
                    app_id,
                    no,
                    event.device_id,
                    event.ts_ms,
                    day,
                    changes,
                    batch,
                );
                batch.add_new(app_id, day, no);
                changes
                    .hour_counters
                    .entry((app_id, day, hour))
                    .or_default()
                    .new_users += 1;
            } else if event.ts_ms < first_ts_ms {
                let (old_day, old_hour) = day_and_hour(first_ts_ms, &app.tz);
                app.devices.set_first_ts(no, event.ts_ms);
                record_device(
                    app_id,
                    no,
                    event.device_id,
                    event.ts_ms,
                    day,
                    changes,
                    batch,
                );
                if (old_day, old_hour) != (day, hour) {
                    changes
                        .hour_counters
                        .entry((app_id, old_day, old_hour))
                        .or_default()
                        .new_users -= 1;
                    changes
                        .hour_counters
                        .entry((app_id, day, hour))
                        .or_default()
                        .new_users += 1;
                }
                if old_day != day {
                    batch.remove_new(app_id, old_day, no);
                    batch.add_new(app_id, day, no);
                }
            }
            no
        }
    };

    if let Some(user) = event.user_id {
        let mut moved_from = None;
        let earlier = match app.users.get_mut(user) {
            None => {
                app.users.insert(user.to_owned(), event.ts_ms);
                true
            }
            Some(first) if event.ts_ms < *first => {
                if *first != UNSEEN_TS {
                    moved_from = Some(day_and_hour(*first, &app.tz).0);
                }
                *first = event.ts_ms;
                true
            }
            Some(_) => false,
        };
        if earlier {
            changes.users.push((app_id, user.to_owned(), event.ts_ms));
            if let Some(old_day) = moved_from {
                changes
                    .day_counters
                    .entry((app_id, old_day, "", String::new()))
                    .or_default()
                    .new_registered -= 1;
            }
            changes
                .day_counters
                .entry((app_id, day, "", String::new()))
                .or_default()
                .new_registered += 1;
        }
    }

    // Activity and counters, per group of equal day, hour and breakdown values.
    let d = &event.dims;
    let values = [
        d[0].unwrap_or(""),
        d[1].unwrap_or(""),
        d[2].unwrap_or(""),
        d[3].unwrap_or(""),
        d[6].unwrap_or(""),
    ];
    let group = batch.group((app_id, day, hour, values));
    group.devices.insert(device);
    match &event.kind {
        KindView::OpenApp => group.launches += 1,
        KindView::UsageTime { duration_secs, .. } => {
            group.usage_secs += *duration_secs;
            group.usage_reports += 1;
        }
        KindView::Custom {
            name,
            count,
            sum,
            dur_secs,
            segments,
        } => {
            let mut add = |seg_key: &'a str, seg_value: &'a str| {
                let entry = batch
                    .event_counts
                    .entry((app_id, day, *name, seg_key, seg_value))
                    .or_default();
                entry.count += i64::from(*count);
                entry.sum += *sum;
                entry.dur_secs += *dur_secs;
            };
            add("", "");
            for (k, v) in segments {
                add(k, v);
            }
        }
    }
    day
}

fn record_device(
    app_id: i64,
    no: u32,
    device_id: &str,
    first_ts_ms: i64,
    first_day: Day,
    changes: &mut Changes,
    batch: &mut BatchState<'_>,
) {
    let row = DeviceRow {
        app_id,
        device_no: no,
        device_id: device_id.to_owned(),
        first_ts_ms,
        first_day,
    };
    match batch.device_rows.get(&(app_id, no)) {
        Some(&index) => changes.devices[index] = row,
        None => {
            batch
                .device_rows
                .insert((app_id, no), changes.devices.len());
            changes.devices.push(row);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;

    #[test]
    fn raw_archives_of_every_form_are_read() {
        let events = vec![
            Event {
                kind: EventKind::UsageTime {
                    duration_secs: 12.5,
                    ends_session: false,
                },
                ts_ms: 1_700_000_000_000,
                device_id: "d1".into(),
                user_id: Some("u1".into()),
                dims: crate::event::Dimensions {
                    platform: Some("ios".into()),
                    ..crate::event::Dimensions::default()
                },
                event_id: None,
                incremental_session: true,
            },
            Event {
                kind: EventKind::OpenApp,
                ts_ms: 1_700_000_000_001,
                device_id: "d2".into(),
                user_id: None,
                dims: crate::event::Dimensions::default(),
                event_id: Some("e".into()),
                incremental_session: false,
            },
        ];
        let refs: Vec<&Event> = events.iter().collect();
        let current = RawEvents::encode(&refs).expect("encode");
        assert_eq!(RawEvents::decode(&current).expect("binary"), events);
        // Earlier builds wrote a zstd frame of a JSON array, and before that plain JSON.
        let json = serde_json::to_vec(&events).expect("json");
        let zstd_json = zstd::bulk::compress(&json, 1).expect("zstd");
        assert_eq!(RawEvents::decode(&zstd_json).expect("zstd json"), events);
        assert_eq!(RawEvents::decode(&json).expect("plain json"), events);
        assert!(RawEvents::decode(&[2, 1]).is_err());
    }

    #[test]
    fn days_follow_the_zone_and_its_dst() {
        let ny = TimeZone::get("America/New_York").expect("zone");
        // 2024-03-10 (spring forward) 23:30 EDT = 2024-03-11T03:30Z.
        let ts = "2024-03-11T03:30:00Z"
            .parse::<Timestamp>()
            .expect("ts")
            .as_millisecond();
        let (day, hour) = day_and_hour(ts, &ny);
        let date = jiff::civil::date(1970, 1, 1)
            .checked_add(jiff::Span::new().days(i64::from(day)))
            .expect("date");
        assert_eq!(date, jiff::civil::date(2024, 3, 10));
        assert_eq!(hour, 23);
        let (utc_day, utc_hour) = day_and_hour(ts, &TimeZone::UTC);
        assert_eq!(utc_day, day + 1);
        assert_eq!(utc_hour, 3);
        // Before the epoch, days are floored, not truncated.
        assert_eq!(day_and_hour(-1, &TimeZone::UTC), (-1, 23));
    }
}
