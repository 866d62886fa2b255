//! Crash recovery: reopening after a drop without close, torn tails cut at every byte,
//! flipped bytes in the active and in sealed segments, leftovers of an interrupted
//! segment creation, and the directory lock.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;

use common::*;
use sundial_bus::{Error, LocalLog, ReadLimits};

/// Appends records `0..n` in batches of 1, 2, 3, … records and returns their payloads.
fn fill(log: &LocalLog, n: u64) -> Vec<Vec<u8>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut all = Vec::new();
    let mut size = 1;
    while (all.len() as u64) < n {
        let batch: Vec<Vec<u8>> = (all.len() as u64..(all.len() as u64 + size).min(n))
            .map(payload)
            .collect();
        let range = rt.block_on(log.append(batch.clone())).unwrap();
        assert_eq!(range.start, all.len() as u64);
        all.extend(batch);
        size += 1;
    }
    all
}

#[test]
fn acknowledged_records_survive_a_drop_without_close() {
    let dir = tempfile::tempdir().unwrap();
    let log = LocalLog::open(dir.path(), small_segments(300)).unwrap();
    let written = fill(&log, 50);
    drop(log);
    let log = LocalLog::open(dir.path(), small_segments(300)).unwrap();
    assert_eq!(log.durable_end(), 50);
    assert_eq!(log.recovery().truncated_bytes, 0);
    assert!(log.recovery().segments > 3, "{:?}", log.recovery());
    assert_eq!(payloads(&log), written);
    log.verify().unwrap();
}

#[test]
fn a_crash_image_taken_while_open_recovers_every_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let log = LocalLog::open(dir.path(), small_segments(300)).unwrap();
    let written = fill(&log, 40);
    // The log is still open: this is what a kill -9 right now would leave.
    let image = tempfile::tempdir().unwrap();
    copy_log(dir.path(), image.path());
    let recovered = LocalLog::open(image.path(), small_segments(300)).unwrap();
    assert_eq!(payloads(&recovered), written);
}

/// Cuts the active segment at every byte of its last few records: recovery must yield
/// exactly the records whose frames are complete, report the cut, persist it, and accept
/// new appends right after.
#[test]
fn a_torn_tail_cut_at_every_byte_recovers_exactly_a_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let log = LocalLog::open(dir.path(), small_segments(600)).unwrap();
    let written = fill(&log, 60);
    drop(log);
    let segs = segments(dir.path());
    assert!(
        segs.len() >= 2,
        "want a sealed segment before the active one"
    );
    let (base, active) = segs.last().unwrap().clone();
    let in_active = &written[base as usize..];
    assert!(
        in_active.len() >= 5,
        "active segment holds {} records",
        in_active.len()
    );
    let len = fs::metadata(&active).unwrap().len();
    let (_, first_cut) = frames_within(&in_active[..in_active.len() - 5], len);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();

    for cut in first_cut..len {
        let image = tempfile::tempdir().unwrap();
        copy_log(dir.path(), image.path());
        let torn = image.path().join(active.file_name().unwrap());
        OpenOptions::new()
            .write(true)
            .open(&torn)
            .unwrap()
            .set_len(cut)
            .unwrap();

        let (complete, boundary) = frames_within(in_active, cut);
        let expected_end = base + complete as u64;
        let log = LocalLog::open(image.path(), small_segments(600)).unwrap();
        assert_eq!(log.durable_end(), expected_end, "cut at {cut}");
        assert_eq!(
            log.recovery().truncated_bytes,
            cut - boundary,
            "cut at {cut}"
        );
        assert_eq!(
            payloads(&log),
            written[..expected_end as usize],
            "cut at {cut}"
        );

        // The log continues right after the prefix.
        let range = rt.block_on(log.append(vec![b"after".to_vec()])).unwrap();
        assert_eq!(range, expected_end..expected_end + 1);
        drop(log);
        let log = LocalLog::open(image.path(), small_segments(600)).unwrap();
        assert_eq!(
            log.recovery().truncated_bytes,
            0,
            "the cut was made durable"
        );
        let all = payloads(&log);
        assert_eq!(all.len() as u64, expected_end + 1);
        assert_eq!(all.last().unwrap(), b"after");
    }
}

/// Flips each byte of the active segment's last records in turn: recovery keeps exactly
/// the records before the damaged one.
#[test]
fn a_flipped_byte_in_the_active_segment_cuts_the_log_before_that_record() {
    let dir = tempfile::tempdir().unwrap();
    let log = LocalLog::open(dir.path(), small_segments(100_000)).unwrap();
    let written = fill(&log, 30);
    drop(log);
    let (base, active) = segments(dir.path()).last().unwrap().clone();
    assert_eq!(base, 0);
    let len = fs::metadata(&active).unwrap().len();
    let (_, first) = frames_within(&written[..written.len() - 4], len);

    for position in first..len {
        let image = tempfile::tempdir().unwrap();
        copy_log(dir.path(), image.path());
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(image.path().join(active.file_name().unwrap()))
            .unwrap();
        let mut byte = [0u8; 1];
        file.read_exact_at(&mut byte, position).unwrap();
        file.write_all_at(&[byte[0] ^ 0x5a], position).unwrap();
        drop(file);

        // The damaged record is the one whose frame contains `position`.
        let (damaged, _) = frames_within(&written, position);
        let log = LocalLog::open(image.path(), small_segments(100_000)).unwrap();
        assert_eq!(log.durable_end(), damaged as u64, "flip at {position}");
        assert_eq!(payloads(&log), written[..damaged], "flip at {position}");
        assert!(log.recovery().truncation_reason.is_some());
    }
}

#[test]
fn a_flipped_byte_in_a_sealed_segment_is_reported_not_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let log = LocalLog::open(dir.path(), small_segments(300)).unwrap();
    let written = fill(&log, 40);
    drop(log);
    let segs = segments(dir.path());
    let (_, first) = &segs[0];
    let (second_base, _) = segs[1];
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(first)
        .unwrap();
    let position = HEADER_LEN + 20;
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, position).unwrap();
    file.write_all_at(&[byte[0] ^ 1], position).unwrap();
    drop(file);

    // Opening only checks the active segment; the damage shows when read.
    let log = LocalLog::open(dir.path(), small_segments(300)).unwrap();
    assert_eq!(log.durable_end(), written.len() as u64);
    let err = log.read_from(0, ReadLimits::default()).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(
        err.to_string().contains("00000000000000000000.log"),
        "{err}"
    );
    assert!(log.verify().unwrap_err().is_corruption());
    // Later segments are unaffected.
    let later = log.read_from(second_base, ReadLimits::records(1)).unwrap();
    assert_eq!(later[0].payload, written[second_base as usize]);
}

#[test]
fn a_short_sealed_segment_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let log = LocalLog::open(dir.path(), small_segments(300)).unwrap();
    fill(&log, 40);
    drop(log);
    let (_, first) = segments(dir.path())[0].clone();
    let len = fs::metadata(&first).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&first)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let log = LocalLog::open(dir.path(), small_segments(300)).unwrap();
    let err = log.read_from(0, ReadLimits::default()).unwrap_err();
    assert!(err.is_corruption(), "{err}");
}

#[test]
fn a_missing_record_count_in_a_sealed_segment_is_reported() {
    // A sealed segment whose frames are all valid but hold fewer records than the next
    // segment's base implies (e.g. a file restored from an older backup).
    let dir = tempfile::tempdir().unwrap();
    let log = LocalLog::open(dir.path(), small_segments(300)).unwrap();
    let written = fill(&log, 40);
    drop(log);
    let (_, first) = segments(dir.path())[0].clone();
    let (base, _) = segments(dir.path())[1].clone();
    let (_, boundary) = frames_within(&written[..base as usize - 1], u64::MAX);
    OpenOptions::new()
        .write(true)
        .open(&first)
        .unwrap()
        .set_len(boundary)
        .unwrap();
    let log = LocalLog::open(dir.path(), small_segments(300)).unwrap();
    assert!(log.verify().unwrap_err().is_corruption());
}

#[test]
fn a_damaged_header_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let log = LocalLog::open(dir.path(), small_segments(300)).unwrap();
    fill(&log, 5);
    drop(log);
    let (_, active) = segments(dir.path()).last().unwrap().clone();
    let file = OpenOptions::new().write(true).open(&active).unwrap();
    file.write_all_at(b"XXXX", 0).unwrap();
    drop(file);
    let err = LocalLog::open(dir.path(), small_segments(300)).unwrap_err();
    assert!(err.is_corruption(), "{err}");
    assert!(err.to_string().contains("magic"), "{err}");

    // A segment renamed to the wrong base is caught too.
    let dir = tempfile::tempdir().unwrap();
    let log = LocalLog::open(dir.path(), small_segments(300)).unwrap();
    fill(&log, 5);
    drop(log);
    fs::rename(
        dir.path().join("00000000000000000000.log"),
        dir.path().join("00000000000000000007.log"),
    )
    .unwrap();
    let err = LocalLog::open(dir.path(), small_segments(300)).unwrap_err();
    assert!(err.to_string().contains("base offset"), "{err}");
}

#[test]
fn leftovers_of_an_interrupted_segment_creation_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let log = LocalLog::open(dir.path(), small_segments(300)).unwrap();
    let written = fill(&log, 10);
    drop(log);
    fs::write(dir.path().join("00000000000000000010.log.tmp"), b"SDB").unwrap();
    let log = LocalLog::open(dir.path(), small_segments(300)).unwrap();
    assert_eq!(log.recovery().removed_temp_files, 1);
    assert!(!dir.path().join("00000000000000000010.log.tmp").exists());
    assert_eq!(payloads(&log), written);
}

#[test]
fn a_second_open_of_the_same_directory_is_refused_until_the_first_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let log = LocalLog::open(dir.path(), small_segments(300)).unwrap();
    let err = LocalLog::open(dir.path(), small_segments(300)).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    let clone = log.clone();
    drop(log);
    // A clone keeps it open.
    assert!(LocalLog::open(dir.path(), small_segments(300)).is_err());
    drop(clone);
    LocalLog::open(dir.path(), small_segments(300)).unwrap();
}

#[test]
fn open_creates_missing_directories_and_starts_empty() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("a/b/bus");
    let log = LocalLog::open(&dir, small_segments(300)).unwrap();
    assert_eq!(log.durable_end(), 0);
    assert_eq!(log.start_offset(), 0);
    assert_eq!(log.read_from(0, ReadLimits::default()).unwrap(), vec![]);
    assert_eq!(segments(&dir).len(), 1);
}

#[test]
fn a_missing_middle_segment_is_reported_not_bridged() {
    let dir = tempfile::tempdir().unwrap();
    let log = LocalLog::open(dir.path(), small_segments(300)).unwrap();
    let written = fill(&log, 60);
    drop(log);
    let segs = segments(dir.path());
    assert!(segs.len() >= 4);
    fs::remove_file(&segs[1].1).unwrap();
    let log = LocalLog::open(dir.path(), small_segments(300)).unwrap();
    // The segment before the hole now claims records it does not hold.
    let err = log.read_from(0, ReadLimits::default()).unwrap_err();
    assert!(err.is_corruption(), "{err}");
    assert!(log.verify().unwrap_err().is_corruption());
    // Everything after the hole is intact.
    let (base, _) = segs[2];
    let tail = log.read_from(base, ReadLimits::records(1000)).unwrap();
    assert_eq!(tail[0].payload, written[base as usize]);
}

#[test]
fn invalid_options_are_refused_by_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = small_segments(300);
    options.syncs_in_flight = 0;
    let err = LocalLog::open(dir.path(), options).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidOptions {
                field: "syncs_in_flight",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn stats_match_the_files_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let log = LocalLog::open(dir.path(), small_segments(300)).unwrap();
    fill(&log, 45);
    let stats = log.stats();
    let on_disk: u64 = segments(dir.path())
        .iter()
        .map(|(_, p)| fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(stats.bytes, on_disk);
    assert_eq!(stats.segments, segments(dir.path()).len());
    assert_eq!((stats.start_offset, stats.durable_end), (0, 45));
    assert!(stats.commits >= 1);
}
