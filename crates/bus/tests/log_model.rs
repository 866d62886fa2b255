//! Property test: random sequences of appends, reads, reopens, torn tails and retention
//! against a `Vec` model of the log.
//!
//! The model is the list of acknowledged payloads plus the first stored offset. A torn
//! tail (bytes cut off the active segment while the log is closed) shrinks the model to
//! the records whose frames survive completely; every other operation must leave the log
//! exactly equal to the model.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs::OpenOptions;

use common::*;
use proptest::prelude::*;
use sundial_bus::{LocalLog, Options, ReadLimits, Retention};

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<Vec<u8>>),
    Read {
        at_permille: u16,
        max_records: usize,
        max_bytes: usize,
    },
    Reopen,
    TearTail(u16),
    Retain {
        keep_permille: u16,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec(prop::collection::vec(any::<u8>(), 0..120), 0..6).prop_map(Op::Append),
        2 => (0u16..=1000, 0usize..20, 0usize..400)
            .prop_map(|(at_permille, max_records, max_bytes)| Op::Read { at_permille, max_records, max_bytes }),
        1 => Just(Op::Reopen),
        1 => (0u16..300).prop_map(Op::TearTail),
        1 => (0u16..=1000).prop_map(|keep_permille| Op::Retain { keep_permille }),
    ]
}

/// Small segments, a dense index and small commits, so that rolls, index lookups and
/// multi-round batches all happen within a few operations.
#[derive(Debug, Clone)]
struct Knobs {
    segment_bytes: u64,
    index_interval_bytes: u64,
    commit_bytes: usize,
    syncs_in_flight: usize,
}

fn knobs() -> impl Strategy<Value = Knobs> {
    (32u64..2048, 1u64..600, 1usize..2048, 1usize..=4).prop_map(
        |(segment_bytes, index_interval_bytes, commit_bytes, syncs_in_flight)| Knobs {
            segment_bytes,
            index_interval_bytes,
            commit_bytes,
            syncs_in_flight,
        },
    )
}

fn options(k: &Knobs) -> Options {
    let mut o = Options::default();
    o.segment_bytes = k.segment_bytes;
    o.index_interval_bytes = k.index_interval_bytes;
    o.commit_bytes = k.commit_bytes;
    o.syncs_in_flight = k.syncs_in_flight;
    let mut r = Retention::keep_all();
    r.max_bytes = Some(0);
    o.retention = r;
    o
}

struct Model {
    /// Payloads by offset; entries below `start` are kept but no longer stored.
    records: Vec<Vec<u8>>,
    start: u64,
}

fn check_equal(log: &LocalLog, model: &Model) {
    assert_eq!(log.durable_end(), model.records.len() as u64);
    assert_eq!(log.start_offset(), model.start);
    assert_eq!(payloads(log), model.records[model.start as usize..]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn the_log_behaves_like_a_vec(knobs in knobs(), ops in prop::collection::vec(op(), 1..25)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut log = Some(LocalLog::open(dir.path(), options(&knobs)).unwrap());
        let mut model = Model { records: Vec::new(), start: 0 };
        for op in ops {
            let current = log.as_ref().unwrap();
            match op {
                Op::Append(batch) => {
                    let range = rt.block_on(current.append(batch.clone())).unwrap();
                    let start = model.records.len() as u64;
                    prop_assert_eq!(range, start..start + batch.len() as u64);
                    model.records.extend(batch);
                }
                Op::Read { at_permille, max_records, max_bytes } => {
                    let end = model.records.len() as u64;
                    let at = model.start + (end - model.start) * u64::from(at_permille) / 1000;
                    let got = current.read_from(at, ReadLimits { max_records, max_bytes }).unwrap();
                    if at == end {
                        prop_assert!(got.is_empty());
                    } else {
                        prop_assert!(!got.is_empty());
                        prop_assert!(got.len() <= max_records.max(1));
                        let bytes: usize = got.iter().map(|r| r.payload.len()).sum();
                        prop_assert!(got.len() == 1 || bytes <= max_bytes);
                        for (i, r) in got.iter().enumerate() {
                            prop_assert_eq!(r.offset, at + i as u64);
                            prop_assert_eq!(&r.payload, &model.records[r.offset as usize]);
                        }
                    }
                }
                Op::Reopen => {
                    drop(log.take());
                    let reopened = LocalLog::open(dir.path(), options(&knobs)).unwrap();
                    prop_assert_eq!(reopened.recovery().truncated_bytes, 0);
                    log = Some(reopened);
                }
                Op::TearTail(cut) => {
                    drop(log.take());
                    let (base, path) = segments(dir.path()).last().unwrap().clone();
                    let file = OpenOptions::new().write(true).open(&path).unwrap();
                    let len = file.metadata().unwrap().len();
                    let new_len = len.saturating_sub(u64::from(cut)).max(HEADER_LEN);
                    file.set_len(new_len).unwrap();
                    drop(file);
                    let (complete, boundary) = frames_within(&model.records[base as usize..], new_len);
                    model.records.truncate(base as usize + complete);
                    let reopened = LocalLog::open(dir.path(), options(&knobs)).unwrap();
                    prop_assert_eq!(reopened.recovery().truncated_bytes, new_len - boundary);
                    log = Some(reopened);
                }
                Op::Retain { keep_permille } => {
                    let end = model.records.len() as u64;
                    let mark = model.start + (end - model.start) * u64::from(keep_permille) / 1000;
                    // With max_bytes = 0 every sealed segment wholly below the mark goes:
                    // the first one kept is the last that starts at or below the mark.
                    let expected = segments(dir.path())
                        .iter()
                        .map(|(base, _)| *base)
                        .filter(|base| *base <= mark)
                        .max()
                        .unwrap();
                    current.retain_from(mark);
                    rt.block_on(current.apply_retention()).unwrap();
                    prop_assert_eq!(segments(dir.path())[0].0, expected);
                    model.start = expected;
                }
            }
            check_equal(log.as_ref().unwrap(), &model);
        }
    }
}
