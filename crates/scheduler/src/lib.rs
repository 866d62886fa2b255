//! `sundial-scheduler`: Sundial's job scheduler (定时任务框架).
//!
//! - [`timer`]: the timer core's runtime half — the driver task that owns a
//!   [`sundial_wheel::Wheel`] and the bounded worker pool that runs what expires;
//! - [`trigger`]: when fires are due (cron in an IANA zone, fixed rate, fixed delay,
//!   one-shot; start/end bounds and a fire cap);
//! - [`policy`]: overlap, misfire/catch-up, retry with back-off, deterministic jitter —
//!   pure decisions with documented timelines;
//! - [`executor`]: running a job's program in its own process group;
//! - [`jobs_file`]: the `jobs.toml` format of the `sundial run` daemon, validated with
//!   file/line/field errors.
//!
//! The engine that ties them together (job registry, run ledger, `JobStore`,
//! `Coordinator`) builds on these modules.

pub mod executor;
pub mod jobs_file;
pub mod policy;
pub mod timer;
pub mod trigger;
