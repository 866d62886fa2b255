//! Fuzz the wheel with arbitrary operation sequences checked against a `BTreeMap` model
//! (the same body as the `fuzz_body` proptest in `tests/model.rs`).
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run ops` from `crates/wheel/fuzz`.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/support/model.rs"]
mod model;

fuzz_target!(|data: &[u8]| {
    let (start, ops) = model::decode(data);
    model::run(start, &ops);
});
