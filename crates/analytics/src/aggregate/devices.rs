//! The aggregator's in-memory device table: each device id of one app, its dense
//! device number and its first-seen instant.
//!
//! It is what the store's `devices` table holds for the app, kept compact because an
//! app can have tens of millions of devices: the ids are concatenated in one string
//! (`arena`), device `n`'s id is `arena[starts[n]..starts[n + 1]]`, its first-seen
//! instant is `first_ts[n]`, and a hash table of device numbers (hashed by id) finds a
//! number from an id. That is about 25 bytes per device plus the id, where a
//! `HashMap<String, _>` took about 110.
//!
//! Invariants: device numbers are dense from 0 in the order they were pushed; a number
//! that the store never assigned (a gap, possible only in data written by hand) has an
//! empty id, the first-seen instant [`GAP`] and no entry in the hash table, so no id
//! finds it.

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};

/// The first-seen instant of a device number that has no device.
const GAP: i64 = i64::MIN;

/// Device ids ↔ dense numbers and first-seen instants of one app.
#[derive(Debug, Default)]
pub(crate) struct DeviceTable {
    hasher: DefaultHashBuilder,
    /// Device numbers, hashed by their id.
    index: HashTable<u32>,
    /// Every id, concatenated in number order.
    arena: String,
    /// `starts[n]..starts[n + 1]` is device `n`'s id in `arena`; one longer than the
    /// number of devices (empty: no device yet).
    starts: Vec<usize>,
    /// Each device's first-seen instant (epoch ms), or [`GAP`].
    first_ts: Vec<i64>,
}

impl DeviceTable {
    /// The number the next pushed device gets.
    pub(crate) fn next_no(&self) -> u32 {
        u32::try_from(self.first_ts.len()).unwrap_or(u32::MAX)
    }

    /// The number of the device `id`, if known.
    pub(crate) fn get(&self, id: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(id);
        self.index.find(hash, |&no| self.id(no) == id).copied()
    }

    /// Device `no`'s id (empty for a gap or an unknown number).
    pub(crate) fn id(&self, no: u32) -> &str {
        let no = no as usize;
        match (self.starts.get(no), self.starts.get(no + 1)) {
            (Some(&start), Some(&end)) => self.arena.get(start..end).unwrap_or(""),
            _ => "",
        }
    }

    /// Device `no`'s first-seen instant.
    pub(crate) fn first_ts(&self, no: u32) -> i64 {
        self.first_ts.get(no as usize).copied().unwrap_or(GAP)
    }

    /// Moves device `no`'s first-seen instant.
    pub(crate) fn set_first_ts(&mut self, no: u32, ts_ms: i64) {
        if let Some(slot) = self.first_ts.get_mut(no as usize) {
            *slot = ts_ms;
        }
    }

    /// Adds device `id` (not yet known) with the next number, which it returns.
    pub(crate) fn push(&mut self, id: &str, first_ts_ms: i64) -> u32 {
        let no = self.next_no();
        if self.starts.is_empty() {
            self.starts.push(0);
        }
        self.arena.push_str(id);
        self.starts.push(self.arena.len());
        self.first_ts.push(first_ts_ms);
        let Self {
            hasher,
            index,
            arena,
            starts,
            ..
        } = self;
        let hash = hasher.hash_one(id);
        index.insert_unique(hash, no, |&n| {
            let n = n as usize;
            hasher.hash_one(arena.get(starts[n]..starts[n + 1]).unwrap_or(""))
        });
        no
    }

    /// Skips a number: the store has no device with it.
    pub(crate) fn push_gap(&mut self) {
        if self.starts.is_empty() {
            self.starts.push(0);
        }
        self.starts.push(self.arena.len());
        self.first_ts.push(GAP);
    }

    /// The table of `rows` (`(number, id, first-seen)`, in any order).
    pub(crate) fn from_rows(mut rows: Vec<(u32, String, i64)>) -> Self {
        rows.sort_unstable_by_key(|(no, _, _)| *no);
        let mut table = DeviceTable::default();
        table.first_ts.reserve(rows.len());
        table.starts.reserve(rows.len() + 1);
        table
            .arena
            .reserve(rows.iter().map(|(_, id, _)| id.len()).sum());
        table.index.reserve(rows.len(), |_| 0);
        for (no, id, first_ts) in rows {
            while table.next_no() < no {
                table.push_gap();
            }
            if table.next_no() == no {
                table.push(&id, first_ts);
            }
        }
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_numbers_by_id_and_keeps_gaps_unfindable() {
        let mut t = DeviceTable::from_rows(vec![
            (3, "d".into(), 30),
            (0, "a".into(), 0),
            (1, String::new(), 10),
        ]);
        assert_eq!(t.next_no(), 4);
        assert_eq!(t.get("a"), Some(0));
        assert_eq!(t.get(""), Some(1));
        assert_eq!(t.get("d"), Some(3));
        assert_eq!(t.id(2), "");
        assert_eq!(t.first_ts(2), GAP);
        assert_eq!(t.get("x"), None);
        assert_eq!(t.push("x", 40), 4);
        t.set_first_ts(4, 5);
        assert_eq!((t.get("x"), t.first_ts(4), t.id(4)), (Some(4), 5, "x"));
        // Many more, across re-hashing.
        for i in 0..10_000 {
            let no = t.push(&format!("dev-{i}"), i);
            assert_eq!(no, 5 + u32::try_from(i).expect("small"));
        }
        for i in (0..10_000).step_by(97) {
            let no = t.get(&format!("dev-{i}")).expect("known");
            assert_eq!(t.first_ts(no), i64::from(i));
        }
        assert_eq!(t.get("d"), Some(3));
    }
}
