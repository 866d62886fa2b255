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
//! - [`job`]: jobs as data — ids, fires, the storable [`job::JobSpec`], run records;
//! - [`store`]: the [`store::JobStore`] trait (specs, run ledger, fire marks) and its
//!   in-memory implementation;
//! - [`coordinator`]: the [`coordinator::Coordinator`] trait (per-fire claims, fencing
//!   tokens) and its single-node implementation;
//! - [`engine`]: the [`engine::Scheduler`] that runs jobs on all of the above.

pub mod coordinator;
pub mod engine;
pub mod executor;
pub mod job;
pub mod jobs_file;
pub mod policy;
pub mod store;
pub mod timer;
pub mod trigger;
