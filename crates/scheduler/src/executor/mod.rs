//! Executors: what a fire runs when the job is not a closure.
//!
//! `command` runs a program in its own process group with a capped output tail. The
//! `http` executor (a request with an expected status) arrives with the scheduler
//! engine; its definition already lives in [`crate::jobs_file::HttpSpec`].

pub mod command;
