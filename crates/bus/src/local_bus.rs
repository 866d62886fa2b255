//! [`LocalBus`]: the [`Bus`] trait on a [`LocalLog`] (the embedded default).
//!
//! A publish is one record appended with group commit: it returns once the record is
//! `fdatasync`'d. Positions are the log's offsets. A consumer is a [`Reader`] plus the
//! retention mark: committing position `p` lets retention delete segments wholly
//! below `p`. The log keeps no consumer state; the aggregator's store does.

use std::time::Duration;

use async_trait::async_trait;
use sundial_analytics::bus::{Bus, BusConsumer, BusError, BusMessage};

use crate::{Error, LocalLog, ReadLimits, Reader};

/// The local segment log as a [`Bus`].
#[derive(Debug, Clone)]
pub struct LocalBus {
    log: LocalLog,
}

impl LocalBus {
    /// Wraps an open log.
    pub fn new(log: LocalLog) -> Self {
        LocalBus { log }
    }

    /// The log underneath (statistics, retention).
    pub fn log(&self) -> &LocalLog {
        &self.log
    }
}

fn publish_error(e: Error) -> BusError {
    match e {
        Error::RecordTooLarge { .. } | Error::BatchTooLarge { .. } => {
            BusError::Refused(e.to_string())
        }
        other => BusError::Unavailable(other.to_string()),
    }
}

#[async_trait]
impl Bus for LocalBus {
    async fn publish(&self, _id: &str, payload: Vec<u8>) -> Result<u64, BusError> {
        let range = self
            .log
            .append(vec![payload])
            .await
            .map_err(publish_error)?;
        Ok(range.start)
    }

    async fn consumer(&self, _name: &str, from: u64) -> Result<Box<dyn BusConsumer>, BusError> {
        let first = self.log.start_offset();
        if from < first {
            return Err(BusError::Gone { asked: from, first });
        }
        Ok(Box::new(LocalConsumer {
            log: self.log.clone(),
            reader: self.log.reader(from),
        }))
    }

    async fn end_position(&self) -> Result<u64, BusError> {
        Ok(self.log.durable_end())
    }

    fn kind(&self) -> &'static str {
        "local"
    }
}

/// A reader of the local log.
#[derive(Debug)]
struct LocalConsumer {
    log: LocalLog,
    reader: Reader,
}

#[async_trait]
impl BusConsumer for LocalConsumer {
    async fn next_batch(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<BusMessage>, BusError> {
        let limits = ReadLimits {
            max_records: max.max(1),
            max_bytes: 16 << 20,
        };
        // `Reader::next_batch` is cancel safe: a timeout leaves the position unchanged.
        match tokio::time::timeout(wait, self.reader.next_batch(limits)).await {
            Err(_elapsed) => Ok(Vec::new()),
            Ok(Err(e)) => Err(BusError::Read(e.to_string())),
            Ok(Ok(records)) => Ok(records
                .into_iter()
                .map(|r| BusMessage {
                    position: r.offset,
                    payload: r.payload,
                })
                .collect()),
        }
    }

    async fn commit(&mut self, next: u64) -> Result<(), BusError> {
        self.log.retain_from(next);
        Ok(())
    }
}
