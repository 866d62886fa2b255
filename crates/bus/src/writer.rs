//! The writer thread, its sync threads, and the group commit.
//!
//! # Ground rules
//! - Exactly one writer thread per open log, and it is the only code that writes to a
//!   segment file or creates one. It owns the active segment's write handle.
//! - A *round* takes the first waiting append (blocking), then every further append that
//!   is already queued, up to [`Options::commit_bytes`](crate::Options) and never across a
//!   segment roll; encodes all their records into one buffer with consecutive offsets and
//!   writes it with one positional write. The writer then hands the round to a small
//!   pool of sync threads, which call `fdatasync`, and goes on collecting the next round.
//!   Up to [`Options::syncs_in_flight`](crate::Options) `fdatasync`s run at once: the
//!   kernel and the disk merge concurrent flushes of one file, so this raises the number
//!   of group commits per second and cuts the time an append waits for the flush ahead
//!   of it.
//! - An `fdatasync` that returns covers every byte written before it was called, so when
//!   the sync of round *n* returns, rounds `..= n` are durable. The sync threads complete
//!   rounds strictly in write order, under the `Flight` lock: segment state first, then
//!   the durable-end watch, then the waiters. Nobody is acknowledged, and no reader sees a
//!   record, before its bytes are on stable storage.
//! - Offsets are handed out by the writer as it writes; a failed write is cut off again
//!   (`set_len` back to where the round started) and its appenders get the error, so
//!   offsets stay dense. A failed `fdatasync` poisons the log (after such a failure Linux
//!   may have dropped dirty pages while later fsyncs report success, so nothing written
//!   before it can be trusted): every round not yet acknowledged fails, and so does every
//!   later append, until the log is reopened and recovery has re-checked the tail.
//! - Before a segment is rolled, the writer waits until every round in flight is
//!   durable, so every sealed segment is complete on disk and unsynced bytes only ever
//!   exist at the end of the active segment.

use std::collections::VecDeque;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, mpsc as std_mpsc};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime};

use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

use crate::error::{Error, Result};
use crate::format::{self, HEADER_LEN};
use crate::log::Shared;
use crate::retention;
use crate::segment::{IndexEntry, Segment};

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

/// A round that is written and waits for an `fdatasync`.
#[derive(Debug)]
struct WrittenRound {
    /// The segment it was written to (the active one).
    segment: Arc<Segment>,
    /// One past its last record.
    end: u64,
    /// Size of the segment after it.
    size: u64,
    /// Index entries for its records.
    entries: Vec<IndexEntry>,
    /// Its appends and their offsets.
    waiters: Vec<(AppendRequest, Range<u64>)>,
}

/// Rounds between write and acknowledgement.
#[derive(Debug, Default)]
struct Flight {
    /// Written, not yet durable, in write order.
    rounds: VecDeque<WrittenRound>,
    /// `fdatasync` calls running.
    syncing: usize,
}

/// What the writer and the sync threads share.
#[derive(Debug)]
struct Syncs {
    shared: Arc<Shared>,
    flight: Mutex<Flight>,
    /// Signalled whenever `flight` shrinks.
    changed: Condvar,
}

/// One `fdatasync` to run: it makes the log durable up to offset `end`.
#[derive(Debug)]
struct SyncJob {
    file: Arc<File>,
    end: u64,
}

impl Syncs {
    fn flight(&self) -> MutexGuard<'_, Flight> {
        self.flight.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, Flight>) -> MutexGuard<'a, Flight> {
        self.changed
            .wait(guard)
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Body of a sync thread.
    fn run(&self, jobs: &Mutex<std_mpsc::Receiver<SyncJob>>) {
        loop {
            let job = {
                let jobs = jobs.lock().unwrap_or_else(PoisonError::into_inner);
                match jobs.recv() {
                    Ok(job) => job,
                    Err(_) => return,
                }
            };
            let result = self.sync(&job.file);
            self.finish(&job, result);
        }
    }

    fn sync(&self, file: &File) -> std::io::Result<()> {
        #[cfg(test)]
        if self.shared.fail_next_sync.swap(false, Ordering::AcqRel) {
            return Err(std::io::Error::other("injected fdatasync failure"));
        }
        file.sync_data()
    }

    /// Completes the rounds that the `fdatasync` for `job` made durable, or fails every
    /// round in flight if it failed.
    fn finish(&self, job: &SyncJob, result: std::io::Result<()>) {
        let mut flight = self.flight();
        flight.syncing = flight.syncing.saturating_sub(1);
        let mut done = Vec::new();
        let failure = match result {
            Err(source) => {
                tracing::error!(error = %source, "fdatasync failed; poisoning the log");
                // Best effort: what is in flight was not acknowledged, so try to take it
                // back. Whether the cut reaches the disk is as uncertain as the data was.
                if let Some(first) = flight.rounds.front() {
                    let _ = job.file.set_len(first.segment.size());
                }
                Some(poison(&self.shared, source))
            }
            Ok(()) => {
                self.shared.commits.fetch_add(1, Ordering::Relaxed);
                // A sync that succeeds after another one failed proves nothing about the
                // bytes before it; see the ground rules.
                self.shared.poisoned.get().map(|source| Error::Poisoned {
                    source: source.clone(),
                })
            }
        };
        match failure {
            Some(err) => {
                for round in flight.rounds.drain(..) {
                    done.push((round.waiters, Err(err.clone())));
                }
            }
            None => {
                let mut durable = None;
                while flight.rounds.front().is_some_and(|r| r.end <= job.end) {
                    let Some(round) = flight.rounds.pop_front() else {
                        break;
                    };
                    round.segment.advance(round.end, round.size, &round.entries);
                    durable = Some(round.end);
                    done.push((round.waiters, Ok(())));
                }
                if let Some(end) = durable {
                    self.shared.durable.send_replace(end);
                }
            }
        }
        drop(flight);
        self.changed.notify_all();
        for (waiters, outcome) in done {
            for (request, range) in waiters {
                let reply = match &outcome {
                    Ok(()) => Ok(range),
                    Err(err) => Err(err.clone()),
                };
                let _ = request.reply.send(reply);
                drop(request.permit);
            }
        }
    }
}

/// Marks the log as poisoned (once) and returns the error to report.
fn poison(shared: &Shared, source: std::io::Error) -> Error {
    let source = shared.poisoned.get_or_init(|| Arc::new(source)).clone();
    Error::Poisoned { source }
}

/// State of the writer thread.
#[derive(Debug)]
pub(crate) struct Writer {
    shared: Arc<Shared>,
    rx: mpsc::Receiver<AppendRequest>,
    /// The active segment and a handle to append to it.
    segment: Arc<Segment>,
    file: Arc<File>,
    /// Bytes written to the active segment (durable or in flight).
    written: u64,
    /// The next offset to hand out.
    next: u64,
    /// Position of the active segment's last index entry.
    last_index: u64,
    /// When the active segment became active in this process.
    active_since: Instant,
    /// Reused encoding buffer.
    buf: Vec<u8>,
    /// An append that did not fit the previous round's segment.
    carry: Option<AppendRequest>,
    /// Rounds in flight, shared with the sync threads.
    syncs: Arc<Syncs>,
    /// Hands rounds to the sync threads; dropped at shutdown to stop them.
    jobs: Option<std_mpsc::Sender<SyncJob>>,
    sync_threads: Vec<JoinHandle<()>>,
}

impl Writer {
    /// A writer continuing the active segment `segment` (fully durable at open), with its
    /// sync threads started.
    pub(crate) fn new(
        shared: Arc<Shared>,
        rx: mpsc::Receiver<AppendRequest>,
        segment: Arc<Segment>,
        file: File,
    ) -> Result<Writer> {
        let syncs = Arc::new(Syncs {
            shared: shared.clone(),
            flight: Mutex::new(Flight::default()),
            changed: Condvar::new(),
        });
        let (jobs, job_rx) = std_mpsc::channel();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let mut sync_threads = Vec::new();
        for i in 0..shared.options.syncs_in_flight {
            let syncs = syncs.clone();
            let job_rx = job_rx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("sundial-bus-sync-{i}"))
                .spawn(move || syncs.run(&job_rx))
                .map_err(Error::io("start log sync thread", &shared.dir))?;
            sync_threads.push(handle);
        }
        let written = segment.size();
        let next = segment.end();
        let last_index = segment.last_index_position();
        Ok(Writer {
            shared,
            rx,
            segment,
            file: Arc::new(file),
            written,
            next,
            last_index,
            active_since: Instant::now(),
            buf: Vec::new(),
            carry: None,
            syncs,
            jobs: Some(jobs),
            sync_threads,
        })
    }

    /// Runs rounds until every handle to the log is gone and the queue is empty, then
    /// waits for the rounds in flight and stops the sync threads.
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
        self.drain();
        drop(self.jobs.take());
        for handle in self.sync_threads.drain(..) {
            if handle.join().is_err() {
                tracing::error!("log sync thread panicked");
            }
        }
        tracing::debug!(dir = %self.shared.dir.display(), end = self.next, "log writer stopped");
    }

    /// Waits until no round is in flight.
    fn drain(&self) {
        let mut flight = self.syncs.flight();
        while !flight.rounds.is_empty() || flight.syncing > 0 {
            flight = self.syncs.wait(flight);
        }
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
        let too_big = self.written + bytes > options.segment_bytes;
        let too_old = round_start
            && self.next > self.segment.base
            && options
                .segment_max_age
                .is_some_and(|age| self.active_since.elapsed() >= age);
        too_big || too_old
    }

    /// Seals the active segment once everything in it is durable, starts a new one at
    /// `next`, then applies retention, which may now delete the sealed one.
    fn roll(&mut self) -> Result<()> {
        self.drain();
        if let Some(source) = self.shared.poisoned.get() {
            return Err(Error::Poisoned {
                source: source.clone(),
            });
        }
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
        self.file = Arc::new(file);
        self.written = HEADER_LEN;
        self.last_index = HEADER_LEN;
        self.active_since = Instant::now();
        if let Err(err) = retention::apply(&self.shared, SystemTime::now()) {
            tracing::warn!(error = %err, "log retention failed; will retry after the next roll");
        }
        Ok(())
    }

    /// Writes one round and hands it to the sync threads (waiting while
    /// `syncs_in_flight` syncs already run).
    fn commit(&mut self, mut round: Vec<AppendRequest>) {
        let interval = self.segment.index_interval();
        self.buf.clear();
        let mut offset = self.next;
        let mut position = self.written;
        let mut last_index = self.last_index;
        let mut entries = Vec::new();
        let mut waiters = Vec::with_capacity(round.len());
        for mut request in round.drain(..) {
            let start = offset;
            for record in std::mem::take(&mut request.records) {
                if position - last_index >= interval {
                    entries.push((offset, position));
                    last_index = position;
                }
                format::encode_frame(&mut self.buf, offset, &record);
                position += format::frame_len(record.len());
                offset += 1;
            }
            waiters.push((request, start..offset));
        }

        let written = self.file.write_all_at(&self.buf, self.written);
        // Do not keep a huge buffer around after one unusually large round.
        if self.buf.capacity() > 4 * self.shared.options.commit_bytes {
            self.buf = Vec::new();
        }
        if let Err(source) = written {
            let err = Error::io("write segment", &self.segment.path)(source);
            tracing::error!(error = %err, "log append failed");
            if let Err(cut) = self.file.set_len(self.written) {
                tracing::error!(error = %cut, "could not cut off a failed write; poisoning the log");
                poison(&self.shared, cut);
            }
            for (request, _) in waiters {
                let _ = request.reply.send(Err(err.clone()));
            }
            return;
        }
        self.written = position;
        self.next = offset;
        self.last_index = last_index;

        let mut flight = self.syncs.flight();
        while flight.syncing >= self.shared.options.syncs_in_flight {
            flight = self.syncs.wait(flight);
        }
        flight.rounds.push_back(WrittenRound {
            segment: self.segment.clone(),
            end: offset,
            size: position,
            entries,
            waiters,
        });
        flight.syncing += 1;
        drop(flight);
        let job = SyncJob {
            file: self.file.clone(),
            end: offset,
        };
        if let Some(jobs) = &self.jobs
            && jobs.send(job).is_err()
        {
            // Only if every sync thread died (a panic): fail rather than hang.
            let err = poison(
                &self.shared,
                std::io::Error::other("log sync threads are gone"),
            );
            let mut flight = self.syncs.flight();
            flight.syncing = 0;
            for round in flight.rounds.drain(..) {
                for (request, _) in round.waiters {
                    let _ = request.reply.send(Err(err.clone()));
                }
            }
        }
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
