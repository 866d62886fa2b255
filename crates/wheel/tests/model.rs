//! Model-based property tests: random insert / cancel / reset / advance sequences give
//! the same expirations in the same ticks as a `BTreeMap` model.

mod support;

use proptest::prelude::*;
use sundial_wheel::{MAX_TICK, RANGE_TICKS};
use support::model::{Op, decode, run};

fn offset() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..70,
        4 => 0u64..5_000,
        2 => 0u64..300_000,
        1 => 0u64..(1 << 31),
        1 => 0u64..(3 * RANGE_TICKS),
        1 => Just(RANGE_TICKS),
        1 => any::<u64>(),
    ]
}

fn step() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => 0u64..3,
        3 => 0u64..100,
        2 => 0u64..10_000,
        1 => 0u64..(1 << 26),
        1 => 0u64..(2 * RANGE_TICKS),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (offset(), prop::bool::weighted(0.1)).prop_map(|(offset, past)| Op::Insert { offset, past }),
        3 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
        2 => (any::<usize>(), offset(), prop::bool::weighted(0.1))
            .prop_map(|(pick, offset, past)| Op::Reset { pick, offset, past }),
        6 => step().prop_map(|step| Op::Advance { step }),
        1 => Just(Op::Check),
    ]
}

fn start() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        (0u64..5_000).prop_map(|d| RANGE_TICKS - 1 - d),
        0u64..(1 << 40),
        (0u64..5_000).prop_map(|d| MAX_TICK - d),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn wheel_matches_btreemap_model(start in start(), ops in prop::collection::vec(op(), 1..300)) {
        run(start, &ops);
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Dense: many timers close together, time moving one tick at a time.
    #[test]
    fn dense_tick_by_tick(
        deadlines in prop::collection::vec(0u64..20_000, 1..2_000),
        cancels in prop::collection::vec(any::<usize>(), 0..500),
    ) {
        let mut ops: Vec<Op> = deadlines.iter().map(|&offset| Op::Insert { offset, past: false }).collect();
        ops.extend(cancels.iter().map(|&pick| Op::Cancel { pick }));
        ops.push(Op::Check);
        ops.extend(std::iter::repeat_n(Op::Advance { step: 1 }, 20_001));
        ops.push(Op::Check);
        run(0, &ops);
    }

}

/// Offsets that crowd timers into a few slots of every level (and the due and
/// overflow lists), so that their lists fill up with tombstones.
fn crowded_offset() -> impl Strategy<Value = u64> {
    prop_oneof![
        2 => 0u64..4,
        2 => 100u64..110,
        2 => 70_000u64..70_040,
        1 => 20_000_000u64..20_000_010,
        1 => (RANGE_TICKS + 5)..(RANGE_TICKS + 9),
    ]
}

fn churn_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (crowded_offset(), prop::bool::weighted(0.05)).prop_map(|(offset, past)| Op::Insert { offset, past }),
        8 => (0usize..48).prop_map(|back| Op::CancelRecent { back }),
        1 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
        2 => (any::<usize>(), crowded_offset()).prop_map(|(pick, offset)| Op::Reset { pick, offset, past: false }),
        2 => step().prop_map(|step| Op::Advance { step }),
        1 => Just(Op::Check),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Heavy cancel churn in crowded slots: tombstones, compactions, lists cleared by
    /// their last cancel, and walks over lists full of tombstones.
    #[test]
    fn cancel_churn_matches_btreemap_model(start in start(), ops in prop::collection::vec(churn_op(), 1..1_500)) {
        run(start, &ops);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The fuzz target's body, fed by proptest.
    #[test]
    fn fuzz_body(data in prop::collection::vec(any::<u8>(), 0..512)) {
        let (start, ops) = decode(&data);
        run(start, &ops);
    }
}
