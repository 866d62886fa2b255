//! A resilient etcd connection around `etcd-client`.
//!
//! `etcd-client` balances requests over all configured endpoints and keeps failing
//! calls routed to one that is down (its issue #39). [`Etcd`] wraps it:
//!
//! - every call has its own timeout ([`CALL_TIMEOUT`]) and, when it fails with a
//!   transport-level error (unavailable, timeout, connection reset), is retried with
//!   exponential back-off up to a deadline the caller chooses — only calls that are
//!   safe to repeat go through [`Etcd::call`] (reads, guarded transactions whose retry
//!   recognises its own earlier success, puts of the same value);
//! - after repeated failures the connection is rebuilt from the endpoints that answer
//!   a status probe now, so a dead member stops receiving traffic; every rebuild
//!   probes all configured endpoints again, so a member that comes back is used again;
//! - streams (watches, lease keep-alives) are re-opened by their owners on error.

use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use tokio::time::Instant;

use crate::ClusterError;

/// The timeout of one unary call.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long [`Etcd::connect`] looks for a live endpoint.
const CONNECT_PATIENCE: Duration = Duration::from_secs(15);

/// A call that failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// No endpoint answered before the deadline.
    #[error("etcd unavailable: {0}")]
    Unavailable(String),
    /// etcd answered with an error that retrying does not fix.
    #[error("etcd refused: {0}")]
    Refused(etcd_client::Error),
}

impl From<CallError> for ClusterError {
    fn from(e: CallError) -> Self {
        ClusterError::Etcd(e.to_string())
    }
}

/// A connection to an etcd cluster. Cheap to clone.
#[derive(Clone)]
pub struct Etcd {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Etcd")
            .field("endpoints", &self.inner.endpoints)
            .finish_non_exhaustive()
    }
}

struct Inner {
    endpoints: Vec<String>,
    /// The current client and its generation (bumped on every rebuild).
    current: RwLock<(u64, Client)>,
    rebuilding: tokio::sync::Mutex<()>,
}

fn options() -> ConnectOptions {
    ConnectOptions::new()
        .with_connect_timeout(Duration::from_millis(800))
        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
        .with_keep_alive_while_idle(true)
        .with_require_leader(true)
}

/// Whether retrying (possibly on another endpoint) may help.
pub(crate) fn retryable(e: &etcd_client::Error) -> bool {
    use etcd_client::Error as E;
    match e {
        E::GRpcStatus(status) => {
            use tonic::Code;
            matches!(
                status.code(),
                Code::Unavailable
                    | Code::DeadlineExceeded
                    | Code::Unknown
                    | Code::Cancelled
                    | Code::Aborted
                    | Code::ResourceExhausted
                    | Code::Internal
            )
        }
        E::TransportError(_)
        | E::IoError(_)
        | E::WatchError(_)
        | E::LeaseKeepAliveError(_)
        | E::EndpointError(_) => true,
        _ => false,
    }
}

/// Back-off before retry `n` (1-based): 50 ms doubling, at most 1 s.
pub(crate) fn backoff(n: u32) -> Duration {
    Duration::from_millis(50u64.saturating_mul(1 << n.min(5)).min(1000))
}

impl Etcd {
    /// Connects to the cluster at `endpoints` (`http://host:port`), waiting up to
    /// 15 s for one of them to answer.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Etcd`] when no endpoint answers.
    pub async fn connect(endpoints: &[String]) -> Result<Self, ClusterError> {
        if endpoints.is_empty() {
            return Err(ClusterError::Etcd("no endpoints given".to_owned()));
        }
        let give_up = Instant::now() + CONNECT_PATIENCE;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let healthy = probe(endpoints).await;
            if !healthy.is_empty() {
                match Client::connect(&healthy, Some(options())).await {
                    Ok(client) => {
                        return Ok(Self {
                            inner: Arc::new(Inner {
                                endpoints: endpoints.to_vec(),
                                current: RwLock::new((0, client)),
                                rebuilding: tokio::sync::Mutex::new(()),
                            }),
                        });
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot connect to etcd"),
                }
            }
            if Instant::now() >= give_up {
                return Err(ClusterError::Etcd(format!(
                    "none of {} answered within {} s",
                    endpoints.join(", "),
                    CONNECT_PATIENCE.as_secs()
                )));
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
    }

    /// The configured endpoints.
    pub fn endpoints(&self) -> &[String] {
        &self.inner.endpoints
    }

    /// The current client (for streams, which their owners re-open on error).
    pub(crate) fn client(&self) -> (u64, Client) {
        let guard = self
            .inner
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        (guard.0, guard.1.clone())
    }

    /// Runs `f` against the current client, retrying retryable failures with back-off
    /// (rebuilding the connection after two in a row) until `until` (default: one
    /// [`CALL_TIMEOUT`] from now, i.e. one attempt plus quick retries). Only for calls
    /// that are safe to repeat.
    pub(crate) async fn call<T, F, Fut>(
        &self,
        what: &str,
        until: Option<Instant>,
        mut f: F,
    ) -> Result<T, CallError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let until = until.unwrap_or_else(|| Instant::now() + CALL_TIMEOUT);
        let mut failures = 0u32;
        loop {
            let (generation, client) = self.client();
            let left = until.saturating_duration_since(Instant::now());
            let budget = CALL_TIMEOUT.min(left.max(Duration::from_millis(200)));
            let error = match tokio::time::timeout(budget, f(client)).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) if !retryable(&e) => return Err(CallError::Refused(e)),
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {} ms", budget.as_millis()),
            };
            failures += 1;
            tracing::debug!(call = what, failures, error, "etcd call failed");
            if failures >= 2 {
                self.rebuild(generation).await;
            }
            let pause = backoff(failures);
            if Instant::now() + pause >= until {
                return Err(CallError::Unavailable(format!("{what}: {error}")));
            }
            tokio::time::sleep(pause).await;
        }
    }

    /// [`Etcd::call`] for one transaction (all of ours are guarded, so safe to repeat).
    pub(crate) async fn txn(
        &self,
        what: &str,
        until: Option<Instant>,
        txn: etcd_client::Txn,
    ) -> Result<etcd_client::TxnResponse, CallError> {
        self.call(what, until, |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await
    }

    /// Rebuilds the connection from the endpoints that answer now (unless someone
    /// already rebuilt it since `seen`).
    pub(crate) async fn rebuild(&self, seen: u64) {
        let _guard = self.inner.rebuilding.lock().await;
        if self.client().0 != seen {
            return;
        }
        let healthy = probe(&self.inner.endpoints).await;
        if healthy.is_empty() {
            return;
        }
        match Client::connect(&healthy, Some(options())).await {
            Ok(client) => {
                tracing::info!(endpoints = healthy.join(","), "etcd connection rebuilt");
                let mut current = self
                    .inner
                    .current
                    .write()
                    .unwrap_or_else(PoisonError::into_inner);
                *current = (seen + 1, client);
            }
            Err(e) => tracing::warn!(error = %e, "cannot rebuild the etcd connection"),
        }
    }
}

/// The endpoints that answer a status request within a second, in configured order.
async fn probe(endpoints: &[String]) -> Vec<String> {
    let checks = endpoints.iter().map(|endpoint| async move {
        let answered = tokio::time::timeout(Duration::from_secs(1), async {
            let mut client = Client::connect([endpoint.as_str()], Some(options()))
                .await
                .ok()?;
            client.status().await.ok()
        })
        .await
        .ok()
        .flatten()
        .is_some();
        answered.then(|| endpoint.clone())
    });
    futures::future::join_all(checks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert!(backoff(3) > backoff(2));
        assert_eq!(backoff(30), Duration::from_secs(1));
    }
}
