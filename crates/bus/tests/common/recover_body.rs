//! The body shared by the recovery fuzz target (`fuzz/fuzz_targets/recover.rs`) and the
//! proptest in `tests/log_recover_fuzz.rs`: open a log whose only segment holds arbitrary
//! bytes after a valid header, and check that recovery only ever cuts the file, never
//! changes it, and that what it keeps is exactly a sequence of valid frames that reads
//! back as the returned records.

#![allow(unreachable_pub)]

use std::fs;

use sundial_bus::{LocalLog, Options, ReadLimits};

/// Header of the segment starting at offset 0 (see `docs/bus.md`).
fn header() -> Vec<u8> {
    let mut h = b"SDBL".to_vec();
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes());
    h.extend_from_slice(&0u64.to_le_bytes());
    h
}

/// Runs recovery on `tail` and checks it; returns the number of records kept.
pub fn recover_arbitrary_tail(tail: &[u8]) -> usize {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("00000000000000000000.log");
    let mut original = header();
    original.extend_from_slice(tail);
    fs::write(&path, &original).expect("write segment");

    let log = LocalLog::open(dir.path(), Options::default()).expect("a bad tail never fails open");
    let mut records = Vec::new();
    loop {
        let next = records.len() as u64;
        let batch = log
            .read_from(next, ReadLimits::records(1000))
            .expect("recovered records read back");
        if batch.is_empty() {
            break;
        }
        records.extend(batch);
    }
    let kept = fs::read(&path).expect("read segment");
    assert!(kept.len() >= original.len().min(16), "the header stays");
    assert_eq!(
        kept[..],
        original[..kept.len()],
        "recovery only cuts the file"
    );
    assert_eq!(
        log.recovery().truncated_bytes,
        (original.len() - kept.len()) as u64
    );
    assert_eq!(log.durable_end(), records.len() as u64);

    // The kept bytes are exactly the frames of the returned records.
    let mut pos = 16;
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record.offset, i as u64);
        let len = u32::from_le_bytes(kept[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        assert_eq!(len, record.payload.len());
        assert_eq!(kept[pos + 8..pos + 8 + len], record.payload[..]);
        pos += 8 + len;
    }
    assert_eq!(pos, kept.len());
    records.len()
}
