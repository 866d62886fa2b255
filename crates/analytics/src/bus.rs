//! The `Bus` trait: the durable queue between ingest and the aggregator.
//!
//! Ingest [`publish`](Bus::publish)es one message per accepted request (the events of one
//! app, see [`crate::record`]) and acknowledges the SDK only when `publish` returns `Ok`:
//! the message is then durable (fsync'd to the local log, or acknowledged by JetStream).
//! The aggregator reads messages in order through a [`BusConsumer`] and, after it has
//! committed their effect together with its position in the store, tells the bus with
//! [`BusConsumer::commit`] so that the bus may forget them.
//!
//! Positions are `u64`s that grow by at least one per message; a consumer opened at
//! position `p` delivers the messages at positions `>= p`. The store keeps "the first
//! position not yet applied", so a restart resumes exactly where the last commit ended.
//!
//! Implementations live in `sundial-bus` (local segment log, NATS JetStream).

use std::time::Duration;

use async_trait::async_trait;

/// A message read back from the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusMessage {
    /// Its position; the next message's is larger.
    pub position: u64,
    /// Its bytes, as published.
    pub payload: Vec<u8>,
}

/// A bus operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The message could not be made durable; it must not be acknowledged.
    #[error("the bus could not make the message durable: {0}")]
    Unavailable(String),
    /// The message was refused as it is (too large, say); retrying will not help.
    #[error("the bus refused the message: {0}")]
    Refused(String),
    /// Reading failed.
    #[error("cannot read the bus: {0}")]
    Read(String),
    /// The position asked for is no longer kept (retention removed it).
    #[error("position {asked} is no longer on the bus (it starts at {first})")]
    Gone {
        /// The position asked for.
        asked: u64,
        /// The oldest position still kept.
        first: u64,
    },
}

/// Where ingest puts events and the aggregator takes them from.
#[async_trait]
pub trait Bus: Send + Sync + std::fmt::Debug {
    /// Makes `payload` durable. `id` identifies the message for de-duplication by the bus
    /// (a retried publish with the same id is stored once where the bus supports it).
    /// Returns the message's position.
    async fn publish(&self, id: &str, payload: Vec<u8>) -> Result<u64, BusError>;

    /// Opens the consumer `name`, delivering messages at positions `>= from`.
    async fn consumer(&self, name: &str, from: u64) -> Result<Box<dyn BusConsumer>, BusError>;

    /// The position the next published message will get (an upper bound on every
    /// position published so far, plus one); used to report consumer lag.
    async fn end_position(&self) -> Result<u64, BusError>;

    /// A short name for logs and metrics (`local`, `nats`).
    fn kind(&self) -> &'static str;
}

/// An in-order reader of the bus.
#[async_trait]
pub trait BusConsumer: Send + std::fmt::Debug {
    /// The next messages, in position order: up to `max`, waiting up to `wait` for the
    /// first one. An empty vector means nothing arrived in time.
    async fn next_batch(&mut self, max: usize, wait: Duration)
    -> Result<Vec<BusMessage>, BusError>;

    /// Everything before `next` has been applied and committed downstream; the bus may
    /// forget it (local retention, JetStream acknowledgement).
    async fn commit(&mut self, next: u64) -> Result<(), BusError>;
}
