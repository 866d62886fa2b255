//! Configuration of a [`LocalLog`](crate::LocalLog): segment size, queue bounds,
//! retention.
//!
//! `Options` is the validated form: [`Options::validate`] runs in `open`, so the rest
//! of the crate may rely on `segment_bytes > 0`, `max_record_bytes <= max_pending_bytes`
//! and `max_pending_bytes <= u32::MAX` (the queue's byte semaphore counts in `u32`).

use std::time::Duration;

use crate::error::{Error, Result};

/// Tuning and retention settings of a local log. Start from [`Options::default`] and
/// change the fields you need.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// A new segment file is started when the active one would grow past this many bytes
    /// (a batch is never split across segments, so one oversized batch may exceed it).
    /// Default 128 MiB.
    pub segment_bytes: u64,
    /// A non-empty active segment older than this is rolled at the next append, so that
    /// age-based retention can eventually remove low-traffic data. `None` (default) rolls
    /// by size only.
    pub segment_max_age: Option<Duration>,
    /// Largest accepted record payload. Default 8 MiB.
    pub max_record_bytes: usize,
    /// Bytes (payload plus 8 bytes of framing per record) that may wait for the writer at
    /// once. An append waits (asynchronously) while the queue is full: this is the
    /// backpressure that keeps memory bounded. Default 64 MiB.
    pub max_pending_bytes: u64,
    /// Number of appends (batches) that may wait for the writer at once. Default 4096.
    pub max_pending_batches: usize,
    /// The writer stops collecting appends for a group commit once this many bytes are
    /// gathered, then writes and `fdatasync`s them together. Default 4 MiB.
    pub commit_bytes: usize,
    /// How many group commits may wait for `fdatasync` at once. While one round is being
    /// synced the writer already writes the next; concurrent flushes of one file are
    /// merged by the kernel and the disk, which raises commits per second and lowers the
    /// latency of an append that arrives during a flush. 1 makes commits strictly one
    /// after another. Default 4.
    pub syncs_in_flight: usize,
    /// Distance in bytes between entries of the in-memory sparse index that maps offsets to
    /// file positions. Smaller is faster random reads, more memory. Default 64 KiB.
    pub index_interval_bytes: u64,
    /// When sealed segments may be deleted.
    pub retention: Retention,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_bytes: 128 << 20,
            segment_max_age: None,
            max_record_bytes: 8 << 20,
            max_pending_bytes: 64 << 20,
            max_pending_batches: 4096,
            commit_bytes: 4 << 20,
            syncs_in_flight: 4,
            index_interval_bytes: 64 << 10,
            retention: Retention::default(),
        }
    }
}

impl Options {
    /// Checks that the settings are consistent; `LocalLog::open` calls this.
    pub fn validate(&self) -> Result<()> {
        let invalid = |field, reason| Err(Error::InvalidOptions { field, reason });
        if self.segment_bytes == 0 {
            return invalid("segment_bytes", "must be positive");
        }
        if self.max_pending_bytes == 0 || self.max_pending_bytes > u64::from(u32::MAX) {
            return invalid("max_pending_bytes", "must be between 1 and 4294967295");
        }
        if self.max_record_bytes as u64 + crate::format::FRAME_HEADER_LEN as u64
            > self.max_pending_bytes
        {
            return invalid(
                "max_record_bytes",
                "must leave room for one framed record in max_pending_bytes",
            );
        }
        if self.max_pending_batches == 0 {
            return invalid("max_pending_batches", "must be positive");
        }
        if self.commit_bytes == 0 {
            return invalid("commit_bytes", "must be positive");
        }
        if self.syncs_in_flight == 0 || self.syncs_in_flight > 64 {
            return invalid("syncs_in_flight", "must be between 1 and 64");
        }
        if self.index_interval_bytes == 0 {
            return invalid("index_interval_bytes", "must be positive");
        }
        Ok(())
    }
}

/// Which sealed segments may be deleted.
///
/// A segment is deleted only when **all** of these hold:
/// - it is sealed (the active segment is never deleted);
/// - every record in it is below the low-water mark set with
///   [`LocalLog::retain_from`](crate::LocalLog::retain_from) (the mark starts at 0 on every
///   open, so nothing is deleted until a consumer says what it no longer needs);
/// - the log is over [`max_bytes`](Self::max_bytes), or the segment's last write is at
///   least [`max_age`](Self::max_age) old;
/// - every older segment is deleted too (the log stays one contiguous range).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Retention {
    /// Delete old segments while the log's files total more than this. Default `None`.
    pub max_bytes: Option<u64>,
    /// Delete segments whose newest record is at least this old. Default 7 days.
    pub max_age: Option<Duration>,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_bytes: None,
            max_age: Some(Duration::from_secs(7 * 24 * 3600)),
        }
    }
}

impl Retention {
    /// Keep everything (no size or age limit).
    pub fn keep_all() -> Self {
        Retention {
            max_bytes: None,
            max_age: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Options::default().validate().ok(), Some(()));
    }

    #[test]
    fn inconsistent_options_are_rejected_with_the_field_name() {
        let mut o = Options::default();
        o.max_record_bytes = o.max_pending_bytes as usize;
        let err = o
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("max_record_bytes"), "{err}");

        let zero_segments = Options {
            segment_bytes: 0,
            ..Options::default()
        };
        assert!(zero_segments.validate().is_err());

        let huge_queue = Options {
            max_pending_bytes: u64::from(u32::MAX) + 1,
            ..Options::default()
        };
        assert!(huge_queue.validate().is_err());
    }
}
