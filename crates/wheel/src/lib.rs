//! `sundial-wheel`: a hierarchical timing wheel (Varghese & Lauck, 1987).
//!
//! The wheel stores timers with a `u64` deadline in *ticks* and a payload of any type.
//! It never reads a clock: the caller says what time it is with
//! [`Wheel::advance_to`], and the tick length is the caller's choice (the Sundial
//! scheduler uses 1 ms).
//!
//! # Guarantees
//!
//! - **Exact expiry.** A timer with deadline `d` is handed out by the first
//!   `advance_to(now)` with `now >= d`, never earlier and never later; when the caller
//!   advances one tick at a time every timer fires in exactly its deadline's tick.
//!   Timers handed out by one call come in non-decreasing deadline order.
//! - **O(1) insert, cancel and reset**, with no allocation per timer once the slab is
//!   warm (entries live in one `Vec` with a free list; each slot's list is a vector of
//!   `u32` slab indices that grows by doubling and shrinks by halving, so it allocates
//!   O(log n) times per fill, not per timer). A cancel frees the entry at once.
//! - **Stale keys are harmless.** A [`TimerKey`] carries a generation, so a key of a
//!   timer that already fired or was cancelled can never touch a timer that reuses its
//!   slot.
//! - **Bounded work per tick.** Coarse slots are pre-cascaded incrementally during the
//!   window before they come due, so a slot holding many timers never stalls one tick;
//!   see [`Wheel`] for the bound.
//! - **Range.** Six levels of 64 slots cover 2^36 ticks (2.18 years at 1 ms); farther
//!   deadlines wait in an overflow list that is re-examined, also incrementally, once
//!   per 2^36 ticks. Deadlines are clamped to [`MAX_TICK`].
//!
//! # Example
//!
//! ```
//! use sundial_wheel::Wheel;
//!
//! let mut wheel = Wheel::new();
//! let a = wheel.insert(5, "five");
//! let b = wheel.insert(70, "seventy");
//! assert_eq!(wheel.cancel(b), Some("seventy"));
//!
//! let mut fired = Vec::new();
//! wheel.advance_to(4, &mut fired);
//! assert!(fired.is_empty());
//! wheel.advance_to(5, &mut fired);
//! assert_eq!(fired, vec![(a, "five")]);
//! assert_eq!(wheel.cancel(a), None); // already fired: the key is stale
//! ```

mod wheel;

pub use wheel::{MAX_TICK, RANGE_TICKS, TimerKey, UnknownTimer, Wheel};
