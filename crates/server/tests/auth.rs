//! Authentication, authorisation and the admin API, through the real router over a
//! SQLite store: the route table (401 without credentials, 403 for viewers), login,
//! sessions (expiry, logout, password change), CSRF, API tokens, throttling, hostile
//! input, security headers and body limits; and property tests of the decoders.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use proptest::prelude::*;
use serde_json::{Value, json};
use sundial_analytics::account::{AccountStore, AppScope, NewAccount, NewToken, Role, TokenKind};
use sundial_analytics::{NewApp, Store};
use sundial_server::auth::{CSRF_HEADER, hash_password, new_token};
use sundial_server::{
    Access, AuthSettings, IngestSettings, ROUTES, Readiness, ServerState, ThrottleSettings,
};
use sundial_storage_sql::SqlStore;
use tower::ServiceExt as _;

const ADMIN_PASSWORD: &str = "admin-password-1";
const VIEWER_PASSWORD: &str = "viewer-password-1";

struct Fixture {
    app: Router,
    store: Arc<SqlStore>,
    admin_token: String,
    viewer_token: String,
    _dir: tempfile::TempDir,
}

async fn fixture_with(settings: AuthSettings) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqlStore::open_in(dir.path()).await.expect("store"));
    let admin = store
        .create_account(NewAccount {
            username: "admin".into(),
            role: Role::Admin,
            scope: AppScope::All,
            password_hash: hash_password(ADMIN_PASSWORD).expect("hash"),
        })
        .await
        .expect("admin");
    let viewer = store
        .create_account(NewAccount {
            username: "viewer".into(),
            role: Role::Viewer,
            scope: AppScope::All,
            password_hash: hash_password(VIEWER_PASSWORD).expect("hash"),
        })
        .await
        .expect("viewer");
    let admin_token = api_token(&store, admin.id).await;
    let viewer_token = api_token(&store, viewer.id).await;
    let state = ServerState::new(
        store.clone(),
        None,
        IngestSettings::default(),
        None,
        Arc::new(Readiness::default()),
    )
    .with_auth(settings, store.clone());
    Fixture {
        app: sundial_server::router(state),
        store,
        admin_token,
        viewer_token,
        _dir: dir,
    }
}

async fn fixture() -> Fixture {
    fixture_with(AuthSettings::default()).await
}

async fn api_token(store: &SqlStore, account_id: i64) -> String {
    let (token, token_hash) = new_token(TokenKind::Api).expect("token");
    store
        .create_token(NewToken {
            account_id,
            kind: TokenKind::Api,
            name: "test".into(),
            token_hash,
            expires_at_ms: None,
        })
        .await
        .expect("store token");
    token
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    /// The `name=value` of a `Set-Cookie` header for `name`.
    fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with(&format!("{name}=")))
            .map(|c| c.split(';').next().unwrap_or_default().to_owned())
    }
}

async fn send(app: &Router, request: Request<Body>) -> Reply {
    let response = app.clone().oneshot(request).await.expect("answer");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

fn request(method: &str, path: &str, bearer: Option<&str>, body: Option<Value>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(t) = bearer {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let body = match body {
        Some(v) => {
            b = b.header(header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    b.body(body).expect("request")
}

async fn call(
    f: &Fixture,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> Reply {
    send(&f.app, request(method, path, bearer, body)).await
}

async fn login(f: &Fixture, username: &str, password: &str) -> Reply {
    call(
        f,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"username": username, "password": password})),
    )
    .await
}

fn concrete(path: &str) -> String {
    path.replace("{app}", "1").replace("{id}", "1")
}

fn method_of(route: &sundial_server::Route) -> &'static str {
    if route.method == "*" {
        "GET"
    } else {
        route.method
    }
}

#[tokio::test]
async fn every_protected_route_needs_credentials_and_admin_routes_refuse_viewers() {
    let f = fixture().await;
    f.store
        .create_app(NewApp {
            name: "A".into(),
            timezone: "UTC".into(),
        })
        .await
        .expect("app 1");
    let mut protected = 0;
    for route in ROUTES {
        let path = concrete(route.path);
        let method = method_of(route);
        let body = Some(json!({}));
        match route.access {
            Access::Ingest | Access::Public => {
                let reply = call(&f, method, &path, None, body).await;
                assert_ne!(
                    reply.status,
                    StatusCode::FORBIDDEN,
                    "{method} {path} is public"
                );
                if route.access == Access::Public {
                    assert_ne!(reply.status, StatusCode::UNAUTHORIZED, "{method} {path}");
                }
            }
            Access::Account | Access::Admin => {
                protected += 1;
                let reply = call(&f, method, &path, None, body.clone()).await;
                assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{method} {path}");
                assert!(reply.json()["error"].is_string(), "{method} {path}");
                assert!(reply.headers.contains_key(header::WWW_AUTHENTICATE));
                // A garbage bearer is no better.
                let reply = call(&f, method, &path, Some("sdt_nope"), body.clone()).await;
                assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{method} {path}");
                if route.access == Access::Admin {
                    let reply = call(&f, method, &path, Some(&f.viewer_token), body).await;
                    assert_eq!(
                        reply.status,
                        StatusCode::FORBIDDEN,
                        "viewer: {method} {path}"
                    );
                } else if route.mutates() {
                    // Account routes that mutate act on the viewer's own things only;
                    // they are covered by the token tests below.
                }
            }
        }
    }
    assert!(protected >= 17, "the table lists the admin API");
    // Every mutating route is admin-only except logout and one's own tokens.
    let open_mutations: Vec<&str> = ROUTES
        .iter()
        .filter(|r| r.mutates() && r.access == Access::Account)
        .map(|r| r.path)
        .collect();
    assert_eq!(
        open_mutations,
        vec![
            "/api/v1/auth/logout",
            "/api/v1/tokens",
            "/api/v1/tokens/{id}"
        ]
    );
}

#[tokio::test]
async fn the_router_answers_only_what_the_table_lists() {
    let f = fixture().await;
    for route in ROUTES.iter().filter(|r| r.method != "*") {
        let path = concrete(route.path);
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            let listed = ROUTES
                .iter()
                .any(|r| r.path == route.path && (r.method == method || r.method == "*"));
            if listed {
                continue;
            }
            let reply = call(&f, method, &path, Some(&f.admin_token), None).await;
            assert_eq!(
                reply.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is not in ROUTES"
            );
        }
    }
    for path in [
        "/",
        "/admin",
        "/api/v1",
        "/api/v1/secret",
        "/api/v1/apps/1/other",
        "/api/v1/accounts/1/password",
        "/api/v2/apps",
    ] {
        let reply = call(&f, "GET", path, Some(&f.admin_token), None).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(reply.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }
}

#[tokio::test]
async fn login_session_me_logout() {
    let f = fixture().await;
    let reply = login(&f, "admin", ADMIN_PASSWORD).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let body = reply.json();
    let token = body["token"].as_str().expect("token").to_owned();
    assert!(token.starts_with("sds_"));
    assert!(
        body["expires_at"]
            .as_str()
            .expect("expiry")
            .parse::<jiff::Timestamp>()
            .is_ok()
    );
    let set_cookies: Vec<&str> = reply
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let session = set_cookies
        .iter()
        .find(|c| c.starts_with("sundial_session="))
        .expect("session cookie");
    assert!(session.contains("HttpOnly") && session.contains("SameSite=Strict"));
    assert!(!session.contains("Secure"), "Secure is off by default");
    let csrf = set_cookies
        .iter()
        .find(|c| c.starts_with("sundial_csrf="))
        .expect("csrf cookie");
    assert!(
        !csrf.contains("HttpOnly"),
        "the dashboard reads the CSRF cookie"
    );
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");

    // The session works as a bearer and as a cookie.
    let me = call(&f, "GET", "/api/v1/auth/me", Some(&token), None).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json()["username"], "admin");
    assert_eq!(me.json()["role"], "admin");
    let cookie = reply.cookie("sundial_session").expect("cookie");
    let me = send(
        &f.app,
        Request::get("/api/v1/auth/me")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(me.status, StatusCode::OK);

    let out = call(&f, "POST", "/api/v1/auth/logout", Some(&token), None).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert!(out.cookie("sundial_session").is_some(), "cookie cleared");
    let me = call(&f, "GET", "/api/v1/auth/me", Some(&token), None).await;
    assert_eq!(
        me.status,
        StatusCode::UNAUTHORIZED,
        "logout revokes the session"
    );
}

#[tokio::test]
async fn unknown_user_and_wrong_password_look_the_same() {
    let f = fixture().await;
    let unknown = login(&f, "nobody", "whatever-password").await;
    let wrong = login(&f, "admin", "whatever-password").await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.body, wrong.body);
    assert!(unknown.cookie("sundial_session").is_none());
    // Similar timing: both verify an Argon2id hash. Compare medians of a few runs.
    let mut times = [Vec::new(), Vec::new()];
    for _ in 0..5 {
        for (i, user) in ["nobody2", "viewer"].iter().enumerate() {
            let started = std::time::Instant::now();
            let r = login(&f, user, "not-the-password").await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED);
            times[i].push(started.elapsed());
        }
    }
    for t in &mut times {
        t.sort();
    }
    let (a, b) = (times[0][2].as_secs_f64(), times[1][2].as_secs_f64());
    assert!(
        a > b / 3.0 && b > a / 3.0,
        "unknown user {a:.4}s vs wrong password {b:.4}s"
    );
    // Malformed bodies are 400, not 500.
    for body in ["", "{", "[]", r#"{"username": 1, "password": "x"}"#, "null"] {
        let r = send(
            &f.app,
            Request::post("/api/v1/auth/login")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body))
                .expect("request"),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body:?}");
    }
}

#[tokio::test]
async fn logins_are_throttled_per_username_and_per_address() {
    let f = fixture_with(AuthSettings {
        throttle: ThrottleSettings {
            free_failures_per_user: 2,
            free_failures_per_ip: 4,
            base_delay: Duration::from_secs(60),
            ..ThrottleSettings::default()
        },
        ..AuthSettings::default()
    })
    .await;
    let from = |ip: [u8; 4], username: &str, password: &str| {
        let mut r = request(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"username": username, "password": password})),
        );
        r.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((ip, 40_000))));
        r
    };
    for _ in 0..3 {
        let r = send(&f.app, from([10, 0, 0, 1], "admin", "bad-password")).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // Past two free failures the username is locked, even with the right password and
    // from another address.
    let r = send(&f.app, from([10, 0, 0, 2], "admin", ADMIN_PASSWORD)).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    let retry: u64 = r.headers[header::RETRY_AFTER]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(
        r.json()["error"].as_str().map(|s| s.contains("retry")),
        Some(true)
    );
    // Other usernames still log in from elsewhere.
    let r = send(&f.app, from([10, 0, 0, 2], "viewer", VIEWER_PASSWORD)).await;
    assert_eq!(r.status, StatusCode::OK);
    // One address guessing many usernames is locked after its allowance.
    for i in 0..2 {
        let r = send(
            &f.app,
            from([10, 0, 0, 1], &format!("user{i}"), "bad-password"),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = send(&f.app, from([10, 0, 0, 1], "viewer", VIEWER_PASSWORD)).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    // The audit log saw the failures.
    let audit = call(
        &f,
        "GET",
        "/api/v1/audit?limit=100",
        Some(&f.admin_token),
        None,
    )
    .await;
    let failures = audit
        .json()
        .as_array()
        .expect("array")
        .iter()
        .filter(|e| e["action"] == "login.failure")
        .count();
    assert_eq!(failures, 5);
}

#[tokio::test]
async fn sessions_expire_and_a_password_change_revokes_them() {
    let f = fixture_with(AuthSettings {
        session_ttl: Duration::from_secs(1),
        ..AuthSettings::default()
    })
    .await;
    let token = login(&f, "viewer", VIEWER_PASSWORD).await.json()["token"]
        .as_str()
        .expect("token")
        .to_owned();
    assert_eq!(
        call(&f, "GET", "/api/v1/auth/me", Some(&token), None)
            .await
            .status,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(
        call(&f, "GET", "/api/v1/auth/me", Some(&token), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED,
        "expired"
    );

    let f = fixture().await;
    let token = login(&f, "viewer", VIEWER_PASSWORD).await.json()["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let viewer = f
        .store
        .account_by_username("viewer")
        .await
        .expect("get")
        .expect("viewer");
    let r = call(
        &f,
        "PATCH",
        &format!("/api/v1/accounts/{}", viewer.id),
        Some(&f.admin_token),
        Some(json!({"password": "a-new-password"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        call(&f, "GET", "/api/v1/auth/me", Some(&token), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED,
        "password change signs sessions out"
    );
    assert_eq!(
        login(&f, "viewer", VIEWER_PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&f, "viewer", "a-new-password").await.status,
        StatusCode::OK
    );
    // The viewer's API token survives.
    assert_eq!(
        call(&f, "GET", "/api/v1/auth/me", Some(&f.viewer_token), None)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn cookie_mutations_need_the_csrf_header() {
    let f = fixture().await;
    let reply = login(&f, "admin", ADMIN_PASSWORD).await;
    let session = reply.cookie("sundial_session").expect("session");
    let csrf = reply.cookie("sundial_csrf").expect("csrf");
    let csrf_value = csrf.split_once('=').expect("pair").1.to_owned();
    let cookies = format!("{session}; {csrf}");
    let create = |extra: Option<&str>| {
        let mut b = Request::post("/api/v1/apps")
            .header(header::COOKIE, &cookies)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(v) = extra {
            b = b.header(CSRF_HEADER, v);
        }
        b.body(Body::from(r#"{"name":"Via cookie"}"#))
            .expect("request")
    };
    let r = send(&f.app, create(None)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.body.contains("CSRF"));
    let r = send(&f.app, create(Some(&"0".repeat(64)))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // A session cookie without a CSRF cookie cannot pass either.
    let r = send(
        &f.app,
        Request::post("/api/v1/apps")
            .header(header::COOKIE, &session)
            .header(CSRF_HEADER, &csrf_value)
            .body(Body::from(r#"{"name":"x"}"#))
            .expect("request"),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = send(&f.app, create(Some(&csrf_value))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    // Reads need no CSRF header.
    let r = send(
        &f.app,
        Request::get("/api/v1/apps")
            .header(header::COOKIE, &cookies)
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    // An API token is not accepted as a cookie.
    let r = send(
        &f.app,
        Request::get("/api/v1/auth/me")
            .header(header::COOKIE, format!("sundial_session={}", f.admin_token))
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn api_tokens_are_created_listed_and_revoked() {
    let f = fixture().await;
    let created = call(
        &f,
        "POST",
        "/api/v1/tokens",
        Some(&f.viewer_token),
        Some(json!({"name": "script"})),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let token = created.json()["token"].as_str().expect("token").to_owned();
    let id = created.json()["id"].as_i64().expect("id");
    assert!(token.starts_with("sdt_"));
    assert_eq!(created.json()["username"], "viewer");
    let me = call(&f, "GET", "/api/v1/auth/me", Some(&token), None).await;
    assert_eq!(me.json()["username"], "viewer");

    // A viewer lists only its own tokens, and never sees a token again.
    let listed = call(&f, "GET", "/api/v1/tokens", Some(&f.viewer_token), None).await;
    let rows = listed.json();
    assert_eq!(rows.as_array().expect("array").len(), 2);
    assert!(!listed.body.contains(&token[4..]), "tokens are shown once");
    let all = call(&f, "GET", "/api/v1/tokens", Some(&f.admin_token), None).await;
    assert_eq!(all.json().as_array().expect("array").len(), 3);
    // Viewers cannot make tokens for others, nor revoke others' tokens.
    let r = call(
        &f,
        "POST",
        "/api/v1/tokens",
        Some(&f.viewer_token),
        Some(json!({"name": "x", "username": "admin"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let admin_tokens = call(
        &f,
        "GET",
        "/api/v1/tokens?username=admin",
        Some(&f.admin_token),
        None,
    )
    .await
    .json();
    let admin_token_id = admin_tokens[0]["id"].as_i64().expect("id");
    let r = call(
        &f,
        "DELETE",
        &format!("/api/v1/tokens/{admin_token_id}"),
        Some(&f.viewer_token),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let r = call(
        &f,
        "DELETE",
        &format!("/api/v1/tokens/{id}"),
        Some(&f.viewer_token),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let me = call(&f, "GET", "/api/v1/auth/me", Some(&token), None).await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED, "revoked");
    // An admin revokes anyone's token.
    let viewer_tokens = call(&f, "GET", "/api/v1/tokens", Some(&f.viewer_token), None)
        .await
        .json();
    let vid = viewer_tokens[0]["id"].as_i64().expect("id");
    let r = call(
        &f,
        "DELETE",
        &format!("/api/v1/tokens/{vid}"),
        Some(&f.admin_token),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        call(&f, "GET", "/api/v1/auth/me", Some(&f.viewer_token), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn apps_api_and_viewer_scopes() {
    let f = fixture().await;
    let hostile = "<script>alert(1)</script>'; DROP TABLE apps; --\"";
    let created = call(
        &f,
        "POST",
        "/api/v1/apps",
        Some(&f.admin_token),
        Some(json!({"name": hostile, "timezone": "Asia/Shanghai"})),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(created.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    let app = created.json();
    assert_eq!(
        app["name"], hostile,
        "stored and returned verbatim, as JSON"
    );
    assert_eq!(app["app_secret"].as_str().expect("secret").len(), 64);
    let id = app["id"].as_i64().expect("id");
    let other = call(
        &f,
        "POST",
        "/api/v1/apps",
        Some(&f.admin_token),
        Some(json!({"name": "Other"})),
    )
    .await
    .json();
    let other_id = other["id"].as_i64().expect("id");
    assert_eq!(other["timezone"], "UTC");

    let r = call(
        &f,
        "POST",
        "/api/v1/apps",
        Some(&f.admin_token),
        Some(json!({"name": "x", "timezone": "Mars/Base"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("Mars/Base"));

    // Viewers read apps without secrets.
    let listed = call(&f, "GET", "/api/v1/apps", Some(&f.viewer_token), None).await;
    assert_eq!(listed.json().as_array().expect("array").len(), 2);
    assert!(listed.json()[0].get("app_secret").is_none());
    assert!(
        !listed
            .body
            .contains(app["app_secret"].as_str().expect("secret"))
    );

    // Restrict the viewer to `id`.
    let viewer = f
        .store
        .account_by_username("viewer")
        .await
        .expect("get")
        .expect("viewer");
    let r = call(
        &f,
        "PATCH",
        &format!("/api/v1/accounts/{}", viewer.id),
        Some(&f.admin_token),
        Some(json!({"grants": [id]})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["grants"], json!([id]));
    let listed = call(&f, "GET", "/api/v1/apps", Some(&f.viewer_token), None).await;
    assert_eq!(listed.json().as_array().expect("array").len(), 1);
    assert_eq!(
        call(
            &f,
            "GET",
            &format!("/api/v1/apps/{id}"),
            Some(&f.viewer_token),
            None
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        call(
            &f,
            "GET",
            &format!("/api/v1/apps/{other_id}"),
            Some(&f.viewer_token),
            None
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );

    // Update, rotate, delete data, delete.
    let patched = call(
        &f,
        "PATCH",
        &format!("/api/v1/apps/{id}"),
        Some(&f.admin_token),
        Some(json!({"require_signature": true, "rate_limit_per_sec": 10, "countly_salt": "s"})),
    )
    .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.json()["require_signature"], true);
    assert_eq!(patched.json()["rate_limit_per_sec"], 10);
    assert_eq!(patched.json()["name"], hostile);
    let cleared = call(
        &f,
        "PATCH",
        &format!("/api/v1/apps/{id}"),
        Some(&f.admin_token),
        Some(json!({"rate_limit_per_sec": null})),
    )
    .await
    .json();
    assert_eq!(cleared["rate_limit_per_sec"], Value::Null);
    assert_eq!(cleared["countly_salt"], "s");
    let r = call(
        &f,
        "PATCH",
        &format!("/api/v1/apps/{id}"),
        Some(&f.admin_token),
        Some(json!({"app_secret": "mine"})),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "unknown fields are refused"
    );

    let rotated = call(
        &f,
        "POST",
        &format!("/api/v1/apps/{id}/rotate"),
        Some(&f.admin_token),
        None,
    )
    .await
    .json();
    assert_ne!(rotated["app_key"], app["app_key"]);
    assert_ne!(rotated["app_secret"], app["app_secret"]);

    let r = call(
        &f,
        "DELETE",
        &format!("/api/v1/apps/{id}/data"),
        Some(&f.admin_token),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = call(
        &f,
        "DELETE",
        &format!("/api/v1/apps/{id}"),
        Some(&f.admin_token),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = call(
        &f,
        "GET",
        &format!("/api/v1/apps/{id}"),
        Some(&f.admin_token),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // The viewer's grant went with the app: it now reads nothing.
    let listed = call(&f, "GET", "/api/v1/apps", Some(&f.viewer_token), None).await;
    assert_eq!(listed.json(), json!([]));
    for bad in ["abc", "0", "-1", "99999999999999999999"] {
        let r = call(
            &f,
            "GET",
            &format!("/api/v1/apps/{bad}"),
            Some(&f.admin_token),
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{bad}");
    }

    // The audit log names who did what.
    let audit = call(&f, "GET", "/api/v1/audit", Some(&f.admin_token), None)
        .await
        .json();
    let actions: Vec<&str> = audit
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for expected in [
        "app.create",
        "account.update",
        "app.update",
        "app.rotate",
        "app.delete_data",
        "app.delete",
    ] {
        assert!(actions.contains(&expected), "{expected} in {actions:?}");
    }
    assert!(
        audit
            .as_array()
            .expect("array")
            .iter()
            .all(|e| e["actor"] == "admin")
    );
}

#[tokio::test]
async fn accounts_api_never_shows_hashes_and_keeps_an_admin() {
    let f = fixture().await;
    let r = call(
        &f,
        "POST",
        "/api/v1/accounts",
        Some(&f.admin_token),
        Some(json!({"username": "carol", "password": "carol-password", "role": "admin"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let carol = r.json()["id"].as_i64().expect("id");
    for (body, status) in [
        (
            json!({"username": "carol", "password": "another-password"}),
            StatusCode::CONFLICT,
        ),
        (
            json!({"username": "<b>x</b>", "password": "another-password"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"username": "dave", "password": "short"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"username": "dave", "password": "long-enough", "role": "root"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"username": "dave", "password": "long-enough", "role": "admin", "grants": [1]}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let r = call(
            &f,
            "POST",
            "/api/v1/accounts",
            Some(&f.admin_token),
            Some(body.clone()),
        )
        .await;
        assert_eq!(r.status, status, "{body}: {}", r.body);
    }
    let listed = call(&f, "GET", "/api/v1/accounts", Some(&f.admin_token), None).await;
    assert_eq!(listed.json().as_array().expect("array").len(), 3);
    assert!(!listed.body.contains("argon2"), "no password hashes");
    let audit = call(&f, "GET", "/api/v1/audit", Some(&f.admin_token), None).await;
    assert!(!audit.body.contains("carol-password") && !audit.body.contains("argon2"));

    let r = call(
        &f,
        "DELETE",
        &format!("/api/v1/accounts/{carol}"),
        Some(&f.admin_token),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let admin = f
        .store
        .account_by_username("admin")
        .await
        .expect("get")
        .expect("admin");
    let r = call(
        &f,
        "DELETE",
        &format!("/api/v1/accounts/{}", admin.id),
        Some(&f.admin_token),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "the last admin stays");
    let r = call(
        &f,
        "PATCH",
        &format!("/api/v1/accounts/{}", admin.id),
        Some(&f.admin_token),
        Some(json!({"role": "viewer"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn headers_and_body_limits() {
    let f = fixture().await;
    let r = call(&f, "GET", "/healthz", None, None).await;
    assert_eq!(r.headers[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(r.headers[header::REFERRER_POLICY], "no-referrer");
    assert_eq!(
        r.headers[header::CONTENT_SECURITY_POLICY],
        "frame-ancestors 'none'"
    );
    // Ingest answers SDKs, not browsers: no dashboard headers there.
    let r = call(&f, "POST", "/api/v1/ingest", None, Some(json!({}))).await;
    assert!(!r.headers.contains_key(header::X_FRAME_OPTIONS));

    let big = "x".repeat(200 * 1024);
    for (path, bearer) in [
        ("/api/v1/auth/login", None),
        ("/api/v1/apps", Some(f.admin_token.as_str())),
    ] {
        let body = json!({"username": big, "password": big, "name": big});
        let r = call(&f, "POST", path, bearer, Some(body)).await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{path}");
    }
}

#[tokio::test]
async fn without_accounts_every_protected_route_is_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqlStore::open_in(dir.path()).await.expect("store"));
    let state = ServerState::new(
        store,
        None,
        IngestSettings::default(),
        None,
        Arc::new(Readiness::default()),
    );
    let app = sundial_server::router(state);
    for route in ROUTES
        .iter()
        .filter(|r| matches!(r.access, Access::Account | Access::Admin))
    {
        let r = send(
            &app,
            request(method_of(route), &concrete(route.path), None, None),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", route.path);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), text in ".{0,300}") {
        let _ = sundial_server::decode_login(&bytes);
        let _ = sundial_server::decode_login(text.as_bytes());
        let _ = sundial_server::auth::parse_bearer(&text);
        let _ = sundial_server::auth::cookie_value(&text, "sundial_session");
        let _ = sundial_server::auth::is_token_shaped(&text);
        let _ = sundial_server::auth::verify_password(&text, &text);
    }

    #[test]
    fn bearer_round_trips(token in "sd[st]_[0-9a-f]{64}", pad in " {0,3}") {
        let header = format!("Bearer{pad} {token}{pad}");
        prop_assert_eq!(sundial_server::auth::parse_bearer(&header), Some(token.as_str()));
        let cookie = format!("a=b;{pad}sundial_session={token}; c=d");
        prop_assert_eq!(
            sundial_server::auth::cookie_value(&cookie, "sundial_session"),
            Some(token.as_str())
        );
    }
}

/// Arbitrary credentials through the whole router: always 401, never 500 or a panic.
#[tokio::test]
async fn hostile_credentials_are_401() {
    let f = fixture().await;
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(200));
    let strategy = ("[ -~]{0,200}", "[ -~]{0,200}");
    let mut cases = Vec::new();
    for _ in 0..200 {
        use proptest::strategy::ValueTree as _;
        cases.push(strategy.new_tree(&mut runner).expect("generate").current());
    }
    for (auth, cookie) in cases {
        let mut b = Request::get("/api/v1/auth/me");
        if let Ok(v) = axum::http::HeaderValue::from_str(&auth) {
            b = b.header(header::AUTHORIZATION, v);
        }
        if let Ok(v) = axum::http::HeaderValue::from_str(&cookie) {
            b = b.header(header::COOKIE, v);
        }
        let r = send(&f.app, b.body(Body::empty()).expect("request")).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{auth:?} {cookie:?}");
    }
}
