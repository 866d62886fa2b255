//! Accounts, grants, tokens and the audit log on SQLite and PostgreSQL; and the apps
//! administration methods (update, rotate, delete data, delete app).

mod common;

use sundial_analytics::account::{
    AccountError, AccountStore, AccountStoreError, AccountUpdate, AppScope, NewAccount,
    NewAuditEntry, NewToken, Role, TokenKind,
};
use sundial_analytics::aggregate::AggregateStore;
use sundial_analytics::{AppUpdate, NewApp, Store, StoreError};
use sundial_storage_sql::APP_DATA_TABLES;

fn new_account(username: &str, role: Role, scope: AppScope) -> NewAccount {
    NewAccount {
        username: username.to_owned(),
        role,
        scope,
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$fake${username}"),
    }
}

fn token(account_id: i64, kind: TokenKind, hash: &str, expires_at_ms: Option<i64>) -> NewToken {
    NewToken {
        account_id,
        kind,
        name: "test".to_owned(),
        token_hash: hash.to_owned(),
        expires_at_ms,
    }
}

#[tokio::test]
async fn accounts_create_list_update_delete() {
    for t in common::both().await {
        let store = &t.store;
        let backend = store.backend_name();
        assert_eq!(store.count_admins().await.expect("count"), 0);
        let admin = store
            .create_account(new_account("admin", Role::Admin, AppScope::All))
            .await
            .expect("create admin");
        assert_eq!(admin.role, Role::Admin);
        assert_eq!(store.count_admins().await.expect("count"), 1);

        let dup = store
            .create_account(new_account("admin", Role::Viewer, AppScope::All))
            .await
            .expect_err("duplicate");
        assert!(
            matches!(dup, AccountStoreError::Duplicate(_)),
            "{backend}: {dup}"
        );

        let bad = store
            .create_account(new_account("a b", Role::Viewer, AppScope::All))
            .await
            .expect_err("bad name");
        assert!(matches!(
            bad,
            AccountStoreError::Invalid(AccountError::Username)
        ));
        let bad = store
            .create_account(new_account("x", Role::Admin, AppScope::Granted(vec![])))
            .await
            .expect_err("admin grants");
        assert!(matches!(
            bad,
            AccountStoreError::Invalid(AccountError::AdminGrants)
        ));

        let app = store
            .create_app(NewApp {
                name: "A".into(),
                timezone: "UTC".into(),
            })
            .await
            .expect("app");
        let bad = store
            .create_account(new_account(
                "v0",
                Role::Viewer,
                AppScope::Granted(vec![app.id + 100]),
            ))
            .await
            .expect_err("grant of a missing app");
        assert!(matches!(
            bad,
            AccountStoreError::Invalid(AccountError::GrantedApp(_))
        ));
        assert!(
            store
                .account_by_username("v0")
                .await
                .expect("get")
                .is_none(),
            "{backend}: a failed create leaves nothing"
        );

        let viewer = store
            .create_account(new_account(
                "viewer",
                Role::Viewer,
                AppScope::Granted(vec![app.id]),
            ))
            .await
            .expect("create viewer");
        assert_eq!(viewer.scope, AppScope::Granted(vec![app.id]));
        assert!(viewer.can_read_app(app.id) && !viewer.can_read_app(app.id + 1));

        let listed = store.list_accounts().await.expect("list");
        assert_eq!(listed, vec![admin.clone(), viewer.clone()], "{backend}");
        assert_eq!(
            store.account_by_id(viewer.id).await.expect("get"),
            Some(viewer.clone())
        );
        let creds = store
            .credentials("viewer")
            .await
            .expect("credentials")
            .expect("exists");
        assert!(creds.password_hash.ends_with("$viewer"));
        assert!(store.credentials("nobody").await.expect("ok").is_none());

        // The last admin can be neither demoted nor deleted.
        let err = store
            .update_account(
                admin.id,
                AccountUpdate {
                    role: Some(Role::Viewer),
                    scope: None,
                },
            )
            .await
            .expect_err("last admin demotion");
        assert!(
            matches!(err, AccountStoreError::LastAdmin),
            "{backend}: {err}"
        );
        let err = store
            .delete_account(admin.id)
            .await
            .expect_err("last admin");
        assert!(matches!(err, AccountStoreError::LastAdmin));

        // Promote the viewer: its scope widens to every app; then the first admin can go.
        let promoted = store
            .update_account(
                viewer.id,
                AccountUpdate {
                    role: Some(Role::Admin),
                    scope: None,
                },
            )
            .await
            .expect("promote");
        assert_eq!(promoted.role, Role::Admin);
        assert_eq!(promoted.scope, AppScope::All);
        store.delete_account(admin.id).await.expect("delete admin");
        assert!(store.account_by_id(admin.id).await.expect("get").is_none());
        let err = store.delete_account(admin.id).await.expect_err("gone");
        assert!(matches!(err, AccountStoreError::NoSuchAccount(_)));

        // Deleting the only granted app leaves a viewer with access to nothing.
        let v2 = store
            .create_account(new_account(
                "v2",
                Role::Viewer,
                AppScope::Granted(vec![app.id]),
            ))
            .await
            .expect("v2");
        store.delete_app(app.id).await.expect("delete app");
        let v2 = store
            .account_by_id(v2.id)
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(v2.scope, AppScope::Granted(vec![]), "{backend}");
        assert!(!v2.can_read_app(app.id));
    }
}

#[tokio::test]
async fn tokens_expire_revoke_and_die_with_their_account() {
    for t in common::both().await {
        let store = &t.store;
        let backend = store.backend_name();
        let admin = store
            .create_account(new_account("root", Role::Admin, AppScope::All))
            .await
            .expect("admin");
        let viewer = store
            .create_account(new_account("v", Role::Viewer, AppScope::All))
            .await
            .expect("viewer");
        let now = jiff::Timestamp::now().as_millisecond();
        let session = store
            .create_token(token(
                admin.id,
                TokenKind::Session,
                "h-session",
                Some(now + 60_000),
            ))
            .await
            .expect("session");
        let api = store
            .create_token(token(admin.id, TokenKind::Api, "h-api", None))
            .await
            .expect("api token");
        let viewer_api = store
            .create_token(token(viewer.id, TokenKind::Api, "h-viewer", None))
            .await
            .expect("viewer token");
        let err = store
            .create_token(token(9_999, TokenKind::Api, "h-x", None))
            .await
            .expect_err("no such account");
        assert!(
            matches!(err, AccountStoreError::NoSuchAccount(_)),
            "{backend}"
        );
        let err = store
            .create_token(NewToken {
                name: "  ".into(),
                ..token(admin.id, TokenKind::Api, "h-y", None)
            })
            .await
            .expect_err("empty name");
        assert!(matches!(
            err,
            AccountStoreError::Invalid(AccountError::TokenName)
        ));

        let (info, account) = store
            .token_by_hash("h-session", now)
            .await
            .expect("look up")
            .expect("live");
        assert_eq!(info, session);
        assert_eq!(account, admin);
        // Expired at `now + 60 s`.
        assert!(
            store
                .token_by_hash("h-session", now + 60_000)
                .await
                .expect("look up")
                .is_none(),
            "{backend}: expired sessions are not returned"
        );
        assert!(
            store
                .token_by_hash("nope", now)
                .await
                .expect("ok")
                .is_none()
        );

        assert_eq!(
            store.list_api_tokens(None).await.expect("list"),
            vec![api.clone(), viewer_api.clone()]
        );
        assert_eq!(
            store.list_api_tokens(Some(viewer.id)).await.expect("list"),
            vec![viewer_api.clone()]
        );
        assert_eq!(
            store.token_by_id(api.id).await.expect("get"),
            Some(api.clone())
        );

        // A password change revokes sessions, not API tokens.
        store
            .set_password(admin.id, "$argon2id$new")
            .await
            .expect("passwd");
        assert!(
            store
                .token_by_hash("h-session", now)
                .await
                .expect("ok")
                .is_none()
        );
        assert!(
            store
                .token_by_hash("h-api", now)
                .await
                .expect("ok")
                .is_some()
        );
        assert_eq!(
            store
                .credentials("root")
                .await
                .expect("ok")
                .expect("exists")
                .password_hash,
            "$argon2id$new"
        );

        store.revoke_token(api.id).await.expect("revoke");
        assert!(
            store
                .token_by_hash("h-api", now)
                .await
                .expect("ok")
                .is_none()
        );
        assert!(matches!(
            store.revoke_token(api.id).await,
            Err(AccountStoreError::NoSuchToken(_))
        ));

        // Expired tokens are swept.
        store
            .create_token(token(admin.id, TokenKind::Session, "h-old", Some(now - 1)))
            .await
            .expect("old");
        assert_eq!(store.delete_expired_tokens(now).await.expect("sweep"), 1);

        // Deleting an account deletes its tokens.
        store
            .delete_account(viewer.id)
            .await
            .expect("delete viewer");
        assert!(
            store
                .token_by_hash("h-viewer", now)
                .await
                .expect("ok")
                .is_none()
        );
        assert!(
            store
                .token_by_id(viewer_api.id)
                .await
                .expect("ok")
                .is_none()
        );
    }
}

#[tokio::test]
async fn audit_log_pages_newest_first_and_keeps_hostile_text() {
    for t in common::both().await {
        let store = &t.store;
        let hostile = "'; DROP TABLE accounts; -- <script>alert(1)</script>";
        for i in 0..5 {
            store
                .append_audit(NewAuditEntry {
                    at_ms: 1_000 + i,
                    actor: "admin".into(),
                    action: format!("app.create.{i}"),
                    target: hostile.into(),
                    detail: String::new(),
                    ip: Some("127.0.0.1".into()),
                })
                .await
                .expect("append");
        }
        let page = store.list_audit(3, None).await.expect("list");
        assert_eq!(page.len(), 3);
        assert_eq!(page[0].action, "app.create.4");
        assert_eq!(page[0].target, hostile);
        assert!(page[0].id > page[1].id);
        let rest = store.list_audit(10, Some(page[2].id)).await.expect("list");
        assert_eq!(
            rest.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
            vec!["app.create.1", "app.create.0"]
        );
        // The accounts table survived the "injection".
        assert_eq!(store.count_admins().await.expect("count"), 0);
    }
}

#[tokio::test]
async fn apps_update_rotate_and_delete() {
    for t in common::both().await {
        let store = &t.store;
        let backend = store.backend_name();
        let app = store
            .create_app(NewApp {
                name: "Demo".into(),
                timezone: "UTC".into(),
            })
            .await
            .expect("app");
        assert_eq!(app.rate_limit_per_sec, None);
        let updated = store
            .update_app(
                app.id,
                AppUpdate {
                    name: Some("  <b>Renamed</b>  ".into()),
                    timezone: Some("Asia/Shanghai".into()),
                    require_signature: Some(true),
                    rate_limit_per_sec: Some(Some(50)),
                    countly_salt: Some(Some("salt".into())),
                },
            )
            .await
            .expect("update");
        assert_eq!(updated.name, "<b>Renamed</b>", "{backend}");
        assert_eq!(updated.timezone, "Asia/Shanghai");
        assert!(updated.require_signature);
        assert_eq!(updated.rate_limit_per_sec, Some(50));
        assert_eq!(updated.countly_salt.as_deref(), Some("salt"));
        assert_eq!(updated.app_key, app.app_key);
        assert_eq!(
            store.app_by_id(app.id).await.expect("get"),
            Some(updated.clone())
        );

        // Partial update: only what is set changes; Some(None) clears.
        let cleared = store
            .update_app(
                app.id,
                AppUpdate {
                    rate_limit_per_sec: Some(None),
                    countly_salt: Some(None),
                    ..AppUpdate::default()
                },
            )
            .await
            .expect("clear");
        assert_eq!(cleared.rate_limit_per_sec, None);
        assert_eq!(cleared.countly_salt, None);
        assert_eq!(cleared.name, "<b>Renamed</b>");
        assert!(cleared.require_signature);

        let err = store
            .update_app(
                app.id,
                AppUpdate {
                    timezone: Some("Mars/Base".into()),
                    ..AppUpdate::default()
                },
            )
            .await
            .expect_err("bad zone");
        assert!(matches!(err, StoreError::Invalid(_)));
        let err = store
            .update_app(
                app.id,
                AppUpdate {
                    rate_limit_per_sec: Some(Some(0)),
                    ..AppUpdate::default()
                },
            )
            .await
            .expect_err("zero rate");
        assert!(matches!(err, StoreError::Invalid(_)));
        let err = store
            .update_app(app.id + 1000, AppUpdate::default())
            .await
            .expect_err("missing");
        assert!(matches!(err, StoreError::NoSuchApp(_)));

        let rotated = store.rotate_app_credentials(app.id).await.expect("rotate");
        assert_ne!(rotated.app_key, app.app_key);
        assert_ne!(rotated.app_secret, app.app_secret);
        assert_eq!(rotated.app_key.len(), 40);
        assert!(store.app_by_key(&app.app_key).await.expect("get").is_none());
        assert_eq!(
            store.app_by_key(&rotated.app_key).await.expect("get"),
            Some(rotated.clone())
        );
        assert!(matches!(
            store.rotate_app_credentials(app.id + 1000).await,
            Err(StoreError::NoSuchApp(_))
        ));

        // Data deletion empties every per-app table of this app only.
        let other = store
            .create_app(NewApp {
                name: "Other".into(),
                timezone: "UTC".into(),
            })
            .await
            .expect("other");
        for id in [app.id, other.id] {
            seed_rows(&t, id).await;
        }
        store.delete_app_data(app.id).await.expect("delete data");
        for table in APP_DATA_TABLES {
            assert_eq!(count_rows(&t, table, app.id).await, 0, "{backend} {table}");
            assert_eq!(
                count_rows(&t, table, other.id).await,
                1,
                "{backend} {table}"
            );
        }
        assert!(store.app_by_id(app.id).await.expect("get").is_some());
        store.delete_app(other.id).await.expect("delete app");
        assert!(store.app_by_id(other.id).await.expect("get").is_none());
        for table in APP_DATA_TABLES {
            assert_eq!(
                count_rows(&t, table, other.id).await,
                0,
                "{backend} {table}"
            );
        }
        assert!(matches!(
            store.delete_app(other.id).await,
            Err(StoreError::NoSuchApp(_))
        ));
        assert!(matches!(
            store.delete_app_data(other.id).await,
            Err(StoreError::NoSuchApp(_))
        ));
        // The aggregator's view agrees: the app is gone.
        assert_eq!(store.app_timezone(other.id).await.expect("tz"), None);
    }
}

/// Every table with an `app_id` column holds app data, except the account grants.
#[tokio::test]
async fn every_app_table_is_deleted_with_app_data() {
    let t = common::sqlite().await;
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT m.name FROM sqlite_master m, pragma_table_info(m.name) c \
         WHERE m.type = 'table' AND c.name = 'app_id' ORDER BY m.name",
    )
    .fetch_all(&sqlite_pool(&t).await)
    .await
    .expect("schema");
    let mut expected: Vec<&str> = APP_DATA_TABLES.to_vec();
    expected.push("account_grants");
    expected.sort_unstable();
    let found: Vec<&str> = tables.iter().map(|(n,)| n.as_str()).collect();
    assert_eq!(found, expected);
}

async fn sqlite_pool(t: &common::TestStore) -> sqlx::SqlitePool {
    let path = t.sqlite_path().expect("sqlite store");
    sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("open")
}

/// One row in every data table for `app_id`, through a second connection.
async fn seed_rows(t: &common::TestStore, app_id: i64) {
    const SQL: &[&str] = &[
        "INSERT INTO devices (app_id, device_no, device_id, first_ts_ms, first_day) \
         VALUES ($1, 1, 'd', 0, 0)",
        "INSERT INTO app_users (app_id, user_id, first_ts_ms) VALUES ($1, 'u', 0)",
        "INSERT INTO day_sets (app_id, day, kind, dim, value, seq, added) \
         VALUES ($1, 0, 'active', '', '', 0, $2)",
        "INSERT INTO day_counters (app_id, day, dim, value, launches, usage_secs, usage_reports) \
         VALUES ($1, 0, '', '', 1, 0, 0)",
        "INSERT INTO hour_counters (app_id, day, hour, launches, new_users) VALUES ($1, 0, 0, 1, 0)",
        "INSERT INTO event_counters (app_id, day, name, seg_key, seg_value, count, sum, dur_secs) \
         VALUES ($1, 0, 'e', '', '', 1, 0, 0)",
        "INSERT INTO event_ids (app_id, event_id, ts_ms) VALUES ($1, 'e1', 0)",
        "INSERT INTO set_sizes (app_id, day, kind, dim, value, size) \
         VALUES ($1, 0, 'active', '', '', 1)",
        "INSERT INTO raw_events (app_id, day, events, payload) VALUES ($1, 0, 0, $2)",
        "INSERT INTO retention_cells (app_id, kind, cohort_day, day_offset, at_day, count) \
         VALUES ($1, 'new', 0, 1, 1, 0)",
    ];
    for sql in SQL {
        t.execute(sql, app_id, vec![0_u8]).await;
    }
}

async fn count_rows(t: &common::TestStore, table: &str, app_id: i64) -> i64 {
    t.count(
        &format!("SELECT COUNT(*) FROM {table} WHERE app_id = $1"),
        app_id,
    )
    .await
}
