//! The on-disk format: segment file names, the segment header, record frames, and a
//! buffered frame reader shared by recovery, index building and reads.
//!
//! ```text
//! segment file  <base offset, 20 digits>.log
//!   header      magic "SDBL" | version u16 LE (=1) | flags u16 LE (=0) | base offset u64 LE
//!   frame*      payload length u32 LE | crc u32 LE | payload
//! crc = CRC-32C over (record offset u64 LE, payload length u32 LE, payload)
//! ```
//!
//! Offsets are not stored: the n-th frame of a segment holds offset `base + n`. Folding
//! the offset into the checksum means a frame is only valid at its own place, so stale or
//! misplaced bytes (a zero-filled block, a copy of an earlier frame) fail the check.
//!
//! Invariant kept by [`FrameReader`]: it never returns a frame that is not entirely
//! inside `[start, end)` with a matching checksum; everything else is reported as
//! [`Step::Invalid`] with the position of the first bad byte, and the caller decides
//! whether that is a torn tail (truncate) or corruption (error).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// First bytes of every segment file.
pub(crate) const MAGIC: [u8; 4] = *b"SDBL";
/// Format version written by this code; others are rejected.
pub(crate) const VERSION: u16 = 1;
/// Size of the segment header.
pub(crate) const HEADER_LEN: u64 = 16;
/// Size of a frame's length + checksum prefix.
pub(crate) const FRAME_HEADER_LEN: usize = 8;
/// Suffix of segment files.
pub(crate) const SEGMENT_SUFFIX: &str = ".log";
/// Suffix of a segment being created (renamed into place once its header is durable).
pub(crate) const TEMP_SUFFIX: &str = ".log.tmp";
/// Digits in a segment file name: enough for any `u64`.
const NAME_DIGITS: usize = 20;
/// How much a [`FrameReader`] reads from the file at once (more if one frame is larger).
const READ_CHUNK: usize = 256 << 10;

/// File name of the segment whose first record has offset `base`.
pub(crate) fn segment_file_name(base: u64) -> String {
    format!("{base:0NAME_DIGITS$}{SEGMENT_SUFFIX}")
}

/// The base offset named by a segment file name, or `None` for any other file.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The header of the segment starting at `base`.
pub(crate) fn encode_header(base: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..4].copy_from_slice(&MAGIC);
    h[4..6].copy_from_slice(&VERSION.to_le_bytes());
    h[6..8].copy_from_slice(&0u16.to_le_bytes());
    h[8..16].copy_from_slice(&base.to_le_bytes());
    h
}

/// Checks a header and returns its base offset.
pub(crate) fn decode_header(h: &[u8; HEADER_LEN as usize]) -> Result<u64, &'static str> {
    if h[0..4] != MAGIC {
        return Err("not a sundial log segment (bad magic)");
    }
    if u16::from_le_bytes([h[4], h[5]]) != VERSION {
        return Err("unsupported segment format version");
    }
    if u16::from_le_bytes([h[6], h[7]]) != 0 {
        return Err("unknown segment header flags");
    }
    let mut base = [0u8; 8];
    base.copy_from_slice(&h[8..16]);
    Ok(u64::from_le_bytes(base))
}

/// Checksum of the record at `offset`.
pub(crate) fn record_crc(offset: u64, payload: &[u8]) -> u32 {
    let len = payload.len() as u32;
    let crc = crc32c::crc32c(&offset.to_le_bytes());
    let crc = crc32c::crc32c_append(crc, &len.to_le_bytes());
    crc32c::crc32c_append(crc, payload)
}

/// Bytes a payload of `len` bytes takes on disk.
pub(crate) fn frame_len(len: usize) -> u64 {
    (FRAME_HEADER_LEN + len) as u64
}

/// Appends the frame of the record at `offset` to `buf`. The caller has checked that the
/// payload fits in a `u32`.
pub(crate) fn encode_frame(buf: &mut Vec<u8>, offset: u64, payload: &[u8]) {
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&record_crc(offset, payload).to_le_bytes());
    buf.extend_from_slice(payload);
}

/// One step of a [`FrameReader`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step<'a> {
    /// A valid frame.
    Record {
        /// The record's offset.
        offset: u64,
        /// Where its frame starts in the file.
        position: u64,
        /// Its payload.
        payload: &'a [u8],
    },
    /// The reader is exactly at its end position.
    End,
    /// The bytes at `position` are not a valid frame.
    Invalid {
        /// Start of the bad frame.
        position: u64,
        /// Which check failed.
        reason: &'static str,
    },
}

/// Reads frames sequentially from `[position, end)` of a segment file through a buffer,
/// with positional reads (the file's cursor is never used, so readers and the writer can
/// share a segment concurrently).
#[derive(Debug)]
pub(crate) struct FrameReader<'f> {
    file: &'f File,
    /// File position of the next frame.
    position: u64,
    /// Offset of the next frame.
    offset: u64,
    /// The reader never looks at bytes at or past this position.
    end: u64,
    /// Cached file bytes starting at `buf_start`.
    buf: Vec<u8>,
    buf_start: u64,
}

impl<'f> FrameReader<'f> {
    /// A reader whose first frame is at `position` and holds `offset`.
    pub(crate) fn new(file: &'f File, position: u64, offset: u64, end: u64) -> Self {
        FrameReader {
            file,
            position,
            offset,
            end,
            buf: Vec::new(),
            buf_start: position,
        }
    }

    /// Offset of the next frame.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// File position of the next frame.
    pub(crate) fn position(&self) -> u64 {
        self.position
    }

    /// Makes `buf` hold `[position, position + len)`; the caller has checked that this
    /// range ends at or before `end`.
    fn fill(&mut self, len: usize) -> io::Result<()> {
        let cached_end = self.buf_start + self.buf.len() as u64;
        if self.position >= self.buf_start && self.position + len as u64 <= cached_end {
            return Ok(());
        }
        let available = (self.end - self.position).min(usize::MAX as u64) as usize;
        let want = len.max(READ_CHUNK).min(available);
        self.buf.clear();
        self.buf.resize(want, 0);
        self.file.read_exact_at(&mut self.buf, self.position)?;
        self.buf_start = self.position;
        Ok(())
    }

    /// Reads the next frame. I/O errors (including a file shorter than `end`) are
    /// returned as `Err`; format problems as [`Step::Invalid`], after which the reader
    /// stays where it is.
    pub(crate) fn next_frame(&mut self) -> io::Result<Step<'_>> {
        let position = self.position;
        if position >= self.end {
            return Ok(Step::End);
        }
        let remaining = self.end - position;
        if remaining < FRAME_HEADER_LEN as u64 {
            return Ok(Step::Invalid {
                position,
                reason: "truncated frame header",
            });
        }
        self.fill(FRAME_HEADER_LEN)?;
        let at = (position - self.buf_start) as usize;
        let head = &self.buf[at..at + FRAME_HEADER_LEN];
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if frame_len(len) > remaining {
            return Ok(Step::Invalid {
                position,
                reason: "frame extends past the end of the segment",
            });
        }
        self.fill(FRAME_HEADER_LEN + len)?;
        let start = (position - self.buf_start) as usize + FRAME_HEADER_LEN;
        let offset = self.offset;
        if record_crc(offset, &self.buf[start..start + len]) != crc {
            return Ok(Step::Invalid {
                position,
                reason: "checksum mismatch",
            });
        }
        self.position = position + frame_len(len);
        self.offset = offset + 1;
        Ok(Step::Record {
            offset,
            position,
            payload: &self.buf[start..start + len],
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn file_with(bytes: &[u8]) -> File {
        let mut f = tempfile::tempfile().expect("tempfile");
        f.write_all(bytes).expect("write");
        f
    }

    #[test]
    fn file_names_round_trip_and_sort_by_offset() {
        assert_eq!(segment_file_name(0), "00000000000000000000.log");
        assert_eq!(segment_file_name(u64::MAX), "18446744073709551615.log");
        for base in [0, 1, 42, 1 << 40, u64::MAX] {
            assert_eq!(
                parse_segment_file_name(&segment_file_name(base)),
                Some(base)
            );
        }
        assert!(segment_file_name(9) < segment_file_name(10));
        for bad in [
            "0.log",
            "0000000000000000000a.log",
            "00000000000000000000.tmp",
            "LOCK",
        ] {
            assert_eq!(parse_segment_file_name(bad), None, "{bad}");
        }
        // Larger than u64::MAX.
        assert_eq!(parse_segment_file_name("99999999999999999999.log"), None);
    }

    #[test]
    fn header_round_trips_and_rejects_foreign_files() {
        assert_eq!(decode_header(&encode_header(77)), Ok(77));
        let mut h = encode_header(1);
        h[0] = b'X';
        assert!(decode_header(&h).is_err());
        let mut h = encode_header(1);
        h[4] = 2;
        assert!(decode_header(&h).is_err());
    }

    #[test]
    fn reader_returns_frames_then_end() {
        let mut buf = Vec::new();
        encode_frame(&mut buf, 10, b"hello");
        encode_frame(&mut buf, 11, b"");
        encode_frame(&mut buf, 12, &[7u8; 300_000]);
        let f = file_with(&buf);
        let mut r = FrameReader::new(&f, 0, 10, buf.len() as u64);
        assert!(matches!(
            r.next_frame(),
            Ok(Step::Record {
                offset: 10,
                position: 0,
                payload: b"hello"
            })
        ));
        assert!(matches!(
            r.next_frame(),
            Ok(Step::Record {
                offset: 11,
                payload: b"",
                ..
            })
        ));
        match r.next_frame() {
            Ok(Step::Record {
                offset: 12,
                payload,
                ..
            }) => assert_eq!(payload.len(), 300_000),
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(r.next_frame(), Ok(Step::End)));
        assert_eq!(r.offset(), 13);
        assert_eq!(r.position(), buf.len() as u64);
    }

    #[test]
    fn reader_reports_the_first_bad_frame() {
        let mut buf = Vec::new();
        encode_frame(&mut buf, 0, b"first");
        let second = buf.len() as u64;
        encode_frame(&mut buf, 1, b"second");
        let f = file_with(&buf);

        // A frame is only valid at its own offset.
        let mut r = FrameReader::new(&f, 0, 5, buf.len() as u64);
        assert!(matches!(
            r.next_frame(),
            Ok(Step::Invalid {
                position: 0,
                reason: "checksum mismatch"
            })
        ));

        // Torn inside the second frame's payload and inside its header.
        for cut in [buf.len() as u64 - 1, second + 3] {
            let mut r = FrameReader::new(&f, 0, 0, cut);
            assert!(matches!(r.next_frame(), Ok(Step::Record { offset: 0, .. })));
            assert!(
                matches!(r.next_frame(), Ok(Step::Invalid { position, .. }) if position == second)
            );
            // It stays put.
            assert!(
                matches!(r.next_frame(), Ok(Step::Invalid { position, .. }) if position == second)
            );
        }
    }
}
