//! Sundial Analytics: the event model, validation of the ingest contract, and (as the
//! pipeline grows) metric definitions and aggregation.
//!
//! This crate holds the analytics *logic* and no I/O framework: no HTTP server, no SQL
//! driver, no bus client. Those live in `sundial-server`, `sundial-storage-sql` and
//! `sundial-bus`, behind the traits defined here.

pub mod account;
pub mod aggregate;
pub mod app;
pub mod bus;
pub mod countly;
pub mod event;
pub mod ingest;
pub mod metrics;
pub mod record;
pub mod store;

pub use account::{
    Account, AccountStore, AccountStoreError, AppScope, AuditEntry, Role, TokenInfo, TokenKind,
};
pub use app::{App, AppError, AppUpdate, NewApp};
pub use event::{Dimensions, Event, EventKind};
pub use ingest::{Batch, EnvelopeError, Limits, Rejection, SingleKind, parse_batch, parse_single};
pub use store::{CloseOut, Store, StoreError};
