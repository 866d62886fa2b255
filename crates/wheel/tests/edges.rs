//! Edge cases named by the issue: deadlines now, in the past, at the range limit and
//! beyond it; cancel after fire; key reuse; ordering and idle skipping.

use sundial_wheel::{MAX_TICK, RANGE_TICKS, TimerKey, UnknownTimer, Wheel};

fn advance(w: &mut Wheel<u32>, now: u64) -> Vec<u32> {
    let mut out: Vec<(TimerKey, u32)> = Vec::new();
    w.advance_to(now, &mut out);
    out.into_iter().map(|(_, v)| v).collect()
}

#[test]
fn deadline_now_and_in_the_past_fire_on_the_next_advance() {
    let mut w = Wheel::with_start(1_000);
    w.insert(1_000, 1);
    w.insert(10, 2);
    w.insert(0, 3);
    assert_eq!(w.next_wakeup(), Some(1_000));
    assert_eq!(w.next_deadline(), Some(0));
    // Same tick: due timers still come out, oldest deadline first.
    assert_eq!(advance(&mut w, 1_000), vec![3, 2, 1]);
    assert!(w.is_empty());
    assert_eq!(w.next_wakeup(), None);
}

#[test]
fn time_never_goes_back() {
    let mut w = Wheel::with_start(500);
    w.insert(501, 1);
    assert_eq!(advance(&mut w, 100), Vec::<u32>::new());
    assert_eq!(w.now(), 500);
    assert_eq!(advance(&mut w, 501), vec![1]);
}

#[test]
fn fires_exactly_in_its_tick_at_every_level_and_range_limit() {
    let deadlines = [
        1,
        63,
        64,
        4_095,
        4_096,
        262_143,
        262_144,
        RANGE_TICKS - 1,
        RANGE_TICKS,
        RANGE_TICKS + 1,
        2 * RANGE_TICKS + 17,
        5 * RANGE_TICKS - 1,
    ];
    for &d in &deadlines {
        let mut w = Wheel::new();
        w.insert(d, 7);
        assert_eq!(
            advance(&mut w, d - 1),
            Vec::<u32>::new(),
            "deadline {d} fired early"
        );
        assert_eq!(
            advance(&mut w, d),
            vec![7],
            "deadline {d} not fired in its tick"
        );
    }
}

#[test]
fn beyond_the_range_goes_through_overflow_and_comes_back_exactly() {
    let mut w = Wheel::new();
    let far = [3 * RANGE_TICKS + 5, 3 * RANGE_TICKS + 5, 7 * RANGE_TICKS];
    for (i, &d) in far.iter().enumerate() {
        w.insert(d, i as u32);
    }
    assert_eq!(w.next_deadline(), Some(3 * RANGE_TICKS + 5));
    // Idle windows are skipped: the first wakeup is the drain one window ahead.
    assert!(w.next_wakeup().is_some_and(|t| t >= 2 * RANGE_TICKS));
    assert_eq!(advance(&mut w, 3 * RANGE_TICKS + 4), Vec::<u32>::new());
    let mut got = advance(&mut w, 3 * RANGE_TICKS + 5);
    got.sort_unstable();
    assert_eq!(got, vec![0, 1]);
    assert_eq!(advance(&mut w, 7 * RANGE_TICKS - 1), Vec::<u32>::new());
    assert_eq!(advance(&mut w, 7 * RANGE_TICKS), vec![2]);
}

#[test]
fn deadlines_past_max_tick_are_clamped() {
    let mut w = Wheel::with_start(MAX_TICK - 10);
    let k = w.insert(u64::MAX, 1);
    assert_eq!(w.deadline(k), Some(MAX_TICK));
    assert_eq!(advance(&mut w, MAX_TICK - 1), Vec::<u32>::new());
    assert_eq!(advance(&mut w, u64::MAX), vec![1]);
    assert_eq!(w.now(), MAX_TICK);
}

#[test]
fn cancel_after_fire_and_key_reuse_are_safe() {
    let mut w = Wheel::new();
    let a = w.insert(5, 1);
    assert_eq!(advance(&mut w, 5), vec![1]);
    assert_eq!(w.cancel(a), None, "cancel after fire");
    assert_eq!(w.reset(a, 10), Err(UnknownTimer(a)));
    // The slot is reused; the old key must not reach the new timer.
    let b = w.insert(20, 2);
    assert_ne!(a, b);
    assert_eq!(w.cancel(a), None);
    assert_eq!(w.get(a), None);
    assert_eq!(w.get(b), Some(&2));
    assert_eq!(w.cancel(b), Some(2));
    assert_eq!(w.cancel(b), None, "double cancel");
    assert_eq!(advance(&mut w, 100), Vec::<u32>::new());
}

#[test]
fn reset_moves_a_timer_between_levels_and_keeps_its_key() {
    let mut w = Wheel::new();
    let k = w.insert(100_000, 9);
    w.reset(k, 3).expect("pending");
    assert_eq!(advance(&mut w, 2), Vec::<u32>::new());
    let mut out = Vec::new();
    w.advance_to(3, &mut out);
    assert_eq!(out, vec![(k, 9)]);
    let k2 = w.insert(10, 1);
    w.reset(k2, 5 * RANGE_TICKS).expect("pending");
    assert_eq!(advance(&mut w, RANGE_TICKS), Vec::<u32>::new());
    assert_eq!(w.deadline(k2), Some(5 * RANGE_TICKS));
    if let Some(v) = w.get_mut(k2) {
        *v = 11;
    }
    assert_eq!(advance(&mut w, 5 * RANGE_TICKS), vec![11]);
}

#[test]
fn timers_of_one_call_come_out_in_deadline_order() {
    let mut w = Wheel::new();
    let deadlines = [70_000u64, 5, 4_100, 64, 63, 1_000_000, 4_096, 1];
    for &d in &deadlines {
        w.insert(d, d as u32);
    }
    let got = advance(&mut w, 2_000_000);
    let mut sorted: Vec<u32> = deadlines.iter().map(|&d| d as u32).collect();
    sorted.sort_unstable();
    assert_eq!(got, sorted);
}

#[test]
fn slots_are_reused_without_growing() {
    let mut w = Wheel::with_capacity(1_000);
    let before = w.capacity();
    let empty = w.allocated_bytes();
    for round in 0..50u64 {
        let keys: Vec<TimerKey> = (0..1_000u64)
            .map(|i| w.insert(round * 10_000 + i, 0))
            .collect();
        for k in keys.iter().step_by(2) {
            w.cancel(*k);
        }
        let _ = advance(&mut w, round * 10_000 + 5_000);
        assert!(w.is_empty());
        // List vectors shrink with their lists: an empty list keeps at most 64
        // indices (256 bytes), whatever it held before.
        assert!(
            w.allocated_bytes() <= empty + 2_000 * 256,
            "round {round}: {} bytes held by an empty wheel",
            w.allocated_bytes()
        );
    }
    assert_eq!(w.capacity(), before, "the slab never grows once warm");
}

#[test]
fn list_memory_follows_the_pending_timers() {
    // 100,000 timers in one level-2 slot, then all but ten cancelled in a scrambled
    // order: the slot's index vector must give its memory back, and the ten survivors
    // (whose positions moved with every swap_remove) must still fire exactly.
    let mut w = Wheel::with_capacity(100_000);
    let keys: Vec<TimerKey> = (0..100_000u64).map(|i| w.insert(300_000, i)).collect();
    let full = w.allocated_bytes();
    let mut order: Vec<usize> = (0..keys.len()).collect();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for i in (1..order.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let (survivors, cancelled) = order.split_at(10);
    for &i in cancelled {
        assert_eq!(w.cancel(keys[i]), Some(i as u64));
    }
    // Slab and the fixed list headers aside, what the lists hold.
    let fixed = w.capacity() * Wheel::<u64>::entry_size() + Wheel::<u64>::new().allocated_bytes();
    let (before, after) = (full - fixed, w.allocated_bytes() - fixed);
    assert!(before >= 400_000, "{before}");
    assert!(
        after < before / 100,
        "list memory kept after cancelling: {after} of {before} bytes"
    );
    let mut fired = Vec::new();
    w.advance_to(299_999, &mut fired);
    assert!(fired.is_empty());
    w.advance_to(300_000, &mut fired);
    let mut got: Vec<u64> = fired.iter().map(|&(_, v)| v).collect();
    got.sort_unstable();
    let mut want: Vec<u64> = survivors.iter().map(|&i| i as u64).collect();
    want.sort_unstable();
    assert_eq!(got, want);
}

#[test]
fn steady_cancel_churn_keeps_list_memory_bounded() {
    // 10,000 timers pending in one level-2 slot; 100,000 times a random one is
    // cancelled and a new one inserted into the same slot. Each cancel leaves a
    // tombstone; compaction must keep them below the live count, so the slot's list
    // stays within a small multiple of what 10,000 indices need, and the survivors
    // (moved around by the compactions) still fire exactly.
    const N: usize = 10_000;
    let mut w = Wheel::with_capacity(N);
    let mut keys: Vec<TimerKey> = (0..N as u64).map(|i| w.insert(300_000, i)).collect();
    let fixed = w.capacity() * Wheel::<u64>::entry_size() + Wheel::<u64>::new().allocated_bytes();
    let mut peak = 0;
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for round in 0..100_000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = (x % N as u64) as usize;
        assert!(w.cancel(keys[i]).is_some(), "round {round}");
        keys[i] = w.insert(300_000, N as u64 + round);
        if round % 16 == 0 {
            peak = peak.max(w.allocated_bytes() - fixed);
        }
    }
    assert_eq!(w.capacity(), N, "the slab never grows");
    // Live + tombstones <= 2N + 1 indices, and a vector at most doubles: 4 * 4 * N.
    assert!(
        peak <= 16 * N,
        "list memory peaked at {peak} bytes for {N} pending timers"
    );
    let mut fired = Vec::new();
    w.advance_to(299_999, &mut fired);
    assert!(fired.is_empty());
    w.advance_to(300_000, &mut fired);
    let mut got: Vec<TimerKey> = fired.iter().map(|&(k, _)| k).collect();
    got.sort_unstable();
    keys.sort_unstable();
    assert_eq!(got, keys);
}
