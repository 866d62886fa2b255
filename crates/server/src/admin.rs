//! The account-facing HTTP API: login, logout and `me` (`/api/v1/auth/…`), and the
//! administration of apps, accounts, API tokens and the audit log.
//!
//! Access is checked twice: by the route table's middleware (see [`crate::ROUTES`])
//! and by each handler through its [`Principal`]. Request bodies are read with a limit
//! of [`ADMIN_BODY_LIMIT`] bytes and decoded by functions that return 400 with the
//! field at fault, never panic. Answers never contain a password hash or a token hash;
//! an app's secret and Countly salt are shown to admins only; a token is shown once,
//! when it is created. Every change is appended to the audit log (who, what, when,
//! from where) and logged without secrets.

use std::time::Instant;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use sundial_analytics::account::{
    Account, AccountStoreError, AccountUpdate, AppScope, NewAccount, NewAuditEntry, NewToken, Role,
    TokenInfo, TokenKind,
};
use sundial_analytics::{App, AppUpdate, NewApp, StoreError};

use crate::auth::{
    self, AuthError, CSRF_COOKIE, MAX_PASSWORD_BYTES, Principal, SESSION_COOKIE, client_ip,
};
use crate::body::read_limited;
use crate::error::ApiError;
use crate::state::ServerState;

/// Largest request body of these routes.
pub const ADMIN_BODY_LIMIT: usize = 64 * 1024;
/// Most audit entries per page.
const MAX_AUDIT_PAGE: u32 = 1000;

/// Parses a JSON body, reporting syntax errors with line and column.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let mut err = ApiError::new(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}"));
        if e.is_syntax() || e.is_eof() {
            err.line = Some(e.line());
            err.column = Some(e.column());
        }
        err
    })
}

/// The body of `POST /api/v1/auth/login`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    /// The username.
    pub username: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for LoginBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginBody")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Decodes a login body (400 on anything but `{"username","password"}` strings).
pub fn decode_login(body: &[u8]) -> Result<LoginBody, ApiError> {
    let login: LoginBody = parse_json(body)?;
    if login.username.is_empty() || login.username.len() > 256 {
        return Err(
            ApiError::new(StatusCode::BAD_REQUEST, "username must be 1 to 256 bytes")
                .with_field("username"),
        );
    }
    if login.password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("password must be at most {MAX_PASSWORD_BYTES} bytes"),
        )
        .with_field("password"));
    }
    Ok(login)
}

fn store_unavailable<E: std::fmt::Display>(e: E) -> ApiError {
    tracing::error!(error = %e, "store call failed");
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable")
}

fn accounts_of(
    state: &ServerState,
) -> Result<&std::sync::Arc<dyn sundial_analytics::AccountStore>, ApiError> {
    state
        .auth
        .accounts
        .as_ref()
        .ok_or_else(|| AuthError::Unauthenticated.into())
}

fn account_error(e: AccountStoreError) -> ApiError {
    match e {
        AccountStoreError::Invalid(e) => ApiError::new(StatusCode::BAD_REQUEST, e.to_string()),
        AccountStoreError::Duplicate(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
        AccountStoreError::NoSuchAccount(_) | AccountStoreError::NoSuchToken(_) => {
            ApiError::new(StatusCode::NOT_FOUND, e.to_string())
        }
        AccountStoreError::LastAdmin => ApiError::new(StatusCode::CONFLICT, e.to_string()),
        AccountStoreError::Backend(_) => store_unavailable(e),
    }
}

fn app_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Invalid(e) => ApiError::new(StatusCode::BAD_REQUEST, e.to_string()),
        StoreError::NoSuchApp(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
        StoreError::Entropy(_) | StoreError::Backend(_) => store_unavailable(e),
    }
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Appends an audit entry; a failure is logged, not returned (the action happened).
async fn audit(
    state: &ServerState,
    actor: &str,
    ip: &str,
    action: &str,
    target: String,
    detail: String,
) {
    let Some(accounts) = &state.auth.accounts else {
        return;
    };
    tracing::info!(actor, action, target = %target, ip, "audit");
    let entry = NewAuditEntry {
        at_ms: jiff::Timestamp::now().as_millisecond(),
        actor: actor.to_owned(),
        action: action.to_owned(),
        target,
        detail,
        ip: Some(ip.to_owned()),
    };
    if let Err(e) = accounts.append_audit(entry).await {
        tracing::error!(error = %e, action, "cannot append to the audit log");
    }
}

fn cookie(name: &str, value: &str, max_age_secs: u64, http_only: bool, secure: bool) -> String {
    let mut c = format!("{name}={value}; Path=/; Max-Age={max_age_secs}; SameSite=Strict");
    if http_only {
        c.push_str("; HttpOnly");
    }
    if secure {
        c.push_str("; Secure");
    }
    c
}

fn with_cookies(mut response: Response, cookies: &[String]) -> Response {
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

/// `POST /api/v1/auth/login`.
#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    tag = "auth",
    summary = "Log in: a session token (also set as an HttpOnly cookie)",
    request_body = LoginBody,
    responses(
        (status = 200, description = "Done", body = Object),
        (status = 400, description = "Bad input, named in `field`", body = ApiError),
        (status = 401, description = "Wrong username or password (the same answer for both)", body = ApiError),
        (status = 429, description = "Throttled: see Retry-After", body = ApiError),
    ),
)]
pub(crate) async fn login(
    State(state): State<ServerState>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let ip = client_ip(request.extensions());
    let bytes = read_limited(request.into_body(), ADMIN_BODY_LIMIT).await?;
    let login = decode_login(&bytes)?;
    let accounts = accounts_of(&state)?.clone();
    let auth = &state.auth;
    let user_key = format!("user:{}", login.username.to_lowercase());
    let ip_key = format!("ip:{ip}");
    if let Err(t) = auth.check_throttle(&[user_key.clone(), ip_key.clone()], Instant::now()) {
        let secs = t.retry_after.as_secs().max(1);
        let mut response = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many failed logins; retry in {secs} s"),
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return Ok(response);
    }
    let creds = accounts
        .credentials(&login.username)
        .await
        .map_err(store_unavailable)?;
    let hash = creds.as_ref().map_or_else(
        || auth::dummy_hash().to_owned(),
        |c| c.password_hash.clone(),
    );
    let password = login.password;
    let verified = tokio::task::spawn_blocking(move || auth::verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let Some(creds) = creds.filter(|_| verified) else {
        let throttle = &auth.settings.throttle;
        auth.record_failure(
            &[
                (user_key, throttle.free_failures_per_user),
                (ip_key, throttle.free_failures_per_ip),
            ],
            Instant::now(),
        );
        metrics::counter!("sundial_login_failures_total").increment(1);
        // The claimed username is the target, not the actor: nobody proved who they are.
        audit(
            &state,
            "anonymous",
            &ip,
            "login.failure",
            format!("account:{}", login.username),
            String::new(),
        )
        .await;
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid username or password",
        ));
    };
    auth.clear_failures(&user_key);
    let now = jiff::Timestamp::now().as_millisecond();
    let ttl = auth.settings.session_ttl;
    let expires_at_ms = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
    let (token, token_hash) = auth::new_token(TokenKind::Session)?;
    let csrf = auth::new_csrf()?;
    let _ = accounts.delete_expired_tokens(now).await;
    accounts
        .create_token(NewToken {
            account_id: creds.account.id,
            kind: TokenKind::Session,
            name: "login".to_owned(),
            token_hash,
            expires_at_ms: Some(expires_at_ms),
        })
        .await
        .map_err(account_error)?;
    audit(
        &state,
        &creds.account.username,
        &ip,
        "login.success",
        format!("account:{}", creds.account.username),
        String::new(),
    )
    .await;
    let secure = auth.settings.cookie_secure;
    let body = Json(json!({
        "token": token,
        "expires_at": rfc3339(expires_at_ms),
        "csrf_token": csrf,
        "account": account_json(&creds.account),
    }));
    Ok(with_cookies(
        body.into_response(),
        &[
            cookie(SESSION_COOKIE, &token, ttl.as_secs(), true, secure),
            cookie(CSRF_COOKIE, &csrf, ttl.as_secs(), false, secure),
        ],
    ))
}

/// `POST /api/v1/auth/logout`: revokes the credential used (session or API token).
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    tag = "auth",
    summary = "Log out: revoke this session",
    responses(
        (status = 204, description = "Done"),
        (status = 400, description = "Bad input, named in `field`", body = ApiError),
        (status = 401, description = "No valid session or API token", body = ApiError),
        (status = 403, description = "Not allowed for this account (or CSRF header missing)", body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn logout(
    State(state): State<ServerState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    let accounts = accounts_of(&state)?;
    match accounts.revoke_token(principal.token.id).await {
        Ok(()) | Err(AccountStoreError::NoSuchToken(_)) => {}
        Err(e) => return Err(account_error(e)),
    }
    let secure = state.auth.settings.cookie_secure;
    Ok(with_cookies(
        StatusCode::NO_CONTENT.into_response(),
        &[
            cookie(SESSION_COOKIE, "", 0, true, secure),
            cookie(CSRF_COOKIE, "", 0, false, secure),
        ],
    ))
}

fn account_json(a: &Account) -> Value {
    json!({
        "id": a.id,
        "username": a.username,
        "role": a.role,
        "grants": a.scope.grants(),
        "created_at": rfc3339(a.created_at_ms),
    })
}

fn token_json(t: &TokenInfo, username: Option<&str>) -> Value {
    json!({
        "id": t.id,
        "account_id": t.account_id,
        "username": username,
        "kind": t.kind,
        "name": t.name,
        "created_at": rfc3339(t.created_at_ms),
        "expires_at": t.expires_at_ms.map(rfc3339),
    })
}

/// `GET /api/v1/auth/me`.
#[utoipa::path(
    get,
    path = "/api/v1/auth/me",
    tag = "auth",
    summary = "Who the caller is",
    responses(
        (status = 200, description = "Done", body = Object),
        (status = 400, description = "Bad input, named in `field`", body = ApiError),
        (status = 401, description = "No valid session or API token", body = ApiError),
        (status = 403, description = "Not allowed for this account (or CSRF header missing)", body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn me(principal: Principal) -> Response {
    let mut v = account_json(&principal.account);
    v["token"] = token_json(&principal.token, None);
    Json(v).into_response()
}

/// An app as JSON; the secret and the Countly salt only for admins.
fn app_json(app: &App, admin: bool) -> Value {
    let mut v = json!({
        "id": app.id,
        "name": app.name,
        "timezone": app.timezone,
        "app_key": app.app_key,
        "require_signature": app.require_signature,
        "rate_limit_per_sec": app.rate_limit_per_sec,
        "created_at": rfc3339(app.created_at_ms),
    });
    if admin {
        v["app_secret"] = json!(app.app_secret);
        v["countly_salt"] = json!(app.countly_salt);
    }
    v
}

fn app_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, format!("no app with id {raw:?}")).with_field("app")
    })
}

/// `GET /api/v1/apps`: admins see every app; viewers the apps in their scope, without
/// secrets.
#[utoipa::path(
    get,
    path = "/api/v1/apps",
    tag = "admin",
    summary = "Apps the caller may read (secrets for admins only)",
    responses(
        (status = 200, description = "Done", body = Object),
        (status = 400, description = "Bad input, named in `field`", body = ApiError),
        (status = 401, description = "No valid session or API token", body = ApiError),
        (status = 403, description = "Not allowed for this account (or CSRF header missing)", body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn list_apps(
    State(state): State<ServerState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    let apps = state.inner.store.list_apps().await.map_err(app_error)?;
    let admin = principal.is_admin();
    let rows: Vec<Value> = apps
        .iter()
        .filter(|a| principal.account.can_read_app(a.id))
        .map(|a| app_json(a, admin))
        .collect();
    Ok(Json(rows).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateAppBody {
    name: String,
    #[serde(default = "utc")]
    timezone: String,
}

fn utc() -> String {
    "UTC".to_owned()
}

/// `POST /api/v1/apps` (admin): answers 201 with the key and the secret.
#[utoipa::path(
    post,
    path = "/api/v1/apps",
    tag = "admin",
    summary = "Create an app (admin): answers its key and secret",
    request_body = CreateAppBody,
    responses(
        (status = 201, description = "Done", body = Object),
        (status = 400, description = "Bad input, named in `field`", body = ApiError),
        (status = 401, description = "No valid session or API token", body = ApiError),
        (status = 403, description = "Not allowed for this account (or CSRF header missing)", body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn create_app(
    State(state): State<ServerState>,
    principal: Principal,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let ip = client_ip(request.extensions());
    let bytes = read_limited(request.into_body(), ADMIN_BODY_LIMIT).await?;
    let body: CreateAppBody = parse_json(&bytes)?;
    let app = state
        .inner
        .store
        .create_app(NewApp {
            name: body.name,
            timezone: body.timezone,
        })
        .await
        .map_err(app_error)?;
    audit(
        &state,
        &principal.account.username,
        &ip,
        "app.create",
        format!("app:{}", app.id),
        format!("name={:?} timezone={}", app.name, app.timezone),
    )
    .await;
    Ok((StatusCode::CREATED, Json(app_json(&app, true))).into_response())
}

/// `GET /api/v1/apps/{app}`.
#[utoipa::path(
    get,
    path = "/api/v1/apps/{app}",
    tag = "admin",
    summary = "One app",
    params(("app" = i64, Path, description = "The app id")),
    responses(
        (status = 200, description = "Done", body = Object),
        (status = 400, description = "Bad input, named in `field`", body = ApiError),
        (status = 401, description = "No valid session or API token", body = ApiError),
        (status = 403, description = "Not allowed for this account (or CSRF header missing)", body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn get_app(
    State(state): State<ServerState>,
    principal: Principal,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let id = app_id(&raw)?;
    principal.require_app_read(id)?;
    let app = state
        .inner
        .store
        .app_by_id(id)
        .await
        .map_err(app_error)?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no app with id {id}")))?;
    Ok(Json(app_json(&app, principal.is_admin())).into_response())
}

/// Deserializes a field that may be absent (`None`), `null` (`Some(None)`) or a value.
fn double_option<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchAppBody {
    name: Option<String>,
    timezone: Option<String>,
    require_signature: Option<bool>,
    /// Requests per second for this app's ingest; `null` removes the app's own limit.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>)]
    rate_limit_per_sec: Option<Option<u32>>,
    /// Countly `checksum256` salt; `null` removes it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    countly_salt: Option<Option<String>>,
}

/// `PATCH /api/v1/apps/{app}` (admin).
#[utoipa::path(
    patch,
    path = "/api/v1/apps/{app}",
    tag = "admin",
    summary = "Update an app (admin): name, time zone, signing, rate limit, Countly salt",
    request_body = PatchAppBody,
    params(("app" = i64, Path, description = "The app id")),
    responses(
        (status = 200, description = "Done", body = Object),
        (status = 400, description = "Bad input, named in `field`", body = ApiError),
        (status = 401, description = "No valid session or API token", body = ApiError),
        (status = 403, description = "Not allowed for this account (or CSRF header missing)", body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn patch_app(
    State(state): State<ServerState>,
    principal: Principal,
    Path(raw): Path<String>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let id = app_id(&raw)?;
    let ip = client_ip(request.extensions());
    let bytes = read_limited(request.into_body(), ADMIN_BODY_LIMIT).await?;
    let body: PatchAppBody = parse_json(&bytes)?;
    let mut changed = Vec::new();
    for (name, set) in [
        ("name", body.name.is_some()),
        ("timezone", body.timezone.is_some()),
        ("require_signature", body.require_signature.is_some()),
        ("rate_limit_per_sec", body.rate_limit_per_sec.is_some()),
        ("countly_salt", body.countly_salt.is_some()),
    ] {
        if set {
            changed.push(name);
        }
    }
    let before = state.inner.store.app_by_id(id).await.map_err(app_error)?;
    let mut changes = state.inner.readiness.lock_app_changes().await;
    let zone_changed = body.timezone.is_some();
    let app = state
        .inner
        .store
        .update_app(
            id,
            AppUpdate {
                name: body.name,
                timezone: body.timezone,
                require_signature: body.require_signature,
                rate_limit_per_sec: body.rate_limit_per_sec,
                countly_salt: body.countly_salt,
            },
        )
        .await
        .map_err(app_error)?;
    if zone_changed {
        *changes += 1;
    }
    drop(changes);
    if let Some(before) = before {
        state.forget_app_key(&before.app_key);
    }
    audit(
        &state,
        &principal.account.username,
        &ip,
        "app.update",
        format!("app:{id}"),
        format!("changed={}", changed.join(",")),
    )
    .await;
    Ok(Json(app_json(&app, true)).into_response())
}

/// `POST /api/v1/apps/{app}/rotate` (admin): a new key and secret.
#[utoipa::path(
    post,
    path = "/api/v1/apps/{app}/rotate",
    tag = "admin",
    summary = "Rotate an app's key and secret (admin)",
    params(("app" = i64, Path, description = "The app id")),
    responses(
        (status = 200, description = "Done", body = Object),
        (status = 400, description = "Bad input, named in `field`", body = ApiError),
        (status = 401, description = "No valid session or API token", body = ApiError),
        (status = 403, description = "Not allowed for this account (or CSRF header missing)", body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn rotate_app(
    State(state): State<ServerState>,
    principal: Principal,
    Path(raw): Path<String>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let id = app_id(&raw)?;
    let ip = client_ip(request.extensions());
    let before = state.inner.store.app_by_id(id).await.map_err(app_error)?;
    let app = state
        .inner
        .store
        .rotate_app_credentials(id)
        .await
        .map_err(app_error)?;
    if let Some(before) = before {
        state.forget_app_key(&before.app_key);
    }
    audit(
        &state,
        &principal.account.username,
        &ip,
        "app.rotate",
        format!("app:{id}"),
        String::new(),
    )
    .await;
    Ok(Json(app_json(&app, true)).into_response())
}

/// `DELETE /api/v1/apps/{app}/data` (admin).
#[utoipa::path(
    delete,
    path = "/api/v1/apps/{app}/data",
    tag = "admin",
    summary = "Delete an app's data, keeping the app (admin)",
    params(("app" = i64, Path, description = "The app id")),
    responses(
        (status = 204, description = "Done"),
        (status = 400, description = "Bad input, named in `field`", body = ApiError),
        (status = 401, description = "No valid session or API token", body = ApiError),
        (status = 403, description = "Not allowed for this account (or CSRF header missing)", body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn delete_app_data(
    State(state): State<ServerState>,
    principal: Principal,
    Path(raw): Path<String>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let id = app_id(&raw)?;
    let ip = client_ip(request.extensions());
    {
        let mut changes = state.inner.readiness.lock_app_changes().await;
        state
            .inner
            .store
            .delete_app_data(id)
            .await
            .map_err(app_error)?;
        *changes += 1;
    }
    audit(
        &state,
        &principal.account.username,
        &ip,
        "app.delete_data",
        format!("app:{id}"),
        String::new(),
    )
    .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /api/v1/apps/{app}` (admin).
#[utoipa::path(
    delete,
    path = "/api/v1/apps/{app}",
    tag = "admin",
    summary = "Delete an app and its data (admin)",
    params(("app" = i64, Path, description = "The app id")),
    responses(
        (status = 204, description = "Done"),
        (status = 400, description = "Bad input, named in `field`", body = ApiError),
        (status = 401, description = "No valid session or API token", body = ApiError),
        (status = 403, description = "Not allowed for this account (or CSRF header missing)", body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn delete_app(
    State(state): State<ServerState>,
    principal: Principal,
    Path(raw): Path<String>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let id = app_id(&raw)?;
    let ip = client_ip(request.extensions());
    let before = state.inner.store.app_by_id(id).await.map_err(app_error)?;
    {
        let mut changes = state.inner.readiness.lock_app_changes().await;
        state.inner.store.delete_app(id).await.map_err(app_error)?;
        *changes += 1;
    }
    if let Some(before) = before {
        state.forget_app_key(&before.app_key);
    }
    audit(
        &state,
        &principal.account.username,
        &ip,
        "app.delete",
        format!("app:{id}"),
        String::new(),
    )
    .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn account_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, format!("no account with id {raw:?}")).with_field("id")
    })
}

/// `GET /api/v1/accounts` (admin).
#[utoipa::path(
    get,
    path = "/api/v1/accounts",
    tag = "admin",
    summary = "Accounts (admin)",
    responses(
        (status = 200, description = "Done", body = Object),
        (status = 400, description = "Bad input, named in `field`", body = ApiError),
        (status = 401, description = "No valid session or API token", body = ApiError),
        (status = 403, description = "Not allowed for this account (or CSRF header missing)", body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn list_accounts(
    State(state): State<ServerState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let accounts = accounts_of(&state)?
        .list_accounts()
        .await
        .map_err(account_error)?;
    Ok(Json(accounts.iter().map(account_json).collect::<Vec<_>>()).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateAccountBody {
    username: String,
    password: String,
    /// `admin` or `viewer` (default).
    #[serde(default = "viewer")]
    #[schema(value_type = String)]
    role: Role,
    #[serde(default)]
    grants: Option<Vec<i64>>,
}

fn viewer() -> Role {
    Role::Viewer
}

async fn hash_new_password(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()).with_field("password"))
}

/// `POST /api/v1/accounts` (admin).
#[utoipa::path(
    post,
    path = "/api/v1/accounts",
    tag = "admin",
    summary = "Create an account (admin)",
    request_body = CreateAccountBody,
    responses(
        (status = 201, description = "Done", body = Object),
        (status = 400, description = "Bad input, named in `field`", body = ApiError),
        (status = 401, description = "No valid session or API token", body = ApiError),
        (status = 403, description = "Not allowed for this account (or CSRF header missing)", body = ApiError),
        (status = 409, description = "The username is taken", body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn create_account(
    State(state): State<ServerState>,
    principal: Principal,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let ip = client_ip(request.extensions());
    let bytes = read_limited(request.into_body(), ADMIN_BODY_LIMIT).await?;
    let body: CreateAccountBody = parse_json(&bytes)?;
    let password_hash = hash_new_password(body.password).await?;
    let account = accounts_of(&state)?
        .create_account(NewAccount {
            username: body.username,
            role: body.role,
            scope: AppScope::from_grants(body.grants),
            password_hash,
        })
        .await
        .map_err(account_error)?;
    audit(
        &state,
        &principal.account.username,
        &ip,
        "account.create",
        format!("account:{}", account.username),
        format!("role={}", account.role),
    )
    .await;
    Ok((StatusCode::CREATED, Json(account_json(&account))).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchAccountBody {
    /// `admin` or `viewer`.
    #[schema(value_type = Option<String>)]
    role: Option<Role>,
    /// App ids a viewer may read; `null`: every app.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Vec<i64>>)]
    grants: Option<Option<Vec<i64>>>,
    password: Option<String>,
}

/// `PATCH /api/v1/accounts/{id}` (admin): role, grants (`null`: every app), password.
#[utoipa::path(
    patch,
    path = "/api/v1/accounts/{id}",
    tag = "admin",
    summary = "Change an account's role, grants or password (admin)",
    request_body = PatchAccountBody,
    params(("id" = i64, Path, description = "The account or token id")),
    responses(
        (status = 200, description = "Done", body = Object),
        (status = 400, description = "Bad input, named in `field`", body = ApiError),
        (status = 401, description = "No valid session or API token", body = ApiError),
        (status = 403, description = "Not allowed for this account (or CSRF header missing)", body = ApiError),
        (status = 409, description = "It is the last admin", body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn patch_account(
    State(state): State<ServerState>,
    principal: Principal,
    Path(raw): Path<String>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let id = account_id(&raw)?;
    let ip = client_ip(request.extensions());
    let bytes = read_limited(request.into_body(), ADMIN_BODY_LIMIT).await?;
    let body: PatchAccountBody = parse_json(&bytes)?;
    let accounts = accounts_of(&state)?;
    let password_hash = match body.password {
        Some(p) => Some(hash_new_password(p).await?),
        None => None,
    };
    let mut account = accounts
        .update_account(
            id,
            AccountUpdate {
                role: body.role,
                scope: body.grants.map(AppScope::from_grants),
            },
        )
        .await
        .map_err(account_error)?;
    if let Some(hash) = password_hash {
        accounts
            .set_password(id, &hash)
            .await
            .map_err(account_error)?;
        account = accounts
            .account_by_id(id)
            .await
            .map_err(account_error)?
            .unwrap_or(account);
    }
    audit(
        &state,
        &principal.account.username,
        &ip,
        "account.update",
        format!("account:{}", account.username),
        format!("role={} grants={:?}", account.role, account.scope.grants()),
    )
    .await;
    Ok(Json(account_json(&account)).into_response())
}

/// `DELETE /api/v1/accounts/{id}` (admin).
#[utoipa::path(
    delete,
    path = "/api/v1/accounts/{id}",
    tag = "admin",
    summary = "Delete an account (admin)",
    params(("id" = i64, Path, description = "The account or token id")),
    responses(
        (status = 204, description = "Done"),
        (status = 400, description = "Bad input, named in `field`", body = ApiError),
        (status = 401, description = "No valid session or API token", body = ApiError),
        (status = 403, description = "Not allowed for this account (or CSRF header missing)", body = ApiError),
        (status = 409, description = "It is the last admin", body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn delete_account(
    State(state): State<ServerState>,
    principal: Principal,
    Path(raw): Path<String>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let id = account_id(&raw)?;
    let ip = client_ip(request.extensions());
    let accounts = accounts_of(&state)?;
    let target = accounts
        .account_by_id(id)
        .await
        .map_err(account_error)?
        .map_or_else(
            || format!("account:{id}"),
            |a| format!("account:{}", a.username),
        );
    accounts.delete_account(id).await.map_err(account_error)?;
    audit(
        &state,
        &principal.account.username,
        &ip,
        "account.delete",
        target,
        String::new(),
    )
    .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Query of `GET /api/v1/tokens`.
#[derive(Debug, Deserialize)]
pub(crate) struct TokensQuery {
    username: Option<String>,
}

/// `GET /api/v1/tokens`: an account's own API tokens; admins may list everyone's
/// (`?username=` narrows).
#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    tag = "admin",
    summary = "API tokens: one's own; admins everyone's (`?username=`)",
    responses(
        (status = 200, description = "Done", body = Object),
        (status = 400, description = "Bad input, named in `field`", body = ApiError),
        (status = 401, description = "No valid session or API token", body = ApiError),
        (status = 403, description = "Not allowed for this account (or CSRF header missing)", body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn list_tokens(
    State(state): State<ServerState>,
    principal: Principal,
    Query(q): Query<TokensQuery>,
) -> Result<Response, ApiError> {
    let accounts = accounts_of(&state)?;
    let filter = match (&q.username, principal.is_admin()) {
        (None, true) => None,
        (None, false) => Some(principal.account.id),
        (Some(name), admin) => {
            if !admin && *name != principal.account.username {
                return Err(AuthError::NotAdmin.into());
            }
            let account = accounts
                .account_by_username(name)
                .await
                .map_err(account_error)?
                .ok_or_else(|| {
                    ApiError::new(StatusCode::NOT_FOUND, format!("no account {name:?}"))
                })?;
            Some(account.id)
        }
    };
    let tokens = accounts
        .list_api_tokens(filter)
        .await
        .map_err(account_error)?;
    let names: std::collections::HashMap<i64, String> = accounts
        .list_accounts()
        .await
        .map_err(account_error)?
        .into_iter()
        .map(|a| (a.id, a.username))
        .collect();
    let rows: Vec<Value> = tokens
        .iter()
        .map(|t| token_json(t, names.get(&t.account_id).map(String::as_str)))
        .collect();
    Ok(Json(rows).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateTokenBody {
    name: String,
    username: Option<String>,
    expires_in_days: Option<u32>,
}

/// `POST /api/v1/tokens`: an API token for oneself, or (admins) for `username`. The
/// token is in the answer, once.
#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    tag = "admin",
    summary = "Create an API token (shown once)",
    request_body = CreateTokenBody,
    responses(
        (status = 201, description = "Done", body = Object),
        (status = 400, description = "Bad input, named in `field`", body = ApiError),
        (status = 401, description = "No valid session or API token", body = ApiError),
        (status = 403, description = "Not allowed for this account (or CSRF header missing)", body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn create_token(
    State(state): State<ServerState>,
    principal: Principal,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let ip = client_ip(request.extensions());
    let bytes = read_limited(request.into_body(), ADMIN_BODY_LIMIT).await?;
    let body: CreateTokenBody = parse_json(&bytes)?;
    let accounts = accounts_of(&state)?;
    let account = match &body.username {
        Some(name) if *name != principal.account.username => {
            principal.require_admin()?;
            accounts
                .account_by_username(name)
                .await
                .map_err(account_error)?
                .ok_or_else(|| {
                    ApiError::new(StatusCode::NOT_FOUND, format!("no account {name:?}"))
                        .with_field("username")
                })?
        }
        _ => principal.account.clone(),
    };
    let expires_at_ms = match body.expires_in_days {
        Some(0) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "expires_in_days must be at least 1 (omit it for no expiry)",
            )
            .with_field("expires_in_days"));
        }
        Some(days) => Some(
            jiff::Timestamp::now()
                .as_millisecond()
                .saturating_add(i64::from(days) * 86_400_000),
        ),
        None => None,
    };
    let (token, token_hash) = auth::new_token(TokenKind::Api)?;
    let info = accounts
        .create_token(NewToken {
            account_id: account.id,
            kind: TokenKind::Api,
            name: body.name,
            token_hash,
            expires_at_ms,
        })
        .await
        .map_err(account_error)?;
    audit(
        &state,
        &principal.account.username,
        &ip,
        "token.create",
        format!("token:{}", info.id),
        format!("for={} name={:?}", account.username, info.name),
    )
    .await;
    let mut v = token_json(&info, Some(&account.username));
    v["token"] = json!(token);
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

/// `DELETE /api/v1/tokens/{id}`: one's own API tokens; admins any token.
#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{id}",
    tag = "admin",
    summary = "Revoke an API token",
    params(("id" = i64, Path, description = "The account or token id")),
    responses(
        (status = 204, description = "Done"),
        (status = 400, description = "Bad input, named in `field`", body = ApiError),
        (status = 401, description = "No valid session or API token", body = ApiError),
        (status = 403, description = "Not allowed for this account (or CSRF header missing)", body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn delete_token(
    State(state): State<ServerState>,
    principal: Principal,
    Path(raw): Path<String>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let ip = client_ip(request.extensions());
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, format!("no token {raw:?}"));
    let id: i64 = raw.parse().map_err(|_| not_found())?;
    let accounts = accounts_of(&state)?;
    let info = accounts
        .token_by_id(id)
        .await
        .map_err(account_error)?
        .ok_or_else(not_found)?;
    if info.account_id != principal.account.id && !principal.is_admin() {
        // Not one's own: as if it did not exist.
        return Err(not_found());
    }
    accounts.revoke_token(id).await.map_err(account_error)?;
    audit(
        &state,
        &principal.account.username,
        &ip,
        "token.revoke",
        format!("token:{id}"),
        String::new(),
    )
    .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Query of `GET /api/v1/audit`.
#[derive(Debug, Deserialize)]
pub(crate) struct AuditQuery {
    limit: Option<u32>,
    before: Option<i64>,
}

/// `GET /api/v1/audit` (admin): newest first; `?limit=` (default 100, at most 1000)
/// and `?before=ID` to page.
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "admin",
    summary = "The audit log of admin actions, newest first (admin; `?limit=`, `?before=`)",
    responses(
        (status = 200, description = "Done", body = Object),
        (status = 400, description = "Bad input, named in `field`", body = ApiError),
        (status = 401, description = "No valid session or API token", body = ApiError),
        (status = 403, description = "Not allowed for this account (or CSRF header missing)", body = ApiError),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn list_audit(
    State(state): State<ServerState>,
    principal: Principal,
    Query(q): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_AUDIT_PAGE);
    let entries = accounts_of(&state)?
        .list_audit(limit, q.before)
        .await
        .map_err(account_error)?;
    let rows: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({
                "id": e.id,
                "at": rfc3339(e.at_ms),
                "actor": e.actor,
                "action": e.action,
                "target": e.target,
                "detail": e.detail,
                "ip": e.ip,
            })
        })
        .collect();
    Ok(Json(rows).into_response())
}
