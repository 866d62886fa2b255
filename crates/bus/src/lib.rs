//! Sundial's event bus backends: [`LocalLog`] (the embedded default, also as
//! [`LocalBus`], the analytics [`Bus`](sundial_analytics::bus::Bus)) and [`NatsBus`]
//! (NATS JetStream, for scale-out).
//!
//! `LocalLog` is an append-only log of opaque records in a directory. Records get dense
//! `u64` offsets starting at 0. It is built for the analytics ingest path, where an HTTP
//! request may be acknowledged only once its events are on stable storage:
//!
//! - **Group commit.** [`LocalLog::append`] resolves only after its batch is written and
//!   `fdatasync`'d. One writer thread collects every append waiting at that moment and
//!   makes them durable with one write and one `fdatasync`, so many concurrent appenders
//!   share the cost of a sync. While a group commit is being synced the writer already
//!   writes the next ([`Options::syncs_in_flight`]); commits are acknowledged in order.
//! - **Checksums and recovery.** Every record is framed with its length and a CRC-32C
//!   that also covers its offset. On open, a torn tail of the active segment (a crash in
//!   the middle of a group commit) is cut off; corruption anywhere else is reported as
//!   [`Error::Corrupt`], never silently skipped. A record that was acknowledged is never
//!   lost by recovery.
//! - **Bounded memory, backpressure.** Appends wait (asynchronously) when the writer's
//!   queue holds [`Options::max_pending_bytes`]; reads return at most [`ReadLimits`].
//! - **Readers do not poll.** A [`Reader`] (from [`LocalLog::reader`]) waits for new
//!   records and reads forward; [`LocalLog::subscribe`] and [`LocalLog::wait_for`] expose
//!   the durable end directly. Nobody sees a record before it is durable.
//! - **Retention** by size and age removes whole old segments, never the active one and
//!   never records a consumer still needs ([`LocalLog::retain_from`]). The log does not
//!   store consumer positions: the aggregator keeps its own, in its store, in the same
//!   transaction as the aggregates it derives.
//!
//! The on-disk format and the guarantees are described in `docs/bus.md`.
//!
//! # Example
//!
//! ```
//! use sundial_bus::{LocalLog, Options, ReadLimits};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), sundial_bus::Error> {
//! let dir = tempfile::tempdir().expect("temp dir");
//! let log = LocalLog::open(dir.path(), Options::default())?;
//!
//! // Resolves once both records are fsync'd.
//! let offsets = log.append(vec![b"first".to_vec(), b"second".to_vec()]).await?;
//! assert_eq!(offsets, 0..2);
//!
//! // A consumer reads from its own position and waits for more.
//! let mut reader = log.reader(0);
//! let records = reader.next_batch(ReadLimits::default()).await?;
//! assert_eq!(records[1].payload, b"second");
//! let next = tokio::spawn(async move { reader.next_batch(ReadLimits::default()).await });
//! log.append(vec![b"third".to_vec()]).await?;
//! let records = next.await.expect("task")?;
//! assert_eq!((records[0].offset, &records[0].payload[..]), (2, &b"third"[..]));
//!
//! // The aggregator committed everything below 3: retention may delete it.
//! log.retain_from(3);
//! log.close().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Modules
//! - `format`: file names, segment header, record frames, the frame reader.
//! - `segment`: one segment file, its durable extent and sparse index.
//! - `writer`: the writer thread, the sync threads and the group commit.
//! - `retention`: deleting old segments.
//! - `log`: opening, recovery and the public handle.

mod error;
mod format;
mod local_bus;
mod log;
mod nats;
mod options;
mod retention;
mod segment;
mod writer;

pub use error::{Error, Result};
pub use local_bus::LocalBus;
pub use log::{LocalLog, LogStats, Reader, RecoveryReport};
pub use nats::{NatsBus, NatsOptions};
pub use options::{Options, Retention};
pub use retention::RetentionReport;

/// A record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its offset.
    pub offset: u64,
    /// Its payload, as appended.
    pub payload: Vec<u8>,
}

/// How much one read may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// At most this many records (at least one is always allowed).
    pub max_records: usize,
    /// Stop before this many payload bytes would be exceeded, except that the first
    /// record is returned whatever its size, so a reader always makes progress.
    pub max_bytes: usize,
}

impl ReadLimits {
    /// At most `max_records` records, with the default byte limit.
    pub fn records(max_records: usize) -> Self {
        ReadLimits {
            max_records,
            ..ReadLimits::default()
        }
    }
}

impl Default for ReadLimits {
    /// 1,000 records or 4 MiB.
    fn default() -> Self {
        ReadLimits {
            max_records: 1000,
            max_bytes: 4 << 20,
        }
    }
}
