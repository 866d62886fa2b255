//! The bus message format: the accepted events of one request for one app.
//!
//! Ingest writes one [`EventRecord`] per (request, app) and the aggregator reads it
//! back. The events are already validated ([`crate::event`]'s invariants hold), so the
//! aggregator trusts them; a message that does not decode is a bug or corruption and is
//! reported with its position, never silently skipped.
//!
//! Two encodings exist, told apart by the first byte:
//! - **version 2 (written since the aggregator's speed-up)**: a compact binary form,
//!   first byte `0x02`. Integers are LEB128 varints (signed ones zigzag-coded), floats
//!   are 8 little-endian bytes, strings are a varint length and UTF-8 bytes. The
//!   distinct [`Dimensions`] of a record are written once in a table and each event
//!   names its entry, since SDKs send them per batch. Layout:
//!   ```text
//!   record  = 0x02 app_id:zigzag received_ms:zigzag events
//!   events  = ndims:varint dims{ndims} nevents:varint event{nevents}
//!   dims    = opt{7}                    (platform, app_version, channel, os_version,
//!                                        device_model, locale, country)
//!   opt     = 0 | (len+1):varint bytes  (absent, or a string)
//!   event   = tag:u8 ts_ms:zigzag dims_index:varint device_id:str
//!             [user_id:str] [event_id:str] payload
//!   tag     = kind (bits 0-1: 0 open_app, 1 usage_time, 2 custom)
//!             | 4 user_id present | 8 event_id present | 16 incremental_session
//!             | 32 ends_session (usage_time)
//!   payload = ()                                  open_app
//!           | duration_secs:f64                    usage_time
//!           | name:str count:varint sum:f64 dur_secs:f64 nseg:varint (key:str value:str){nseg}
//!   ```
//!   Decoding checks every length against the bytes left and every string for UTF-8,
//!   so a corrupt message is an error, never a panic or a huge allocation.
//! - **version 1**: JSON with a format field (`v`), first byte `{`. Logs written by
//!   earlier builds hold these; they are still read.
//!
//! A record of a version newer than this build's is refused ([`RecordError::Version`]).
//! The same `events` block (after a version byte) is the raw-event archive's form
//! ([`encode_events`], [`decode_events`]).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::event::{Dimensions, Event, EventKind};

/// The format version this build writes.
pub const RECORD_VERSION: u32 = 2;

/// The first byte of a version 2 (binary) record or event block.
const BINARY_V2: u8 = 2;

/// The events of one request, for one app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Format version.
    pub v: u32,
    /// The app's id.
    pub app_id: i64,
    /// When the server received the request (epoch milliseconds).
    pub received_ms: i64,
    /// The events, in request order.
    pub events: Vec<Event>,
}

/// A message that is not an [`EventRecord`] this build can read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Not the JSON shape of a record.
    #[error("malformed event record: {0}")]
    Malformed(#[from] serde_json::Error),
    /// A binary record that does not decode.
    #[error("malformed binary event record at byte {offset}: {what}")]
    Binary {
        /// Where in the message.
        offset: usize,
        /// What was wrong.
        what: &'static str,
    },
    /// A compressed archive payload did not (de)compress.
    #[error("raw-event archive compression: {0}")]
    Compression(#[source] std::io::Error),
    /// Written by a newer build.
    #[error("event record format version {0} is newer than this build's ({RECORD_VERSION})")]
    Version(u32),
}

impl EventRecord {
    /// A record of this build's format version.
    pub fn new(app_id: i64, received_ms: i64, events: Vec<Event>) -> Self {
        EventRecord {
            v: RECORD_VERSION,
            app_id,
            received_ms,
            events,
        }
    }

    /// The bytes to publish (the binary form, version 2).
    pub fn encode(&self) -> Vec<u8> {
        let mut encoder = EventsEncoder::default();
        for event in &self.events {
            encoder.push(&event.view());
        }
        let mut out = Vec::with_capacity(24 + encoder.len_hint());
        out.push(BINARY_V2);
        put_i64(&mut out, self.app_id);
        put_i64(&mut out, self.received_ms);
        encoder.finish_into(&mut out);
        out
    }

    /// The JSON form (version 1), as builds before the binary form published it; kept
    /// for tests and benchmarks of the old format.
    pub fn encode_json(&self) -> Vec<u8> {
        let v1 = EventRecord {
            v: 1,
            app_id: self.app_id,
            received_ms: self.received_ms,
            events: self.events.clone(),
        };
        // A struct of strings, numbers and maps with string keys always serialises.
        serde_json::to_vec(&v1).unwrap_or_default()
    }

    /// Reads a published message of either version.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let parsed = ParsedRecord::parse(bytes)?;
        let events = match parsed.body {
            Body::Json(events) => events,
            Body::Binary { .. } => {
                let mut events = Vec::with_capacity(parsed.len());
                for event in parsed.events() {
                    events.push(event?.to_event());
                }
                events
            }
        };
        Ok(EventRecord {
            v: parsed.version,
            app_id: parsed.app_id,
            received_ms: parsed.received_ms,
            events,
        })
    }
}

/// Version 1 records are `serde_json::to_vec` output: always an object, no leading
/// whitespace.
fn is_json_start(byte: u8) -> bool {
    byte == b'{'
}

/// First bytes that later binary versions may use (3 to 31): refused as newer.
fn is_newer_version(byte: u8) -> bool {
    byte > BINARY_V2 && byte < b' '
}

/// An event's dimensions, borrowed, in [`crate::event::DIMENSION_NAMES`] order.
pub type DimsView<'a> = [Option<&'a str>; 7];

/// An event's kind and payload, borrowed.
#[derive(Debug, Clone, PartialEq)]
pub enum KindView<'a> {
    /// `open_app`.
    OpenApp,
    /// `usage_time`.
    UsageTime {
        /// Seconds.
        duration_secs: f64,
        /// Whether the report closes its session.
        ends_session: bool,
    },
    /// `custom`.
    Custom {
        /// The event's name.
        name: &'a str,
        /// How many times it happened.
        count: u32,
        /// Summed value.
        sum: f64,
        /// Duration, seconds.
        dur_secs: f64,
        /// Segment key → value, in key order (no allocation when empty).
        segments: Vec<(&'a str, &'a str)>,
    },
}

/// One [`Event`], borrowed from a message's bytes or from a decoded event: what the
/// aggregator reads, without allocating per event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventView<'a> {
    /// What happened.
    pub kind: KindView<'a>,
    /// The client's timestamp (epoch ms).
    pub ts_ms: i64,
    /// The device.
    pub device_id: &'a str,
    /// The signed-in user.
    pub user_id: Option<&'a str>,
    /// The dimensions.
    pub dims: DimsView<'a>,
    /// The SDK's id for de-duplication.
    pub event_id: Option<&'a str>,
    /// Part of a session reported in increments.
    pub incremental_session: bool,
}

impl Event {
    /// This event, borrowed.
    pub fn view(&self) -> EventView<'_> {
        let d = &self.dims;
        EventView {
            kind: match &self.kind {
                EventKind::OpenApp => KindView::OpenApp,
                EventKind::UsageTime {
                    duration_secs,
                    ends_session,
                } => KindView::UsageTime {
                    duration_secs: *duration_secs,
                    ends_session: *ends_session,
                },
                EventKind::Custom {
                    name,
                    count,
                    sum,
                    dur_secs,
                    segments,
                } => KindView::Custom {
                    name,
                    count: *count,
                    sum: *sum,
                    dur_secs: *dur_secs,
                    segments: segments
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect(),
                },
            },
            ts_ms: self.ts_ms,
            device_id: &self.device_id,
            user_id: self.user_id.as_deref(),
            dims: [
                d.platform.as_deref(),
                d.app_version.as_deref(),
                d.channel.as_deref(),
                d.os_version.as_deref(),
                d.device_model.as_deref(),
                d.locale.as_deref(),
                d.country.as_deref(),
            ],
            event_id: self.event_id.as_deref(),
            incremental_session: self.incremental_session,
        }
    }
}

impl EventView<'_> {
    /// The owned event.
    pub fn to_event(&self) -> Event {
        let own = |v: Option<&str>| v.map(str::to_owned);
        let [
            platform,
            app_version,
            channel,
            os_version,
            device_model,
            locale,
            country,
        ] = self.dims;
        Event {
            kind: match &self.kind {
                KindView::OpenApp => EventKind::OpenApp,
                KindView::UsageTime {
                    duration_secs,
                    ends_session,
                } => EventKind::UsageTime {
                    duration_secs: *duration_secs,
                    ends_session: *ends_session,
                },
                KindView::Custom {
                    name,
                    count,
                    sum,
                    dur_secs,
                    segments,
                } => EventKind::Custom {
                    name: (*name).to_owned(),
                    count: *count,
                    sum: *sum,
                    dur_secs: *dur_secs,
                    segments: segments
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                },
            },
            ts_ms: self.ts_ms,
            device_id: self.device_id.to_owned(),
            user_id: own(self.user_id),
            dims: Dimensions {
                platform: own(platform),
                app_version: own(app_version),
                channel: own(channel),
                os_version: own(os_version),
                device_model: own(device_model),
                locale: own(locale),
                country: own(country),
            },
            event_id: own(self.event_id),
            incremental_session: self.incremental_session,
        }
    }
}

/// A message read without copying its events: the binary form is walked in place,
/// the JSON form (version 1) is decoded into owned events first.
#[derive(Debug)]
pub struct ParsedRecord<'a> {
    /// The format version the message was written in.
    pub version: u32,
    /// The app's id.
    pub app_id: i64,
    /// When the server received the request (epoch ms).
    pub received_ms: i64,
    body: Body<'a>,
}

#[derive(Debug)]
enum Body<'a> {
    Binary {
        bytes: &'a [u8],
        /// Where the first event starts.
        events_at: usize,
        count: usize,
        dims: Vec<DimsView<'a>>,
    },
    Json(Vec<Event>),
}

impl<'a> ParsedRecord<'a> {
    /// Reads a message's header (and a JSON message whole). The binary events are
    /// checked as [`ParsedRecord::events`] walks them: a malformed one is an error
    /// there.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, RecordError> {
        match bytes.first() {
            Some(&BINARY_V2) => {
                let mut r = Reader { bytes, at: 1 };
                let app_id = r.i64()?;
                let received_ms = r.i64()?;
                let (dims, count) = r.events_header()?;
                Ok(ParsedRecord {
                    version: u32::from(BINARY_V2),
                    app_id,
                    received_ms,
                    body: Body::Binary {
                        bytes,
                        events_at: r.at,
                        count,
                        dims,
                    },
                })
            }
            Some(&first) if is_json_start(first) => {
                let record: EventRecord = serde_json::from_slice(bytes)?;
                if record.v > 1 {
                    // Version 2 and later are never JSON.
                    return Err(RecordError::Version(record.v));
                }
                Ok(ParsedRecord {
                    version: record.v,
                    app_id: record.app_id,
                    received_ms: record.received_ms,
                    body: Body::Json(record.events),
                })
            }
            Some(&version) if is_newer_version(version) => {
                Err(RecordError::Version(u32::from(version)))
            }
            _ => Err(RecordError::Binary {
                offset: 0,
                what: "neither a JSON nor a binary event record",
            }),
        }
    }

    /// How many events the record holds.
    pub fn len(&self) -> usize {
        match &self.body {
            Body::Binary { count, .. } => *count,
            Body::Json(events) => events.len(),
        }
    }

    /// Whether the record holds no event.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The events in order; a malformed binary event (or bytes after the last one)
    /// is an error, after which the iterator ends.
    pub fn events(&self) -> impl Iterator<Item = Result<EventView<'_>, RecordError>> + '_ {
        let mut state = match &self.body {
            Body::Binary {
                bytes,
                events_at,
                count,
                dims,
            } => Walk::Binary {
                reader: Reader {
                    bytes,
                    at: *events_at,
                },
                left: *count,
                dims,
                failed: false,
            },
            Body::Json(events) => Walk::Json(events.iter()),
        };
        std::iter::from_fn(move || state.next())
    }
}

enum Walk<'r, 'a> {
    Binary {
        reader: Reader<'a>,
        left: usize,
        dims: &'r [DimsView<'a>],
        failed: bool,
    },
    Json(std::slice::Iter<'r, Event>),
}

impl<'r> Walk<'r, '_> {
    fn next(&mut self) -> Option<Result<EventView<'r>, RecordError>> {
        match self {
            Walk::Json(it) => it.next().map(|e| Ok(e.view())),
            Walk::Binary {
                reader,
                left,
                dims,
                failed,
            } => {
                if *failed {
                    return None;
                }
                let result = if *left == 0 {
                    match reader.end() {
                        Ok(()) => return None,
                        Err(e) => Err(e),
                    }
                } else {
                    *left -= 1;
                    reader.event(dims)
                };
                if result.is_err() {
                    *failed = true;
                }
                Some(result)
            }
        }
    }
}

/// `events` in the binary form with its version byte (the raw-event archive's form).
pub fn encode_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Vec<u8> {
    let mut encoder = EventsEncoder::default();
    for event in events {
        encoder.push(&event.view());
    }
    encoder.finish()
}

/// The events of a block written by [`encode_events`] or [`EventsEncoder::finish`].
pub fn decode_events(bytes: &[u8]) -> Result<Vec<Event>, RecordError> {
    match bytes.first() {
        Some(&BINARY_V2) => {
            let mut r = Reader { bytes, at: 1 };
            let (dims, count) = r.events_header()?;
            let mut events = Vec::with_capacity(count);
            for _ in 0..count {
                events.push(r.event(&dims)?.to_event());
            }
            r.end()?;
            Ok(events)
        }
        Some(&version) if is_newer_version(version) => {
            Err(RecordError::Version(u32::from(version)))
        }
        _ => Err(RecordError::Binary {
            offset: 0,
            what: "not a binary event block",
        }),
    }
}

const KIND_OPEN_APP: u8 = 0;
const KIND_USAGE_TIME: u8 = 1;
const KIND_CUSTOM: u8 = 2;
const KIND_MASK: u8 = 3;
const HAS_USER: u8 = 4;
const HAS_EVENT_ID: u8 = 8;
const INCREMENTAL: u8 = 16;
const ENDS_SESSION: u8 = 32;
const KNOWN_TAG_BITS: u8 = KIND_MASK | HAS_USER | HAS_EVENT_ID | INCREMENTAL | ENDS_SESSION;

/// Builds an events block one event at a time: the dimension table is collected on
/// the way and written in front of the events by [`EventsEncoder::finish`].
#[derive(Debug, Default)]
pub struct EventsEncoder<'a> {
    table: HashMap<DimsView<'a>, u64>,
    order: Vec<DimsView<'a>>,
    body: Vec<u8>,
    count: u64,
}

impl<'a> EventsEncoder<'a> {
    /// Appends one event.
    pub fn push(&mut self, event: &EventView<'a>) {
        let next = self.order.len() as u64;
        let dims = *self.table.entry(event.dims).or_insert_with(|| {
            self.order.push(event.dims);
            next
        });
        let out = &mut self.body;
        let mut tag = match &event.kind {
            KindView::OpenApp => KIND_OPEN_APP,
            KindView::UsageTime { ends_session, .. } => {
                KIND_USAGE_TIME | if *ends_session { ENDS_SESSION } else { 0 }
            }
            KindView::Custom { .. } => KIND_CUSTOM,
        };
        if event.user_id.is_some() {
            tag |= HAS_USER;
        }
        if event.event_id.is_some() {
            tag |= HAS_EVENT_ID;
        }
        if event.incremental_session {
            tag |= INCREMENTAL;
        }
        out.push(tag);
        put_i64(out, event.ts_ms);
        put_u64(out, dims);
        put_str(out, event.device_id);
        if let Some(user) = event.user_id {
            put_str(out, user);
        }
        if let Some(id) = event.event_id {
            put_str(out, id);
        }
        match &event.kind {
            KindView::OpenApp => {}
            KindView::UsageTime { duration_secs, .. } => put_f64(out, *duration_secs),
            KindView::Custom {
                name,
                count,
                sum,
                dur_secs,
                segments,
            } => {
                put_str(out, name);
                put_u64(out, u64::from(*count));
                put_f64(out, *sum);
                put_f64(out, *dur_secs);
                put_u64(out, segments.len() as u64);
                for (k, v) in segments {
                    put_str(out, k);
                    put_str(out, v);
                }
            }
        }
        self.count += 1;
    }

    /// Events pushed so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    fn len_hint(&self) -> usize {
        self.body.len() + self.order.len() * 16 + 16
    }

    fn finish_into(self, out: &mut Vec<u8>) {
        put_u64(out, self.order.len() as u64);
        for dims in &self.order {
            for value in dims {
                match value {
                    None => put_u64(out, 0),
                    Some(s) => {
                        put_u64(out, s.len() as u64 + 1);
                        out.extend_from_slice(s.as_bytes());
                    }
                }
            }
        }
        put_u64(out, self.count);
        out.extend_from_slice(&self.body);
    }

    /// The events block, with its version byte.
    pub fn finish(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.len_hint());
        out.push(BINARY_V2);
        self.finish_into(&mut out);
        out
    }
}

fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_i64(out: &mut Vec<u8>, v: i64) {
    put_u64(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_f64(out: &mut Vec<u8>, v: f64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u64(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// A cursor over a binary record; every read checks the bytes left.
#[derive(Debug)]
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn fail<T>(&self, what: &'static str) -> Result<T, RecordError> {
        Err(RecordError::Binary {
            offset: self.at,
            what,
        })
    }

    fn u8(&mut self) -> Result<u8, RecordError> {
        match self.bytes.get(self.at) {
            Some(&b) => {
                self.at += 1;
                Ok(b)
            }
            None => self.fail("truncated"),
        }
    }

    fn u64(&mut self) -> Result<u64, RecordError> {
        let mut v = 0_u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        self.fail("varint longer than 64 bits")
    }

    fn i64(&mut self) -> Result<i64, RecordError> {
        let v = self.u64()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    fn u32(&mut self) -> Result<u32, RecordError> {
        let v = self.u64()?;
        u32::try_from(v).or_else(|_| self.fail("count out of range"))
    }

    /// A length or count, which cannot exceed the bytes left (each item takes one).
    fn len(&mut self) -> Result<usize, RecordError> {
        let v = self.u64()?;
        match usize::try_from(v) {
            Ok(n) if n <= self.bytes.len() - self.at => Ok(n),
            _ => self.fail("length beyond the end"),
        }
    }

    fn f64(&mut self) -> Result<f64, RecordError> {
        let Some(chunk) = self.bytes.get(self.at..self.at + 8) else {
            return self.fail("truncated");
        };
        let mut b = [0_u8; 8];
        b.copy_from_slice(chunk);
        self.at += 8;
        Ok(f64::from_le_bytes(b))
    }

    fn str_of(&mut self, n: usize) -> Result<&'a str, RecordError> {
        let Some(chunk) = self.bytes.get(self.at..self.at + n) else {
            return self.fail("truncated");
        };
        let Ok(s) = std::str::from_utf8(chunk) else {
            return self.fail("string is not UTF-8");
        };
        self.at += n;
        Ok(s)
    }

    fn str(&mut self) -> Result<&'a str, RecordError> {
        let n = self.len()?;
        self.str_of(n)
    }

    fn opt(&mut self) -> Result<Option<&'a str>, RecordError> {
        match self.len()? {
            0 => Ok(None),
            n => self.str_of(n - 1).map(Some),
        }
    }

    fn end(&self) -> Result<(), RecordError> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            self.fail("bytes after the last event")
        }
    }

    /// The dimension table and the number of events.
    fn events_header(&mut self) -> Result<(Vec<DimsView<'a>>, usize), RecordError> {
        let ndims = self.len()?;
        let mut table = Vec::with_capacity(ndims);
        for _ in 0..ndims {
            let mut dims: DimsView<'a> = [None; 7];
            for slot in &mut dims {
                *slot = self.opt()?;
            }
            table.push(dims);
        }
        let count = self.len()?;
        Ok((table, count))
    }

    fn event(&mut self, table: &[DimsView<'a>]) -> Result<EventView<'a>, RecordError> {
        let tag = self.u8()?;
        if tag & !KNOWN_TAG_BITS != 0 {
            return self.fail("unknown event flags");
        }
        let ts_ms = self.i64()?;
        let dims_index = self.u64()?;
        let Some(&dims) = usize::try_from(dims_index).ok().and_then(|i| table.get(i)) else {
            return self.fail("dimension index out of range");
        };
        let device_id = self.str()?;
        let user_id = if tag & HAS_USER != 0 {
            Some(self.str()?)
        } else {
            None
        };
        let event_id = if tag & HAS_EVENT_ID != 0 {
            Some(self.str()?)
        } else {
            None
        };
        let kind = match tag & KIND_MASK {
            KIND_OPEN_APP => KindView::OpenApp,
            KIND_USAGE_TIME => KindView::UsageTime {
                duration_secs: self.f64()?,
                ends_session: tag & ENDS_SESSION != 0,
            },
            KIND_CUSTOM => {
                let name = self.str()?;
                let count = self.u32()?;
                let sum = self.f64()?;
                let dur_secs = self.f64()?;
                let nseg = self.len()?;
                let mut segments = Vec::with_capacity(nseg);
                for _ in 0..nseg {
                    let k = self.str()?;
                    let v = self.str()?;
                    segments.push((k, v));
                }
                KindView::Custom {
                    name,
                    count,
                    sum,
                    dur_secs,
                    segments,
                }
            }
            _ => return self.fail("unknown event kind"),
        };
        Ok(EventView {
            kind,
            ts_ms,
            device_id,
            user_id,
            dims,
            event_id,
            incremental_session: tag & INCREMENTAL != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Dimensions, EventKind};
    use proptest::prelude::*;

    fn open(device: &str) -> Event {
        Event {
            kind: EventKind::OpenApp,
            ts_ms: 1_700_000_000_000,
            device_id: device.into(),
            user_id: None,
            dims: Dimensions::default(),
            event_id: None,
            incremental_session: false,
        }
    }

    #[test]
    fn round_trips_and_refuses_newer_versions() {
        let record = EventRecord::new(7, 1_700_000_000_000, vec![open("d")]);
        let bytes = record.encode();
        assert_eq!(bytes[0], BINARY_V2);
        assert_eq!(EventRecord::decode(&bytes).expect("decode"), record);
        let mut newer = bytes.clone();
        newer[0] = 9;
        assert!(matches!(
            EventRecord::decode(&newer),
            Err(RecordError::Version(9))
        ));
        assert!(EventRecord::decode(b"{").is_err());
        assert!(EventRecord::decode(b"").is_err());
    }

    #[test]
    fn json_records_of_earlier_builds_are_read() {
        // Exactly what version 1 published (serde_json of the struct).
        let v1 = br#"{"v":1,"app_id":7,"received_ms":5,"events":[{"type":"usage_time","duration_secs":42.5,"ts_ms":1700000000000,"device_id":"d1","dims":{"platform":"ios"}},{"type":"custom","name":"buy","count":2,"sum":9.99,"segments":{"sku":"gold"},"ts_ms":1700000000001,"device_id":"d2","user_id":"u","event_id":"e"}]}"#;
        let record = EventRecord::decode(v1).expect("v1 decodes");
        assert_eq!(record.v, 1);
        assert_eq!(record.app_id, 7);
        assert_eq!(record.events.len(), 2);
        assert_eq!(record.events[0].dims.platform.as_deref(), Some("ios"));
        // Re-encoded in the binary form, it reads back the same events.
        let again = EventRecord::decode(&EventRecord::new(7, 5, record.events.clone()).encode())
            .expect("v2 decodes");
        assert_eq!(again.events, record.events);
        assert_eq!(
            EventRecord::decode(&record.encode_json())
                .expect("json")
                .events,
            record.events
        );
        let newer = String::from_utf8(v1.to_vec())
            .expect("utf8")
            .replace("\"v\":1", "\"v\":9");
        assert!(matches!(
            EventRecord::decode(newer.as_bytes()),
            Err(RecordError::Version(9))
        ));
    }

    #[test]
    fn corrupt_binary_records_are_errors() {
        let mut a = open("device-a");
        a.user_id = Some("u".into());
        let record = EventRecord::new(1, 2, vec![a, open("b")]);
        let bytes = record.encode();
        // Every truncation fails cleanly.
        for n in 1..bytes.len() {
            assert!(EventRecord::decode(&bytes[..n]).is_err(), "prefix {n}");
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(EventRecord::decode(&trailing).is_err());
        // A huge count is refused before anything is allocated.
        let huge = [BINARY_V2, 2, 4, 0, 0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(matches!(
            EventRecord::decode(&huge),
            Err(RecordError::Binary { .. })
        ));
    }

    fn arb_opt() -> impl Strategy<Value = Option<String>> {
        proptest::option::of("[a-zé0-9._]{0,6}")
    }

    fn arb_event() -> impl Strategy<Value = Event> {
        let kind = prop_oneof![
            Just(EventKind::OpenApp),
            (0.0..86_400.0_f64, any::<bool>()).prop_map(|(d, e)| EventKind::UsageTime {
                duration_secs: d,
                ends_session: e,
            }),
            (
                "[a-z]{1,8}",
                1..1000_u32,
                -1e9..1e9_f64,
                0.0..1e5_f64,
                proptest::collection::btree_map("[a-z]{1,4}", "[a-z ]{0,6}", 0..3),
            )
                .prop_map(|(name, count, sum, dur_secs, segments)| {
                    EventKind::Custom {
                        name,
                        count,
                        sum,
                        dur_secs,
                        segments,
                    }
                }),
        ];
        (
            kind,
            any::<i64>(),
            "[a-z0-9-]{1,12}",
            arb_opt(),
            (arb_opt(), arb_opt(), arb_opt(), arb_opt()),
            arb_opt(),
            any::<bool>(),
        )
            .prop_map(
                |(kind, ts_ms, device_id, user_id, (p, v, c, country), event_id, inc)| Event {
                    kind,
                    ts_ms,
                    device_id,
                    user_id,
                    dims: Dimensions {
                        platform: p,
                        app_version: v,
                        channel: c,
                        country,
                        ..Dimensions::default()
                    },
                    event_id,
                    incremental_session: inc,
                },
            )
    }

    proptest! {
        #[test]
        fn binary_form_round_trips(
            app_id in any::<i64>(),
            received in any::<i64>(),
            events in proptest::collection::vec(arb_event(), 0..20),
        ) {
            let record = EventRecord::new(app_id, received, events.clone());
            prop_assert_eq!(EventRecord::decode(&record.encode()).expect("decode"), record);
            let block = encode_events(events.iter());
            prop_assert_eq!(decode_events(&block).expect("block"), events);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut with_tag = vec![BINARY_V2];
            with_tag.extend_from_slice(&bytes);
            let _ = EventRecord::decode(&with_tag);
            let _ = decode_events(&with_tag);
        }
    }
}
