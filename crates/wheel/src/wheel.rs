//! The timing wheel itself.
//!
//! # Layout
//!
//! Time is split into levels of 64 slots. A slot of level `k` spans `64^k` ticks, so a
//! ring of level `k` spans `64^(k+1)` ticks and six levels span `2^36` ticks. All
//! timers live in one slab (`entries`); every slot is a list kept as a vector of `u32`
//! slab indices (`lists`), and each entry records its list and its position in that
//! vector. A `u64` bitmap per ring says which slots are non-empty, so the next
//! occupied slot is one `trailing_zeros` away.
//!
//! Index vectors rather than intrusive links: inserting touches only the new entry
//! and the tail of one small vector (not the old list head, a random slab entry), and
//! a walk over a list (pre-cascade, expiry) knows the next indices in advance, so it
//! reads a batch of `BATCH` (16) entries before using them and their cache misses
//! overlap instead of forming a chain. A list vector shrinks by half when three
//! quarters of it are unused and keeps at most 64 slots once empty, so list memory
//! follows the pending timers.
//!
//! # Cancel
//!
//! A cancel (and the removal half of a reset) frees the timer's slab entry at once —
//! payload returned, generation bumped, entry on the free list for the next insert —
//! and overwrites the timer's index in its list with `TOMB` (`u32::MAX`, never a slab
//! index). It reads the timer's entry and the list's header and writes one list slot;
//! it touches no other timer's entry and does not read the list's tail, which is what
//! made the earlier `swap_remove` cancel a chain of three to four cache misses at
//! 10^6 timers. Because the slot itself is overwritten, a reused entry can never be
//! reached through a stale list slot, so list slots need no generation and stay
//! 4 bytes.
//!
//! Tombstones are bounded per list: each list counts them (`dead`), and when a cancel
//! leaves `dead > live` the list is compacted: the tombstones below position `live`
//! are filled with the live indices above it (whose entries learn their new
//! position) and the vector is truncated to `live`. A compaction scans
//! `live + dead < 2 * dead` slots and moves at most `live < dead` indices, and every
//! one of those `dead` tombstones was left by a cancel or reset since the list's
//! previous compaction, so it is amortized O(1) per cancel: fewer than two slots
//! scanned and one index moved (measured: 0.2 moves per cancel when a random half of
//! 10^6 timers is cancelled); the cancel that triggers it pays O(length) at once. A
//! list whose last live timer is cancelled is cleared at once (so an empty list
//! always means an empty slot, and its occupancy bit is exact). Walks drop tombstones as
//! they go: expiry skips them, and a pre-cascade step counts them as work but reads
//! no entry for them. Hence after every cancel and reset `dead <= live` in each list,
//! and tombstones take at most 4 bytes per pending timer; a list being pre-cascaded
//! only shrinks (from its tail) and is empty by the start of its window.
//!
//! # Ground rules
//!
//! Let `e` be `elapsed` (the last tick processed) and, for a level `k >= 1`, let
//! `B_k = (e / 64^k + 1) * 64^k` be the start of the next level-`k` window.
//!
//! 1. A timer with deadline `d <= e` is in the *due* list.
//! 2. Otherwise let `k` be the level of the highest bit in which `d` and `e` differ.
//!    If `k >= 1` and `d` lies in `[B_k, B_k + 64^k)` (the *next* slot of level `k`),
//!    the timer is either still in that live slot (waiting to be pre-cascaded) or
//!    already in `staging[k]`, a set of rings for levels `0..k` laid out as if the
//!    current time were `B_k`. Every other timer with `k < 6` is in the live ring of
//!    level `k`, slot `(d >> 6k) & 63`. Beyond the live rings (`k >= 6`) the rules are
//!    the same with one list instead of a ring: the next 2^36-tick window is staged,
//!    and farther timers wait in the overflow lists.
//! 3. Consequently a live level-0 slot holds only timers whose deadline is exactly the
//!    tick that slot stands for, which is what makes expiry exact.
//! 4. *Pre-cascading* (the "drain" of level `k`) moves the timers of the next slot of
//!    level `k` into `staging[k]` a chunk at a time while the current level-`k` window
//!    runs. When time reaches `B_k` the drain is complete, every live ring below `k` is
//!    empty (all their timers had deadlines before `B_k` and fired), and the staged
//!    rings simply *become* the live rings: the swap exchanges ring numbers in
//!    `live`/`staging`, and entries, which store a list number, never move.
//!
//! # Work per tick
//!
//! A drain that is due at tick `t` takes `max(m, ceil(rem / left))` list slots from
//! its source, where `rem` is the number of slots left (tombstones included), `left`
//! the ticks until its window starts and `m` the number of slots that hold about
//! `DRAIN_CHUNK` live timers (`DRAIN_CHUNK * rem / live`, capped at
//! `MAX_TOMB_RATIO * DRAIN_CHUNK`), and schedules its next chunk so that the average
//! rate keeps up. Hence one tick scans at most `6 * MAX_TOMB_RATIO * DRAIN_CHUNK`
//! slots (a tombstone costs a sequential read, a live index a relink; without
//! tombstones `m = DRAIN_CHUNK`, so `6 * DRAIN_CHUNK` relinks) plus, per
//! level, the *average* per-tick rate of the window being prepared, on top of firing
//! the timers due in that tick. There is no cascade burst at window boundaries: the
//! boundary itself is O(levels).

use std::fmt;
use std::num::NonZeroU16;

/// Bits of the tick consumed by one level.
const LEVEL_BITS: u32 = 6;
/// Slots per ring. Must be `1 << LEVEL_BITS` and equal the bitmap width.
const SLOTS: usize = 64;
/// Number of ring levels. Six levels span `2^36` ticks: 2.18 years at 1 ms per tick,
/// comfortably above the two years the scheduler needs.
const LEVELS: usize = 6;
/// Ticks spanned by the ring levels.
const RANGE_BITS: u32 = LEVEL_BITS * LEVELS as u32;

/// The number of ticks the rings cover (`2^36`); deadlines farther than this from the
/// current window go to the overflow list.
pub const RANGE_TICKS: u64 = 1 << RANGE_BITS;

/// The largest tick the wheel represents (`2^62 - 1`, about 146 million years at 1 ms).
/// Larger deadlines and times are clamped to it, which keeps all window arithmetic
/// free of overflow.
pub const MAX_TICK: u64 = (1 << 62) - 1;

/// Minimum number of timers a pre-cascade step moves (see the module docs).
const DRAIN_CHUNK: u64 = 64;
/// A pre-cascade step's minimum covers `DRAIN_CHUNK` live timers, scanning at most
/// this many times `DRAIN_CHUNK` list elements (tombstones included) to find them.
const MAX_TOMB_RATIO: u64 = 4;

/// Physical rings: six live ones, and `k` staging rings for each level `k` in `1..=6`.
const RINGS: usize = LEVELS + LEVELS * (LEVELS + 1) / 2;
/// Lists that belong to ring slots.
const RING_LISTS: usize = RINGS * SLOTS;
/// The list of timers whose deadline has already passed.
const LIST_DUE: usize = RING_LISTS;
/// The two overflow lists (which one is "pending" and which "kept" alternates).
const LIST_OVF_A: usize = RING_LISTS + 1;
const LIST_OVF_B: usize = RING_LISTS + 2;
const NUM_LISTS: usize = RING_LISTS + 3;

/// Timers whose entries a list walk reads ahead (see `Wheel::drain`).
const BATCH: usize = 16;
/// List buffers at most this large (in indices) are never shrunk.
const SHRINK_MIN: usize = 64;
/// The "no entry" link.
const NIL: u32 = u32::MAX;
/// A cancelled timer's place in a list (never a valid slab index: see `insert`).
const TOMB: u32 = u32::MAX;
/// Drain idle marker.
const NEVER: u64 = u64::MAX;

/// A handle to a timer in a [`Wheel`].
///
/// A key stays valid until its timer fires or is cancelled; afterwards every operation
/// with it reports the timer as unknown, even if its slot has been reused (the key
/// carries the slot's generation, which wraps only after 2^32 reuses of one slot).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerKey {
    index: u32,
    generation: u32,
}

impl TimerKey {
    /// The key as one `u64` (for logging or for storing keys compactly).
    #[must_use]
    pub fn to_bits(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.index)
    }

    /// The inverse of [`TimerKey::to_bits`].
    #[must_use]
    pub fn from_bits(bits: u64) -> Self {
        Self {
            index: bits as u32,
            generation: (bits >> 32) as u32,
        }
    }
}

impl fmt::Debug for TimerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TimerKey({}v{})", self.index, self.generation)
    }
}

/// The error of [`Wheel::reset`]: the key names no pending timer (it fired, was
/// cancelled, or belongs to another wheel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownTimer(pub TimerKey);

impl fmt::Display for UnknownTimer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "timer {:?} is not pending (it fired or was cancelled)",
            self.0
        )
    }
}

impl std::error::Error for UnknownTimer {}

/// A pending timer.
struct Node<T> {
    deadline: u64,
    generation: u32,
    /// Position of the node's index in its list's vector.
    pos: u32,
    /// The list the node is in, plus one (the niche lets `Entry` stay node-sized).
    list: NonZeroU16,
    value: T,
}

/// A slot's list: slab indices in no particular order, with cancelled timers left
/// behind as [`TOMB`]s (see the module docs, "Cancel").
///
/// Invariants: `dead` is the number of `TOMB`s in `ids`; `ids` is empty whenever it
/// holds no live index (a list of tombstones only is cleared at once), so
/// `ids.is_empty()` means "no pending timer here"; after every cancel or reset that
/// leaves a tombstone, `dead <= live` (otherwise the list is compacted).
#[derive(Default)]
struct SlotList {
    ids: Vec<u32>,
    dead: u32,
}

impl SlotList {
    /// Number of live (non-tombstone) indices.
    fn live(&self) -> usize {
        self.ids.len() - self.dead as usize
    }

    fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// A slab slot.
enum Entry<T> {
    Occupied(Node<T>),
    Vacant { next_free: u32, generation: u32 },
}

/// A hierarchical timing wheel of timers carrying a `T`.
///
/// See the [crate docs](crate) for the guarantees and the module source for the
/// invariants. Memory: one slab entry per timer (24 bytes for a payload of up to
/// 4 bytes, 32 bytes for an 8-byte one) and its 4-byte index in a list vector, plus a
/// fixed ~54 KiB of list headers. Cancelled timers leave 4-byte tombstones in their
/// lists, at most one per live timer of the same list (see the module docs,
/// "Cancel"): at most 4 more bytes per pending timer, none when nothing was
/// cancelled.
///
/// # Work per tick
///
/// Coarse slots are *pre-cascaded*: while a level-`k` window runs, the timers of the
/// next level-`k` slot are moved into a staged copy of the lower rings, in chunks of
/// at least 64 timers and at the rate needed to finish before that window starts; at
/// the boundary the staged rings are swapped in by exchanging ring numbers (O(1)). So
/// a tick does at most `6 × 64` relinks when no cancel left tombstones in the lists
/// being prepared, and at most `6 × 256` list slots (each a relink or a skipped
/// tombstone) otherwise, plus, per level, the average per-tick rate of the window
/// being prepared, besides handing out the timers due in it.
pub struct Wheel<T> {
    entries: Vec<Entry<T>>,
    free_head: u32,
    len: usize,
    /// The last tick processed.
    elapsed: u64,
    /// Cached lower bound (> `elapsed`) of the next tick at which `advance_to` has work.
    next_event: u64,
    /// Every list as a vector of slab indices (order within a list is irrelevant).
    lists: Vec<SlotList>,
    /// Slot occupancy, one bitmap per physical ring.
    occupied: [u64; RINGS],
    /// Physical ring of live level `k`.
    live: [u8; LEVELS],
    /// `staging[k][j]`: physical ring of level `j` staged for the window at `B_k`.
    staging: [[u8; LEVELS]; LEVELS + 1],
    /// Overflow list being examined during the current 2^36 window.
    ovf_pending: u16,
    /// Overflow list of timers beyond the next 2^36 window.
    ovf_kept: u16,
    /// Next tick at which the drain of level `k` (index `1..=6`) must make progress.
    drain_at: [u64; LEVELS + 1],
    /// Lower bound of the deadlines in the kept overflow list (`NEVER` if none), so
    /// that idle 2^36-tick windows are skipped rather than visited.
    kept_min: u64,
}

impl<T> fmt::Debug for Wheel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wheel")
            .field("now", &self.elapsed)
            .field("len", &self.len)
            .field("next_wakeup", &self.next_wakeup())
            .finish_non_exhaustive()
    }
}

impl<T> Default for Wheel<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Start of the level-`level` window after the one containing `t`.
fn next_boundary(t: u64, level: usize) -> u64 {
    let shift = LEVEL_BITS * level as u32;
    ((t >> shift) + 1) << shift
}

/// The slot index of `t` at `level`.
fn slot_of(t: u64, level: usize) -> usize {
    ((t >> (LEVEL_BITS * level as u32)) as usize) & (SLOTS - 1)
}

/// The level whose slots distinguish `a` from `b` (`a != b`).
fn level_of_diff(a: u64, b: u64) -> usize {
    let x = a ^ b;
    if x == 0 {
        0
    } else {
        ((63 - x.leading_zeros()) / LEVEL_BITS) as usize
    }
}

/// Bits of the slots strictly after `slot`.
fn after(slot: usize) -> u64 {
    if slot >= SLOTS - 1 {
        0
    } else {
        !0u64 << (slot + 1)
    }
}

fn ring_list(ring: u8, slot: usize) -> usize {
    ring as usize * SLOTS + slot
}

impl<T> Wheel<T> {
    /// An empty wheel whose current tick is 0.
    #[must_use]
    pub fn new() -> Self {
        Self::with_start(0)
    }

    /// An empty wheel whose current tick is `now` (clamped to [`MAX_TICK`]).
    #[must_use]
    pub fn with_start(now: u64) -> Self {
        let mut staging = [[0u8; LEVELS]; LEVELS + 1];
        let mut ring = LEVELS as u8;
        for (k, row) in staging.iter_mut().enumerate().skip(1) {
            for slot in row.iter_mut().take(k) {
                *slot = ring;
                ring += 1;
            }
        }
        debug_assert_eq!(ring as usize, RINGS);
        Self {
            entries: Vec::new(),
            free_head: NIL,
            len: 0,
            elapsed: now.min(MAX_TICK),
            next_event: NEVER,
            lists: (0..NUM_LISTS).map(|_| SlotList::default()).collect(),
            occupied: [0; RINGS],
            live: [0, 1, 2, 3, 4, 5],
            staging,
            ovf_pending: LIST_OVF_A as u16,
            ovf_kept: LIST_OVF_B as u16,
            drain_at: [NEVER; LEVELS + 1],
            kept_min: NEVER,
        }
    }

    /// An empty wheel at tick 0 with room for `capacity` timers before it allocates.
    #[must_use]
    pub fn with_capacity(capacity: usize) -> Self {
        let mut wheel = Self::new();
        wheel.entries.reserve_exact(capacity);
        wheel
    }

    /// Reserves room for `additional` more timers.
    pub fn reserve(&mut self, additional: usize) {
        let free = self.entries.len() - self.len;
        if additional > free {
            self.entries.reserve(additional - free);
        }
    }

    /// The current tick: the latest `now` passed to [`Wheel::advance_to`].
    #[must_use]
    pub fn now(&self) -> u64 {
        self.elapsed
    }

    /// Number of pending timers.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no timer is pending.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of timers the slab holds without reallocating.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.entries.capacity()
    }

    /// Bytes of heap memory the wheel holds (slab capacity plus list vectors).
    #[must_use]
    pub fn allocated_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Entry<T>>()
            + self.lists.capacity() * std::mem::size_of::<SlotList>()
            + self
                .lists
                .iter()
                .map(|l| l.ids.capacity() * 4)
                .sum::<usize>()
    }

    /// Size of one slab entry. A pending timer also takes 4 bytes (its index) in its
    /// slot's list vector, plus at most 4 bytes of tombstones left by cancelled
    /// timers in that list.
    #[must_use]
    pub const fn entry_size() -> usize {
        std::mem::size_of::<Entry<T>>()
    }

    /// Adds a timer that fires at tick `deadline` and returns its key.
    ///
    /// A deadline at or before [`Wheel::now`] is due immediately: the next
    /// `advance_to` hands it out. Deadlines are clamped to [`MAX_TICK`].
    ///
    /// # Panics
    ///
    /// If `u32::MAX - 1` timers are already pending (about 128 GiB of timers), like
    /// `Vec` does when it cannot grow, or if one slot's list (timers plus tombstones
    /// of cancelled ones, at most twice the timers) reaches 2^32 entries.
    pub fn insert(&mut self, deadline: u64, value: T) -> TimerKey {
        let deadline = deadline.min(MAX_TICK);
        let (list, event) = self.place(deadline);
        let node = |generation| Node {
            deadline,
            generation,
            pos: 0,
            list: NonZeroU16::MIN,
            value,
        };
        let (index, generation) = if self.free_head != NIL {
            let index = self.free_head;
            let slot = &mut self.entries[index as usize];
            let generation = match *slot {
                Entry::Vacant {
                    next_free,
                    generation,
                } => {
                    self.free_head = next_free;
                    generation
                }
                Entry::Occupied(_) => unreachable!("free list points at an occupied entry"),
            };
            *slot = Entry::Occupied(node(generation));
            (index, generation)
        } else {
            let index = u32::try_from(self.entries.len())
                .ok()
                .filter(|&i| i != NIL)
                .expect("timer wheel is full (u32::MAX - 1 pending timers)");
            self.entries.push(Entry::Occupied(node(0)));
            (index, 0)
        };
        self.link(index, list);
        self.len += 1;
        self.next_event = self.next_event.min(event);
        TimerKey { index, generation }
    }

    /// Cancels a pending timer and returns its payload; `None` if the key is stale.
    ///
    /// The timer's slab entry is freed at once (the next insert reuses it); its place
    /// in its slot's list becomes a 4-byte tombstone, dropped by the next walk of that
    /// list or by a compaction once tombstones outnumber the live timers there
    /// (amortized O(1); see the module docs, "Cancel"). The one cancel that triggers
    /// a compaction pays for the whole list: O(its length), about 5 ns per slot at
    /// 10^6 timers (0.3 ms for a 68,000-timer slot).
    pub fn cancel(&mut self, key: TimerKey) -> Option<T> {
        // Kept short on purpose: at 10^6 timers a cancel is two cache misses (the
        // caller's key, then the entry), and how many cancels overlap in the CPU
        // depends on how few instructions follow them.
        let slot = self.entries.get_mut(key.index as usize)?;
        let (list, pos) = match slot {
            Entry::Occupied(n) if n.generation == key.generation => (n.list, n.pos),
            _ => return None,
        };
        let vacant = Entry::Vacant {
            next_free: self.free_head,
            generation: key.generation.wrapping_add(1),
        };
        let Entry::Occupied(node) = std::mem::replace(slot, vacant) else {
            unreachable!("entry {} checked occupied", key.index)
        };
        self.free_head = key.index;
        self.len -= 1;
        self.unlink_at(list.get() as usize - 1, pos);
        Some(node.value)
    }

    /// Moves a pending timer to a new deadline (clamped to [`MAX_TICK`]), keeping its
    /// key and payload.
    ///
    /// # Errors
    ///
    /// [`UnknownTimer`] if the key names no pending timer.
    pub fn reset(&mut self, key: TimerKey, deadline: u64) -> Result<(), UnknownTimer> {
        self.node(key).ok_or(UnknownTimer(key))?;
        let deadline = deadline.min(MAX_TICK);
        let node = self.node_mut(key.index);
        node.deadline = deadline;
        let (list, pos) = (node.list.get() as usize - 1, node.pos);
        self.unlink_at(list, pos);
        let (list, event) = self.place(deadline);
        self.link(key.index, list);
        self.next_event = self.next_event.min(event);
        Ok(())
    }

    /// The payload of a pending timer.
    #[must_use]
    pub fn get(&self, key: TimerKey) -> Option<&T> {
        self.node(key).map(|n| &n.value)
    }

    /// The payload of a pending timer, mutably.
    pub fn get_mut(&mut self, key: TimerKey) -> Option<&mut T> {
        match self.entries.get_mut(key.index as usize) {
            Some(Entry::Occupied(n)) if n.generation == key.generation => Some(&mut n.value),
            _ => None,
        }
    }

    /// The deadline of a pending timer (after clamping).
    #[must_use]
    pub fn deadline(&self, key: TimerKey) -> Option<u64> {
        self.node(key).map(|n| n.deadline)
    }

    /// The earliest deadline of all pending timers, exactly.
    ///
    /// Cost: a look at each ring's first occupied slot, scanning the few slots whose
    /// range could hold the minimum (O(timers in those slots)). A driver that only
    /// needs to know when to call [`Wheel::advance_to`] should use the O(1)
    /// [`Wheel::next_wakeup`].
    #[must_use]
    pub fn next_deadline(&self) -> Option<u64> {
        if self.len == 0 {
            return None;
        }
        let due = self.list_min(LIST_DUE);
        if due.is_some() {
            return due;
        }
        // (lower bound of the list's deadlines, list)
        let mut candidates: Vec<(u64, usize)> = Vec::with_capacity(RINGS + 2);
        let e = self.elapsed;
        for k in 0..LEVELS {
            let ring = self.live[k];
            let bits = self.occupied[ring as usize];
            if bits != 0 {
                let slot = bits.trailing_zeros() as usize;
                let shift = LEVEL_BITS * k as u32;
                let base = (e >> (shift + LEVEL_BITS)) << (shift + LEVEL_BITS);
                candidates.push((base + ((slot as u64) << shift), ring_list(ring, slot)));
            }
        }
        for k in 1..=LEVELS {
            let base = next_boundary(e, k);
            for j in 0..k {
                let ring = self.staging[k][j];
                let bits = self.occupied[ring as usize];
                if bits != 0 {
                    let slot = bits.trailing_zeros() as usize;
                    let bound = base + ((slot as u64) << (LEVEL_BITS * j as u32));
                    candidates.push((bound, ring_list(ring, slot)));
                }
            }
        }
        let b6 = next_boundary(e, LEVELS);
        candidates.push((b6, self.ovf_pending as usize));
        candidates.push((b6 + RANGE_TICKS, self.ovf_kept as usize));
        candidates.sort_unstable();
        let mut best: Option<u64> = None;
        for (bound, list) in candidates {
            if best.is_some_and(|b| b <= bound) {
                break;
            }
            if let Some(m) = self.list_min(list) {
                best = Some(best.map_or(m, |b| b.min(m)));
            }
        }
        best
    }

    /// The next tick at which [`Wheel::advance_to`] has something to do (fire timers
    /// or pre-cascade), or `None` if nothing is pending. O(1).
    ///
    /// Never later than the earliest deadline; it may be earlier (cascade work, or
    /// a timer cancelled since), in which case advancing to it just fires nothing.
    /// Returns [`Wheel::now`] while timers are due.
    #[must_use]
    pub fn next_wakeup(&self) -> Option<u64> {
        if !self.lists[LIST_DUE].is_empty() {
            Some(self.elapsed)
        } else if self.len == 0 || self.next_event == NEVER {
            None
        } else {
            Some(self.next_event)
        }
    }

    /// Advances the wheel to tick `now` (clamped to [`MAX_TICK`]; time never goes
    /// back) and hands every timer with a deadline `<= now` to `out`, in
    /// non-decreasing deadline order, as `(key, payload)`.
    ///
    /// Idle time is skipped in O(1): the cost is proportional to the timers fired and
    /// to the ticks at which there is work (see [`Wheel`]), not to `now - self.now()`.
    pub fn advance_to<E>(&mut self, now: u64, out: &mut E)
    where
        E: Extend<(TimerKey, T)>,
    {
        let now = now.min(MAX_TICK);
        if !self.lists[LIST_DUE].is_empty() {
            self.emit(LIST_DUE, out);
        }
        while self.next_event <= now {
            let t = self.next_event;
            self.process(t, out);
            self.next_event = self.compute_next_event();
        }
        if now > self.elapsed {
            self.elapsed = now;
        }
    }

    // ----- internals -------------------------------------------------------------

    fn node(&self, key: TimerKey) -> Option<&Node<T>> {
        match self.entries.get(key.index as usize) {
            Some(Entry::Occupied(n)) if n.generation == key.generation => Some(n),
            _ => None,
        }
    }

    fn node_mut(&mut self, index: u32) -> &mut Node<T> {
        match &mut self.entries[index as usize] {
            Entry::Occupied(n) => n,
            Entry::Vacant { .. } => unreachable!("linked entry {index} is vacant"),
        }
    }

    fn node_ref(&self, index: u32) -> &Node<T> {
        match &self.entries[index as usize] {
            Entry::Occupied(n) => n,
            Entry::Vacant { .. } => unreachable!("linked entry {index} is vacant"),
        }
    }

    /// Where a timer with `deadline` belongs now, and the tick at which that list
    /// next needs attention.
    fn place(&self, deadline: u64) -> (usize, u64) {
        let e = self.elapsed;
        if deadline <= e {
            return (LIST_DUE, NEVER);
        }
        let k = level_of_diff(deadline, e);
        if k >= LEVELS {
            let b6 = next_boundary(e, LEVELS);
            if deadline < b6 + RANGE_TICKS {
                (self.staged_list(LEVELS, b6, deadline), b6)
            } else {
                let theirs = (deadline >> RANGE_BITS).saturating_sub(1) << RANGE_BITS;
                (self.ovf_kept as usize, b6.max(theirs))
            }
        } else {
            let shift = LEVEL_BITS * k as u32;
            let ds = slot_of(deadline, k);
            let es = slot_of(e, k);
            if k == 0 {
                (ring_list(self.live[0], ds), deadline)
            } else if ds == es + 1 {
                let bk = next_boundary(e, k);
                (self.staged_list(k, bk, deadline), bk)
            } else {
                // The slot becomes "next" (and starts draining) one window earlier.
                let base = (e >> (shift + LEVEL_BITS)) << (shift + LEVEL_BITS);
                (
                    ring_list(self.live[k], ds),
                    base + (((ds - 1) as u64) << shift),
                )
            }
        }
    }

    /// The staged list for `deadline` in the staging rings of level `k`, laid out as if
    /// the time were `base` (`deadline` in `[base, base + 64^k)`).
    fn staged_list(&self, k: usize, base: u64, deadline: u64) -> usize {
        debug_assert!(deadline >= base && deadline - base < 1u64 << (LEVEL_BITS * k as u32));
        let j = level_of_diff(deadline, base);
        ring_list(self.staging[k][j], slot_of(deadline, j))
    }

    fn link(&mut self, index: u32, list: usize) {
        let tag = NonZeroU16::new(list as u16 + 1).unwrap_or(NonZeroU16::MIN);
        let v = &mut self.lists[list].ids;
        // Tombstones let a list outgrow the number of timers (up to twice it), so a
        // position may not fit a `u32` in a wheel of over 2^31 timers in one slot.
        let pos = u32::try_from(v.len()).expect("a timer wheel slot holds 2^32 entries");
        v.push(index);
        let node = self.node_mut(index);
        node.pos = pos;
        node.list = tag;
        if list < RING_LISTS {
            self.occupied[list / SLOTS] |= 1 << (list % SLOTS);
        } else if list == self.ovf_kept as usize {
            let deadline = self.node_ref(index).deadline;
            self.kept_min = self.kept_min.min(deadline);
        }
    }

    /// Removes the index at `pos` of `list` (a node leaving it by cancel or reset):
    /// it becomes a tombstone. Touches the list's header and one of its slots,
    /// never another timer's entry; once tombstones outnumber the live indices the
    /// list is compacted (or cleared, if none is live).
    #[inline]
    fn unlink_at(&mut self, list: usize, pos: u32) {
        let l = &mut self.lists[list];
        debug_assert_ne!(l.ids[pos as usize], TOMB, "unlinking a stale position");
        l.ids[pos as usize] = TOMB;
        l.dead += 1;
        if 2 * l.dead as usize > l.ids.len() {
            self.tombs_outnumber(list);
        }
    }

    /// The rare path of `unlink_at`: `dead > live` in `list`.
    #[cold]
    #[inline(never)]
    fn tombs_outnumber(&mut self, list: usize) {
        if self.lists[list].live() > 0 {
            self.compact(list);
        }
        self.list_shrunk(list);
    }

    /// Drops the tombstones of `list`: every tombstone below the live count is filled
    /// with a live index from above it, whose node learns its new position. Moves at
    /// most `live` indices; as it runs only once `dead > live`, each move is paid for
    /// by an earlier cancel (amortized O(1) per cancel).
    fn compact(&mut self, list: usize) {
        let mut ids = std::mem::take(&mut self.lists[list].ids);
        let live = ids.len() - self.lists[list].dead as usize;
        // As many live indices lie at `live..` as tombstones lie below `live`: pair
        // them up, a batch at a time. Collecting is branch-free (tombstones are
        // random) and the batch's entry updates are independent, so their cache
        // misses overlap.
        let (mut lo, mut hi) = (0, live);
        loop {
            let mut holes = [0u32; BATCH];
            let mut found = 0;
            while found < BATCH && lo < live {
                holes[found] = lo as u32;
                found += usize::from(ids[lo] == TOMB);
                lo += 1;
            }
            if found == 0 {
                break;
            }
            let mut donors = [0u32; BATCH];
            let mut got = 0;
            while got < found {
                let index = ids[hi];
                donors[got] = index;
                got += usize::from(index != TOMB);
                hi += 1;
            }
            for (&hole, &index) in holes[..found].iter().zip(&donors[..found]) {
                ids[hole as usize] = index;
                self.node_mut(index).pos = hole;
            }
        }
        ids.truncate(live);
        let l = &mut self.lists[list];
        l.ids = ids;
        l.dead = 0;
    }

    /// Bookkeeping after `list` lost entries: a list left with tombstones only is
    /// cleared, then its occupancy bit, and its buffer (halved when three quarters
    /// unused, down to `SHRINK_MIN` once empty, so the memory of the lists follows the
    /// pending timers).
    fn list_shrunk(&mut self, list: usize) {
        let l = &mut self.lists[list];
        if l.live() == 0 {
            l.ids.clear();
            l.dead = 0;
        }
        let v = &mut l.ids;
        if v.capacity() > SHRINK_MIN && v.len() < v.capacity() / 4 {
            v.shrink_to((v.capacity() / 2).max(v.len() * 2).max(SHRINK_MIN));
        }
        if v.is_empty() && list < RING_LISTS {
            self.occupied[list / SLOTS] &= !(1 << (list % SLOTS));
        }
    }

    /// Hands out and frees every timer of `list`.
    fn emit<E: Extend<(TimerKey, T)>>(&mut self, list: usize, out: &mut E) {
        let l = &mut self.lists[list];
        let mut v = std::mem::take(&mut l.ids);
        let live = v.len() - l.dead as usize;
        l.dead = 0;
        self.len -= live;
        if live != v.len() {
            // Tombstones: dropped by one sequential pass, no entry is read for them.
            let kept = squeeze(&mut v);
            v.truncate(kept);
        }
        if list == LIST_DUE && v.len() > 1 {
            // Due timers may have any past deadline: keep the promised order.
            let mut batch: Vec<(u64, TimerKey, T)> = Vec::with_capacity(v.len());
            for &index in &v {
                let deadline = self.node_ref(index).deadline;
                let (key, value) = free_entry(&mut self.entries, &mut self.free_head, index);
                batch.push((deadline, key, value));
            }
            batch.sort_by_key(|&(d, k, _)| (d, k));
            out.extend(batch.into_iter().map(|(_, k, v)| (k, v)));
            v.clear();
        } else {
            let entries = &mut self.entries;
            let free_head = &mut self.free_head;
            for chunk in v.chunks(BATCH) {
                // Gather the generations first so that the misses overlap (see `drain`).
                let mut generations = [0u32; BATCH];
                for (g, &index) in generations.iter_mut().zip(chunk) {
                    *g = match &entries[index as usize] {
                        Entry::Occupied(node) => node.generation,
                        Entry::Vacant { .. } => unreachable!("expired entry {index} is vacant"),
                    };
                }
                out.extend(chunk.iter().zip(generations).map(|(&index, generation)| {
                    let value = take_entry(entries, free_head, index, generation);
                    (TimerKey { index, generation }, value)
                }));
            }
            v.clear();
        }
        self.lists[list].ids = v;
        self.list_shrunk(list);
    }

    /// Minimum deadline in a list (O(length)).
    fn list_min(&self, list: usize) -> Option<u64> {
        self.lists[list]
            .ids
            .iter()
            .filter(|&&index| index != TOMB)
            .map(|&index| self.node_ref(index).deadline)
            .min()
    }

    /// The list drained into the staging rings of `level` while the current time is
    /// `t`, or `None` if there is none (the next slot belongs to a higher level).
    fn drain_source(&self, level: usize, t: u64) -> Option<usize> {
        if level == LEVELS {
            return Some(self.ovf_pending as usize);
        }
        let s = slot_of(t, level);
        (s + 1 < SLOTS).then(|| ring_list(self.live[level], s + 1))
    }

    /// Moves up to `max` timers from `src` into the staging rings of `level`, laid
    /// out for the window starting at `base` (overflow timers beyond that window go
    /// back to the kept overflow list).
    fn drain(&mut self, level: usize, src: usize, base: u64, max: u64) {
        let end = base + (1u64 << (LEVEL_BITS * level as u32));
        let len = self.lists[src].ids.len();
        let mut left = usize::try_from(max).unwrap_or(usize::MAX).min(len);
        // Scratch for one batch, reused (only `..live` is ever read).
        let mut indices = [0u32; 2 * BATCH];
        let mut deadlines = [0u64; 2 * BATCH];
        while left > 0 {
            // Take a batch of live indices from the tail, then read the batch's
            // deadlines before using them: the loads are independent, so their cache
            // misses overlap instead of being paid one after the other.
            let l = &mut self.lists[src];
            let mut from = l.ids.len();
            let mut live = 0;
            if l.dead == 0 {
                live = left.min(BATCH);
                from -= live;
                left -= live;
                indices[..live].copy_from_slice(&l.ids[from..]);
            } else {
                // Collect at least `BATCH` live indices (if there are), `BATCH` list
                // slots at a time: tombstones count towards the step's work but read
                // no entry, and skipping them is branch-free, as they are as random as
                // the cancels that left them. A full batch keeps the overlap when half
                // the list is tombstones.
                while live < BATCH && left > 0 {
                    let k = left.min(BATCH);
                    from -= k;
                    left -= k;
                    for &index in &l.ids[from..from + k] {
                        // `live < 2 * BATCH - 1` here, so the mask changes nothing;
                        // it spares a bounds check per slot.
                        indices[live & (2 * BATCH - 1)] = index;
                        live += usize::from(index != TOMB);
                    }
                }
                l.dead -= (l.ids.len() - from - live) as u32;
            }
            l.ids.truncate(from);
            for (d, &index) in deadlines.iter_mut().zip(&indices[..live]) {
                *d = self.node_ref(index).deadline;
            }
            for (&index, &deadline) in indices[..live].iter().zip(&deadlines[..live]) {
                let dst = if deadline < end {
                    self.staged_list(level, base, deadline)
                } else {
                    debug_assert_eq!(level, LEVELS);
                    self.ovf_kept as usize
                };
                self.link(index, dst);
            }
        }
        self.list_shrunk(src);
    }

    /// One pre-cascade step of `level` at tick `t` (= `elapsed`).
    fn drain_step(&mut self, level: usize, t: u64) {
        let Some(src) = self.drain_source(level, t) else {
            self.drain_at[level] = NEVER;
            return;
        };
        let l = &self.lists[src];
        let rem = l.ids.len() as u64;
        if rem == 0 {
            self.drain_at[level] = NEVER;
            return;
        }
        // The minimum step is `DRAIN_CHUNK` live timers, so tombstones do not make
        // the steps more frequent; it scans at most `MAX_TOMB_RATIO` times that.
        let live = l.live() as u64;
        let min_chunk = (DRAIN_CHUNK * rem)
            .div_ceil(live)
            .min(MAX_TOMB_RATIO * DRAIN_CHUNK);
        let base = next_boundary(t, level);
        let left = base - t;
        let chunk = min_chunk.max(rem.div_ceil(left)).min(rem);
        self.drain(level, src, base, chunk);
        self.drain_at[level] = if chunk == rem {
            NEVER
        } else {
            let interval = (u128::from(chunk) * u128::from(left) / u128::from(rem)) as u64;
            t + interval.max(1)
        };
    }

    /// Does the work of tick `t` (`t > elapsed`, and nothing is due in between).
    fn process<E: Extend<(TimerKey, T)>>(&mut self, t: u64, out: &mut E) {
        let top = ((t.trailing_zeros() / LEVEL_BITS) as usize).min(LEVELS);
        if top >= 1 {
            // Finish preparing the window that starts now (normally already done).
            let src = if top == LEVELS {
                Some(self.ovf_pending as usize)
            } else {
                let s = slot_of(t, top);
                Some(ring_list(self.live[top], s))
            };
            if let Some(src) = src {
                self.drain(top, src, t, u64::MAX);
            }
            for j in 0..top {
                debug_assert_eq!(self.occupied[self.live[j] as usize], 0);
                std::mem::swap(&mut self.live[j], &mut self.staging[top][j]);
            }
            if top == LEVELS {
                debug_assert!(self.lists[self.ovf_pending as usize].is_empty());
                std::mem::swap(&mut self.ovf_pending, &mut self.ovf_kept);
                self.kept_min = NEVER;
            }
            for j in 1..=top {
                self.drain_at[j] = t;
            }
        }
        self.elapsed = t;
        for level in 1..=LEVELS {
            if self.drain_at[level] <= t {
                self.drain_step(level, t);
            }
        }
        let list = ring_list(self.live[0], slot_of(t, 0));
        if !self.lists[list].is_empty() {
            self.emit(list, out);
        }
    }

    /// The next tick after `elapsed` with work, from scratch.
    fn compute_next_event(&self) -> u64 {
        let e = self.elapsed;
        let mut best = NEVER;
        let bits = self.occupied[self.live[0] as usize] & after(slot_of(e, 0));
        if bits != 0 {
            best = (e & !(SLOTS as u64 - 1)) + u64::from(bits.trailing_zeros());
        }
        for k in 1..LEVELS {
            if self.staging_occupied(k) {
                best = best.min(next_boundary(e, k));
                continue;
            }
            let cur = slot_of(e, k);
            let bits = self.occupied[self.live[k] as usize] & after(cur + 1);
            if bits != 0 {
                let shift = LEVEL_BITS * k as u32;
                let s = u64::from(bits.trailing_zeros());
                let base = (e >> (shift + LEVEL_BITS)) << (shift + LEVEL_BITS);
                best = best.min(base + ((s - 1) << shift));
            }
        }
        if self.staging_occupied(LEVELS) {
            best = best.min(next_boundary(e, LEVELS));
        } else if !self.lists[self.ovf_kept as usize].is_empty() {
            // Kept timers lie at least two windows ahead; they start draining at the
            // boundary one window before theirs, and nothing happens until then.
            let theirs = (self.kept_min >> RANGE_BITS).saturating_sub(1) << RANGE_BITS;
            best = best.min(next_boundary(e, LEVELS).max(theirs));
        }
        for &at in &self.drain_at[1..] {
            best = best.min(at);
        }
        best
    }

    fn staging_occupied(&self, k: usize) -> bool {
        self.staging[k][..k]
            .iter()
            .any(|&ring| self.occupied[ring as usize] != 0)
    }
}

/// Moves the live indices of `ids` to its front, in order, and returns their number.
/// Branch-free, because tombstones are as unpredictable as the cancels that left
/// them (a mispredicted branch per index cost more than the pass itself).
fn squeeze(ids: &mut [u32]) -> usize {
    let mut kept = 0;
    for r in 0..ids.len() {
        let index = ids[r];
        ids[kept] = index;
        kept += usize::from(index != TOMB);
    }
    kept
}

/// Turns the unlinked entry `index`, whose generation is `generation`, vacant (bumping
/// the generation) and returns its payload.
fn take_entry<T>(entries: &mut [Entry<T>], free_head: &mut u32, index: u32, generation: u32) -> T {
    let vacant = Entry::Vacant {
        next_free: *free_head,
        generation: generation.wrapping_add(1),
    };
    *free_head = index;
    match std::mem::replace(&mut entries[index as usize], vacant) {
        Entry::Occupied(node) => node.value,
        Entry::Vacant { .. } => unreachable!("freeing vacant entry {index}"),
    }
}

/// Turns the unlinked entry `index` vacant (bumping its generation) and returns its
/// key and payload.
fn free_entry<T>(entries: &mut [Entry<T>], free_head: &mut u32, index: u32) -> (TimerKey, T) {
    let slot = &mut entries[index as usize];
    let vacant = Entry::Vacant {
        next_free: *free_head,
        generation: 0,
    };
    match std::mem::replace(slot, vacant) {
        Entry::Occupied(node) => {
            *slot = Entry::Vacant {
                next_free: *free_head,
                generation: node.generation.wrapping_add(1),
            };
            *free_head = index;
            (
                TimerKey {
                    index,
                    generation: node.generation,
                },
                node.value,
            )
        }
        Entry::Vacant { .. } => unreachable!("freeing vacant entry {index}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    impl<T> Wheel<T> {
        /// Checks the list invariants of the module docs; `bounded` also checks
        /// `dead <= live` (true after cancels and resets, not mid-pre-cascade).
        fn check_lists(&self, bounded: bool) {
            let mut live_total = 0;
            for (list, l) in self.lists.iter().enumerate() {
                let tombs = l.ids.iter().filter(|&&i| i == TOMB).count();
                assert_eq!(tombs, l.dead as usize, "list {list}: dead count");
                assert!(
                    l.ids.is_empty() || l.live() > 0,
                    "list {list}: only tombstones"
                );
                if bounded {
                    assert!(
                        l.dead as usize <= l.live(),
                        "list {list}: {tombs} tombstones"
                    );
                }
                for (pos, &index) in l.ids.iter().enumerate() {
                    if index != TOMB {
                        let node = self.node_ref(index);
                        assert_eq!(node.list.get() as usize - 1, list, "entry {index}: list");
                        assert_eq!(node.pos as usize, pos, "entry {index}: position");
                    }
                }
                if list < RING_LISTS {
                    let bit = self.occupied[list / SLOTS] >> (list % SLOTS) & 1;
                    assert_eq!(bit == 1, !l.ids.is_empty(), "list {list}: occupancy bit");
                }
                live_total += l.live();
            }
            assert_eq!(live_total, self.len, "live indices vs len");
        }
    }

    /// xorshift64, deterministic.
    fn rng(x: &mut u64) -> u64 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    #[test]
    fn cancel_churn_keeps_lists_consistent_and_bounded() {
        // Timers crowd into a few slots of several levels (and the due and overflow
        // lists); cancels and resets dominate, so tombstones pile up, lists get
        // compacted and cleared, and walks meet tombstones. After every operation the
        // list invariants hold, and what fires matches a `BTreeMap` model.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut w: Wheel<u64> = Wheel::with_start(1_000);
        let mut keys: Vec<TimerKey> = Vec::new();
        let mut model: BTreeMap<u64, u64> = BTreeMap::new(); // id -> deadline
        let mut compacted = 0;
        let bases = [0u64, 70, 5_000, 300_000, RANGE_TICKS + 9, 3 * RANGE_TICKS];
        for step in 0..8_000u64 {
            let now = w.now();
            match rng(&mut x) % 16 {
                0..=6 => {
                    let base = bases[(rng(&mut x) % bases.len() as u64) as usize];
                    let d = if base == 0 {
                        now - rng(&mut x) % 3
                    } else {
                        now + base + rng(&mut x) % 40
                    };
                    keys.push(w.insert(d, keys.len() as u64));
                    model.insert(keys.len() as u64 - 1, d);
                }
                7..=12 => {
                    // Mostly recent keys, so most cancels hit pending timers.
                    let back = (rng(&mut x) % 64) as usize;
                    if let Some(id) = keys.len().checked_sub(back + 1) {
                        let dead_before: u32 = w.lists.iter().map(|l| l.dead).sum();
                        let got = w.cancel(keys[id]);
                        assert_eq!(got, model.remove(&(id as u64)).map(|_| id as u64));
                        let dead_after: u32 = w.lists.iter().map(|l| l.dead).sum();
                        if got.is_some() && dead_after < dead_before + 1 {
                            compacted += 1;
                        }
                        assert_eq!(w.cancel(keys[id]), None);
                    }
                }
                13 => {
                    let back = (rng(&mut x) % 64) as usize;
                    if let Some(id) = keys.len().checked_sub(back + 1) {
                        let d = now + rng(&mut x) % 5_000;
                        let pending = model.contains_key(&(id as u64));
                        assert_eq!(w.reset(keys[id], d).is_ok(), pending);
                        if pending {
                            model.insert(id as u64, d);
                        }
                    }
                }
                14 => {
                    let to = now + rng(&mut x) % 200;
                    let mut fired = Vec::new();
                    w.advance_to(to, &mut fired);
                    let mut got: Vec<u64> = fired.iter().map(|&(_, id)| id).collect();
                    got.sort_unstable();
                    let want: Vec<u64> = model
                        .iter()
                        .filter(|&(_, &d)| d <= to)
                        .map(|(&id, _)| id)
                        .collect();
                    assert_eq!(got, want, "step {step}: advance to {to}");
                    for id in want {
                        model.remove(&id);
                    }
                }
                _ => {
                    assert_eq!(w.next_deadline(), model.values().min().copied());
                }
            }
            w.check_lists(false);
            assert_eq!(w.len(), model.len());
        }
        assert!(compacted > 10, "only {compacted} compactions");
        // Whatever is left still fires exactly.
        let mut fired = Vec::new();
        w.advance_to(MAX_TICK, &mut fired);
        assert_eq!(fired.len(), model.len());
        w.check_lists(true);
    }

    #[test]
    fn tombstones_never_outnumber_live_timers_of_a_list() {
        // One crowded slot (deadlines within 7 ticks), no time passing: after every
        // cancel or reset `dead <= live` holds in every list, compactions happen, and
        // a list's last cancel clears it.
        let mut x = 7u64;
        let mut w: Wheel<u32> = Wheel::new();
        let mut keys: Vec<TimerKey> = (0..4_000u32)
            .map(|i| w.insert(300_000 + u64::from(i % 7), i))
            .collect();
        let slots = |w: &Wheel<u32>| w.lists.iter().map(|l| l.ids.len()).sum::<usize>();
        let mut compactions = 0;
        for round in 0..6_000u32 {
            let i = (rng(&mut x) % keys.len() as u64) as usize;
            if round % 5 == 0 {
                let _ = w.reset(keys[i], 300_000 + u64::from(round % 3));
            } else {
                let before = slots(&w);
                if w.cancel(keys[i]).is_some() {
                    // A cancel leaves a tombstone; fewer slots mean a compaction.
                    compactions += usize::from(slots(&w) < before);
                    if round % 3 == 0 {
                        keys[i] = w.insert(300_000, round);
                    }
                }
            }
            w.check_lists(true);
        }
        assert!(compactions > 0, "no compaction happened");
        for k in &keys {
            w.cancel(*k);
        }
        assert!(w.is_empty());
        assert!(w.lists.iter().all(|l| l.ids.is_empty()));
        assert_eq!(w.next_wakeup(), None);
        w.check_lists(true);
    }

    #[test]
    fn entry_sizes_fit_the_memory_budget() {
        assert_eq!(Wheel::<u64>::entry_size(), 32);
        assert_eq!(Wheel::<()>::entry_size(), 24);
        assert_eq!(std::mem::size_of::<TimerKey>(), 8);
    }

    #[test]
    fn level_of_diff_table() {
        assert_eq!(level_of_diff(0, 1), 0);
        assert_eq!(level_of_diff(0, 63), 0);
        assert_eq!(level_of_diff(0, 64), 1);
        assert_eq!(level_of_diff(63, 64), 1);
        assert_eq!(level_of_diff(0, 4095), 1);
        assert_eq!(level_of_diff(0, 4096), 2);
        assert_eq!(level_of_diff(0, RANGE_TICKS - 1), 5);
        assert_eq!(level_of_diff(0, RANGE_TICKS), 6);
    }

    #[test]
    fn ring_numbers_are_a_partition() {
        let w = Wheel::<()>::new();
        let mut seen = [false; RINGS];
        for &r in &w.live {
            seen[r as usize] = true;
        }
        for k in 1..=LEVELS {
            for &r in &w.staging[k][..k] {
                assert!(!seen[r as usize]);
                seen[r as usize] = true;
            }
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn next_slot_inserts_go_to_staging() {
        let mut w = Wheel::new();
        // Level 1 next slot is [64, 128) while time is in [0, 64).
        let k = w.insert(100, ());
        let list = w.node(k).map(|n| n.list.get() as usize - 1);
        assert_eq!(list, Some(ring_list(w.staging[1][0], 100 % 64)));
        // Level 1 slot 5 is not next: it stays live and wakes the wheel at 256.
        let k2 = w.insert(5 * 64 + 3, ());
        let list2 = w.node(k2).map(|n| n.list.get() as usize - 1);
        assert_eq!(list2, Some(ring_list(w.live[1], 5)));
        assert_eq!(w.next_wakeup(), Some(64));
    }

    #[test]
    fn pre_cascade_is_spread_over_the_window() {
        // 64 * 1000 timers in level-2 slot 2 ([8192, 12288)); while time runs through
        // [4096, 8192) they must move to staging in chunks, not at 8192 in one go.
        let mut w = Wheel::new();
        for i in 0..64_000u64 {
            w.insert(8192 + i % 4096, i);
        }
        let mut out = Vec::new();
        w.advance_to(4095, &mut out);
        let src = ring_list(w.live[2], 2);
        assert_eq!(w.lists[src].ids.len(), 64_000);
        let mut max_step = 0;
        let mut t = 4095;
        while t < 8191 {
            let before = w.lists[src].ids.len();
            t += 1;
            w.advance_to(t, &mut out);
            max_step = max_step.max(before - w.lists[src].ids.len());
        }
        assert!(out.is_empty());
        assert_eq!(
            w.lists[src].ids.len(),
            0,
            "drain finished before the boundary"
        );
        assert!(
            max_step <= 64,
            "largest single-tick pre-cascade was {max_step}"
        );
    }
}
