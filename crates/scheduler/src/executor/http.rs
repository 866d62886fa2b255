//! The `http` executor: a fire makes one HTTP request and checks its status.
//!
//! The request is built from an [`HttpSpec`] (method, URL, headers, body, expected
//! statuses; no expected status means any 2xx). A timeout or a cancellation drops
//! the request (the connection is closed). The response body is read up to
//! [`BODY_CAP`] bytes — the rest is counted, not kept — so a run's output tail stays
//! bounded whatever the server sends.
//!
//! One client (connection pool, rustls with the bundled web PKI roots) is shared by
//! every run of the process.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::jobs_file::HttpSpec;

/// Bytes of response body kept for the ledger.
pub const BODY_CAP: usize = 64 * 1024;

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpEnd {
    /// A response with this status arrived.
    Status(u16),
    /// The attempt's timeout passed first.
    TimedOut,
    /// The run was cancelled first.
    Cancelled,
}

/// The result of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOutcome {
    /// How it ended.
    pub end: HttpEnd,
    /// True when the status is an expected one.
    pub success: bool,
    /// The first [`BODY_CAP`] bytes of the body (lossy UTF-8).
    pub body: String,
    /// Body bytes received in all.
    pub body_total: u64,
    /// How long it took.
    pub duration: Duration,
}

/// A request that could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The method is not a valid HTTP method.
    #[error("invalid HTTP method `{0}`")]
    Method(String),
    /// A header name or value is invalid.
    #[error("invalid header `{0}`")]
    Header(String),
    /// The URL is not an absolute `http`/`https` URL.
    #[error("invalid URL `{0}`")]
    Url(String),
    /// Connecting, sending or reading failed.
    #[error("request to {url} failed: {source}")]
    Request {
        /// The URL.
        url: String,
        /// The client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The HTTP client could not be built (TLS setup).
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

fn client() -> Result<&'static reqwest::Client, HttpError> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .user_agent(concat!("sundial/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| HttpError::Client(e.clone()))
}

/// True when `status` counts as success for `spec`.
pub fn expected(spec: &HttpSpec, status: u16) -> bool {
    if spec.expect_status.is_empty() {
        (200..300).contains(&status)
    } else {
        spec.expect_status.contains(&status)
    }
}

/// Makes the request of `spec` with `extra` headers added (the scheduler's
/// `x-sundial-*` run headers), stopping after `timeout` or when `cancel` fires.
pub async fn run(
    spec: &HttpSpec,
    extra: &[(&str, String)],
    timeout: Option<Duration>,
    cancel: &CancellationToken,
) -> Result<HttpOutcome, HttpError> {
    let method = reqwest::Method::from_bytes(spec.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| HttpError::Method(spec.method.clone()))?;
    let url = reqwest::Url::parse(&spec.url).map_err(|_| HttpError::Url(spec.url.clone()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(HttpError::Url(spec.url.clone()));
    }
    let mut headers = reqwest::header::HeaderMap::new();
    let pairs = spec
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(extra.iter().map(|(k, v)| (*k, v.as_str())));
    for (k, v) in pairs {
        let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| HttpError::Header(k.to_owned()))?;
        let value = reqwest::header::HeaderValue::from_str(v)
            .map_err(|_| HttpError::Header(k.to_owned()))?;
        headers.insert(name, value);
    }
    let mut request = client()?.request(method, url).headers(headers);
    if let Some(body) = &spec.body {
        request = request.body(body.clone());
    }
    let started = Instant::now();
    let url = spec.url.clone();
    let exchange = async {
        let mut response = request.send().await.map_err(|source| HttpError::Request {
            url: url.clone(),
            source,
        })?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        let mut total = 0u64;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|source| HttpError::Request {
                url: url.clone(),
                source,
            })?
        {
            total += chunk.len() as u64;
            let room = BODY_CAP.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        Ok::<_, HttpError>((status, body, total))
    };
    let deadline = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let (end, body, body_total) = tokio::select! {
        r = exchange => {
            let (status, body, total) = r?;
            (HttpEnd::Status(status), body, total)
        }
        () = deadline => (HttpEnd::TimedOut, Vec::new(), 0),
        () = cancel.cancelled() => (HttpEnd::Cancelled, Vec::new(), 0),
    };
    let success = matches!(end, HttpEnd::Status(s) if expected(spec, s));
    Ok(HttpOutcome {
        end,
        success,
        body: String::from_utf8_lossy(&body).into_owned(),
        body_total,
        duration: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn spec(url: &str) -> HttpSpec {
        HttpSpec {
            method: "GET".into(),
            url: url.into(),
            headers: BTreeMap::new(),
            body: None,
            expect_status: Vec::new(),
        }
    }

    #[test]
    fn expected_statuses() {
        let mut s = spec("http://x/");
        assert!(expected(&s, 204));
        assert!(!expected(&s, 301));
        s.expect_status = vec![404];
        assert!(expected(&s, 404));
        assert!(!expected(&s, 200));
    }

    #[tokio::test]
    async fn bad_requests_are_refused_before_sending() {
        let cancel = CancellationToken::new();
        let mut s = spec("ftp://example.com/");
        assert!(matches!(
            run(&s, &[], None, &cancel).await,
            Err(HttpError::Url(_))
        ));
        s.url = "http://127.0.0.1:9/".into();
        s.method = "NOT A METHOD".into();
        assert!(matches!(
            run(&s, &[], None, &cancel).await,
            Err(HttpError::Method(_))
        ));
        s.method = "GET".into();
        s.headers.insert("bad header".into(), "v".into());
        assert!(matches!(
            run(&s, &[], None, &cancel).await,
            Err(HttpError::Header(_))
        ));
    }
}
