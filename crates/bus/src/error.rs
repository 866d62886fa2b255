//! The crate's one error type.
//!
//! Errors are cheap to clone (I/O errors sit behind an `Arc`) because one failed group
//! commit has to be reported to every appender that shared it. Each variant says whether
//! retrying can help; [`Error::is_transient`] sums that up for callers such as the ingest
//! endpoint, which maps a transient error to `503` and expects the client to retry.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the local log.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file system call failed. Appends that fail this way were not acknowledged and
    /// none of their records is readable; the log keeps working (for example after a
    /// full disk is freed) unless the failure was in `fsync`, see [`Error::Poisoned`].
    #[error("failed to {op} {}: {source}", .path.display())]
    Io {
        /// What the log was doing, e.g. `"write segment"`.
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: Arc<io::Error>,
    },

    /// An `fsync` failed. After a failed `fsync` the kernel may have dropped the dirty
    /// pages, so nothing written since the last good `fsync` can be trusted; the log
    /// refuses all further appends. Reopen it (recovery re-checks every record of the
    /// active segment) once the cause is fixed.
    #[error("the log writer stopped after a failed fsync and the log must be reopened: {source}")]
    Poisoned {
        /// The error that `fsync` returned.
        #[source]
        source: Arc<io::Error>,
    },

    /// Another [`LocalLog`](crate::LocalLog), in this process or another, has the
    /// directory open. Two writers would corrupt each other's segments.
    #[error("log directory {} is already open elsewhere (its LOCK file is held)", .path.display())]
    Locked {
        /// The log directory.
        path: PathBuf,
    },

    /// Stored data failed a check where a crash cannot explain it: a bad checksum or a
    /// short file inside a sealed segment, a bad segment header. Nothing is deleted or
    /// skipped; an operator has to look (restore the file from a backup, or move the
    /// segment away knowingly).
    #[error("corrupt log segment {} at byte {position}: {reason}", .path.display())]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Byte position in that file where the bad data starts.
        position: u64,
        /// What check failed.
        reason: &'static str,
    },

    /// One record is larger than [`Options::max_record_bytes`](crate::Options).
    #[error("record {index} of the batch has {size} bytes, more than the limit of {limit} bytes")]
    RecordTooLarge {
        /// Position of the record in the batch.
        index: usize,
        /// Its size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },

    /// A batch is larger than [`Options::max_pending_bytes`](crate::Options), so it could
    /// never be admitted to the writer's queue. Split it.
    #[error("batch of {size} bytes (with framing) exceeds the writer queue's {limit} bytes")]
    BatchTooLarge {
        /// Its size including per-record framing.
        size: u64,
        /// The configured limit.
        limit: u64,
    },

    /// The offset was removed by retention.
    #[error("offset {requested} was removed by retention; the log now starts at offset {start}")]
    OffsetTrimmed {
        /// The offset asked for.
        requested: u64,
        /// The first offset still stored.
        start: u64,
    },

    /// The offset is beyond the durable end of the log (reading at exactly the end is
    /// fine and returns no records).
    #[error("offset {requested} is beyond the durable end of the log at offset {end}")]
    OffsetOutOfRange {
        /// The offset asked for.
        requested: u64,
        /// The durable end.
        end: u64,
    },

    /// The writer thread is gone (the log was closed while the call was in flight).
    #[error("the log is closed")]
    Closed,

    /// [`Options`](crate::Options) are inconsistent.
    #[error("invalid log options: {field} {reason}")]
    InvalidOptions {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl Error {
    /// True when the same call may succeed later without operator action: an I/O error
    /// such as a full disk, or an append racing a shutdown. Corruption, a poisoned
    /// writer, a held lock and invalid arguments are permanent.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Io { .. } | Error::Closed)
    }

    /// True for data that failed a checksum or format check.
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corrupt { .. })
    }

    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            op,
            path,
            source: Arc::new(source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_file_and_the_cause() {
        let err = Error::io("write segment", "/data/00000000000000000000.log")(io::Error::other(
            "disk full",
        ));
        assert_eq!(
            err.to_string(),
            "failed to write segment /data/00000000000000000000.log: disk full"
        );
        assert!(err.is_transient());
        let corrupt = Error::Corrupt {
            path: "x.log".into(),
            position: 42,
            reason: "checksum mismatch",
        };
        assert_eq!(
            corrupt.to_string(),
            "corrupt log segment x.log at byte 42: checksum mismatch"
        );
        assert!(corrupt.is_corruption());
        assert!(!corrupt.is_transient());
    }
}
