//! [`NatsBus`]: the [`Bus`] trait on a NATS JetStream stream (scale-out).
//!
//! - **Publish** sends to the stream's subject with a `Nats-Msg-Id` header and waits for
//!   the JetStream acknowledgement, which comes only once the stream has stored the
//!   message (file storage). A retried publish with the same id inside the stream's
//!   duplicate window is stored once.
//! - **Positions** are stream sequence numbers (from 1). A consumer opened at `from`
//!   delivers sequences `>= from` (from the first one when `from` is 0).
//! - **Consumers** are durable pull consumers with `AckPolicy::All`. The aggregator's
//!   store is the authority on what was applied, so opening a consumer recreates the
//!   durable consumer at the store's position; committing acknowledges the last
//!   delivered message below the committed position (and with it all earlier ones).
//!   Redeliveries of messages already returned are dropped by sequence, so a batch is
//!   never handed out twice by one consumer.

use std::collections::VecDeque;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use async_trait::async_trait;
use futures::StreamExt as _;
use sundial_analytics::bus::{Bus, BusConsumer, BusError, BusMessage};

/// Settings of the JetStream stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsOptions {
    /// Stream name. Default `SUNDIAL_EVENTS`.
    pub stream: String,
    /// Subject the events are published on. Default `sundial.events`.
    pub subject: String,
    /// How long JetStream remembers message ids for de-duplication. Default 2 minutes.
    pub duplicate_window: Duration,
    /// How long the stream keeps messages (raw-event retention). Default 7 days.
    pub max_age: Duration,
}

impl Default for NatsOptions {
    fn default() -> Self {
        NatsOptions {
            stream: "SUNDIAL_EVENTS".to_owned(),
            subject: "sundial.events".to_owned(),
            duplicate_window: Duration::from_secs(120),
            max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// A JetStream stream as a [`Bus`].
#[derive(Debug, Clone)]
pub struct NatsBus {
    js: jetstream::Context,
    options: NatsOptions,
}

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

fn read_error(e: impl std::fmt::Display) -> BusError {
    BusError::Read(e.to_string())
}

impl NatsBus {
    /// Connects to `url` (`nats://host:port`) and creates the stream if it is missing.
    pub async fn connect(url: &str, options: NatsOptions) -> Result<Self, BusError> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| BusError::Unavailable(format!("cannot connect to {url}: {e}")))?;
        let js = jetstream::new(client);
        js.get_or_create_stream(stream::Config {
            name: options.stream.clone(),
            subjects: vec![options.subject.clone()],
            storage: stream::StorageType::File,
            duplicate_window: options.duplicate_window,
            max_age: options.max_age,
            ..stream::Config::default()
        })
        .await
        .map_err(|e| {
            BusError::Unavailable(format!(
                "cannot create JetStream stream {} on {url}: {e}",
                options.stream
            ))
        })?;
        Ok(NatsBus { js, options })
    }

    async fn stream(&self) -> Result<stream::Stream, BusError> {
        self.js
            .get_stream(&self.options.stream)
            .await
            .map_err(read_error)
    }
}

#[async_trait]
impl Bus for NatsBus {
    async fn publish(&self, id: &str, payload: Vec<u8>) -> Result<u64, BusError> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id);
        let ack = self
            .js
            .publish_with_headers(self.options.subject.clone(), headers, payload.into())
            .await
            .map_err(unavailable)?
            .await
            .map_err(unavailable)?;
        Ok(ack.sequence)
    }

    async fn consumer(&self, name: &str, from: u64) -> Result<Box<dyn BusConsumer>, BusError> {
        let stream = self.stream().await?;
        // The store is the authority on what was applied: start the durable consumer
        // afresh at its position.
        let _ = stream.delete_consumer(name).await;
        let deliver_policy = if from <= 1 {
            consumer::DeliverPolicy::All
        } else {
            consumer::DeliverPolicy::ByStartSequence {
                start_sequence: from,
            }
        };
        let pull = stream
            .create_consumer(consumer::pull::Config {
                durable_name: Some(name.to_owned()),
                deliver_policy,
                ack_policy: consumer::AckPolicy::All,
                ack_wait: Duration::from_secs(120),
                max_ack_pending: 1_000_000,
                ..consumer::pull::Config::default()
            })
            .await
            .map_err(read_error)?;
        Ok(Box::new(NatsConsumer {
            consumer: pull,
            next_expected: from.max(1),
            delivered: VecDeque::new(),
        }))
    }

    async fn end_position(&self) -> Result<u64, BusError> {
        let mut stream = self.stream().await?;
        let info = stream.info().await.map_err(read_error)?;
        Ok(info.state.last_sequence + 1)
    }

    fn kind(&self) -> &'static str {
        "nats"
    }
}

/// A pull consumer, and the messages delivered but not yet acknowledged.
struct NatsConsumer {
    consumer: consumer::PullConsumer,
    next_expected: u64,
    /// Delivered messages (sequence, message) kept for acknowledgement; only the newest
    /// below a commit is acknowledged (`AckPolicy::All` covers the rest).
    delivered: VecDeque<(u64, jetstream::Message)>,
}

impl std::fmt::Debug for NatsConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsConsumer")
            .field("next_expected", &self.next_expected)
            .field("unacknowledged", &self.delivered.len())
            .finish()
    }
}

#[async_trait]
impl BusConsumer for NatsConsumer {
    async fn next_batch(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<BusMessage>, BusError> {
        let mut batch = self
            .consumer
            .fetch()
            .max_messages(max.max(1))
            .expires(wait.max(Duration::from_millis(10)))
            .messages()
            .await
            .map_err(read_error)?;
        let mut out = Vec::new();
        while let Some(message) = batch.next().await {
            let message = message.map_err(read_error)?;
            let sequence = message.info().map_err(read_error)?.stream_sequence;
            if sequence < self.next_expected {
                continue; // a redelivery of something already handed out
            }
            self.next_expected = sequence + 1;
            out.push(BusMessage {
                position: sequence,
                payload: message.payload.to_vec(),
            });
            self.delivered.push_back((sequence, message));
            // Keep only what a commit may still need to acknowledge.
            while self.delivered.len() > 1 && self.delivered.len() > max.max(1) * 4 {
                self.delivered.pop_front();
            }
        }
        Ok(out)
    }

    async fn commit(&mut self, next: u64) -> Result<(), BusError> {
        let mut newest = None;
        while let Some((sequence, _)) = self.delivered.front() {
            if *sequence >= next {
                break;
            }
            newest = self.delivered.pop_front();
        }
        if let Some((_, message)) = newest {
            message.ack().await.map_err(read_error)?;
        }
        Ok(())
    }
}
