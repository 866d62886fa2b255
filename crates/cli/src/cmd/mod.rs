//! The subcommands of `sundial`, one module each.

pub(crate) mod config;
