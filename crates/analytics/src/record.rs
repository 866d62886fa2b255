//! The bus message format: the accepted events of one request for one app.
//!
//! Ingest writes one [`EventRecord`] per (request, app) and the aggregator reads it
//! back. The events are already validated ([`crate::event`]'s invariants hold), so the
//! aggregator trusts them; a message that does not decode is a bug or corruption and is
//! reported with its position, never silently skipped.
//!
//! The encoding is JSON with a format version (`v`), so that a newer build can still
//! read what an older one published.

use serde::{Deserialize, Serialize};

use crate::event::Event;

/// The format version this build writes.
pub const RECORD_VERSION: u32 = 1;

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

    /// The bytes to publish.
    pub fn encode(&self) -> Vec<u8> {
        // A struct of strings, numbers and maps with string keys always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a published message.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let record: EventRecord = serde_json::from_slice(bytes)?;
        if record.v > RECORD_VERSION {
            return Err(RecordError::Version(record.v));
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Dimensions, EventKind};

    #[test]
    fn round_trips_and_refuses_newer_versions() {
        let record = EventRecord::new(
            7,
            1_700_000_000_000,
            vec![Event {
                kind: EventKind::OpenApp,
                ts_ms: 1_700_000_000_000,
                device_id: "d".into(),
                user_id: None,
                dims: Dimensions::default(),
                event_id: None,
                incremental_session: false,
            }],
        );
        let bytes = record.encode();
        assert_eq!(EventRecord::decode(&bytes).expect("decode"), record);
        let newer = String::from_utf8(bytes)
            .expect("utf8")
            .replace("\"v\":1", "\"v\":9");
        assert!(matches!(
            EventRecord::decode(newer.as_bytes()),
            Err(RecordError::Version(9))
        ));
        assert!(EventRecord::decode(b"{").is_err());
    }
}
