//! One segment file: its durable extent, its sparse index, and reads from it.
//!
//! # Ground rules
//! - A segment's bytes in `[HEADER_LEN, state.size)` are durable (fsync'd) and hold the
//!   records `[base, state.end)`. Only the writer thread appends to a segment, and only
//!   to the active (newest) one; `size` and `end` are raised (by the sync thread that
//!   completes a group commit) only *after* an `fdatasync` covering those bytes returned,
//!   so readers, which never look past `size`, only ever see durable records.
//! - A sealed segment opened from disk starts without an index (`index: None`); the
//!   first read scans it once, checking every checksum and that it holds exactly
//!   `end - base` records. Any mismatch there is [`Error::Corrupt`]: a crash can only
//!   tear the unsynced tail of the *active* segment, never a sealed one.
//! - Index entries are `(offset, position)` pairs in increasing order, the first being
//!   `(base, HEADER_LEN)`.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::error::{Error, Result};
use crate::format::{self, FrameReader, HEADER_LEN, Step};
use crate::{ReadLimits, Record};

/// A sparse index entry: the frame of record `offset` starts at byte `position`.
pub(crate) type IndexEntry = (u64, u64);

/// A segment file of the log.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Offset of its first record.
    pub(crate) base: u64,
    /// Its file.
    pub(crate) path: PathBuf,
    /// A read-only handle used for positional reads.
    file: File,
    /// Bytes between sparse index entries.
    index_interval: u64,
    /// Durable extent and index; see the module's ground rules.
    state: Mutex<SegmentState>,
}

#[derive(Debug)]
struct SegmentState {
    /// One past the last durable record.
    end: u64,
    /// Durable length of the file.
    size: u64,
    /// Sparse index, `None` until a sealed segment is first read.
    index: Option<Vec<IndexEntry>>,
}

/// Result of scanning the active segment at open.
#[derive(Debug)]
pub(crate) struct Scan {
    /// One past the last valid record.
    pub(crate) end: u64,
    /// Position after the last valid record.
    pub(crate) valid_size: u64,
    /// Index of the valid records.
    pub(crate) index: Vec<IndexEntry>,
    /// The first invalid frame, if the scan stopped before the end of the file.
    pub(crate) invalid: Option<(u64, &'static str)>,
}

impl Segment {
    /// Opens an existing segment for reading and checks its header against `base`.
    /// `end` and `size` describe its durable extent, `index` its index if known.
    pub(crate) fn open(
        path: PathBuf,
        base: u64,
        end: u64,
        size: u64,
        index: Option<Vec<IndexEntry>>,
        index_interval: u64,
    ) -> Result<Segment> {
        let file = File::open(&path).map_err(Error::io("open segment", &path))?;
        check_header(&file, &path, base)?;
        Ok(Segment {
            base,
            path,
            file,
            index_interval,
            state: Mutex::new(SegmentState { end, size, index }),
        })
    }

    /// Creates an empty segment durably: the header is written and fsync'd under a
    /// temporary name, renamed into place, and the directory is fsync'd, so after a crash
    /// the segment either does not exist or has a complete header. Returns the segment
    /// and a handle for appending.
    pub(crate) fn create(dir: &Path, base: u64, index_interval: u64) -> Result<(Segment, File)> {
        let name = format::segment_file_name(base);
        let path = dir.join(&name);
        let temp = dir.join(format!(
            "{}{}",
            name.trim_end_matches(format::SEGMENT_SUFFIX),
            format::TEMP_SUFFIX
        ));
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)
            .map_err(Error::io("create segment", &temp))?;
        f.write_all(&format::encode_header(base))
            .map_err(Error::io("write segment header", &temp))?;
        f.sync_all()
            .map_err(Error::io("fsync new segment", &temp))?;
        drop(f);
        fs::rename(&temp, &path).map_err(Error::io("rename new segment", &path))?;
        sync_dir(dir)?;
        let writer = open_for_append(&path)?;
        let segment = Segment::open(
            path,
            base,
            base,
            HEADER_LEN,
            Some(vec![(base, HEADER_LEN)]),
            index_interval,
        )?;
        Ok((segment, writer))
    }

    fn state(&self) -> MutexGuard<'_, SegmentState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One past the last durable record.
    pub(crate) fn end(&self) -> u64 {
        self.state().end
    }

    /// Durable size in bytes.
    pub(crate) fn size(&self) -> u64 {
        self.state().size
    }

    /// Records that a group commit made `[.., end)` durable up to byte `size`, with new
    /// index entries. Called in write order, after `fdatasync`.
    pub(crate) fn advance(&self, end: u64, size: u64, new_entries: &[IndexEntry]) {
        let mut state = self.state();
        state.end = end;
        state.size = size;
        if let Some(index) = state.index.as_mut() {
            index.extend_from_slice(new_entries);
        }
    }

    /// Bytes between sparse index entries.
    pub(crate) fn index_interval(&self) -> u64 {
        self.index_interval
    }

    /// The last index entry, where the writer continues its index from.
    pub(crate) fn last_index_position(&self) -> u64 {
        self.state()
            .index
            .as_ref()
            .and_then(|i| i.last().map(|e| e.1))
            .unwrap_or(HEADER_LEN)
    }

    /// Modification time of the file: for a sealed segment, the time of its last append.
    pub(crate) fn modified(&self) -> Result<std::time::SystemTime> {
        self.file
            .metadata()
            .and_then(|m| m.modified())
            .map_err(Error::io("stat segment", &self.path))
    }

    /// Builds the index of a sealed segment if it has none, checking every record.
    pub(crate) fn ensure_index(&self) -> Result<()> {
        let (end, size) = {
            let state = self.state();
            if state.index.is_some() {
                return Ok(());
            }
            (state.end, state.size)
        };
        // Scan without the lock; a concurrent reader may do the same, which is harmless.
        let scan = scan(&self.file, &self.path, self.base, size, self.index_interval)?;
        if let Some((position, reason)) = scan.invalid {
            return Err(self.corrupt(position, reason));
        }
        if scan.end != end {
            return Err(self.corrupt(
                scan.valid_size,
                "sealed segment holds fewer or more records than its successor's base implies",
            ));
        }
        self.state().index.get_or_insert(scan.index);
        Ok(())
    }

    fn corrupt(&self, position: u64, reason: &'static str) -> Error {
        Error::Corrupt {
            path: self.path.clone(),
            position,
            reason,
        }
    }

    /// Appends records from `offset` (which must lie in this segment) up to `limit_end`
    /// (exclusive, at most the durable end) to `out`, within `limits` (the first record
    /// is taken whatever its size). `bytes` counts the payload bytes already in `out`.
    /// Returns the offset after the last record taken, at least `offset`.
    pub(crate) fn read(
        &self,
        offset: u64,
        limit_end: u64,
        limits: ReadLimits,
        out: &mut Vec<Record>,
        bytes: &mut usize,
    ) -> Result<u64> {
        self.ensure_index()?;
        let (end, size, (start_offset, start_position)) = {
            let state = self.state();
            let index = state.index.as_deref().unwrap_or(&[]);
            let at = index.partition_point(|e| e.0 <= offset);
            let entry = if at == 0 {
                (self.base, HEADER_LEN)
            } else {
                index[at - 1]
            };
            (state.end.min(limit_end), state.size, entry)
        };
        let mut reader = FrameReader::new(&self.file, start_position, start_offset, size);
        while reader.offset() < end {
            let step = reader
                .next_frame()
                .map_err(Error::io("read segment", &self.path))?;
            match step {
                Step::Record {
                    offset: record_offset,
                    payload,
                    ..
                } => {
                    if record_offset < offset {
                        continue;
                    }
                    let full = out.len() >= limits.max_records
                        || (!out.is_empty() && *bytes + payload.len() > limits.max_bytes);
                    if full {
                        return Ok(record_offset);
                    }
                    *bytes += payload.len();
                    out.push(Record {
                        offset: record_offset,
                        payload: payload.to_vec(),
                    });
                }
                Step::End => {
                    return Err(
                        self.corrupt(reader.position(), "segment ends before its last record")
                    );
                }
                Step::Invalid { position, reason } => return Err(self.corrupt(position, reason)),
            }
        }
        Ok(reader.offset().max(offset))
    }
}

/// Opens a segment file for positional writes.
pub(crate) fn open_for_append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(Error::io("open segment for writing", path))
}

/// Reads and checks the header of a segment file.
fn check_header(file: &File, path: &Path, base: u64) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let mut header = [0u8; HEADER_LEN as usize];
    let len = file
        .metadata()
        .map_err(Error::io("stat segment", path))?
        .len();
    let corrupt = |reason| Error::Corrupt {
        path: path.to_path_buf(),
        position: 0,
        reason,
    };
    if len < HEADER_LEN {
        return Err(corrupt("segment shorter than its header"));
    }
    file.read_exact_at(&mut header, 0)
        .map_err(Error::io("read segment header", path))?;
    let found = format::decode_header(&header).map_err(corrupt)?;
    if found != base {
        return Err(corrupt("header's base offset differs from the file name"));
    }
    Ok(())
}

/// Scans the frames of a segment from its header to byte `size`, building an index with
/// one entry per `interval` bytes, and stops at the first invalid frame.
pub(crate) fn scan(file: &File, path: &Path, base: u64, size: u64, interval: u64) -> Result<Scan> {
    let mut reader = FrameReader::new(file, HEADER_LEN, base, size);
    let mut index = vec![(base, HEADER_LEN)];
    let mut last = HEADER_LEN;
    loop {
        match reader
            .next_frame()
            .map_err(Error::io("scan segment", path))?
        {
            Step::Record {
                offset, position, ..
            } => {
                if position - last >= interval {
                    index.push((offset, position));
                    last = position;
                }
            }
            Step::End => {
                return Ok(Scan {
                    end: reader.offset(),
                    valid_size: reader.position(),
                    index,
                    invalid: None,
                });
            }
            Step::Invalid { position, reason } => {
                return Ok(Scan {
                    end: reader.offset(),
                    valid_size: position,
                    index,
                    invalid: Some((position, reason)),
                });
            }
        }
    }
}

/// Makes a directory's entries (created, renamed, deleted files) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("fsync directory", dir))
}
