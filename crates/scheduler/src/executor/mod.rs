//! Executors: what a fire runs when the job is not a closure.
//!
//! - [`command`] runs a program in its own process group with a capped output tail;
//! - [`http`] makes an HTTP request and checks its status, with a capped body.

pub mod command;
pub mod http;
