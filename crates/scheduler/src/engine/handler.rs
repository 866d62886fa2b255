//! Code handlers: the async and blocking closures jobs run, registered by name.
//!
//! A job whose action is `handler` names its closure; the engine looks the name up at
//! each run, so jobs loaded from a store re-bind to code registered after a restart,
//! and a job whose handler is missing fails its runs with a clear error (and is listed
//! as such) instead of disappearing.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::job::RunContext;

/// What a handler returns.
pub type HandlerResult = Result<(), HandlerError>;

/// A handler's failure: a message kept in the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError(String);

impl HandlerError {
    /// A failure with this message.
    pub fn msg(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<E: std::error::Error> From<E> for HandlerError {
    fn from(e: E) -> Self {
        Self(e.to_string())
    }
}

type AsyncHandler =
    dyn Fn(RunContext) -> Pin<Box<dyn Future<Output = HandlerResult> + Send>> + Send + Sync;
type BlockingHandler = dyn Fn(RunContext) -> HandlerResult + Send + Sync;

/// A registered handler. Cheap to clone.
#[derive(Clone)]
pub(crate) enum Handler {
    Async(Arc<AsyncHandler>),
    Blocking(Arc<BlockingHandler>),
}

impl Handler {
    pub(crate) fn from_async<F, Fut>(f: F) -> Self
    where
        F: Fn(RunContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        Self::Async(Arc::new(move |ctx| Box::pin(f(ctx))))
    }

    pub(crate) fn from_blocking<F>(f: F) -> Self
    where
        F: Fn(RunContext) -> HandlerResult + Send + Sync + 'static,
    {
        Self::Blocking(Arc::new(f))
    }
}

impl fmt::Debug for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Async(_) => "Handler::Async",
            Self::Blocking(_) => "Handler::Blocking",
        })
    }
}
