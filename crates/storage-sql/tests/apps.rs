//! Apps on SQLite and PostgreSQL: creation, look-up, validation, hostile names.

mod common;

use sundial_analytics::{NewApp, Store, StoreError};

fn new_app(name: &str, timezone: &str) -> NewApp {
    NewApp {
        name: name.to_owned(),
        timezone: timezone.to_owned(),
    }
}

#[tokio::test]
async fn create_list_and_look_up() {
    for t in common::both().await {
        let store = &t.store;
        let backend = store.backend_name();
        let a = store
            .create_app(new_app("Demo", "Asia/Shanghai"))
            .await
            .expect("create");
        let b = store
            .create_app(new_app("Other", "UTC"))
            .await
            .expect("create");
        assert_ne!(a.id, b.id, "{backend}");
        assert_eq!(a.timezone, "Asia/Shanghai");
        assert_eq!(a.app_key.len(), 40);
        assert_eq!(a.app_secret.len(), 64);
        assert_ne!(a.app_key, b.app_key);
        assert!(!a.require_signature);

        let listed = store.list_apps().await.expect("list");
        assert_eq!(listed, vec![a.clone(), b.clone()], "{backend}");
        assert_eq!(store.app_by_id(a.id).await.expect("get"), Some(a.clone()));
        assert_eq!(
            store.app_by_key(&b.app_key).await.expect("get"),
            Some(b.clone())
        );
        assert_eq!(store.app_by_key("nope").await.expect("get"), None);
        assert_eq!(store.app_by_id(999_999).await.expect("get"), None);
    }
}

#[tokio::test]
async fn invalid_apps_change_nothing() {
    for t in common::both().await {
        let store = &t.store;
        let err = store
            .create_app(new_app("Demo", "Mars/Base"))
            .await
            .expect_err("bad zone");
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");
        assert!(err.to_string().contains("Mars/Base"));
        let err = store
            .create_app(new_app("", "UTC"))
            .await
            .expect_err("empty name");
        assert!(err.to_string().contains("app name"), "{err}");
        assert!(store.list_apps().await.expect("list").is_empty());
    }
}

#[tokio::test]
async fn hostile_names_are_stored_verbatim() {
    for t in common::both().await {
        let store = &t.store;
        let name = "Robert'); DROP TABLE apps;-- <script>alert(1)</script> 中文";
        let app = store
            .create_app(new_app(name, "UTC"))
            .await
            .expect("create");
        assert_eq!(app.name, name);
        assert_eq!(store.list_apps().await.expect("list")[0].name, name);
    }
}

#[tokio::test]
async fn reopening_keeps_data_and_migrations_are_idempotent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let created = {
        let store = sundial_storage_sql::SqlStore::open_in(dir.path())
            .await
            .expect("open");
        let app = store
            .create_app(new_app("Keep", "Europe/Berlin"))
            .await
            .expect("create");
        store.close().await;
        app
    };
    let store = sundial_storage_sql::SqlStore::open_in(dir.path())
        .await
        .expect("reopen");
    assert_eq!(store.list_apps().await.expect("list"), vec![created]);
    let url = format!("sqlite://{}", dir.path().join("sundial.db").display());
    let by_url = sundial_storage_sql::SqlStore::connect(&url)
        .await
        .expect("by url");
    assert_eq!(by_url.list_apps().await.expect("list").len(), 1);
}

#[tokio::test]
async fn bad_urls_are_clear_errors() {
    let err = sundial_storage_sql::SqlStore::connect("mysql://x/y")
        .await
        .expect_err("scheme");
    assert!(err.to_string().contains("unsupported store URL"), "{err}");
    let err = sundial_storage_sql::SqlStore::connect("postgres://u:hunter2@127.0.0.1:1/db")
        .await
        .expect_err("unreachable");
    let text = format!(
        "{err}: {}",
        std::error::Error::source(&err).expect("a cause")
    );
    assert!(text.contains("cannot connect"), "{text}");
    assert!(text.contains("refused"), "the cause is named: {text}");
    assert!(!text.contains("hunter2"), "password leaked: {text}");
}
