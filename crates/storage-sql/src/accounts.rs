//! Accounts, grants, sessions / API tokens and the audit log on both backends:
//! [`AccountStore`] for [`SqlStore`].
//!
//! The store never sees a password or a token: it keeps the Argon2id PHC string and
//! the hex SHA-256 the caller computed. Rules that span rows — the last admin cannot
//! be deleted or demoted, a password change revokes sessions, grants name existing
//! apps — are checked and applied inside one transaction. On PostgreSQL that
//! transaction first takes a lock on `accounts` that conflicts with itself, so two
//! concurrent demotions cannot both see "another admin remains"; SQLite serialises
//! writers anyway.

use async_trait::async_trait;
use sundial_analytics::account::{
    Account, AccountError, AccountStore, AccountStoreError, AccountUpdate, AppScope, AuditEntry,
    Credentials, NewAccount, NewAuditEntry, NewToken, Role, TokenInfo, TokenKind,
    validate_token_name, validate_username,
};

use crate::{Backend, SqlStore};

fn backend(e: sqlx::Error) -> AccountStoreError {
    AccountStoreError::Backend(Box::new(e))
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

#[derive(Debug, sqlx::FromRow)]
struct AccountRow {
    id: i64,
    username: String,
    role: String,
    all_apps: bool,
    created_at_ms: i64,
}

macro_rules! account_columns {
    () => {
        "id, username, role, all_apps, created_at_ms"
    };
}

#[derive(Debug, sqlx::FromRow)]
struct TokenRow {
    id: i64,
    account_id: i64,
    kind: String,
    name: String,
    created_at_ms: i64,
    expires_at_ms: Option<i64>,
}

macro_rules! token_columns {
    () => {
        "id, account_id, kind, name, created_at_ms, expires_at_ms"
    };
}

impl TokenRow {
    fn into_info(self) -> Result<TokenInfo, AccountStoreError> {
        let kind = match self.kind.as_str() {
            "session" => TokenKind::Session,
            "api" => TokenKind::Api,
            other => {
                return Err(AccountStoreError::Backend(
                    format!("corrupt token kind `{other}`").into(),
                ));
            }
        };
        Ok(TokenInfo {
            id: self.id,
            account_id: self.account_id,
            kind,
            name: self.name,
            created_at_ms: self.created_at_ms,
            expires_at_ms: self.expires_at_ms,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
struct AuditRow {
    id: i64,
    at_ms: i64,
    actor: String,
    action: String,
    target: String,
    detail: String,
    ip: Option<String>,
}

/// Turns a row and its grants into an [`Account`].
fn account_from(row: AccountRow, grants: Vec<i64>) -> Result<Account, AccountStoreError> {
    let role: Role = row
        .role
        .parse()
        .map_err(|_| AccountStoreError::Backend(format!("corrupt role `{}`", row.role).into()))?;
    let scope = if row.all_apps || role == Role::Admin {
        AppScope::All
    } else {
        AppScope::from_grants(Some(grants))
    };
    Ok(Account {
        id: row.id,
        username: row.username,
        role,
        scope,
        created_at_ms: row.created_at_ms,
    })
}

/// Loads the grants of `rows` and builds the accounts (one query for the grants).
macro_rules! load_accounts {
    ($exec:expr, $rows:expr) => {{
        let rows: Vec<AccountRow> = $rows;
        let grants: Vec<(i64, i64)> = if rows.iter().any(|r| !r.all_apps) {
            sqlx::query_as("SELECT account_id, app_id FROM account_grants ORDER BY app_id")
                .fetch_all($exec)
                .await
                .map_err(backend)?
        } else {
            Vec::new()
        };
        rows.into_iter()
            .map(|r| {
                let mine = grants
                    .iter()
                    .filter(|(a, _)| *a == r.id)
                    .map(|(_, app)| *app)
                    .collect();
                account_from(r, mine)
            })
            .collect::<Result<Vec<Account>, AccountStoreError>>()
    }};
}

/// Checks that a scope fits a role.
fn check_scope(role: Role, scope: &AppScope) -> Result<(), AccountError> {
    if role == Role::Admin && *scope != AppScope::All {
        return Err(AccountError::AdminGrants);
    }
    Ok(())
}

/// Writes a scope's grants inside a transaction (`$tx`): replaces the account's rows,
/// after checking that every granted app exists.
macro_rules! write_grants {
    ($tx:expr, $account_id:expr, $scope:expr) => {{
        sqlx::query("DELETE FROM account_grants WHERE account_id = $1")
            .bind($account_id)
            .execute(&mut **$tx)
            .await
            .map_err(backend)?;
        if let AppScope::Granted(ids) = $scope {
            for app_id in ids {
                let exists: Option<(i64,)> = sqlx::query_as("SELECT id FROM apps WHERE id = $1")
                    .bind(*app_id)
                    .fetch_optional(&mut **$tx)
                    .await
                    .map_err(backend)?;
                if exists.is_none() {
                    return Err(AccountError::GrantedApp(*app_id).into());
                }
                sqlx::query("INSERT INTO account_grants (account_id, app_id) VALUES ($1, $2)")
                    .bind($account_id)
                    .bind(*app_id)
                    .execute(&mut **$tx)
                    .await
                    .map_err(backend)?;
            }
        }
    }};
}

/// On PostgreSQL, locks `accounts` against concurrent role changes and deletions
/// until the transaction ends (a no-op on SQLite, whose writers are serial).
async fn lock_accounts(tx: &mut AnyTx<'_>) -> Result<(), AccountStoreError> {
    if let AnyTx::Postgres(tx) = tx {
        sqlx::query("LOCK TABLE accounts IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut **tx)
            .await
            .map_err(backend)?;
    }
    Ok(())
}

/// A transaction on either backend.
enum AnyTx<'c> {
    Sqlite(sqlx::Transaction<'c, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'c, sqlx::Postgres>),
}

/// Runs the same statements on whichever transaction `$tx` is.
macro_rules! on_tx {
    ($tx:expr, $t:ident => $body:expr) => {
        match $tx {
            AnyTx::Sqlite($t) => $body,
            AnyTx::Postgres($t) => $body,
        }
    };
}

impl SqlStore {
    async fn begin(&self) -> Result<AnyTx<'static>, AccountStoreError> {
        Ok(match &self.backend {
            Backend::Sqlite(pool) => AnyTx::Sqlite(pool.begin().await.map_err(backend)?),
            Backend::Postgres(pool) => AnyTx::Postgres(pool.begin().await.map_err(backend)?),
        })
    }
}

impl AnyTx<'_> {
    async fn commit(self) -> Result<(), AccountStoreError> {
        on_tx!(self, t => t.commit().await.map_err(backend))
    }
}

#[async_trait]
impl AccountStore for SqlStore {
    async fn create_account(&self, account: NewAccount) -> Result<Account, AccountStoreError> {
        validate_username(&account.username)?;
        check_scope(account.role, &account.scope)?;
        let now = jiff::Timestamp::now().as_millisecond();
        let all_apps = account.scope == AppScope::All;
        const SQL: &str = concat!(
            "INSERT INTO accounts (username, role, all_apps, password_hash, created_at_ms) ",
            "VALUES ($1, $2, $3, $4, $5) RETURNING ",
            account_columns!()
        );
        let mut tx = self.begin().await?;
        let row: AccountRow = on_tx!(&mut tx, t => {
            let row: AccountRow = match sqlx::query_as(SQL)
                .bind(&account.username)
                .bind(account.role.as_str())
                .bind(all_apps)
                .bind(&account.password_hash)
                .bind(now)
                .fetch_one(&mut **t)
                .await
            {
                Ok(row) => row,
                Err(e) if is_unique_violation(&e) => {
                    return Err(AccountStoreError::Duplicate(account.username.clone()));
                }
                Err(e) => return Err(backend(e)),
            };
            write_grants!(t, row.id, &account.scope);
            row
        });
        tx.commit().await?;
        let grants = account
            .scope
            .grants()
            .map(<[i64]>::to_vec)
            .unwrap_or_default();
        tracing::info!(account_id = row.id, username = %row.username, role = %row.role, "account created");
        account_from(row, grants)
    }

    async fn list_accounts(&self) -> Result<Vec<Account>, AccountStoreError> {
        const SQL: &str = concat!("SELECT ", account_columns!(), " FROM accounts ORDER BY id");
        on_backend!(self, pool => load_accounts!(
            pool,
            sqlx::query_as(SQL).fetch_all(pool).await.map_err(backend)?
        ))
    }

    async fn account_by_id(&self, id: i64) -> Result<Option<Account>, AccountStoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            account_columns!(),
            " FROM accounts WHERE id = $1"
        );
        let accounts = on_backend!(self, pool => load_accounts!(
            pool,
            sqlx::query_as(SQL).bind(id).fetch_all(pool).await.map_err(backend)?
        ))?;
        Ok(accounts.into_iter().next())
    }

    async fn account_by_username(
        &self,
        username: &str,
    ) -> Result<Option<Account>, AccountStoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            account_columns!(),
            " FROM accounts WHERE username = $1"
        );
        let accounts = on_backend!(self, pool => load_accounts!(
            pool,
            sqlx::query_as(SQL).bind(username).fetch_all(pool).await.map_err(backend)?
        ))?;
        Ok(accounts.into_iter().next())
    }

    async fn credentials(&self, username: &str) -> Result<Option<Credentials>, AccountStoreError> {
        const SQL: &str = "SELECT password_hash FROM accounts WHERE username = $1";
        let Some(account) = self.account_by_username(username).await? else {
            return Ok(None);
        };
        let hash: Option<(String,)> = on_backend!(self, pool => sqlx::query_as(SQL)
            .bind(username)
            .fetch_optional(pool)
            .await
            .map_err(backend)?);
        Ok(hash.map(|(password_hash,)| Credentials {
            account,
            password_hash,
        }))
    }

    async fn set_password(&self, id: i64, password_hash: &str) -> Result<(), AccountStoreError> {
        let mut tx = self.begin().await?;
        on_tx!(&mut tx, t => {
            let done = sqlx::query("UPDATE accounts SET password_hash = $2 WHERE id = $1")
                .bind(id)
                .bind(password_hash)
                .execute(&mut **t)
                .await
                .map_err(backend)?;
            if done.rows_affected() == 0 {
                return Err(AccountStoreError::NoSuchAccount(format!("id {id}")));
            }
            sqlx::query("DELETE FROM auth_tokens WHERE account_id = $1 AND kind = 'session'")
                .bind(id)
                .execute(&mut **t)
                .await
                .map_err(backend)?;
        });
        tx.commit().await?;
        tracing::info!(account_id = id, "password changed; sessions revoked");
        Ok(())
    }

    async fn update_account(
        &self,
        id: i64,
        update: AccountUpdate,
    ) -> Result<Account, AccountStoreError> {
        let Some(current) = self.account_by_id(id).await? else {
            return Err(AccountStoreError::NoSuchAccount(format!("id {id}")));
        };
        let role = update.role.unwrap_or(current.role);
        let scope = match (&update.scope, role) {
            (Some(scope), _) => scope.clone(),
            // Promotion to admin widens the scope; other changes keep it.
            (None, Role::Admin) => AppScope::All,
            (None, Role::Viewer) => current.scope.clone(),
        };
        check_scope(role, &scope)?;
        let mut tx = self.begin().await?;
        lock_accounts(&mut tx).await?;
        on_tx!(&mut tx, t => {
            if current.role == Role::Admin && role != Role::Admin {
                let (admins,): (i64,) =
                    sqlx::query_as("SELECT COUNT(*) FROM accounts WHERE role = 'admin' AND id <> $1")
                        .bind(id)
                        .fetch_one(&mut **t)
                        .await
                        .map_err(backend)?;
                if admins == 0 {
                    return Err(AccountStoreError::LastAdmin);
                }
            }
            let done = sqlx::query("UPDATE accounts SET role = $2, all_apps = $3 WHERE id = $1")
                .bind(id)
                .bind(role.as_str())
                .bind(scope == AppScope::All)
                .execute(&mut **t)
                .await
                .map_err(backend)?;
            if done.rows_affected() == 0 {
                return Err(AccountStoreError::NoSuchAccount(format!("id {id}")));
            }
            write_grants!(t, id, &scope);
        });
        tx.commit().await?;
        tracing::info!(account_id = id, role = %role, "account updated");
        Ok(Account {
            role,
            scope,
            ..current
        })
    }

    async fn delete_account(&self, id: i64) -> Result<(), AccountStoreError> {
        let mut tx = self.begin().await?;
        lock_accounts(&mut tx).await?;
        on_tx!(&mut tx, t => {
            let role: Option<(String,)> = sqlx::query_as("SELECT role FROM accounts WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut **t)
                .await
                .map_err(backend)?;
            let Some((role,)) = role else {
                return Err(AccountStoreError::NoSuchAccount(format!("id {id}")));
            };
            if role == "admin" {
                let (admins,): (i64,) =
                    sqlx::query_as("SELECT COUNT(*) FROM accounts WHERE role = 'admin'")
                        .fetch_one(&mut **t)
                        .await
                        .map_err(backend)?;
                if admins <= 1 {
                    return Err(AccountStoreError::LastAdmin);
                }
            }
            // Explicit deletes: ON DELETE CASCADE needs SQLite's foreign_keys pragma,
            // which a connection opened elsewhere might lack.
            for sql in [
                "DELETE FROM auth_tokens WHERE account_id = $1",
                "DELETE FROM account_grants WHERE account_id = $1",
                "DELETE FROM accounts WHERE id = $1",
            ] {
                sqlx::query(sql)
                    .bind(id)
                    .execute(&mut **t)
                    .await
                    .map_err(backend)?;
            }
        });
        tx.commit().await?;
        tracing::info!(account_id = id, "account deleted");
        Ok(())
    }

    async fn count_admins(&self) -> Result<u64, AccountStoreError> {
        const SQL: &str = "SELECT COUNT(*) FROM accounts WHERE role = 'admin'";
        let (n,): (i64,) = on_backend!(self, pool => sqlx::query_as(SQL)
            .fetch_one(pool)
            .await
            .map_err(backend)?);
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn create_token(&self, token: NewToken) -> Result<TokenInfo, AccountStoreError> {
        validate_token_name(&token.name)?;
        let now = jiff::Timestamp::now().as_millisecond();
        const SQL: &str = concat!(
            "INSERT INTO auth_tokens (account_id, kind, name, token_hash, created_at_ms, ",
            "expires_at_ms) SELECT id, $2, $3, $4, $5, $6 FROM accounts WHERE id = $1 ",
            "RETURNING ",
            token_columns!()
        );
        let row: Option<TokenRow> = on_backend!(self, pool => sqlx::query_as(SQL)
            .bind(token.account_id)
            .bind(token.kind.as_str())
            .bind(token.name.trim())
            .bind(&token.token_hash)
            .bind(now)
            .bind(token.expires_at_ms)
            .fetch_optional(pool)
            .await
            .map_err(backend)?);
        let row = row
            .ok_or_else(|| AccountStoreError::NoSuchAccount(format!("id {}", token.account_id)))?;
        row.into_info()
    }

    async fn token_by_hash(
        &self,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<Option<(TokenInfo, Account)>, AccountStoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            token_columns!(),
            " FROM auth_tokens WHERE token_hash = $1 ",
            "AND (expires_at_ms IS NULL OR expires_at_ms > $2)"
        );
        let row: Option<TokenRow> = on_backend!(self, pool => sqlx::query_as(SQL)
            .bind(token_hash)
            .bind(now_ms)
            .fetch_optional(pool)
            .await
            .map_err(backend)?);
        let Some(row) = row else {
            return Ok(None);
        };
        let info = row.into_info()?;
        let Some(account) = self.account_by_id(info.account_id).await? else {
            return Ok(None);
        };
        Ok(Some((info, account)))
    }

    async fn list_api_tokens(
        &self,
        account_id: Option<i64>,
    ) -> Result<Vec<TokenInfo>, AccountStoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            token_columns!(),
            " FROM auth_tokens WHERE kind = 'api' AND ($1 IS NULL OR account_id = $1) ",
            "ORDER BY id"
        );
        let rows: Vec<TokenRow> = on_backend!(self, pool => sqlx::query_as(SQL)
            .bind(account_id)
            .fetch_all(pool)
            .await
            .map_err(backend)?);
        rows.into_iter().map(TokenRow::into_info).collect()
    }

    async fn token_by_id(&self, id: i64) -> Result<Option<TokenInfo>, AccountStoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            token_columns!(),
            " FROM auth_tokens WHERE id = $1"
        );
        let row: Option<TokenRow> = on_backend!(self, pool => sqlx::query_as(SQL)
            .bind(id)
            .fetch_optional(pool)
            .await
            .map_err(backend)?);
        row.map(TokenRow::into_info).transpose()
    }

    async fn revoke_token(&self, id: i64) -> Result<(), AccountStoreError> {
        const SQL: &str = "DELETE FROM auth_tokens WHERE id = $1";
        let done = on_backend!(self, pool => sqlx::query(SQL)
            .bind(id)
            .execute(pool)
            .await
            .map_err(backend)?
            .rows_affected());
        if done == 0 {
            return Err(AccountStoreError::NoSuchToken(id));
        }
        tracing::info!(token_id = id, "token revoked");
        Ok(())
    }

    async fn delete_expired_tokens(&self, now_ms: i64) -> Result<u64, AccountStoreError> {
        const SQL: &str =
            "DELETE FROM auth_tokens WHERE expires_at_ms IS NOT NULL AND expires_at_ms <= $1";
        let done = on_backend!(self, pool => sqlx::query(SQL)
            .bind(now_ms)
            .execute(pool)
            .await
            .map_err(backend)?
            .rows_affected());
        Ok(done)
    }

    async fn append_audit(&self, entry: NewAuditEntry) -> Result<(), AccountStoreError> {
        const SQL: &str = "INSERT INTO audit_log (at_ms, actor, action, target, detail, ip) \
                           VALUES ($1, $2, $3, $4, $5, $6)";
        on_backend!(self, pool => sqlx::query(SQL)
            .bind(entry.at_ms)
            .bind(&entry.actor)
            .bind(&entry.action)
            .bind(&entry.target)
            .bind(&entry.detail)
            .bind(entry.ip.as_deref())
            .execute(pool)
            .await
            .map_err(backend)?
            .rows_affected());
        Ok(())
    }

    async fn list_audit(
        &self,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<AuditEntry>, AccountStoreError> {
        const SQL: &str = "SELECT id, at_ms, actor, action, target, detail, ip FROM audit_log \
                           WHERE ($1 IS NULL OR id < $1) ORDER BY id DESC LIMIT $2";
        let rows: Vec<AuditRow> = on_backend!(self, pool => sqlx::query_as(SQL)
            .bind(before)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .map_err(backend)?);
        Ok(rows
            .into_iter()
            .map(|r| AuditEntry {
                id: r.id,
                at_ms: r.at_ms,
                actor: r.actor,
                action: r.action,
                target: r.target,
                detail: r.detail,
                ip: r.ip,
            })
            .collect())
    }
}
