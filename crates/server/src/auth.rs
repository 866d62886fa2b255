//! Authentication and authorisation of the HTTP API: passwords, sessions, API tokens,
//! the [`Principal`] extractor, CSRF, login throttling, and the route access table.
//!
//! # Credentials
//!
//! - Passwords are hashed with Argon2id (the `argon2` crate's defaults, PHC strings).
//!   Login with an unknown username verifies the password against a dummy hash made
//!   with the same parameters, so both failures cost the same time and get the same
//!   answer (`401 {"error": "invalid username or password"}`).
//! - Session and API tokens are 32 random bytes in hex behind a prefix (`sds_` for
//!   sessions, `sdt_` for API tokens). The store keeps only their SHA-256; the token
//!   itself is shown once (login answer, `token create`).
//! - A request is authenticated by `Authorization: Bearer TOKEN` (session or API
//!   token) or by the `sundial_session` cookie. Bearer wins when both are present.
//!
//! # CSRF
//!
//! A cookie is sent by the browser whoever made the page, so a cookie-authenticated
//! request that changes something (any method but GET, HEAD, OPTIONS) must also carry
//! the header `X-Sundial-CSRF` equal to the `sundial_csrf` cookie (double submit).
//! That cookie is readable by the dashboard's script but not by other origins, and
//! the session cookie is `SameSite=Strict` besides. Bearer requests need no CSRF
//! header: a browser never adds an `Authorization` header on its own.
//!
//! # Throttling
//!
//! Failed logins are counted per username and per client address. Past a free
//! allowance, each further failure doubles a lock-out (from [`ThrottleSettings::base_delay`]
//! up to [`ThrottleSettings::max_delay`]); during it every login attempt for that
//! username or from that address answers `429` with `Retry-After`, before any password
//! is checked. A successful login clears the username's count; counts are forgotten
//! after [`ThrottleSettings::forget_after`] without failures. The table holds at most
//! [`MAX_THROTTLE_ENTRIES`] keys (the stalest are dropped first).
//!
//! # Route access
//!
//! [`ROUTES`](crate::ROUTES) lists every route with its [`Access`]; the router is built
//! from that table and wraps each route in the check its access names, so a route
//! cannot be served without being in the table, nor be in it without its check.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use sundial_analytics::account::{Account, AccountStore, Role, TokenInfo, TokenKind};

use crate::error::ApiError;
use crate::state::ServerState;

/// The session cookie (HttpOnly).
pub const SESSION_COOKIE: &str = "sundial_session";
/// The CSRF cookie (readable by the dashboard's script).
pub const CSRF_COOKIE: &str = "sundial_csrf";
/// The header that must repeat the CSRF cookie on cookie-authenticated mutations.
pub const CSRF_HEADER: &str = "x-sundial-csrf";
/// Prefix of session tokens.
pub const SESSION_PREFIX: &str = "sds_";
/// Prefix of API tokens.
pub const API_TOKEN_PREFIX: &str = "sdt_";
/// Longest credential accepted in a header or cookie; longer ones are rejected unread.
pub const MAX_TOKEN_LEN: usize = 128;
/// Most keys (usernames + addresses) the login throttle remembers.
pub const MAX_THROTTLE_ENTRIES: usize = 100_000;
/// Longest password accepted (Argon2 would take any length; this bounds the work).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Shortest password accepted for new passwords.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// Who may use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// SDK ingest: authenticated by app key (and signature), not by an account; no
    /// security headers (SDK clients are not browsers).
    Ingest,
    /// Anyone: health, readiness, metrics, login.
    Public,
    /// Any signed-in account (a viewer or an admin).
    Account,
    /// Admins only.
    Admin,
}

/// Login throttling (the `[auth]` section's `login_*` keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleSettings {
    /// Failures per username allowed before lock-outs start.
    pub free_failures_per_user: u32,
    /// Failures per client address allowed before lock-outs start.
    pub free_failures_per_ip: u32,
    /// The first lock-out; each further failure doubles it.
    pub base_delay: Duration,
    /// The longest lock-out.
    pub max_delay: Duration,
    /// A key's failures are forgotten this long after its last failure.
    pub forget_after: Duration,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        ThrottleSettings {
            free_failures_per_user: 5,
            free_failures_per_ip: 20,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15 * 60),
            forget_after: Duration::from_secs(60 * 60),
        }
    }
}

/// Authentication settings (the `[auth]` configuration section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    /// How long a login session lives. Default 12 hours.
    pub session_ttl: Duration,
    /// Whether cookies carry `Secure` (set it when clients reach Sundial over HTTPS).
    pub cookie_secure: bool,
    /// Login throttling.
    pub throttle: ThrottleSettings,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            session_ttl: Duration::from_secs(12 * 60 * 60),
            cookie_secure: false,
            throttle: ThrottleSettings::default(),
        }
    }
}

/// What authentication needs at run time; part of [`ServerState`].
pub(crate) struct AuthState {
    pub(crate) settings: AuthSettings,
    /// `None` until [`ServerState::with_auth`]: every protected route then answers 401.
    pub(crate) accounts: Option<Arc<dyn AccountStore>>,
    throttle: Mutex<HashMap<String, Failures>>,
}

impl std::fmt::Debug for AuthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthState")
            .field("settings", &self.settings)
            .field("accounts", &self.accounts)
            .finish_non_exhaustive()
    }
}

impl AuthState {
    pub(crate) fn new(settings: AuthSettings, accounts: Option<Arc<dyn AccountStore>>) -> Self {
        AuthState {
            settings,
            accounts,
            throttle: Mutex::new(HashMap::new()),
        }
    }
}

impl ServerState {
    /// Turns on accounts: logins, sessions and tokens are checked against `accounts`.
    /// Without it every route that needs an account answers 401.
    pub fn with_auth(mut self, settings: AuthSettings, accounts: Arc<dyn AccountStore>) -> Self {
        self.auth = Arc::new(AuthState::new(settings, Some(accounts)));
        self
    }
}

/// Failed logins of one key.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

/// A login that must wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Throttled {
    pub(crate) retry_after: Duration,
}

impl AuthState {
    /// Whether `keys` may try a login at `now`; the longest wait if not.
    pub(crate) fn check_throttle(&self, keys: &[String], now: Instant) -> Result<(), Throttled> {
        let Ok(table) = self.throttle.lock() else {
            return Ok(());
        };
        let wait = keys
            .iter()
            .filter_map(|k| table.get(k))
            .filter_map(|f| f.locked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max();
        match wait {
            Some(retry_after) => Err(Throttled { retry_after }),
            None => Ok(()),
        }
    }

    /// Records a failure of each `(key, free allowance)`.
    pub(crate) fn record_failure(&self, keys: &[(String, u32)], now: Instant) {
        let t = &self.settings.throttle;
        let Ok(mut table) = self.throttle.lock() else {
            return;
        };
        if table.len() + keys.len() > MAX_THROTTLE_ENTRIES {
            table.retain(|_, f| now.duration_since(f.last) < t.forget_after);
            if table.len() + keys.len() > MAX_THROTTLE_ENTRIES {
                // Still full: drop the stalest half.
                let mut ages: Vec<Instant> = table.values().map(|f| f.last).collect();
                ages.sort_unstable();
                let cut = ages[ages.len() / 2];
                table.retain(|_, f| f.last > cut);
            }
        }
        for (key, free) in keys {
            let entry = table.entry(key.clone()).or_insert(Failures {
                count: 0,
                last: now,
                locked_until: None,
            });
            if now.duration_since(entry.last) >= t.forget_after {
                entry.count = 0;
                entry.locked_until = None;
            }
            entry.count = entry.count.saturating_add(1);
            entry.last = now;
            if entry.count > *free {
                entry.locked_until = Some(now + lockout(t, entry.count - free));
            }
        }
    }

    /// Forgets a key's failures (after a successful login).
    pub(crate) fn clear_failures(&self, key: &str) {
        if let Ok(mut table) = self.throttle.lock() {
            table.remove(key);
        }
    }
}

/// The lock-out after the `n`-th failure past the allowance: `base · 2^(n-1)`, capped.
pub(crate) fn lockout(t: &ThrottleSettings, n: u32) -> Duration {
    let factor = 1_u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
    t.base_delay
        .checked_mul(factor)
        .unwrap_or(t.max_delay)
        .min(t.max_delay)
}

/// An authentication or authorisation failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credentials, or credentials that are not (or no longer) valid.
    #[error("authentication required: log in or send a valid bearer token")]
    Unauthenticated,
    /// A cookie-authenticated mutation without a matching CSRF header.
    #[error("missing or wrong X-Sundial-CSRF header (it must equal the sundial_csrf cookie)")]
    Csrf,
    /// The account may not do this.
    #[error("forbidden: this needs an admin account")]
    NotAdmin,
    /// The account may not read this app.
    #[error("forbidden: this account has no access to app {0}")]
    NoAppAccess(i64),
    /// The account store failed.
    #[error("the account store is unavailable")]
    Unavailable,
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let status = match e {
            AuthError::Unauthenticated => StatusCode::UNAUTHORIZED,
            AuthError::Csrf | AuthError::NotAdmin | AuthError::NoAppAccess(_) => {
                StatusCode::FORBIDDEN
            }
            AuthError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, e.to_string())
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let unauthenticated = self == AuthError::Unauthenticated;
        let mut response = ApiError::from(self).into_response();
        if unauthenticated {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sundial\""),
            );
        }
        response
    }
}

/// The signed-in account behind a request. Extract it in a handler to require an
/// account (401 without one); then check what the handler needs with
/// [`Principal::require_admin`] or [`Principal::require_app_read`].
#[derive(Debug, Clone)]
pub struct Principal {
    /// The account.
    pub account: Account,
    /// The session or API token used.
    pub token: TokenInfo,
    /// Whether it came from the session cookie (rather than a bearer header).
    pub via_cookie: bool,
}

impl Principal {
    /// `Ok` for admins, 403 otherwise.
    pub fn require_admin(&self) -> Result<(), AuthError> {
        if self.account.role == Role::Admin {
            Ok(())
        } else {
            Err(AuthError::NotAdmin)
        }
    }

    /// `Ok` when the account may read `app_id`'s metrics: admins every app; viewers
    /// every app, or only their granted apps when they have a grant list. 403 otherwise.
    pub fn require_app_read(&self, app_id: i64) -> Result<(), AuthError> {
        if self.account.can_read_app(app_id) {
            Ok(())
        } else {
            Err(AuthError::NoAppAccess(app_id))
        }
    }

    /// Whether the account is an admin.
    pub fn is_admin(&self) -> bool {
        self.account.role == Role::Admin
    }
}

impl FromRequestParts<ServerState> for Principal {
    type Rejection = AuthError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ServerState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(p) = parts.extensions.get::<Principal>() {
            return Ok(p.clone());
        }
        let principal = authenticate(&parts.method, &parts.headers, state).await?;
        parts.extensions.insert(principal.clone());
        Ok(principal)
    }
}

/// Authenticates a request from its method and headers.
pub(crate) async fn authenticate(
    method: &Method,
    headers: &HeaderMap,
    state: &ServerState,
) -> Result<Principal, AuthError> {
    let Some(accounts) = &state.auth.accounts else {
        return Err(AuthError::Unauthenticated);
    };
    let (token, via_cookie) = if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| AuthError::Unauthenticated)?;
        (
            parse_bearer(value).ok_or(AuthError::Unauthenticated)?,
            false,
        )
    } else {
        let token = cookies(headers)
            .find_map(|c| cookie_value(c, SESSION_COOKIE))
            .ok_or(AuthError::Unauthenticated)?;
        (token, true)
    };
    if !is_token_shaped(token) {
        return Err(AuthError::Unauthenticated);
    }
    if via_cookie && !is_safe_method(method) {
        check_csrf(headers)?;
    }
    let now = jiff::Timestamp::now().as_millisecond();
    let found = accounts
        .token_by_hash(&hash_token(token), now)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "token look-up failed");
            AuthError::Unavailable
        })?;
    let Some((info, account)) = found else {
        return Err(AuthError::Unauthenticated);
    };
    // A session cookie carries session tokens only; an API token in a cookie is refused.
    if via_cookie && info.kind != TokenKind::Session {
        return Err(AuthError::Unauthenticated);
    }
    Ok(Principal {
        account,
        token: info,
        via_cookie,
    })
}

/// GET, HEAD and OPTIONS change nothing and need no CSRF header.
fn is_safe_method(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn check_csrf(headers: &HeaderMap) -> Result<(), AuthError> {
    let cookie = cookies(headers)
        .find_map(|c| cookie_value(c, CSRF_COOKIE))
        .ok_or(AuthError::Csrf)?;
    let sent = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or(AuthError::Csrf)?;
    if cookie.len() >= 32 && bool::from(cookie.as_bytes().ct_eq(sent.as_bytes())) {
        Ok(())
    } else {
        Err(AuthError::Csrf)
    }
}

/// Every `Cookie` header's text (browsers send one; HTTP/2 may split it).
fn cookies(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
}

/// The token of an `Authorization: Bearer TOKEN` value (scheme case-insensitive).
pub fn parse_bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    is_token_shaped(token).then_some(token)
}

/// The value of cookie `name` in a `Cookie` header (`a=1; b=2`), if present once or
/// more (the first wins).
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"'))
    })
}

/// Whether `token` looks like one of ours: a known prefix and lowercase hex, bounded.
pub fn is_token_shaped(token: &str) -> bool {
    token.len() <= MAX_TOKEN_LEN
        && (token.starts_with(SESSION_PREFIX) || token.starts_with(API_TOKEN_PREFIX))
        && token[4..].len() == 64
        && token[4..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Lowercase hex SHA-256 of a token: what the store keeps.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh token of `kind` and its hash.
pub fn new_token(kind: TokenKind) -> Result<(String, String), AuthError> {
    let mut bytes = [0_u8; 32];
    getrandom::fill(&mut bytes).map_err(|_| AuthError::Unavailable)?;
    let prefix = match kind {
        TokenKind::Session => SESSION_PREFIX,
        TokenKind::Api => API_TOKEN_PREFIX,
    };
    let token = format!("{prefix}{}", hex::encode(bytes));
    let hash = hash_token(&token);
    Ok((token, hash))
}

/// A random value for the CSRF cookie.
pub(crate) fn new_csrf() -> Result<String, AuthError> {
    let mut bytes = [0_u8; 32];
    getrandom::fill(&mut bytes).map_err(|_| AuthError::Unavailable)?;
    Ok(hex::encode(bytes))
}

/// A password that is not acceptable for a new password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// Too short or too long.
    #[error("password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_BYTES} bytes long")]
    Length,
    /// Hashing failed (no entropy for the salt).
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// Hashes a new password with Argon2id (PHC string), after checking its length.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    if password.chars().count() < MIN_PASSWORD_CHARS || password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordError::Length);
    }
    hash_any(password)
}

fn hash_any(password: &str) -> Result<String, PasswordError> {
    let mut salt = [0_u8; 16];
    getrandom::fill(&mut salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string `hash` (false for a malformed hash).
pub fn verify_password(password: &str, hash: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash to verify against when the username is unknown, so that the answer takes
/// as long as for a known user with a wrong password.
pub(crate) fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        hash_any("sundial-dummy-password-for-timing").unwrap_or_else(|_| {
            // Fixed fallback with the same parameters (only used if the OS has no
            // entropy, when logins fail anyway).
            "$argon2id$v=19$m=19456,t=2,p=1$c3VuZGlhbGR1bW15c2FsdA$\
             2N3wy3sJwhYi/y1ZmmBkgbgAJjG2QmVX/1CIMVmrQWU"
                .to_owned()
        })
    })
}

/// The client's address (from the connection), or `unknown` in tests without one.
/// `X-Forwarded-For` is not trusted: behind a proxy every client has the proxy's
/// address, which throttles per proxy (documented in docs/security.md).
pub(crate) fn client_ip(extensions: &axum::http::Extensions) -> String {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string())
}

/// Middleware of [`Access::Account`] routes: a signed-in account.
pub(crate) async fn require_account(
    state: State<ServerState>,
    request: Request,
    next: Next,
) -> Response {
    require(Access::Account, state, request, next).await
}

/// Middleware of [`Access::Admin`] routes: an admin account.
pub(crate) async fn require_admin(
    state: State<ServerState>,
    request: Request,
    next: Next,
) -> Response {
    require(Access::Admin, state, request, next).await
}

/// Requires what `access` names before the handler runs, and puts the [`Principal`]
/// in the request's extensions for the handler's extractor.
async fn require(
    access: Access,
    State(state): State<ServerState>,
    mut request: Request,
    next: Next,
) -> Response {
    if matches!(access, Access::Account | Access::Admin) {
        let principal = match authenticate(request.method(), request.headers(), &state).await {
            Ok(p) => p,
            Err(e) => return e.into_response(),
        };
        if access == Access::Admin
            && let Err(e) = principal.require_admin()
        {
            return e.into_response();
        }
        request.extensions_mut().insert(principal);
    }
    next.run(request).await
}

/// Middleware: security headers on every response of a non-ingest route.
pub(crate) async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    add_security_headers(response.headers_mut());
    response
}

/// Adds the security headers: no MIME sniffing, no framing, no referrer.
pub(crate) fn add_security_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("frame-ancestors 'none'"),
        );
    }
}

/// Middleware: `Cache-Control: no-store` (answers with accounts, tokens, secrets).
pub(crate) async fn no_store(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_cookies() {
        let t = format!("sdt_{}", "a".repeat(64));
        assert_eq!(parse_bearer(&format!("Bearer {t}")), Some(t.as_str()));
        assert_eq!(parse_bearer(&format!("bearer   {t} ")), Some(t.as_str()));
        assert_eq!(parse_bearer(&format!("Basic {t}")), None);
        assert_eq!(parse_bearer("Bearer sdt_short"), None);
        assert_eq!(parse_bearer(&format!("Bearer {}", t.to_uppercase())), None);
        assert_eq!(
            cookie_value("a=1; sundial_session=x; b=2", SESSION_COOKIE),
            Some("x")
        );
        assert_eq!(cookie_value("a=1", SESSION_COOKIE), None);
        assert_eq!(cookie_value("xsundial_session=1", SESSION_COOKIE), None);
    }

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("correct horse").expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse!", &h));
        assert!(!verify_password("correct horse", "not a hash"));
        assert_eq!(hash_password("short"), Err(PasswordError::Length));
        assert!(!verify_password("x", dummy_hash()));
    }

    #[test]
    fn tokens_are_prefixed_hex_and_hashed() {
        let (t, h) = new_token(TokenKind::Session).expect("token");
        assert!(t.starts_with(SESSION_PREFIX) && is_token_shaped(&t));
        assert_eq!(h, hash_token(&t));
        assert_eq!(h.len(), 64);
        let (a, _) = new_token(TokenKind::Api).expect("token");
        assert!(a.starts_with(API_TOKEN_PREFIX));
        assert_ne!(a[4..], t[4..]);
    }

    #[test]
    fn lockouts_double_and_cap() {
        let t = ThrottleSettings::default();
        assert_eq!(lockout(&t, 1), Duration::from_secs(1));
        assert_eq!(lockout(&t, 2), Duration::from_secs(2));
        assert_eq!(lockout(&t, 5), Duration::from_secs(16));
        assert_eq!(lockout(&t, 40), t.max_delay);
        assert_eq!(lockout(&t, u32::MAX), t.max_delay);
    }

    #[test]
    fn throttle_locks_after_the_allowance() {
        let state = AuthState::new(AuthSettings::default(), None);
        let now = Instant::now();
        let keys = vec![("user:a".to_owned(), 2)];
        let names = vec!["user:a".to_owned()];
        state.record_failure(&keys, now);
        state.record_failure(&keys, now);
        assert_eq!(state.check_throttle(&names, now), Ok(()));
        state.record_failure(&keys, now);
        let wait = state.check_throttle(&names, now).expect_err("locked");
        assert_eq!(wait.retry_after, Duration::from_secs(1));
        state.record_failure(&keys, now);
        let wait = state.check_throttle(&names, now).expect_err("locked");
        assert_eq!(wait.retry_after, Duration::from_secs(2));
        assert_eq!(
            state.check_throttle(&names, now + Duration::from_secs(3)),
            Ok(())
        );
        state.clear_failures("user:a");
        state.record_failure(&keys, now);
        assert_eq!(state.check_throttle(&names, now), Ok(()));
    }
}
