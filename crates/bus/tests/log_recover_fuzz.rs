//! Recovery of arbitrary active-segment contents: the same body as the cargo-fuzz target
//! `recover`, driven by proptest with inputs that are mostly valid frames followed by
//! damage, so the interesting boundary is hit often.

#![allow(clippy::unwrap_used)]

#[path = "common/recover_body.rs"]
mod body;

use proptest::prelude::*;

/// Frames for `records` starting at offset 0, as the writer would encode them.
fn encode(records: &[Vec<u8>]) -> (Vec<u8>, Vec<usize>) {
    let mut out = Vec::new();
    let mut starts = Vec::new();
    for (offset, payload) in records.iter().enumerate() {
        starts.push(out.len());
        let len = (payload.len() as u32).to_le_bytes();
        let crc = crc32c::crc32c(&(offset as u64).to_le_bytes());
        let crc = crc32c::crc32c_append(crc, &len);
        let crc = crc32c::crc32c_append(crc, payload);
        out.extend_from_slice(&len);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(payload);
    }
    (out, starts)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_recover_to_a_valid_prefix(tail in prop::collection::vec(any::<u8>(), 0..200)) {
        body::recover_arbitrary_tail(&tail);
    }

    #[test]
    fn valid_frames_then_damage_recover_exactly_the_frames_before_the_damage(
        records in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..8),
        garbage in prop::collection::vec(any::<u8>(), 0..24),
        flip in prop::option::of((any::<prop::sample::Index>(), 1u8..=255)),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let (mut bytes, starts) = encode(&records);
        let mut expected = records.len();
        if let Some((at, mask)) = flip.filter(|_| !bytes.is_empty()) {
            let at = at.index(bytes.len());
            bytes[at] ^= mask;
            expected = starts.iter().filter(|s| **s <= at).count() - 1;
        }
        if let Some(cut) = cut.filter(|_| !bytes.is_empty()) {
            let cut = cut.index(bytes.len());
            bytes.truncate(cut);
            expected = expected.min(starts.iter().zip(&records).filter(|(s, r)| *s + 8 + r.len() <= cut).count());
        } else {
            // Garbage after the frames is a torn tail; it cannot pass for a frame unless it
            // matches a CRC-32C by chance (2^-32).
            bytes.extend_from_slice(&garbage);
        }
        prop_assert_eq!(body::recover_arbitrary_tail(&bytes), expected);
    }
}
