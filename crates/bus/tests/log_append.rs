//! Appending and reading: concurrent appenders, backpressure, limits, consumers that
//! wait for new records.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::ops::Range;

use common::*;
use sundial_bus::{Error, LocalLog, Options, ReadLimits};

fn tagged(task: u64, seq: u64, i: u64) -> Vec<u8> {
    let mut p = format!("{task}:{seq}:{i}:").into_bytes();
    p.resize(p.len() + ((task + seq + i) % 23) as usize, b'.');
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appenders_get_distinct_contiguous_ranges_that_read_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    // Small segments, so rolls happen under concurrency too.
    let log = LocalLog::open(dir.path(), small_segments(16 << 10)).unwrap();
    let tasks = 64;
    let batches = 12;
    let mut handles = Vec::new();
    for task in 0..tasks {
        let log = log.clone();
        handles.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for seq in 0..batches {
                let n = 1 + (task * 7 + seq * 3) % 9;
                let batch: Vec<Vec<u8>> = (0..n).map(|i| tagged(task, seq, i)).collect();
                let range = log.append(batch.clone()).await.unwrap();
                assert_eq!(range.end - range.start, n);
                // Acknowledged means visible: the durable end covers it, reads find it.
                assert!(log.durable_end() >= range.end);
                let back = log
                    .read_from(range.start, ReadLimits::records(n as usize))
                    .unwrap();
                assert_eq!(
                    back.into_iter().map(|r| r.payload).collect::<Vec<_>>(),
                    batch
                );
                out.push((range, batch));
            }
            out
        }));
    }
    let mut by_start: BTreeMap<u64, (Range<u64>, Vec<Vec<u8>>)> = BTreeMap::new();
    for h in handles {
        for (range, batch) in h.await.unwrap() {
            assert!(by_start.insert(range.start, (range, batch)).is_none());
        }
    }
    // The ranges tile [0, total) without gaps or overlaps.
    let mut next = 0;
    let mut expected = Vec::new();
    for (range, batch) in by_start.into_values() {
        assert_eq!(range.start, next);
        next = range.end;
        expected.extend(batch);
    }
    assert_eq!(log.durable_end(), next);
    assert_eq!(payloads(&log), expected);
    let stats = log.stats();
    assert!(stats.segments > 1, "{stats:?}");
    assert!(
        stats.commits >= 1 && stats.commits <= (tasks * batches),
        "{stats:?}"
    );
    log.verify().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_queue_applies_backpressure_and_rejects_what_can_never_fit() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = small_segments(4096);
    options.max_pending_bytes = 600;
    options.max_record_bytes = 300;
    options.max_pending_batches = 2;
    options.commit_bytes = 1;
    let log = LocalLog::open(dir.path(), options).unwrap();

    let err = log.append(vec![vec![0; 301]]).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::RecordTooLarge {
                index: 0,
                size: 301,
                limit: 300
            }
        ),
        "{err}"
    );
    let err = log
        .append(vec![vec![0; 300], vec![0; 300]])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::BatchTooLarge {
                size: 616,
                limit: 600
            }
        ),
        "{err}"
    );
    assert_eq!(
        log.durable_end(),
        0,
        "rejected batches leave nothing behind"
    );

    let mut handles = Vec::new();
    for task in 0..16u64 {
        let log = log.clone();
        handles.push(tokio::spawn(async move {
            for seq in 0..10 {
                log.append(vec![vec![task as u8; 250], tagged(task, seq, 0)])
                    .await
                    .unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    assert_eq!(log.durable_end(), 16 * 10 * 2);
    // commit_bytes = 1 closes every group commit after its first batch: 160 commits.
    // A commit is counted when its own fdatasync returns; with several syncs in flight a
    // later sync may acknowledge earlier rounds first, so the count can trail the last
    // acknowledgement briefly. Wait for it (bounded), and it must never overshoot.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while log.stats().commits < 160 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(log.stats().commits, 160);
    log.verify().unwrap();
}

#[tokio::test]
async fn read_limits_bound_the_result_but_always_allow_one_record() {
    let dir = tempfile::tempdir().unwrap();
    let log = LocalLog::open(dir.path(), small_segments(1 << 20)).unwrap();
    log.append(vec![vec![1; 1000], vec![2; 10], vec![3; 10], vec![4; 10]])
        .await
        .unwrap();

    let big_first = log
        .read_from(
            0,
            ReadLimits {
                max_records: 10,
                max_bytes: 100,
            },
        )
        .unwrap();
    assert_eq!(big_first.len(), 1, "the oversized first record comes alone");
    let small = log
        .read_from(
            1,
            ReadLimits {
                max_records: 10,
                max_bytes: 25,
            },
        )
        .unwrap();
    assert_eq!(
        small.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![1, 2]
    );
    let counted = log.read_from(1, ReadLimits::records(2)).unwrap();
    assert_eq!(counted.len(), 2);
    let zero = log
        .read_from(
            2,
            ReadLimits {
                max_records: 0,
                max_bytes: 0,
            },
        )
        .unwrap();
    assert_eq!(zero.len(), 1, "zero limits still make progress");

    assert_eq!(log.read_from(4, ReadLimits::default()).unwrap(), vec![]);
    let err = log.read_from(5, ReadLimits::default()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::OffsetOutOfRange {
                requested: 5,
                end: 4
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn reads_span_segments_and_random_offsets_use_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = small_segments(2000);
    options.index_interval_bytes = 64;
    let log = LocalLog::open(dir.path(), options.clone()).unwrap();
    let all: Vec<Vec<u8>> = (0..400).map(payload).collect();
    for chunk in all.chunks(13) {
        log.append(chunk.to_vec()).await.unwrap();
    }
    for start in [0u64, 1, 63, 64, 199, 200, 333, 399] {
        let got = log.read_from(start, ReadLimits::records(50)).unwrap();
        let want: Vec<Vec<u8>> = all[start as usize..(start as usize + 50).min(400)].to_vec();
        assert_eq!(
            got.iter().map(|r| r.payload.clone()).collect::<Vec<_>>(),
            want,
            "from {start}"
        );
        assert_eq!(got[0].offset, start);
    }
    // The same after reopening, where sealed segments are indexed lazily.
    drop(log);
    let log = LocalLog::open(dir.path(), options).unwrap();
    for start in [0u64, 150, 398] {
        let got = log.read_from(start, ReadLimits::records(3)).unwrap();
        assert_eq!(got[0].payload, all[start as usize]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_waits_for_new_records_instead_of_polling() {
    let dir = tempfile::tempdir().unwrap();
    let log = LocalLog::open(dir.path(), small_segments(4096)).unwrap();
    let total = 500u64;
    let consumer = {
        let log = log.clone();
        tokio::spawn(async move {
            let mut next = 0;
            let mut seen = Vec::new();
            while next < total {
                log.wait_for(next).await.unwrap();
                for r in log.read(next, ReadLimits::records(64)).await.unwrap() {
                    assert_eq!(r.offset, next);
                    next += 1;
                    seen.push(r.payload);
                }
            }
            seen
        })
    };
    let mut expected = Vec::new();
    for start in (0..total).step_by(10) {
        let batch: Vec<Vec<u8>> = (start..start + 10).map(payload).collect();
        expected.extend(batch.clone());
        log.append(batch).await.unwrap();
    }
    assert_eq!(consumer.await.unwrap(), expected);

    // The watch reports the durable end.
    let rx = log.subscribe();
    assert_eq!(*rx.borrow(), total);
    // Waiting for an offset that is already durable returns at once.
    assert_eq!(log.wait_for(0).await.unwrap(), total);
}

#[tokio::test]
async fn an_empty_batch_resolves_after_earlier_appends_as_an_empty_range() {
    let dir = tempfile::tempdir().unwrap();
    let log = LocalLog::open(dir.path(), Options::default()).unwrap();
    let first = log.append(vec![b"a".to_vec(), b"b".to_vec()]);
    let barrier = log.append(vec![]);
    assert_eq!(first.await.unwrap(), 0..2);
    assert_eq!(barrier.await.unwrap(), 2..2);
    assert_eq!(log.durable_end(), 2);
    log.close().await;
}

#[tokio::test]
async fn close_releases_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let log = LocalLog::open(dir.path(), Options::default()).unwrap();
    log.append(vec![b"x".to_vec()]).await.unwrap();
    log.close().await;
    let log = LocalLog::open(dir.path(), Options::default()).unwrap();
    assert_eq!(log.durable_end(), 1);
    assert_eq!(log.dir(), dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_follows_the_log_and_is_cancel_safe() {
    let dir = tempfile::tempdir().unwrap();
    let log = LocalLog::open(dir.path(), small_segments(1024)).unwrap();
    let mut reader = log.reader(0);

    // Nothing to read: a dropped wait leaves the position alone.
    let waited = tokio::time::timeout(
        std::time::Duration::from_millis(20),
        reader.next_batch(ReadLimits::default()),
    )
    .await;
    assert!(waited.is_err());
    assert_eq!(reader.position(), 0);
    assert_eq!(
        reader.try_next_batch(ReadLimits::default()).unwrap(),
        vec![]
    );

    let follower = tokio::spawn(async move {
        let mut seen = Vec::new();
        while seen.len() < 300 {
            let batch = reader.next_batch(ReadLimits::records(7)).await.unwrap();
            assert!(!batch.is_empty() && batch.len() <= 7);
            seen.extend(batch.into_iter().map(|r| r.payload));
        }
        (seen, reader.position())
    });
    let mut expected = Vec::new();
    for start in (0..300u64).step_by(25) {
        let batch: Vec<Vec<u8>> = (start..start + 25).map(payload).collect();
        expected.extend(batch.clone());
        log.append(batch).await.unwrap();
    }
    let (seen, position) = follower.await.unwrap();
    assert_eq!(seen, expected);
    assert_eq!(position, 300);

    let mut again = log.reader(0);
    again.seek(298);
    let tail = again.try_next_batch(ReadLimits::default()).unwrap();
    assert_eq!(
        tail.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![298, 299]
    );
    assert_eq!(again.position(), 300);
}
