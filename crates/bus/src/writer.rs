//! The writer thread and its group commit.
//!
//! # Ground rules
//! - Exactly one writer thread per open log, and it is the only code that writes to a
//!   segment file or creates one. It owns the active segment's write handle.
//! - A *round* takes the first waiting append (blocking), then every further append that
//!   is already queued, up to [`Options::commit_bytes`](crate::Options) and never across a
//!   segment roll; encodes all their records into one buffer with consecutive offsets;
//!   writes it with one positional write; calls `fdatasync` once; and only then publishes
//!   the new durable end (segment state first, then the watch channel) and completes every
//!   waiter of the round. So many concurrent appenders share one `fdatasync`, and nobody is
//!   acknowledged before their bytes are on stable storage.
//! - Offsets are handed out only by a successful round: a failed write is cut off again
//!   (`set_len` back to the last durable size) and its appenders get the error, so offsets
//!   stay dense. A failed `fdatasync` poisons the log instead (after such a failure Linux
//!   may have dropped the dirty pages while later fsyncs report success, so no later write
//!   can be trusted): every later append fails until the log is reopened and recovery has
//!   re-checked the tail.
//! - A segment is rolled only between rounds, after its last round was fsync'd, so every
//!   sealed segment is complete on disk.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

use crate::error::{Error, Result};
use crate::format::{self, HEADER_LEN};
use crate::log::Shared;
use crate::retention;
use crate::segment::Segment;

/// One `append` call waiting for the writer.
#[derive(Debug)]
pub(crate) struct AppendRequest {
    /// The records, in order.
    pub(crate) records: Vec<Vec<u8>>,
    /// Their size on disk, framing included.
    pub(crate) bytes: u64,
    /// Where the assigned offsets (or the error) go.
    pub(crate) reply: oneshot::Sender<Result<Range<u64>>>,
    /// Queue space held until the request is done: dropping it admits the next appends.
    pub(crate) permit: OwnedSemaphorePermit,
}

/// State of the writer thread.
#[derive(Debug)]
pub(crate) struct Writer {
    shared: Arc<Shared>,
    rx: mpsc::Receiver<AppendRequest>,
    /// The active segment and a handle to append to it.
    segment: Arc<Segment>,
    file: File,
    /// Durable size of the active segment.
    size: u64,
    /// Durable end of the log: the next offset to hand out.
    next: u64,
    /// Position of the active segment's last index entry.
    last_index: u64,
    /// When the active segment became active in this process.
    active_since: Instant,
    /// Reused encoding buffer.
    buf: Vec<u8>,
    /// An append that did not fit the previous round's segment.
    carry: Option<AppendRequest>,
}

impl Writer {
    /// A writer continuing the active segment `segment`, whose durable size is `size`.
    pub(crate) fn new(
        shared: Arc<Shared>,
        rx: mpsc::Receiver<AppendRequest>,
        segment: Arc<Segment>,
        file: File,
    ) -> Writer {
        let size = segment.size();
        let next = segment.end();
        let last_index = segment.last_index_position();
        Writer {
            shared,
            rx,
            segment,
            file,
            size,
            next,
            last_index,
            active_since: Instant::now(),
            buf: Vec::new(),
            carry: None,
        }
    }

    /// Runs rounds until every handle to the log is gone and the queue is empty.
    pub(crate) fn run(mut self) {
        tracing::debug!(dir = %self.shared.dir.display(), next = self.next, "log writer started");
        loop {
            let first = match self.carry.take() {
                Some(request) => request,
                None => match self.rx.blocking_recv() {
                    Some(request) => request,
                    None => break,
                },
            };
            if let Some(source) = self.shared.poisoned.get() {
                let _ = first.reply.send(Err(Error::Poisoned {
                    source: source.clone(),
                }));
                continue;
            }
            if self.must_roll_before(first.bytes, true)
                && let Err(err) = self.roll()
            {
                tracing::error!(error = %err, "could not start a new log segment");
                let _ = first.reply.send(Err(err));
                continue;
            }
            let mut pending = first.bytes;
            let mut round = vec![first];
            while pending < self.shared.options.commit_bytes as u64 {
                let Ok(request) = self.rx.try_recv() else {
                    break;
                };
                if self.must_roll_before(pending + request.bytes, false) {
                    self.carry = Some(request);
                    break;
                }
                pending += request.bytes;
                round.push(request);
            }
            self.commit(round);
        }
        tracing::debug!(dir = %self.shared.dir.display(), end = self.next, "log writer stopped");
    }

    /// Whether `bytes` more would overflow the active segment (or, at a round's start,
    /// whether the segment is too old). An empty segment is never rolled, so a batch
    /// larger than a segment still goes somewhere.
    fn must_roll_before(&self, bytes: u64, round_start: bool) -> bool {
        let empty = self.next == self.segment.base && round_start;
        if empty {
            return false;
        }
        let options = &self.shared.options;
        let too_big = self.size + bytes > options.segment_bytes;
        let too_old = round_start
            && self.next > self.segment.base
            && options
                .segment_max_age
                .is_some_and(|age| self.active_since.elapsed() >= age);
        too_big || too_old
    }

    /// Seals the active segment (already fully fsync'd) and starts a new one at `next`,
    /// then applies retention, which may now delete the sealed one.
    fn roll(&mut self) -> Result<()> {
        let (segment, file) = Segment::create(
            &self.shared.dir,
            self.next,
            self.shared.options.index_interval_bytes,
        )?;
        let segment = Arc::new(segment);
        self.shared.insert_segment(segment.clone());
        tracing::debug!(
            sealed = %self.segment.path.display(),
            base = self.next,
            "rolled log segment"
        );
        self.segment = segment;
        self.file = file;
        self.size = HEADER_LEN;
        self.last_index = HEADER_LEN;
        self.active_since = Instant::now();
        if let Err(err) = retention::apply(&self.shared, SystemTime::now()) {
            tracing::warn!(error = %err, "log retention failed; will retry after the next roll");
        }
        Ok(())
    }

    /// Writes and fsyncs one round, then completes its waiters.
    fn commit(&mut self, mut round: Vec<AppendRequest>) {
        let interval = self.segment.index_interval();
        self.buf.clear();
        let mut offset = self.next;
        let mut position = self.size;
        let mut last_index = self.last_index;
        let mut new_entries = Vec::new();
        let mut ranges = Vec::with_capacity(round.len());
        for request in &mut round {
            let start = offset;
            for record in std::mem::take(&mut request.records) {
                if position - last_index >= interval {
                    new_entries.push((offset, position));
                    last_index = position;
                }
                format::encode_frame(&mut self.buf, offset, &record);
                position += format::frame_len(record.len());
                offset += 1;
            }
            ranges.push(start..offset);
        }

        let outcome = self.write_and_sync();
        // Do not keep a huge buffer around after one unusually large round.
        if self.buf.capacity() > 4 * self.shared.options.commit_bytes {
            self.buf = Vec::new();
        }
        match outcome {
            Ok(()) => {
                self.segment.advance(offset, position, &new_entries);
                self.size = position;
                self.next = offset;
                self.last_index = last_index;
                self.shared.commits.fetch_add(1, Ordering::Relaxed);
                self.shared.durable.send_replace(offset);
                for (request, range) in round.into_iter().zip(ranges) {
                    let _ = request.reply.send(Ok(range));
                    drop(request.permit);
                }
            }
            Err(err) => {
                for request in round {
                    let _ = request.reply.send(Err(err.clone()));
                }
            }
        }
    }

    /// Writes `buf` after the durable end of the active segment and fsyncs it. On a write
    /// error the partial write is cut off again; on an fsync error the log is poisoned.
    fn write_and_sync(&mut self) -> Result<()> {
        let path = &self.segment.path;
        if let Err(source) = self.file.write_all_at(&self.buf, self.size) {
            let err = Error::io("write segment", path)(source);
            tracing::error!(error = %err, "log append failed");
            if let Err(cut) = self.file.set_len(self.size) {
                tracing::error!(error = %cut, "could not cut off a failed write; poisoning the log");
                self.poison(cut);
            }
            return Err(err);
        }
        if let Err(source) = self.sync() {
            tracing::error!(error = %source, path = %path.display(), "fdatasync failed; poisoning the log");
            // Best effort: the unsynced round was not acknowledged, so try to take it
            // back. Whether the cut reaches the disk is as uncertain as the data was.
            let _ = self.file.set_len(self.size);
            return Err(self.poison(source));
        }
        Ok(())
    }

    fn sync(&self) -> std::io::Result<()> {
        #[cfg(test)]
        if self.shared.fail_next_sync.swap(false, Ordering::AcqRel) {
            return Err(std::io::Error::other("injected fdatasync failure"));
        }
        self.file.sync_data()
    }

    fn poison(&self, source: std::io::Error) -> Error {
        let source = self
            .shared
            .poisoned
            .get_or_init(|| Arc::new(source))
            .clone();
        Error::Poisoned { source }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use crate::{Error, LocalLog, Options, ReadLimits};

    #[tokio::test]
    async fn a_failed_fdatasync_poisons_the_log_until_it_is_reopened() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = LocalLog::open(dir.path(), Options::default()).expect("open");
        assert_eq!(log.append(vec![b"kept".to_vec()]).await.ok(), Some(0..1));

        log.shared().fail_next_sync.store(true, Ordering::Release);
        let err = log.append(vec![b"lost".to_vec()]).await.err();
        assert!(matches!(err, Some(Error::Poisoned { .. })), "{err:?}");
        // Every later append fails too, before reaching the disk.
        let err = log.append(vec![b"refused".to_vec()]).await.err();
        assert!(matches!(err, Some(Error::Poisoned { .. })), "{err:?}");
        assert!(err.is_some_and(|e| !e.is_transient()));
        // What was durable stays readable, and nothing else became visible.
        assert_eq!(log.durable_end(), 1);
        let records = log.read_from(0, ReadLimits::default()).expect("read");
        assert_eq!(records.len(), 1);

        // Reopening recovers; the unacknowledged batch was cut off again.
        drop(log);
        let log = LocalLog::open(dir.path(), Options::default()).expect("reopen");
        assert_eq!(log.durable_end(), 1);
        assert_eq!(log.append(vec![b"again".to_vec()]).await.ok(), Some(1..2));
    }
}
