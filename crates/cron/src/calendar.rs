//! The compiled calendar of a cron expression and the civil-time search over it.
//!
//! Every field is a bitset (`u64` for seconds, minutes, hours, days-of-month, months and
//! weekdays; four `u64` words for the years 1970–2199), so "the next allowed minute at or
//! after m" is one shift and one `trailing_zeros`. Day-of-month and day-of-week, including
//! the Quartz forms (`L`, `L-n`, `LW`, `nW`, `nL`, `n#k`), depend on a month only through
//! its length (28–31) and the weekday of its first day, so [`Calendar::new`] precomputes
//! the allowed days for all 4 × 7 such month shapes; the Vixie OR/AND combination is
//! folded into that table.
//!
//! Invariants:
//! - The search only produces civil date-times within [`MIN_YEAR`]–[`MAX_YEAR`], and every
//!   loop iteration moves strictly forward (or backward) in civil time by at least one
//!   field unit, so a search ends after at most a few thousand cheap iterations even for
//!   calendars that never match.
//! - Bits outside a field's range are never set (the parser guarantees it).

use crate::civil::{Civil, days_in_month, weekday};

/// First year a schedule can fire in.
pub const MIN_YEAR: i32 = 1970;
/// Last year a schedule can fire in.
pub const MAX_YEAR: i32 = 2199;

const YEAR_WORDS: usize = 4;

/// A set of years 1970–2199 (bit `y - 1970`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct YearSet(pub(crate) [u64; YEAR_WORDS]);

/// The leap years among 1970–2199.
const LEAP_YEARS: YearSet = YearSet::build(true);

impl YearSet {
    /// Every year 1970–2199.
    pub(crate) const ALL: YearSet = YearSet::build(false);

    const fn build(leap_only: bool) -> YearSet {
        let mut words = [0_u64; YEAR_WORDS];
        let mut y = MIN_YEAR;
        while y <= MAX_YEAR {
            if !leap_only || crate::civil::is_leap(y) {
                let i = (y - MIN_YEAR) as usize;
                words[i / 64] |= 1 << (i % 64);
            }
            y += 1;
        }
        YearSet(words)
    }

    #[cfg(test)]
    pub(crate) fn insert(&mut self, year: i32) {
        if (MIN_YEAR..=MAX_YEAR).contains(&year) {
            let i = (year - MIN_YEAR) as usize;
            self.0[i / 64] |= 1 << (i % 64);
        }
    }

    pub(crate) fn contains(&self, year: i32) -> bool {
        if !(MIN_YEAR..=MAX_YEAR).contains(&year) {
            return false;
        }
        let i = (year - MIN_YEAR) as usize;
        self.0[i / 64] & (1 << (i % 64)) != 0
    }

    /// Smallest year in the set that is `>= year`.
    fn next(&self, year: i32) -> Option<i32> {
        let start = year.max(MIN_YEAR);
        if start > MAX_YEAR {
            return None;
        }
        let mut i = (start - MIN_YEAR) as usize;
        while i / 64 < YEAR_WORDS {
            let word = self.0[i / 64] & (!0_u64 << (i % 64));
            if word != 0 {
                return Some(MIN_YEAR + ((i / 64) * 64) as i32 + word.trailing_zeros() as i32);
            }
            i = (i / 64 + 1) * 64;
        }
        None
    }

    /// Largest year in the set that is `<= year`.
    fn prev(&self, year: i32) -> Option<i32> {
        let end = year.min(MAX_YEAR);
        if end < MIN_YEAR {
            return None;
        }
        let mut i = (end - MIN_YEAR) as isize;
        while i >= 0 {
            let bit = (i % 64) as u32;
            let mask = if bit == 63 {
                !0
            } else {
                (1_u64 << (bit + 1)) - 1
            };
            let word = self.0[(i / 64) as usize] & mask;
            if word != 0 {
                return Some(MIN_YEAR + ((i / 64) * 64) as i32 + 63 - word.leading_zeros() as i32);
            }
            i = (i / 64) * 64 - 1;
        }
        None
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = i32> + '_ {
        (MIN_YEAR..=MAX_YEAR).filter(|y| self.contains(*y))
    }
}

/// The day-of-month and day-of-week parts of an expression.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct DaySpec {
    /// Plain days of the month (bits 1–31).
    pub(crate) dom: u64,
    /// `L-n` offsets from the last day (bit n; `L` is bit 0).
    pub(crate) dom_last: u64,
    /// `LW`: the last weekday (Monday–Friday) of the month.
    pub(crate) dom_last_weekday: bool,
    /// `nW`: the weekday nearest day n (bits 1–31).
    pub(crate) dom_nearest: u64,
    /// The day-of-month field began with `*` or `?`.
    pub(crate) dom_star: bool,
    /// Plain weekdays (bits 0–6, 0 = Sunday).
    pub(crate) dow: u64,
    /// `n#k`: for weekday n, bit k (1–5) = its k-th occurrence in the month.
    pub(crate) dow_nth: [u8; 7],
    /// `nL`: the last weekday n of the month (bits 0–6).
    pub(crate) dow_last: u64,
    /// The day-of-week field began with `*` or `?`.
    pub(crate) dow_star: bool,
}

/// Days 1, 8, 15, 22, 29 (and 36, masked off later): one weekday's occurrences when it
/// falls on the 1st; shift left by k for a weekday first falling on day 1 + k.
const WEEKLY: u64 = 1 << 1 | 1 << 8 | 1 << 15 | 1 << 22 | 1 << 29 | 1 << 36;

impl DaySpec {
    /// Allowed days by `[len - 28][weekday of the 1st]` for all 28 month shapes.
    ///
    /// Built with a handful of shifts per shape (this runs on every parse).
    fn table(&self) -> [[u32; 7]; 4] {
        let mut table = [[0_u32; 7]; 4];
        let quartz_dow = self.dow_last != 0 || self.dow_nth.iter().any(|n| *n != 0);
        let quartz_dom = self.dom_last_weekday || self.dom_nearest != 0;
        for w1 in 0..7_u8 {
            // Plain weekdays: independent of the month length.
            let mut plain_dow = 0_u64;
            let mut bits = self.dow;
            if bits == 0x7f {
                // Every weekday (the common `*`): every day.
                plain_dow = !0;
                bits = 0;
            }
            while bits != 0 {
                let wd = bits.trailing_zeros() as u8;
                bits &= bits - 1;
                plain_dow |= WEEKLY << ((wd + 7 - w1) % 7);
            }
            for (i, row) in table.iter_mut().enumerate() {
                let len = 28 + i as u8;
                let valid = ((1_u64 << (len + 1)) - 1) & !1;
                let mut dow = plain_dow;
                if quartz_dow {
                    dow |= self.quartz_dow(len, w1);
                }
                let mut dom = self.dom | self.last_days(len);
                if quartz_dom {
                    dom |= self.quartz_dom(len, w1);
                }
                let days = if self.dom_star || self.dow_star {
                    dom & dow
                } else {
                    dom | dow
                };
                // Bits 1–31 only.
                row[w1 as usize] = (days & valid) as u32;
            }
        }
        table
    }

    /// `L` and `L-n` days of a month with `len` days.
    fn last_days(&self, len: u8) -> u64 {
        let mut out = 0;
        let mut n = self.dom_last;
        while n != 0 {
            let off = n.trailing_zeros() as u8;
            n &= n - 1;
            if off < len {
                out |= 1 << (len - off);
            }
        }
        out
    }

    /// `LW` and `nW` days.
    fn quartz_dom(&self, len: u8, w1: u8) -> u64 {
        let weekday_of = |d: u8| (w1 + (d - 1) % 7) % 7;
        let mut out = 0;
        if self.dom_last_weekday {
            let d = match weekday_of(len) {
                6 => len - 1,
                0 => len - 2,
                _ => len,
            };
            out |= 1 << d;
        }
        let mut n = self.dom_nearest;
        while n != 0 {
            let d = n.trailing_zeros() as u8;
            n &= n - 1;
            if d > len {
                continue;
            }
            let target = match weekday_of(d) {
                6 if d == 1 => 3,
                6 => d - 1,
                0 if d == len => d - 2,
                0 => d + 1,
                _ => d,
            };
            out |= 1 << target;
        }
        out
    }

    /// `n#k` and `nL` days.
    fn quartz_dow(&self, len: u8, w1: u8) -> u64 {
        let mut out = 0;
        let mut weekdays = self.dow_last;
        for (wd, nth) in self.dow_nth.iter().enumerate() {
            if *nth != 0 {
                weekdays |= 1 << wd;
            }
        }
        while weekdays != 0 {
            let wd = weekdays.trailing_zeros() as u8;
            weekdays &= weekdays - 1;
            // Day of the month (0-based) on which weekday `wd` first falls.
            let first = (wd + 7 - w1) % 7;
            // Bit k of `nth` becomes day first + 1 + 7 (k - 1), i.e. a shift per week.
            let mut nth = u64::from(self.dow_nth[wd as usize] >> 1);
            while nth != 0 {
                let k = nth.trailing_zeros() as u8;
                nth &= nth - 1;
                out |= 1 << (first + 1 + 7 * k);
            }
            if self.dow_last & (1 << wd) != 0 {
                out |= 1 << (first + 1 + 7 * ((len - 1 - first) / 7));
            }
        }
        out
    }

    #[cfg(test)]
    fn mask(&self, len: u8, w1: u8) -> u64 {
        u64::from(self.table()[(len - 28) as usize][w1 as usize])
    }
}

/// Bitsets of one expression, ready for searching.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Calendar {
    pub(crate) seconds: u64,
    pub(crate) minutes: u64,
    pub(crate) hours: u64,
    pub(crate) months: u64,
    pub(crate) years: YearSet,
    pub(crate) days: DaySpec,
    /// Allowed days by `[len - 28][weekday of the 1st]`.
    table: [[u32; 7]; 4],
    /// Neither the minute nor the hour field begins with `*` (Debian's "fixed time" job,
    /// which gets the gap/fold treatment).
    pub(crate) fixed_time: bool,
    /// No day in any month shape matches: the calendar never fires.
    never: bool,
}

/// Smallest set bit `>= from`.
#[inline]
fn next_bit(mask: u64, from: u8) -> Option<u8> {
    if from >= 64 {
        return None;
    }
    let m = mask & (!0_u64 << from);
    (m != 0).then(|| m.trailing_zeros() as u8)
}

/// Largest set bit `<= upto`.
#[inline]
fn prev_bit(mask: u64, upto: u8) -> Option<u8> {
    let m = if upto >= 63 {
        mask
    } else {
        mask & ((1_u64 << (upto + 1)) - 1)
    };
    (m != 0).then(|| 63 - m.leading_zeros() as u8)
}

impl Calendar {
    pub(crate) fn new(
        seconds: u64,
        minutes: u64,
        hours: u64,
        days: DaySpec,
        months: u64,
        years: YearSet,
        fixed_time: bool,
    ) -> Calendar {
        let table = days.table();
        let mut cal = Calendar {
            seconds,
            minutes,
            hours,
            months,
            years,
            days,
            table,
            fixed_time,
            never: false,
        };
        cal.never = !cal.can_match_some_month();
        cal
    }

    /// Cheap static check: is there a (month, month shape) pair with an allowed day?
    /// Year restrictions are left to the search (it is bounded anyway).
    fn can_match_some_month(&self) -> bool {
        if self.seconds == 0 || self.minutes == 0 || self.hours == 0 || self.months == 0 {
            return false;
        }
        let leap = LEAP_YEARS.0;
        let all = YearSet::ALL.0;
        let any_leap = (0..YEAR_WORDS).any(|i| self.years.0[i] & leap[i] != 0);
        let any_common = (0..YEAR_WORDS).any(|i| self.years.0[i] & all[i] & !leap[i] != 0);
        (1..=12_u8)
            .filter(|m| self.months & (1 << m) != 0)
            .any(|m| {
                let lens: &[u8] = match m {
                    2 => match (any_common, any_leap) {
                        (true, true) => &[28, 29],
                        (true, false) => &[28],
                        (false, true) => &[29],
                        (false, false) => &[],
                    },
                    4 | 6 | 9 | 11 => &[30],
                    _ => &[31],
                };
                lens.iter()
                    .any(|len| self.table[(len - 28) as usize].iter().any(|m| *m != 0))
            })
    }

    /// Allowed days (bits 1–31) of `month` in `year`.
    #[inline]
    pub(crate) fn day_mask(&self, year: i32, month: u8) -> u64 {
        let len = days_in_month(year, month);
        let w1 = weekday(year, month, 1);
        u64::from(self.table[(len - 28) as usize][w1 as usize])
    }

    /// Whether a civil date-time matches every field.
    #[cfg(test)]
    pub(crate) fn matches(&self, c: Civil) -> bool {
        self.years.contains(c.year)
            && self.months & (1 << c.month) != 0
            && self.day_mask(c.year, c.month) & (1 << c.day) != 0
            && self.hours & (1 << c.hour) != 0
            && self.minutes & (1 << c.minute) != 0
            && self.seconds & (1 << c.second) != 0
    }

    /// The first matching civil date-time `>= start`, within 1970–2199.
    pub(crate) fn next_civil(&self, start: Civil) -> Option<Civil> {
        if self.never {
            return None;
        }
        let mut c = if start.year < MIN_YEAR {
            Civil::start_of_year(MIN_YEAR)
        } else {
            start
        };
        loop {
            let y = self.years.next(c.year)?;
            if y != c.year {
                c = Civil::start_of_year(y);
            }
            let Some(m) = next_bit(self.months, c.month) else {
                c = Civil::start_of_year(c.year + 1);
                continue;
            };
            if m != c.month {
                c = Civil {
                    month: m,
                    day: 1,
                    ..Civil::start_of_year(c.year)
                };
            }
            let Some(d) = next_bit(self.day_mask(c.year, c.month), c.day) else {
                c = first_of_next_month(c);
                continue;
            };
            if d != c.day {
                c.day = d;
                c.hour = 0;
                c.minute = 0;
                c.second = 0;
            }
            let Some(h) = next_bit(self.hours, c.hour) else {
                c = next_day(c);
                continue;
            };
            if h != c.hour {
                c.hour = h;
                c.minute = 0;
                c.second = 0;
            }
            let Some(mi) = next_bit(self.minutes, c.minute) else {
                c = next_hour(c);
                continue;
            };
            if mi != c.minute {
                c.minute = mi;
                c.second = 0;
            }
            let Some(s) = next_bit(self.seconds, c.second) else {
                c = next_minute(c);
                continue;
            };
            c.second = s;
            return Some(c);
        }
    }

    /// The last matching civil date-time `<= start`, within 1970–2199.
    pub(crate) fn prev_civil(&self, start: Civil) -> Option<Civil> {
        if self.never {
            return None;
        }
        let mut c = if start.year > MAX_YEAR {
            Civil::end_of_year(MAX_YEAR)
        } else {
            start
        };
        loop {
            let y = self.years.prev(c.year)?;
            if y != c.year {
                c = Civil::end_of_year(y);
            }
            let Some(m) = prev_bit(self.months, c.month) else {
                c = Civil::end_of_year(c.year - 1);
                continue;
            };
            if m != c.month {
                c = Civil {
                    month: m,
                    day: days_in_month(c.year, m),
                    ..Civil::end_of_year(c.year)
                };
            }
            let Some(d) = prev_bit(self.day_mask(c.year, c.month), c.day) else {
                c = last_of_prev_month(c);
                continue;
            };
            if d != c.day {
                c.day = d;
                c.hour = 23;
                c.minute = 59;
                c.second = 59;
            }
            let Some(h) = prev_bit(self.hours, c.hour) else {
                c = prev_day(c);
                continue;
            };
            if h != c.hour {
                c.hour = h;
                c.minute = 59;
                c.second = 59;
            }
            let Some(mi) = prev_bit(self.minutes, c.minute) else {
                c = prev_hour(c);
                continue;
            };
            if mi != c.minute {
                c.minute = mi;
                c.second = 59;
            }
            let Some(s) = prev_bit(self.seconds, c.second) else {
                c = prev_minute(c);
                continue;
            };
            c.second = s;
            return Some(c);
        }
    }
}

fn first_of_next_month(c: Civil) -> Civil {
    if c.month >= 12 {
        Civil::start_of_year(c.year + 1)
    } else {
        Civil {
            month: c.month + 1,
            ..Civil::start_of_year(c.year)
        }
    }
}

fn next_day(c: Civil) -> Civil {
    if c.day >= days_in_month(c.year, c.month) {
        first_of_next_month(c)
    } else {
        Civil {
            day: c.day + 1,
            hour: 0,
            minute: 0,
            second: 0,
            ..c
        }
    }
}

fn next_hour(c: Civil) -> Civil {
    if c.hour >= 23 {
        next_day(c)
    } else {
        Civil {
            hour: c.hour + 1,
            minute: 0,
            second: 0,
            ..c
        }
    }
}

fn next_minute(c: Civil) -> Civil {
    if c.minute >= 59 {
        next_hour(c)
    } else {
        Civil {
            minute: c.minute + 1,
            second: 0,
            ..c
        }
    }
}

fn last_of_prev_month(c: Civil) -> Civil {
    if c.month <= 1 {
        Civil::end_of_year(c.year - 1)
    } else {
        Civil {
            month: c.month - 1,
            day: days_in_month(c.year, c.month - 1),
            ..Civil::end_of_year(c.year)
        }
    }
}

fn prev_day(c: Civil) -> Civil {
    if c.day <= 1 {
        last_of_prev_month(c)
    } else {
        Civil {
            day: c.day - 1,
            hour: 23,
            minute: 59,
            second: 59,
            ..c
        }
    }
}

fn prev_hour(c: Civil) -> Civil {
    if c.hour == 0 {
        prev_day(c)
    } else {
        Civil {
            hour: c.hour - 1,
            minute: 59,
            second: 59,
            ..c
        }
    }
}

fn prev_minute(c: Civil) -> Civil {
    if c.minute == 0 {
        prev_hour(c)
    } else {
        Civil {
            minute: c.minute - 1,
            second: 59,
            ..c
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits() {
        assert_eq!(next_bit(0b1010, 0), Some(1));
        assert_eq!(next_bit(0b1010, 2), Some(3));
        assert_eq!(next_bit(0b1010, 4), None);
        assert_eq!(next_bit(1 << 63, 63), Some(63));
        assert_eq!(next_bit(!0, 64), None);
        assert_eq!(prev_bit(0b1010, 2), Some(1));
        assert_eq!(prev_bit(0b1010, 0), None);
        assert_eq!(prev_bit(1 << 63, 63), Some(63));
        assert_eq!(prev_bit(1 << 63, 200), Some(63));
    }

    #[test]
    fn year_set() {
        let mut s = YearSet([0; 4]);
        for y in [1970, 2033, 2034, 2100, 2199] {
            s.insert(y);
        }
        assert_eq!(s.next(1900), Some(1970));
        assert_eq!(s.next(1971), Some(2033));
        assert_eq!(s.next(2035), Some(2100));
        assert_eq!(s.next(2101), Some(2199));
        assert_eq!(s.next(2200), None);
        assert_eq!(s.prev(2300), Some(2199));
        assert_eq!(s.prev(2198), Some(2100));
        assert_eq!(s.prev(2099), Some(2034));
        assert_eq!(s.prev(2032), Some(1970));
        assert_eq!(s.prev(1969), None);
        let all = YearSet::ALL;
        assert_eq!(all.iter().count(), 230);
        assert_eq!(all.prev(2199), Some(2199));
        assert_eq!(all.next(2034), Some(2034));
        assert_eq!(all.prev(2097), Some(2097));
    }

    #[test]
    fn quartz_day_masks() {
        // February 2024: 29 days, the 1st is a Thursday (4).
        let last = DaySpec {
            dom_last: 1 | 1 << 3,
            dow_star: true,
            dow: 0x7f,
            ..DaySpec::default()
        };
        assert_eq!(last.mask(29, 4), 1 << 29 | 1 << 26);
        // LW in a month ending on a Sunday (June 2024: 30 days, 1st is Saturday).
        let lw = DaySpec {
            dom_last_weekday: true,
            dow_star: true,
            dow: 0x7f,
            ..DaySpec::default()
        };
        assert_eq!(lw.mask(30, 6), 1 << 28);
        // 1W when the 1st is a Saturday is Monday the 3rd (never leaves the month).
        let w = DaySpec {
            dom_nearest: 1 << 1 | 1 << 30,
            dow_star: true,
            dow: 0x7f,
            ..DaySpec::default()
        };
        // June 2024: the 30th is a Sunday → Friday the 28th.
        assert_eq!(w.mask(30, 6), 1 << 3 | 1 << 28);
        // 5L (last Friday) and 1#5 (fifth Monday) in February 2024.
        let nth = DaySpec {
            dom_star: true,
            dom: !0,
            dow_last: 1 << 5,
            dow_nth: [0, 1 << 5, 0, 0, 0, 0, 0],
            ..DaySpec::default()
        };
        assert_eq!(nth.mask(29, 4), 1 << 23);
        // A leap February starting on Monday has five Mondays.
        assert_eq!(nth.mask(29, 1), 1 << 29 | 1 << 26);
    }
}
