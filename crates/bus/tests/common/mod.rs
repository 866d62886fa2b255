//! Helpers shared by the integration tests: payloads, reading everything back, and
//! file-level surgery on segment files (copying a log directory as a crash would leave
//! it, cutting and flipping bytes).

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};

use sundial_bus::{LocalLog, Options, ReadLimits, Record};

/// Size of a segment header.
pub const HEADER_LEN: u64 = 16;
/// Framing bytes per record.
pub const FRAME_OVERHEAD: u64 = 8;

/// A deterministic payload of varying length (0 to ~60 bytes) for record `i`.
pub fn payload(i: u64) -> Vec<u8> {
    let mut p = Vec::new();
    for _ in 0..(i % 5) {
        p.extend_from_slice(format!("rec-{i}/").as_bytes());
    }
    p
}

/// Options with tiny segments so tests cross segment boundaries.
pub fn small_segments(segment_bytes: u64) -> Options {
    let mut o = Options::default();
    o.segment_bytes = segment_bytes;
    o.retention = sundial_bus::Retention::keep_all();
    o
}

/// Every record from the start of the log.
pub fn read_all(log: &LocalLog) -> Vec<Record> {
    let mut out = Vec::new();
    let mut next = log.start_offset();
    loop {
        let batch = log.read_from(next, ReadLimits::records(37)).unwrap();
        let Some(last) = batch.last() else { break };
        next = last.offset + 1;
        out.extend(batch);
    }
    out
}

/// Payloads of every record.
pub fn payloads(log: &LocalLog) -> Vec<Vec<u8>> {
    read_all(log).into_iter().map(|r| r.payload).collect()
}

/// Segment files of a log directory, sorted by base offset, with their bases.
pub fn segments(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut out: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let name = e.file_name().into_string().ok()?;
            let base = name.strip_suffix(".log")?.parse().ok()?;
            Some((base, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// Copies the segment files of `from` into `to` (a crash image when `from` is still open).
pub fn copy_log(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for (_, path) in segments(from) {
        fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

/// Number of complete frames among `payloads` (in order, starting right after the
/// header) that fit in a file of `len` bytes, and where the last of them ends.
pub fn frames_within(payloads: &[Vec<u8>], len: u64) -> (usize, u64) {
    let mut end = HEADER_LEN;
    for (i, p) in payloads.iter().enumerate() {
        let next = end + FRAME_OVERHEAD + p.len() as u64;
        if next > len {
            return (i, end);
        }
        end = next;
    }
    (payloads.len(), end)
}
