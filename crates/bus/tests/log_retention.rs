//! Retention: by size and by age, bounded by the consumers' low-water mark, never the
//! active segment, and durable across reopen.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use sundial_bus::{Error, LocalLog, Options, ReadLimits, Retention};

fn options(max_bytes: Option<u64>, max_age: Option<Duration>) -> Options {
    let mut o = small_segments(400);
    let mut r = Retention::keep_all();
    r.max_bytes = max_bytes;
    r.max_age = max_age;
    o.retention = r;
    o
}

async fn fill(log: &LocalLog, n: u64) -> Vec<Vec<u8>> {
    let mut all = Vec::new();
    for start in (0..n).step_by(4) {
        let batch: Vec<Vec<u8>> = (start..(start + 4).min(n)).map(payload).collect();
        log.append(batch.clone()).await.unwrap();
        all.extend(batch);
    }
    all
}

#[tokio::test]
async fn nothing_a_consumer_still_needs_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let log = LocalLog::open(dir.path(), options(Some(0), Some(Duration::ZERO))).unwrap();
    let written = fill(&log, 200).await;
    let before = log.stats();
    assert!(before.segments > 5, "{before:?}");
    // No consumer has called retain_from: the low-water mark is 0.
    let report = log.apply_retention().await.unwrap();
    assert_eq!(report.segments_deleted, 0);
    assert_eq!(log.stats().segments, before.segments);
    assert_eq!(payloads(&log), written);
}

#[tokio::test]
async fn size_retention_deletes_old_segments_below_the_low_water_mark() {
    let dir = tempfile::tempdir().unwrap();
    let log = LocalLog::open(dir.path(), options(Some(1000), None)).unwrap();
    let written = fill(&log, 200).await;
    let segs = segments(dir.path());
    let low_water = segs[3].0;
    log.retain_from(low_water);
    log.retain_from(1); // The mark never goes down.
    let report = log.apply_retention().await.unwrap();
    // Exactly the three segments entirely below the mark go: still over 1000 bytes.
    assert_eq!(report.segments_deleted, 3);
    assert_eq!(report.start_offset, low_water);
    assert_eq!(log.start_offset(), low_water);
    assert_eq!(segments(dir.path()), segs[3..].to_vec());

    let err = log.read_from(0, ReadLimits::default()).unwrap_err();
    assert!(
        matches!(err, Error::OffsetTrimmed { requested: 0, start } if start == low_water),
        "{err}"
    );
    assert_eq!(payloads(&log), written[low_water as usize..]);

    // With every record released, the size limit leaves the newest data within 1000
    // bytes, and the active segment stays however small the limit.
    log.retain_from(u64::MAX);
    log.apply_retention().await.unwrap();
    let stats = log.stats();
    assert!(stats.bytes <= 1000 || stats.segments == 1, "{stats:?}");
    assert_eq!(segments(dir.path()).last(), segs.last());

    // Reopening keeps the trimmed start.
    drop(log);
    let log = LocalLog::open(dir.path(), options(Some(1000), None)).unwrap();
    assert_eq!(log.start_offset(), stats.start_offset);
    assert_eq!(log.durable_end(), 200);
    assert_eq!(payloads(&log), written[stats.start_offset as usize..]);
}

#[tokio::test]
async fn age_retention_keeps_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let log = LocalLog::open(dir.path(), options(None, Some(Duration::ZERO))).unwrap();
    let written = fill(&log, 120).await;
    log.retain_from(u64::MAX);
    let report = log.apply_retention().await.unwrap();
    let segs = segments(dir.path());
    assert_eq!(segs.len(), 1, "only the active segment is left");
    assert!(report.segments_deleted > 0);
    assert_eq!(log.start_offset(), segs[0].0);
    assert_eq!(payloads(&log), written[segs[0].0 as usize..]);

    // An age limit nothing has reached deletes nothing.
    let dir = tempfile::tempdir().unwrap();
    let log = LocalLog::open(dir.path(), options(None, Some(Duration::from_secs(3600)))).unwrap();
    fill(&log, 120).await;
    log.retain_from(u64::MAX);
    assert_eq!(log.apply_retention().await.unwrap().segments_deleted, 0);
}

#[tokio::test]
async fn retention_runs_by_itself_when_a_segment_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let log = LocalLog::open(dir.path(), options(Some(2000), None)).unwrap();
    log.retain_from(u64::MAX);
    fill(&log, 1000).await;
    let stats = log.stats();
    // Without retention 1000 records of ~30 bytes would need ~100 segments.
    assert!(stats.segments <= 8, "{stats:?}");
    assert!(stats.bytes <= 2000 + 400 + 100, "{stats:?}");
    assert_eq!(stats.durable_end, 1000);
}

#[tokio::test]
async fn segments_roll_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(None, None);
    o.segment_bytes = 1 << 20;
    o.segment_max_age = Some(Duration::ZERO);
    let log = LocalLog::open(dir.path(), o).unwrap();
    for i in 0..5 {
        log.append(vec![payload(i)]).await.unwrap();
    }
    // Every append after the first finds a non-empty segment of age >= 0.
    assert_eq!(segments(dir.path()).len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_racing_retention_see_records_or_offset_trimmed_never_damage() {
    let dir = tempfile::tempdir().unwrap();
    let log = LocalLog::open(dir.path(), options(Some(800), None)).unwrap();
    log.retain_from(u64::MAX);
    let total = 600u64;
    let reader = {
        let log = log.clone();
        tokio::task::spawn_blocking(move || {
            let mut reads = 0;
            while log.durable_end() < total || reads == 0 {
                // Always from 0: most of these race the deletion of old segments.
                for from in [0, log.start_offset()] {
                    match log.read_from(from, ReadLimits::records(50)) {
                        Ok(records) => {
                            for r in &records {
                                assert_eq!(r.payload, payload(r.offset));
                            }
                            reads += 1;
                        }
                        Err(Error::OffsetTrimmed { requested, start }) => {
                            assert!(start > requested);
                        }
                        Err(other) => panic!("unexpected error: {other}"),
                    }
                }
            }
            reads
        })
    };
    for start in (0..total).step_by(3) {
        let batch: Vec<Vec<u8>> = (start..start + 3).map(payload).collect();
        log.append(batch).await.unwrap();
    }
    let reads = reader.await.unwrap();
    assert!(reads > 0);
    assert!(
        log.start_offset() > 0,
        "retention ran while the reader read"
    );
    log.verify().unwrap();
}
