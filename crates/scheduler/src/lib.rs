//! `sundial-scheduler`: Sundial's job scheduler.
//!
//! For now this crate holds the timer core's runtime half ([`timer`]): the driver task
//! that owns a [`sundial_wheel::Wheel`] and the bounded worker pool that runs what
//! expires. Jobs, triggers and policies build on it.

pub mod timer;
