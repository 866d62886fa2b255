//! Apps: the tenants of the analytics platform.
//!
//! An app has a numeric id, a name, an IANA reporting time zone (its calendar days are
//! the metrics' days), a public app key that SDKs send, and a secret for optional request
//! signing. Keys and secrets are random (from the operating system's generator) and
//! unique; the key identifies the app on ingest, so it is never reused.

use serde::{Deserialize, Serialize};

/// Longest app name, in bytes.
pub const MAX_APP_NAME_BYTES: usize = 128;

/// An app as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    /// Numeric id, assigned by the store.
    pub id: i64,
    /// Display name.
    pub name: String,
    /// IANA zone whose calendar days the metrics use (e.g. `Asia/Shanghai`).
    pub timezone: String,
    /// Public key that SDKs send with every request.
    pub app_key: String,
    /// Secret for `X-Sundial-Signature` request signing.
    pub app_secret: String,
    /// Whether ingest requires a valid signature.
    pub require_signature: bool,
    /// The salt Countly SDKs sign requests with (`checksum256`); when set, Countly
    /// requests without a valid checksum are dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub countly_salt: Option<String>,
    /// Ingest requests per second allowed for this app (429 beyond); `None` falls back
    /// to the server-wide `[ingest] rate_limit_per_sec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_sec: Option<u32>,
    /// Creation instant, epoch milliseconds.
    pub created_at_ms: i64,
}

/// Longest Countly salt, in bytes.
pub const MAX_COUNTLY_SALT_BYTES: usize = 256;

/// A change to an app's settings; `None` leaves a field as it is. For the optional
/// settings, `Some(None)` clears them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppUpdate {
    /// New display name.
    pub name: Option<String>,
    /// New IANA zone.
    pub timezone: Option<String>,
    /// Whether ingest requires a signature.
    pub require_signature: Option<bool>,
    /// Per-app rate limit (`Some(None)`: use the server-wide limit).
    pub rate_limit_per_sec: Option<Option<u32>>,
    /// Countly salt (`Some(None)`: no checksum required).
    pub countly_salt: Option<Option<String>>,
}

impl AppUpdate {
    /// Checks every field that is set.
    pub fn validate(&self) -> Result<(), AppError> {
        if let Some(name) = &self.name {
            let name = name.trim();
            if name.is_empty() || name.len() > MAX_APP_NAME_BYTES {
                return Err(AppError::Name(name.len()));
            }
        }
        if let Some(zone) = &self.timezone {
            jiff::tz::TimeZone::get(zone).map_err(|_| AppError::TimeZone(zone.clone()))?;
        }
        if let Some(Some(0)) = self.rate_limit_per_sec {
            return Err(AppError::RateLimit);
        }
        if let Some(Some(salt)) = &self.countly_salt
            && (salt.is_empty() || salt.len() > MAX_COUNTLY_SALT_BYTES)
        {
            return Err(AppError::CountlySalt);
        }
        Ok(())
    }
}

/// What is needed to create an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApp {
    /// Display name, 1 to [`MAX_APP_NAME_BYTES`] bytes.
    pub name: String,
    /// IANA zone name.
    pub timezone: String,
}

/// An app definition that is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    /// The name is empty or too long.
    #[error("app name must be 1 to {MAX_APP_NAME_BYTES} bytes, got {0}")]
    Name(usize),
    /// The zone is not an IANA zone known to the bundled database.
    #[error("`{0}` is not an IANA time zone (e.g. UTC, Asia/Shanghai, America/New_York)")]
    TimeZone(String),
    /// A rate limit of zero (clear the limit instead).
    #[error("rate limit must be at least 1 request per second (null removes the limit)")]
    RateLimit,
    /// The Countly salt is empty or too long.
    #[error("countly salt must be 1 to {MAX_COUNTLY_SALT_BYTES} bytes (null removes it)")]
    CountlySalt,
}

impl NewApp {
    /// Checks the name and the zone; returns the zone's canonical name.
    pub fn validate(&self) -> Result<(), AppError> {
        let name = self.name.trim();
        if name.is_empty() || name.len() > MAX_APP_NAME_BYTES {
            return Err(AppError::Name(name.len()));
        }
        jiff::tz::TimeZone::get(&self.timezone)
            .map_err(|_| AppError::TimeZone(self.timezone.clone()))?;
        Ok(())
    }
}

/// A fresh random token of `bytes` random bytes, lowercase hex.
pub fn random_token(bytes: usize) -> Result<String, getrandom::Error> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)?;
    Ok(buf
        .iter()
        .fold(String::with_capacity(bytes * 2), |mut s, b| {
            use std::fmt::Write as _;
            let _ = write!(s, "{b:02x}");
            s
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        let ok = NewApp {
            name: "Demo".into(),
            timezone: "Asia/Shanghai".into(),
        };
        assert!(ok.validate().is_ok());
        let bad_zone = NewApp {
            timezone: "Asia/Beijing".into(),
            ..ok.clone()
        };
        assert_eq!(
            bad_zone.validate(),
            Err(AppError::TimeZone("Asia/Beijing".into()))
        );
        let empty = NewApp {
            name: "  ".into(),
            ..ok.clone()
        };
        assert_eq!(empty.validate(), Err(AppError::Name(0)));
        let long = NewApp {
            name: "x".repeat(129),
            ..ok
        };
        assert!(long.validate().is_err());
    }

    #[test]
    fn tokens_are_random_hex() {
        let a = random_token(20).expect("entropy");
        let b = random_token(20).expect("entropy");
        assert_eq!(a.len(), 40);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
    }
}
