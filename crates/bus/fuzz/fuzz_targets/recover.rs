//! Fuzzes recovery: arbitrary bytes after a valid header in the active segment must open
//! without panicking and recover to exactly a prefix of valid frames.
//!
//! ```text
//! cd crates/bus/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run recover -- -max_total_time=60
//! ```
//! The same body runs under proptest in `tests/log_recover_fuzz.rs`.

#![no_main]

#[path = "../../tests/common/recover_body.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|tail: &[u8]| {
    body::recover_arbitrary_tail(tail);
});
