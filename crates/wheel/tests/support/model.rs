//! Model-based check of `sundial_wheel::Wheel` against a `BTreeMap`, shared by the
//! proptests (`tests/model.rs`) and the fuzz target (`fuzz/fuzz_targets/ops.rs`).
//!
//! The model is the obvious one: a map from timer id to deadline, and "advance to
//! `now`" fires every timer whose deadline is `<= now`. After every operation the wheel
//! must agree with it: same timers fired in the same advance call (hence in the same
//! tick when time moves one tick at a time), in deadline order, same cancel / reset
//! results, same length and same exact next deadline.

#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, BTreeSet};

use sundial_wheel::{MAX_TICK, TimerKey, UnknownTimer, Wheel};

/// One operation of a test sequence.
#[derive(Debug, Clone)]
pub enum Op {
    /// Insert a timer `offset` ticks after (or, if `past`, before) the current tick.
    Insert { offset: u64, past: bool },
    /// Cancel the `pick`-th key ever handed out (modulo their number); it may be stale.
    Cancel { pick: usize },
    /// Cancel the key handed out `back` inserts ago (modulo their number): with small
    /// values this mostly hits pending timers, so tombstones pile up in crowded
    /// slots and lists get compacted.
    CancelRecent { back: usize },
    /// Reset the `pick`-th key to `offset` ticks from now.
    Reset {
        pick: usize,
        offset: u64,
        past: bool,
    },
    /// Advance by `step` ticks (0 is allowed: it hands out due timers).
    Advance { step: u64 },
    /// Compare `next_deadline`, `next_wakeup`, `len` and every key's deadline.
    Check,
}

fn target(now: u64, offset: u64, past: bool) -> u64 {
    if past {
        now.saturating_sub(offset)
    } else {
        now.saturating_add(offset)
    }
}

/// Runs `ops` on a wheel starting at tick `start` and on the model; panics on the
/// first disagreement.
pub fn run(start: u64, ops: &[Op]) {
    let mut wheel: Wheel<u64> = Wheel::with_start(start);
    let mut now = start.min(MAX_TICK);
    let mut model: BTreeMap<u64, u64> = BTreeMap::new(); // id -> deadline
    let mut queue: BTreeSet<(u64, u64)> = BTreeSet::new(); // (deadline, id)
    let mut keys: Vec<TimerKey> = Vec::new(); // id -> key
    let mut fired = Vec::new();
    for (step_no, op) in ops.iter().enumerate() {
        match *op {
            Op::Insert { offset, past } => {
                let deadline = target(now, offset, past);
                let id = keys.len() as u64;
                let key = wheel.insert(deadline, id);
                assert!(
                    !keys.contains(&key),
                    "op {step_no}: key {key:?} handed out twice"
                );
                keys.push(key);
                model.insert(id, deadline.min(MAX_TICK));
                queue.insert((deadline.min(MAX_TICK), id));
            }
            Op::Cancel { .. } | Op::CancelRecent { .. } => {
                if keys.is_empty() {
                    continue;
                }
                let id = match *op {
                    Op::CancelRecent { back } => keys.len() - 1 - back % keys.len(),
                    Op::Cancel { pick } => pick % keys.len(),
                    _ => unreachable!("matched a cancel"),
                };
                let removed = model.remove(&(id as u64));
                if let Some(d) = removed {
                    queue.remove(&(d, id as u64));
                }
                let expected = removed.map(|_| id as u64);
                assert_eq!(
                    wheel.cancel(keys[id]),
                    expected,
                    "op {step_no}: cancel {id}"
                );
                assert_eq!(wheel.cancel(keys[id]), None, "op {step_no}: second cancel");
            }
            Op::Reset { pick, offset, past } => {
                if keys.is_empty() {
                    continue;
                }
                let id = pick % keys.len();
                let deadline = target(now, offset, past);
                let result = wheel.reset(keys[id], deadline);
                match model.get_mut(&(id as u64)) {
                    Some(d) => {
                        assert_eq!(result, Ok(()), "op {step_no}: reset {id}");
                        queue.remove(&(*d, id as u64));
                        *d = deadline.min(MAX_TICK);
                        queue.insert((*d, id as u64));
                    }
                    None => assert_eq!(result, Err(UnknownTimer(keys[id])), "op {step_no}"),
                }
            }
            Op::Advance { step } => {
                now = now.saturating_add(step).min(MAX_TICK);
                fired.clear();
                wheel.advance_to(now, &mut fired);
                assert_eq!(wheel.now(), now);
                let mut expected: Vec<(u64, u64)> = Vec::new();
                while let Some(&(d, id)) = queue.first() {
                    if d > now {
                        break;
                    }
                    queue.pop_first();
                    model.remove(&id);
                    expected.push((d, id));
                }
                let deadline_of: BTreeMap<u64, u64> =
                    expected.iter().map(|&(d, id)| (id, d)).collect();
                let mut got: Vec<(u64, u64)> = Vec::with_capacity(fired.len());
                let mut last = 0;
                for &(key, id) in &fired {
                    assert_eq!(
                        keys.get(id as usize),
                        Some(&key),
                        "op {step_no}: key/payload"
                    );
                    let d = *deadline_of
                        .get(&id)
                        .unwrap_or_else(|| panic!("op {step_no}: timer {id} fired too early"));
                    assert!(d >= last, "op {step_no}: out of deadline order");
                    last = d;
                    got.push((d, id));
                }
                got.sort_unstable();
                assert_eq!(got, expected, "op {step_no}: advance to {now}");
            }
            Op::Check => {
                assert_eq!(wheel.len(), model.len(), "op {step_no}: len");
                let min = queue.first().map(|&(d, _)| d);
                assert_eq!(wheel.next_deadline(), min, "op {step_no}: next_deadline");
                match (wheel.next_wakeup(), min) {
                    (None, None) => {}
                    (Some(w), Some(m)) => {
                        assert!(
                            w <= m.max(now),
                            "op {step_no}: wakeup {w} after deadline {m}"
                        );
                        assert!(w >= now, "op {step_no}: wakeup {w} in the past ({now})");
                    }
                    (w, m) => panic!("op {step_no}: wakeup {w:?} vs deadline {m:?}"),
                }
                for (id, key) in keys.iter().enumerate() {
                    let expected = model.get(&(id as u64)).copied();
                    assert_eq!(
                        wheel.deadline(*key),
                        expected,
                        "op {step_no}: deadline {id}"
                    );
                }
            }
        }
        assert_eq!(wheel.len(), model.len(), "op {step_no}: len after {op:?}");
    }
    // Drain everything that is left and make sure it all comes out at the right time.
    while let Some(&(next, _)) = queue.first() {
        let wake = wheel.next_wakeup().expect("timers pending but no wakeup");
        assert!(wake <= next.max(now));
        now = next.max(now);
        fired.clear();
        wheel.advance_to(now, &mut fired);
        let mut expected: Vec<u64> = Vec::new();
        while let Some(&(d, id)) = queue.first() {
            if d > now {
                break;
            }
            queue.pop_first();
            model.remove(&id);
            expected.push(id);
        }
        let mut got: Vec<u64> = fired.iter().map(|&(_, id)| id).collect();
        got.sort_unstable();
        expected.sort_unstable();
        assert_eq!(got, expected, "final drain at {now}");
    }
    assert!(wheel.is_empty());
}

/// Decodes fuzzer bytes into a start tick and operations (every input is valid).
pub fn decode(data: &[u8]) -> (u64, Vec<Op>) {
    let mut it = data.iter().copied();
    let mut next = || it.next();
    let word = |n: usize, next: &mut dyn FnMut() -> Option<u8>| -> u64 {
        let mut v = 0u64;
        for _ in 0..n {
            v = (v << 8) | u64::from(next().unwrap_or(0));
        }
        v
    };
    let start = match next() {
        None => return (0, Vec::new()),
        Some(b) => match b % 4 {
            0 => 0,
            1 => (1u64 << 36) - word(2, &mut next) - 1,
            2 => word(5, &mut next),
            _ => MAX_TICK - word(3, &mut next),
        },
    };
    let mut ops = Vec::new();
    while let Some(tag) = next() {
        // Offsets: mostly inside the first levels, sometimes far or beyond the range.
        let offset = |sel: u8, next: &mut dyn FnMut() -> Option<u8>| -> u64 {
            match sel % 8 {
                0..=2 => word(1, next),
                3..=4 => word(2, next),
                5 => word(3, next),
                6 => word(5, next) & ((1 << 38) - 1),
                _ => word(8, next),
            }
        };
        let op = match tag % 8 {
            0..=2 => Op::Insert {
                past: tag & 0x80 != 0 && tag & 0x40 != 0,
                offset: offset(tag >> 3, &mut next),
            },
            3 if tag & 0x80 != 0 => Op::CancelRecent {
                back: word(1, &mut next) as usize,
            },
            3 => Op::Cancel {
                pick: word(2, &mut next) as usize,
            },
            4 => Op::Reset {
                pick: word(2, &mut next) as usize,
                past: tag & 0x80 != 0,
                offset: offset(tag >> 3, &mut next),
            },
            5 | 6 => Op::Advance {
                step: match (tag >> 3) % 4 {
                    0 | 1 => u64::from(tag >> 5),
                    2 => word(2, &mut next),
                    _ => word(5, &mut next) & ((1 << 38) - 1),
                },
            },
            _ => Op::Check,
        };
        ops.push(op);
    }
    (start, ops)
}
