//! The parser and the searches never panic, on any input.
//!
//! The input's first 8 bytes pick an instant (any 64-bit value, clamped into jiff's
//! range) and a zone; the rest is the expression. Every successful parse is searched
//! forward and backward in that zone, normalised, re-parsed and described.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run parse_next` in crates/cron/fuzz.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sundial_cron::jiff::Timestamp;
use sundial_cron::jiff::tz::TimeZone;
use sundial_cron::{Lang, Schedule};

const ZONES: [&str; 6] = [
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "Pacific/Apia",
];

fuzz_target!(|data: &[u8]| {
    let Some((head, rest)) = data.split_first_chunk::<8>() else {
        return;
    };
    let Ok(expr) = std::str::from_utf8(rest) else {
        return;
    };
    let raw = i64::from_le_bytes(*head);
    let secs = raw.clamp(Timestamp::MIN.as_second() + 1, Timestamp::MAX.as_second() - 1);
    let Ok(t) = Timestamp::from_second(secs) else {
        return;
    };
    let Ok(tz) = TimeZone::get(ZONES[(raw as u64 % ZONES.len() as u64) as usize]) else {
        return;
    };
    match Schedule::parse_with_seed(expr, raw as u64) {
        Ok(s) => {
            if let Some(n) = s.next_after(t, &tz) {
                assert!(n > t);
            }
            if let Some(p) = s.prev_before(t, &tz) {
                assert!(p < t);
            }
            let _ = s.iter_after(t, &tz).take(3).count();
            let norm = s.to_string();
            let again = Schedule::parse(&norm).expect("the normal form parses");
            assert_eq!(again.to_string(), norm);
            let _ = s.describe(Lang::En);
            let _ = s.describe(Lang::Zh);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
