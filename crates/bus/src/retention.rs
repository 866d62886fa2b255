//! Deleting old segments.
//!
//! # Ground rules
//! - Only a prefix of the sealed segments is ever deleted, oldest first, so the log stays
//!   one contiguous range `[start, durable end)` even if a crash interrupts a deletion
//!   (each unlink is followed by an fsync of the directory before the next one).
//! - The active (newest) segment is never deleted, and neither is any segment holding a
//!   record at or above the low-water mark set by `retain_from`.
//! - Segments leave the in-memory map (and `start` moves) before their files are
//!   unlinked, so a reader either finds a segment it can still read through its open
//!   handle or gets [`Error::OffsetTrimmed`](crate::Error::OffsetTrimmed).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::log::Shared;
use crate::segment::{self, Segment};

/// What one retention pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetentionReport {
    /// Number of segment files deleted.
    pub segments_deleted: usize,
    /// Bytes those files held.
    pub bytes_deleted: u64,
    /// First offset still stored afterwards.
    pub start_offset: u64,
}

/// Applies the configured retention as of `now`; see [`Retention`](crate::Retention).
pub(crate) fn apply(shared: &Shared, now: SystemTime) -> Result<RetentionReport> {
    let rules = &shared.options.retention;
    // One pass at a time, so two passes never race on the same files.
    let _pass = shared
        .retention_pass
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let low_water = shared.low_water.load(Ordering::Acquire);

    let victims: Vec<Arc<Segment>> = {
        let mut segments = shared.segments_mut();
        let mut total: u64 = segments.values().map(|s| s.size()).sum();
        let ordered: Vec<Arc<Segment>> = segments.values().cloned().collect();
        let mut victims = Vec::new();
        // Pairs (segment, its successor): the last segment, the active one, has none.
        for pair in ordered.windows(2) {
            let (candidate, successor) = (&pair[0], &pair[1]);
            if successor.base > low_water {
                break;
            }
            let over_size = rules.max_bytes.is_some_and(|max| total > max);
            let too_old = match rules.max_age {
                Some(max_age) => {
                    let modified = candidate.modified()?;
                    now.duration_since(modified).unwrap_or_default() >= max_age
                }
                None => false,
            };
            if !(over_size || too_old) {
                break;
            }
            total -= candidate.size();
            victims.push(candidate.clone());
        }
        for victim in &victims {
            segments.remove(&victim.base);
        }
        if let Some(first) = segments.keys().next() {
            shared.start.store(*first, Ordering::Release);
        }
        victims
    };

    let mut report = RetentionReport {
        start_offset: shared.start.load(Ordering::Acquire),
        ..RetentionReport::default()
    };
    for victim in victims {
        let bytes = victim.size();
        match std::fs::remove_file(&victim.path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(Error::io("delete segment", &victim.path)(err)),
        }
        segment::sync_dir(&shared.dir)?;
        tracing::info!(
            segment = %victim.path.display(),
            bytes,
            "deleted log segment by retention"
        );
        report.segments_deleted += 1;
        report.bytes_deleted += bytes;
    }
    Ok(report)
}
