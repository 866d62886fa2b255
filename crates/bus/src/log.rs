//! [`LocalLog`]: opening and recovering a log directory, and the public handle.
//!
//! # Ground rules
//! - `Shared` is what the handle, the readers and the writer thread have in common. The
//!   segment map holds every stored segment by base offset; the newest is the active one.
//!   The writer inserts a new segment before any offset in it becomes durable, and
//!   retention removes only old prefixes, so a reader that saw durable end `e` finds
//!   every offset in `[start, e)` in the map (or gets `OffsetTrimmed`).
//! - The durable end lives in a `watch` channel: readers and waiters never see an offset
//!   that is not fsync'd.
//! - A `LOCK` file, locked with `flock`, keeps a second `LocalLog` (in this or another
//!   process) off the directory. It is released after the writer thread has finished,
//!   when the last handle (including in-flight appends) is dropped.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::SystemTime;

use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use crate::error::{Error, Result};
use crate::format::{self, HEADER_LEN};
use crate::options::Options;
use crate::retention::{self, RetentionReport};
use crate::segment::{self, Segment};
use crate::writer::{AppendRequest, Writer};
use crate::{ReadLimits, Record};

/// Name of the lock file in a log directory.
const LOCK_FILE: &str = "LOCK";

/// State shared by the handles, the readers and the writer thread.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The log directory.
    pub(crate) dir: PathBuf,
    /// Validated options.
    pub(crate) options: Options,
    /// Every stored segment by base offset; the last is the active one.
    segments: RwLock<BTreeMap<u64, Arc<Segment>>>,
    /// The durable end offset.
    pub(crate) durable: watch::Sender<u64>,
    /// First stored offset.
    pub(crate) start: AtomicU64,
    /// Records at or above this offset are still needed by a consumer.
    pub(crate) low_water: AtomicU64,
    /// Set once an fsync failed; see `writer`.
    pub(crate) poisoned: OnceLock<Arc<std::io::Error>>,
    /// Serializes retention passes.
    pub(crate) retention_pass: Mutex<()>,
    /// Group commits (one write + one `fdatasync` each) since open.
    pub(crate) commits: AtomicU64,
    /// Test seam: makes the next `fdatasync` fail.
    #[cfg(test)]
    pub(crate) fail_next_sync: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn segments(&self) -> RwLockReadGuard<'_, BTreeMap<u64, Arc<Segment>>> {
        self.segments.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn segments_mut(&self) -> RwLockWriteGuard<'_, BTreeMap<u64, Arc<Segment>>> {
        self.segments
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn insert_segment(&self, segment: Arc<Segment>) {
        self.segments_mut().insert(segment.base, segment);
    }

    /// The segment holding `offset`, if stored.
    fn segment_for(&self, offset: u64) -> Option<Arc<Segment>> {
        self.segments()
            .range(..=offset)
            .next_back()
            .map(|(_, s)| s.clone())
    }
}

/// What `open` found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// Segment files found (after creating the first one in an empty directory).
    pub segments: usize,
    /// First stored offset.
    pub start_offset: u64,
    /// Durable end after recovery.
    pub end_offset: u64,
    /// Bytes cut off the end of the active segment (a torn or corrupt tail; 0 after a
    /// clean shutdown or a crash between group commits).
    pub truncated_bytes: u64,
    /// Why the tail was cut, if it was.
    pub truncation_reason: Option<&'static str>,
    /// Leftover temporary files of an interrupted segment creation that were removed.
    pub removed_temp_files: usize,
}

/// Sizes of a log, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogStats {
    /// First stored offset.
    pub start_offset: u64,
    /// Durable end offset.
    pub durable_end: u64,
    /// Number of segment files.
    pub segments: usize,
    /// Total bytes of the segment files (durable part).
    pub bytes: u64,
    /// Group commits (one write and one `fdatasync` each) since the log was opened;
    /// appends divided by this is the average number of batches sharing an `fdatasync`.
    /// A commit is counted when its `fdatasync` returns, which with several syncs in
    /// flight can be shortly after a later sync already acknowledged its appends.
    pub commits: u64,
}

/// Owns the writer thread and the directory lock; dropped last, see [`Inner`].
#[derive(Debug)]
struct WriterThread {
    handle: Option<JoinHandle<()>>,
    _lock: File,
}

impl Drop for WriterThread {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take()
            && handle.join().is_err()
        {
            tracing::error!("log writer thread panicked");
        }
        // `_lock` is dropped after the join: the directory is free only once the writer
        // has finished its last round.
    }
}

#[derive(Debug)]
struct Inner {
    // Field order matters: dropping `tx` closes the queue, so the writer drains it and
    // exits; then `_writer` joins it and releases the lock.
    tx: mpsc::Sender<AppendRequest>,
    queue_bytes: Arc<Semaphore>,
    shared: Arc<Shared>,
    recovery: RecoveryReport,
    _writer: WriterThread,
}

/// A durable, append-only log of opaque records in a directory, with group commit.
///
/// Cloning is cheap and gives another handle to the same log. The log is closed when
/// the last handle and the last in-flight [`append`](Self::append) future are dropped;
/// [`close`](Self::close) does that without blocking the async runtime.
///
/// See the [crate documentation](crate) for an example, and `docs/bus.md` for the
/// on-disk format and the durability guarantees.
#[derive(Debug, Clone)]
pub struct LocalLog {
    inner: Arc<Inner>,
}

impl LocalLog {
    /// Opens (creating if needed) the log in `dir`, recovers it and starts its writer
    /// thread.
    ///
    /// Recovery checks every record of the active (newest) segment and cuts off a torn or
    /// corrupt tail (see [`RecoveryReport`]); sealed segments are checked lazily, when first
    /// read, or all at once by [`verify`](Self::verify). This does blocking file I/O: in
    /// async code call it from `spawn_blocking`.
    ///
    /// # Errors
    /// [`Error::Locked`] if the directory is open elsewhere, [`Error::Corrupt`] for a bad
    /// segment header (a missing or short sealed segment is found when it is read, or by
    /// [`verify`](Self::verify)), [`Error::Io`], [`Error::InvalidOptions`].
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<LocalLog> {
        options.validate()?;
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            fs::create_dir_all(&dir).map_err(Error::io("create log directory", &dir))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                segment::sync_dir(parent)?;
            }
        }
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(Error::io("open lock file", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(Error::Locked { path: dir }),
            Err(fs::TryLockError::Error(err)) => {
                return Err(Error::io("lock log directory", &lock_path)(err));
            }
        }

        let (segments, active_file, recovery) = recover(&dir, &options)?;
        let active = segments
            .values()
            .next_back()
            .cloned()
            .ok_or_else(|| Error::Corrupt {
                path: dir.clone(),
                position: 0,
                reason: "no segment after recovery",
            })?;
        let (durable, _) = watch::channel(recovery.end_offset);
        let shared = Arc::new(Shared {
            dir,
            segments: RwLock::new(segments),
            durable,
            start: AtomicU64::new(recovery.start_offset),
            low_water: AtomicU64::new(0),
            poisoned: OnceLock::new(),
            retention_pass: Mutex::new(()),
            commits: AtomicU64::new(0),
            #[cfg(test)]
            fail_next_sync: std::sync::atomic::AtomicBool::new(false),
            options,
        });
        let (tx, rx) = mpsc::channel(shared.options.max_pending_batches);
        let writer = Writer::new(shared.clone(), rx, active, active_file)?;
        let handle = std::thread::Builder::new()
            .name("sundial-bus-writer".into())
            .spawn(move || writer.run())
            .map_err(Error::io("start log writer thread", &shared.dir))?;
        tracing::info!(
            dir = %shared.dir.display(),
            start = recovery.start_offset,
            end = recovery.end_offset,
            segments = recovery.segments,
            truncated_bytes = recovery.truncated_bytes,
            "opened local log"
        );
        let queue_bytes = Arc::new(Semaphore::new(shared.options.max_pending_bytes as usize));
        Ok(LocalLog {
            inner: Arc::new(Inner {
                tx,
                queue_bytes,
                shared,
                recovery,
                _writer: WriterThread {
                    handle: Some(handle),
                    _lock: lock,
                },
            }),
        })
    }

    /// Appends `records` as one batch and resolves, with their offsets, once they are
    /// durable (written and `fdatasync`'d).
    ///
    /// The records get consecutive offsets; concurrent batches never interleave. All
    /// appends waiting at the same time share one write and one `fdatasync` (group
    /// commit). When the writer's queue is full ([`Options::max_pending_bytes`],
    /// [`Options::max_pending_batches`]) the future waits for room: that is the log's
    /// backpressure. An empty batch writes nothing and resolves, as an empty range at the
    /// end of the log, once every earlier append is durable.
    ///
    /// The future owns what it needs (`'static`) and may be spawned. Dropping it before it
    /// resolves does not cancel the append: the records may or may not be written.
    ///
    /// # Errors
    /// [`Error::RecordTooLarge`] and [`Error::BatchTooLarge`] before anything is queued;
    /// [`Error::Io`] if the write failed (nothing of the batch is stored);
    /// [`Error::Poisoned`] after a failed `fdatasync`; [`Error::Closed`].
    pub fn append(
        &self,
        records: Vec<Vec<u8>>,
    ) -> impl Future<Output = Result<Range<u64>>> + Send + 'static {
        let inner = self.inner.clone();
        async move {
            let options = &inner.shared.options;
            let mut bytes: u64 = 0;
            for (index, record) in records.iter().enumerate() {
                if record.len() > options.max_record_bytes {
                    return Err(Error::RecordTooLarge {
                        index,
                        size: record.len(),
                        limit: options.max_record_bytes,
                    });
                }
                bytes += format::frame_len(record.len());
            }
            if bytes > options.max_pending_bytes {
                return Err(Error::BatchTooLarge {
                    size: bytes,
                    limit: options.max_pending_bytes,
                });
            }
            if let Some(source) = inner.shared.poisoned.get() {
                return Err(Error::Poisoned {
                    source: source.clone(),
                });
            }
            // `bytes <= max_pending_bytes <= u32::MAX`, checked above and by `validate`.
            let permit = inner
                .queue_bytes
                .clone()
                .acquire_many_owned(bytes as u32)
                .await
                .map_err(|_| Error::Closed)?;
            let (reply, response) = oneshot::channel();
            inner
                .tx
                .send(AppendRequest {
                    records,
                    bytes,
                    reply,
                    permit,
                })
                .await
                .map_err(|_| Error::Closed)?;
            response.await.map_err(|_| Error::Closed)?
        }
    }

    /// Reads durable records starting at `offset`, in order, within `limits` (at least
    /// one record is returned when one exists, even if it is larger than
    /// `limits.max_bytes`). Reading at the durable end returns no records; wait with
    /// [`wait_for`](Self::wait_for) or [`subscribe`](Self::subscribe).
    ///
    /// Blocking (positional reads, usually from the page cache); in async code use
    /// [`read`](Self::read) or `spawn_blocking`.
    ///
    /// # Errors
    /// [`Error::OffsetTrimmed`], [`Error::OffsetOutOfRange`], [`Error::Corrupt`] if a
    /// record read fails its checksum, [`Error::Io`].
    pub fn read_from(&self, offset: u64, limits: ReadLimits) -> Result<Vec<Record>> {
        let shared = &self.inner.shared;
        let end = *shared.durable.borrow();
        if offset > end {
            return Err(Error::OffsetOutOfRange {
                requested: offset,
                end,
            });
        }
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut next = offset;
        while next < end && out.len() < limits.max_records.max(1) {
            if !out.is_empty() && bytes >= limits.max_bytes {
                break;
            }
            let segment = match shared.segment_for(next) {
                Some(segment) if next >= shared.start.load(Ordering::Acquire) => segment,
                _ => {
                    // Loaded after the lookup: retention moves `start` in the same critical
                    // section as it removes segments, so this is the new start.
                    return Err(Error::OffsetTrimmed {
                        requested: next,
                        start: shared.start.load(Ordering::Acquire),
                    });
                }
            };
            let limits = ReadLimits {
                max_records: limits.max_records.max(1),
                ..limits
            };
            let after = segment.read(next, end, limits, &mut out, &mut bytes)?;
            if after == next {
                // Nothing more fits the limits.
                break;
            }
            next = after;
        }
        Ok(out)
    }

    /// [`read_from`](Self::read_from) on tokio's blocking pool.
    ///
    /// # Panics
    /// If called outside a tokio runtime.
    pub fn read(
        &self,
        offset: u64,
        limits: ReadLimits,
    ) -> impl Future<Output = Result<Vec<Record>>> + Send + 'static {
        let log = self.clone();
        async move {
            tokio::task::spawn_blocking(move || log.read_from(offset, limits))
                .await
                .map_err(|_| Error::Closed)?
        }
    }

    /// The offset after the last durable record: the next append's first offset, once
    /// earlier appends are done.
    pub fn durable_end(&self) -> u64 {
        *self.inner.shared.durable.borrow()
    }

    /// The first stored offset (it grows as retention deletes segments).
    pub fn start_offset(&self) -> u64 {
        self.inner.shared.start.load(Ordering::Acquire)
    }

    /// A watch of the durable end offset, for consumers that wait for new records
    /// without polling.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.shared.durable.subscribe()
    }

    /// Waits until the record at `offset` is durable (the durable end is past it) and
    /// returns the durable end. Returns at once if it already is.
    pub async fn wait_for(&self, offset: u64) -> Result<u64> {
        let mut rx = self.subscribe();
        let end = rx
            .wait_for(|end| *end > offset)
            .await
            .map_err(|_| Error::Closed)?;
        Ok(*end)
    }

    /// A cursor that reads forward from `offset`, waiting for new records when it has
    /// read everything; the shape of a consumer loop. The position is only kept in
    /// memory: persist it yourself (the aggregator stores it with its aggregates).
    pub fn reader(&self, offset: u64) -> Reader {
        Reader {
            log: self.clone(),
            position: offset,
        }
    }

    /// Tells retention that records below `offset` are no longer needed (typically the
    /// consumer position the aggregator has committed to its store). The mark only
    /// rises; it starts at 0 on every open, so nothing is deleted until a consumer calls
    /// this. With no consumer to protect, call `retain_from(u64::MAX)`.
    pub fn retain_from(&self, offset: u64) {
        self.inner
            .shared
            .low_water
            .fetch_max(offset, Ordering::AcqRel);
    }

    /// Applies retention now (it also runs after every segment roll). Schedule it, for
    /// example hourly, so age-based retention works when no segment rolls.
    ///
    /// # Panics
    /// If called outside a tokio runtime.
    pub fn apply_retention(
        &self,
    ) -> impl Future<Output = Result<RetentionReport>> + Send + 'static {
        let shared = self.inner.shared.clone();
        async move {
            tokio::task::spawn_blocking(move || retention::apply(&shared, SystemTime::now()))
                .await
                .map_err(|_| Error::Closed)?
        }
    }

    /// Checks every record of every segment (blocking; reads the whole log). Sealed
    /// segments are otherwise checked when first read.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the first bad segment and position.
    pub fn verify(&self) -> Result<()> {
        let segments: Vec<Arc<Segment>> = self.inner.shared.segments().values().cloned().collect();
        for segment in segments {
            segment.ensure_index()?;
        }
        Ok(())
    }

    /// What recovery did when the log was opened.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.inner.recovery
    }

    /// Current sizes, for metrics.
    pub fn stats(&self) -> LogStats {
        let segments = self.inner.shared.segments();
        LogStats {
            start_offset: self.start_offset(),
            durable_end: self.durable_end(),
            segments: segments.len(),
            bytes: segments.values().map(|s| s.size()).sum(),
            commits: self.inner.shared.commits.load(Ordering::Relaxed),
        }
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.inner.shared.dir
    }

    #[cfg(test)]
    pub(crate) fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// Drops this handle; if it was the last one, waits (on the blocking pool) until the
    /// writer has finished the appends already queued and the directory lock is released.
    ///
    /// # Panics
    /// If called outside a tokio runtime.
    pub async fn close(self) {
        let _ = tokio::task::spawn_blocking(move || drop(self)).await;
    }
}

/// A forward cursor over a [`LocalLog`], made by [`LocalLog::reader`]. It holds a handle
/// to the log, which stays open while a reader exists.
#[derive(Debug, Clone)]
pub struct Reader {
    log: LocalLog,
    position: u64,
}

impl Reader {
    /// The offset of the next record this reader returns.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Moves the cursor to `offset`.
    pub fn seek(&mut self, offset: u64) {
        self.position = offset;
    }

    /// Waits until at least one record at or after the position is durable, then reads
    /// records from the position within `limits` and moves past them. Never returns an
    /// empty batch.
    ///
    /// Cancel safe: if the future is dropped, the position is unchanged.
    ///
    /// # Errors
    /// As [`LocalLog::read_from`]; the position is unchanged.
    ///
    /// # Panics
    /// If called outside a tokio runtime.
    pub async fn next_batch(&mut self, limits: ReadLimits) -> Result<Vec<Record>> {
        self.log.wait_for(self.position).await?;
        let records = self.log.read(self.position, limits).await?;
        if let Some(last) = records.last() {
            self.position = last.offset + 1;
        }
        Ok(records)
    }

    /// Like [`next_batch`](Self::next_batch) but returns at once, possibly with no
    /// records, and reads on the calling thread (blocking).
    ///
    /// # Errors
    /// As [`LocalLog::read_from`]; the position is unchanged.
    pub fn try_next_batch(&mut self, limits: ReadLimits) -> Result<Vec<Record>> {
        let records = self.log.read_from(self.position, limits)?;
        if let Some(last) = records.last() {
            self.position = last.offset + 1;
        }
        Ok(records)
    }
}

/// Scans the directory: removes temporary files, opens the sealed segments, checks and
/// repairs the active one. Returns the segments, a write handle for the active one and
/// the report.
fn recover(
    dir: &Path,
    options: &Options,
) -> Result<(BTreeMap<u64, Arc<Segment>>, File, RecoveryReport)> {
    let mut report = RecoveryReport::default();
    let mut bases = Vec::new();
    let entries = fs::read_dir(dir).map_err(Error::io("list log directory", dir))?;
    for entry in entries {
        let entry = entry.map_err(Error::io("list log directory", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(base) = format::parse_segment_file_name(name) {
            bases.push(base);
        } else if name.ends_with(format::TEMP_SUFFIX) {
            let path = entry.path();
            fs::remove_file(&path).map_err(Error::io("remove temporary segment", &path))?;
            report.removed_temp_files += 1;
        }
    }
    if report.removed_temp_files > 0 {
        segment::sync_dir(dir)?;
    }
    bases.sort_unstable();
    let interval = options.index_interval_bytes;

    let mut segments = BTreeMap::new();
    let Some((&last, sealed)) = bases.split_last() else {
        let (segment, file) = Segment::create(dir, 0, interval)?;
        segments.insert(0, Arc::new(segment));
        report.segments = 1;
        return Ok((segments, file, report));
    };
    for (i, &base) in sealed.iter().enumerate() {
        let path = dir.join(format::segment_file_name(base));
        let size = fs::metadata(&path)
            .map_err(Error::io("stat segment", &path))?
            .len();
        // Bases are sorted and distinct, so the successor's base is greater than `base`.
        let end = bases[i + 1];
        let segment = Segment::open(path, base, end, size, None, interval)?;
        segments.insert(base, Arc::new(segment));
    }

    let path = dir.join(format::segment_file_name(last));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(Error::io("open segment for writing", &path))?;
    let len = file
        .metadata()
        .map_err(Error::io("stat segment", &path))?
        .len();
    // Checks the header before the scan.
    let probe = Segment::open(
        path.clone(),
        last,
        last,
        len.max(HEADER_LEN),
        None,
        interval,
    )?;
    drop(probe);
    let scan = segment::scan(&file, &path, last, len, interval)?;
    if let Some((position, reason)) = scan.invalid {
        report.truncated_bytes = len - position;
        report.truncation_reason = Some(reason);
        tracing::warn!(
            segment = %path.display(),
            position,
            bytes = len - position,
            reason,
            "cutting off the torn or corrupt tail of the active log segment"
        );
        file.set_len(position)
            .map_err(Error::io("truncate segment", &path))?;
        file.sync_all().map_err(Error::io("fsync segment", &path))?;
    }
    let active = Segment::open(
        path,
        last,
        scan.end,
        scan.valid_size,
        Some(scan.index),
        interval,
    )?;
    segments.insert(last, Arc::new(active));

    report.segments = segments.len();
    report.start_offset = bases[0];
    report.end_offset = scan.end;
    Ok((segments, file, report))
}
