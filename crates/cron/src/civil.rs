//! Proleptic-Gregorian civil arithmetic on plain integers.
//!
//! The search loop works on [`Civil`] (year, month, day, hour, minute, second) rather
//! than on jiff's types, because it only ever needs "days in this month", "weekday of
//! the first" and conversion to and from Unix seconds, and doing these with a handful of
//! integer operations keeps a next-fire computation in the tens of nanoseconds.
//! jiff remains the authority for everything zone-related.
//!
//! Invariant: every `Civil` built by this module is a valid date-time (month 1–12, day
//! within the month, hour 0–23, minute and second 0–59); no leap seconds.

/// A civil (wall-clock) date-time with second precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Civil {
    pub(crate) year: i32,
    pub(crate) month: u8,
    pub(crate) day: u8,
    pub(crate) hour: u8,
    pub(crate) minute: u8,
    pub(crate) second: u8,
}

/// Whether `year` is a Gregorian leap year (2000 is one, 2100 is not).
pub(crate) const fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Number of days in `month` (1–12) of `year`.
pub(crate) const fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        2 => {
            if is_leap(year) {
                29
            } else {
                28
            }
        }
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's `days_from_civil`).
pub(crate) const fn days_from_civil(year: i32, month: u8, day: u8) -> i64 {
    let y = if month <= 2 { year - 1 } else { year } as i64;
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = month as i64;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01 (inverse of [`days_from_civil`]).
pub(crate) const fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = if m <= 2 { y + 1 } else { y };
    (y as i32, m, d)
}

/// Weekday of a civil date, 0 = Sunday … 6 = Saturday.
pub(crate) const fn weekday(year: i32, month: u8, day: u8) -> u8 {
    // 1970-01-01 was a Thursday (4).
    (days_from_civil(year, month, day) + 4).rem_euclid(7) as u8
}

impl Civil {
    /// First second of `year`.
    pub(crate) const fn start_of_year(year: i32) -> Civil {
        Civil {
            year,
            month: 1,
            day: 1,
            hour: 0,
            minute: 0,
            second: 0,
        }
    }

    /// Last second of `year`.
    pub(crate) const fn end_of_year(year: i32) -> Civil {
        Civil {
            year,
            month: 12,
            day: 31,
            hour: 23,
            minute: 59,
            second: 59,
        }
    }

    /// The civil date-time `secs` seconds after 1970-01-01T00:00:00.
    pub(crate) const fn from_unix(secs: i64) -> Civil {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            hour: (rem / 3600) as u8,
            minute: (rem / 60 % 60) as u8,
            second: (rem % 60) as u8,
        }
    }

    /// Seconds since 1970-01-01T00:00:00 of this civil date-time.
    pub(crate) const fn to_unix(self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * 86_400
            + self.hour as i64 * 3600
            + self.minute as i64 * 60
            + self.second as i64
    }

    /// This date-time shifted by `secs` seconds (civil arithmetic, no zone).
    pub(crate) const fn add_seconds(self, secs: i64) -> Civil {
        Civil::from_unix(self.to_unix() + secs)
    }

    /// Converts to jiff's civil type. Fails only for years outside jiff's range, which
    /// the search never produces (it stays within 1970–2199).
    pub(crate) fn to_jiff(self) -> Option<jiff::civil::DateTime> {
        jiff::civil::DateTime::new(
            i16::try_from(self.year).ok()?,
            self.month as i8,
            self.day as i8,
            self.hour as i8,
            self.minute as i8,
            self.second as i8,
            0,
        )
        .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leap_years() {
        assert!(is_leap(2000));
        assert!(is_leap(2024));
        assert!(!is_leap(2100));
        assert!(!is_leap(1900));
        assert!(!is_leap(2023));
        assert_eq!(days_in_month(2100, 2), 28);
        assert_eq!(days_in_month(2096, 2), 29);
    }

    #[test]
    fn unix_round_trip_and_weekday() {
        for secs in [
            0_i64,
            -1,
            86_399,
            951_782_400,
            2_147_483_647,
            4_102_444_800,
            7_258_118_399,
        ] {
            assert_eq!(Civil::from_unix(secs).to_unix(), secs);
        }
        // 2038-01-19T03:14:07Z is the 32-bit time_t limit; a Tuesday.
        let c = Civil::from_unix(2_147_483_647);
        assert_eq!(
            (c.year, c.month, c.day, c.hour, c.minute, c.second),
            (2038, 1, 19, 3, 14, 7)
        );
        assert_eq!(weekday(2038, 1, 19), 2);
        assert_eq!(weekday(1970, 1, 1), 4);
        assert_eq!(weekday(2100, 3, 1), 1);
        assert_eq!(weekday(2024, 2, 29), 4);
    }

    #[test]
    fn matches_jiff_over_many_days() {
        let mut d = jiff::civil::date(1969, 12, 1);
        for _ in 0..(366 * 3) {
            let days = days_from_civil(i32::from(d.year()), d.month() as u8, d.day() as u8);
            assert_eq!(
                civil_from_days(days),
                (i32::from(d.year()), d.month() as u8, d.day() as u8)
            );
            assert_eq!(
                weekday(i32::from(d.year()), d.month() as u8, d.day() as u8),
                d.weekday().to_sunday_zero_offset() as u8
            );
            d = d.tomorrow().expect("in range");
        }
    }
}
