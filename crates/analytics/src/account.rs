//! Accounts of the people (and scripts) who use the analytics platform: roles, app
//! grants, sessions, API tokens and the audit log, and the [`AccountStore`] trait that
//! keeps them.
//!
//! This module holds types and rules only — no cryptography. Callers hash: passwords
//! reach the store as Argon2id PHC strings and tokens as the hex SHA-256 of the token,
//! so that a copy of the database yields neither a password nor a usable token.
//!
//! # Invariants
//!
//! - A username is 1 to [`MAX_USERNAME_BYTES`] bytes of ASCII letters, digits and
//!   `.`, `_`, `-`, `@`; it is unique, compared case-sensitively.
//! - A role is *admin* (manages apps, accounts, tokens, data) or *viewer* (reads
//!   metrics). A viewer's [`AppScope`] is either every app, or exactly the granted apps
//!   — an explicit scope, so that deleting the last granted app leaves a viewer with
//!   access to nothing rather than to everything.
//! - The store refuses to delete or demote the last admin ([`AccountStoreError::LastAdmin`]),
//!   so an installation cannot lock itself out through the API.
//! - Sessions and API tokens are one kind of record ([`TokenInfo`]) told apart by
//!   [`TokenKind`]; both are revocable, both die with their account, and a password
//!   change revokes the account's sessions (not its API tokens).
//! - Nothing here carries a password hash or token hash in `Debug` or `Serialize`
//!   output: [`Credentials`] redacts its hash in `Debug` and is not serializable.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Longest username, in bytes.
pub const MAX_USERNAME_BYTES: usize = 64;
/// Longest token name, in bytes.
pub const MAX_TOKEN_NAME_BYTES: usize = 128;

/// What an account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Manages apps, accounts, tokens and data; reads every app.
    Admin,
    /// Reads metrics of the apps in its scope.
    Viewer,
}

impl Role {
    /// `admin` or `viewer`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = AccountError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "viewer" => Ok(Role::Viewer),
            other => Err(AccountError::Role(other.to_owned())),
        }
    }
}

/// The apps an account may read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppScope {
    /// Every app (admins always; viewers without grants).
    All,
    /// Only these app ids (sorted, without duplicates); may be empty.
    Granted(Vec<i64>),
}

impl AppScope {
    /// Whether the scope includes `app_id`.
    pub fn allows(&self, app_id: i64) -> bool {
        match self {
            AppScope::All => true,
            AppScope::Granted(ids) => ids.binary_search(&app_id).is_ok(),
        }
    }

    /// `None` for every app, else the granted ids: the JSON form `"grants": null | [..]`.
    pub fn grants(&self) -> Option<&[i64]> {
        match self {
            AppScope::All => None,
            AppScope::Granted(ids) => Some(ids),
        }
    }

    /// The scope of `grants` (`None`: every app), ids sorted and deduplicated.
    pub fn from_grants(grants: Option<Vec<i64>>) -> Self {
        match grants {
            None => AppScope::All,
            Some(mut ids) => {
                ids.sort_unstable();
                ids.dedup();
                AppScope::Granted(ids)
            }
        }
    }
}

/// An account as stored, without its password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    /// Numeric id, assigned by the store.
    pub id: i64,
    /// Unique login name.
    pub username: String,
    /// What the account may do.
    pub role: Role,
    /// Which apps it may read (admins: always [`AppScope::All`]).
    #[serde(skip)]
    pub scope: AppScope,
    /// Creation instant, epoch milliseconds.
    pub created_at_ms: i64,
}

impl Account {
    /// Whether the account may read `app_id`'s metrics.
    pub fn can_read_app(&self, app_id: i64) -> bool {
        self.role == Role::Admin || self.scope.allows(app_id)
    }
}

/// An account with its password hash, for login only.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The account.
    pub account: Account,
    /// Its Argon2id PHC string.
    pub password_hash: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("account", &self.account)
            .field("password_hash", &"<redacted>")
            .finish()
    }
}

/// What is needed to create an account.
#[derive(Clone, PartialEq, Eq)]
pub struct NewAccount {
    /// Login name (see [`validate_username`]).
    pub username: String,
    /// Role.
    pub role: Role,
    /// App scope; must be [`AppScope::All`] for admins.
    pub scope: AppScope,
    /// Argon2id PHC string of the password (hashed by the caller).
    pub password_hash: String,
}

impl std::fmt::Debug for NewAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewAccount")
            .field("username", &self.username)
            .field("role", &self.role)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// A change of role and/or scope; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountUpdate {
    /// New role.
    pub role: Option<Role>,
    /// New scope.
    pub scope: Option<AppScope>,
}

/// Sessions (from a login, short-lived) and API tokens (created on purpose, long-lived).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// A login session: cookie or bearer; expires; revoked by logout or password change.
    Session,
    /// A named API token for scripts; expires only if created with an expiry.
    Api,
}

impl TokenKind {
    /// `session` or `api`.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Session => "session",
            TokenKind::Api => "api",
        }
    }
}

/// A session or API token as stored (never the token itself, never its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    /// Numeric id (what revocation names).
    pub id: i64,
    /// The account it acts as.
    pub account_id: i64,
    /// Session or API token.
    pub kind: TokenKind,
    /// A name chosen by its creator (`login` for sessions).
    pub name: String,
    /// Creation instant, epoch milliseconds.
    pub created_at_ms: i64,
    /// Expiry instant, epoch milliseconds; `None` never expires.
    pub expires_at_ms: Option<i64>,
}

/// What is needed to store a token.
#[derive(Clone, PartialEq, Eq)]
pub struct NewToken {
    /// The account it acts as.
    pub account_id: i64,
    /// Session or API token.
    pub kind: TokenKind,
    /// Name, 1 to [`MAX_TOKEN_NAME_BYTES`] bytes.
    pub name: String,
    /// Lowercase hex SHA-256 of the token (the token itself is never stored).
    pub token_hash: String,
    /// Expiry instant, epoch milliseconds.
    pub expires_at_ms: Option<i64>,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("account_id", &self.account_id)
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish_non_exhaustive()
    }
}

/// One administrative action: who did what to what, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// Increasing id.
    pub id: i64,
    /// When, epoch milliseconds.
    pub at_ms: i64,
    /// Who: a username, or `cli` for the command line.
    pub actor: String,
    /// What, e.g. `app.create`, `account.delete`, `login.failure`.
    pub action: String,
    /// The object, e.g. `app:3`, `account:alice`.
    pub target: String,
    /// Details (never a secret).
    pub detail: String,
    /// The client address, when the action came over HTTP.
    pub ip: Option<String>,
}

/// An audit entry to append (the store assigns id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEntry {
    /// When, epoch milliseconds.
    pub at_ms: i64,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// The object.
    pub target: String,
    /// Details (never a secret).
    pub detail: String,
    /// The client address.
    pub ip: Option<String>,
}

/// Account input that is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// The username is empty, too long or has characters outside the allowed set.
    #[error(
        "username must be 1 to {MAX_USERNAME_BYTES} bytes of letters, digits, `.`, `_`, `-`, `@`"
    )]
    Username,
    /// Not a role.
    #[error("`{0}` is not a role: use admin or viewer")]
    Role(String),
    /// Admins always see every app.
    #[error("grants apply to viewers only: an admin reads every app")]
    AdminGrants,
    /// A granted app does not exist.
    #[error("cannot grant app {0}: no such app")]
    GrantedApp(i64),
    /// Bad token name.
    #[error("token name must be 1 to {MAX_TOKEN_NAME_BYTES} bytes")]
    TokenName,
}

/// Checks a username against the rules in the module documentation.
pub fn validate_username(username: &str) -> Result<(), AccountError> {
    let ok = !username.is_empty()
        && username.len() <= MAX_USERNAME_BYTES
        && username
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(AccountError::Username)
    }
}

/// Checks a token name.
pub fn validate_token_name(name: &str) -> Result<(), AccountError> {
    let name = name.trim();
    if name.is_empty() || name.len() > MAX_TOKEN_NAME_BYTES {
        Err(AccountError::TokenName)
    } else {
        Ok(())
    }
}

/// An account-store operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountStoreError {
    /// The input was not acceptable; nothing changed.
    #[error(transparent)]
    Invalid(#[from] AccountError),
    /// The username is taken.
    #[error("an account named `{0}` already exists")]
    Duplicate(String),
    /// No such account.
    #[error("no account {0}")]
    NoSuchAccount(String),
    /// No such token.
    #[error("no token {0}")]
    NoSuchToken(i64),
    /// The change would leave no admin.
    #[error("refused: this is the last admin account")]
    LastAdmin,
    /// The database failed.
    #[error("storage error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Where accounts, tokens and the audit log are kept. Every method is one transaction.
#[async_trait]
pub trait AccountStore: Send + Sync + std::fmt::Debug {
    /// Creates an account (validating username and scope).
    async fn create_account(&self, account: NewAccount) -> Result<Account, AccountStoreError>;
    /// All accounts, by id.
    async fn list_accounts(&self) -> Result<Vec<Account>, AccountStoreError>;
    /// The account with this id.
    async fn account_by_id(&self, id: i64) -> Result<Option<Account>, AccountStoreError>;
    /// The account with this username.
    async fn account_by_username(
        &self,
        username: &str,
    ) -> Result<Option<Account>, AccountStoreError>;
    /// The account and its password hash, for login.
    async fn credentials(&self, username: &str) -> Result<Option<Credentials>, AccountStoreError>;
    /// Replaces the password hash and revokes the account's sessions.
    async fn set_password(&self, id: i64, password_hash: &str) -> Result<(), AccountStoreError>;
    /// Changes role and/or scope; refuses to demote the last admin.
    async fn update_account(
        &self,
        id: i64,
        update: AccountUpdate,
    ) -> Result<Account, AccountStoreError>;
    /// Deletes the account with its tokens; refuses to delete the last admin.
    async fn delete_account(&self, id: i64) -> Result<(), AccountStoreError>;
    /// How many admin accounts exist.
    async fn count_admins(&self) -> Result<u64, AccountStoreError>;

    /// Stores a session or API token (by hash).
    async fn create_token(&self, token: NewToken) -> Result<TokenInfo, AccountStoreError>;
    /// The live (unexpired at `now_ms`) token with this hash and its account.
    async fn token_by_hash(
        &self,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<Option<(TokenInfo, Account)>, AccountStoreError>;
    /// API tokens (not sessions), of one account or of all, by id.
    async fn list_api_tokens(
        &self,
        account_id: Option<i64>,
    ) -> Result<Vec<TokenInfo>, AccountStoreError>;
    /// The token with this id.
    async fn token_by_id(&self, id: i64) -> Result<Option<TokenInfo>, AccountStoreError>;
    /// Revokes (deletes) the token with this id.
    async fn revoke_token(&self, id: i64) -> Result<(), AccountStoreError>;
    /// Deletes tokens that expired before `now_ms`; returns how many.
    async fn delete_expired_tokens(&self, now_ms: i64) -> Result<u64, AccountStoreError>;

    /// Appends to the audit log.
    async fn append_audit(&self, entry: NewAuditEntry) -> Result<(), AccountStoreError>;
    /// The newest `limit` entries with id below `before` (all when `None`), newest first.
    async fn list_audit(
        &self,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<AuditEntry>, AccountStoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for ok in ["admin", "a", "alice.b-c_d@example.org", &"x".repeat(64)] {
            assert_eq!(validate_username(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            " admin",
            "a b",
            "<script>",
            "ünï",
            "a'--",
            &"x".repeat(65),
        ] {
            assert_eq!(validate_username(bad), Err(AccountError::Username), "{bad}");
        }
    }

    #[test]
    fn scopes() {
        let scope = AppScope::from_grants(Some(vec![3, 1, 3]));
        assert_eq!(scope, AppScope::Granted(vec![1, 3]));
        assert!(scope.allows(1) && scope.allows(3) && !scope.allows(2));
        assert!(!AppScope::Granted(vec![]).allows(1));
        assert!(AppScope::All.allows(42));
        let viewer = Account {
            id: 1,
            username: "v".into(),
            role: Role::Viewer,
            scope: AppScope::Granted(vec![]),
            created_at_ms: 0,
        };
        assert!(!viewer.can_read_app(1));
        let admin = Account {
            role: Role::Admin,
            ..viewer
        };
        assert!(admin.can_read_app(1));
    }

    #[test]
    fn roles_parse() {
        assert_eq!("admin".parse::<Role>(), Ok(Role::Admin));
        assert_eq!("viewer".parse::<Role>(), Ok(Role::Viewer));
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn secrets_are_not_debug_printed() {
        let c = Credentials {
            account: Account {
                id: 1,
                username: "u".into(),
                role: Role::Admin,
                scope: AppScope::All,
                created_at_ms: 0,
            },
            password_hash: "$argon2id$secret".into(),
        };
        assert!(!format!("{c:?}").contains("secret"));
        let t = NewToken {
            account_id: 1,
            kind: TokenKind::Api,
            name: "n".into(),
            token_hash: "deadbeef".into(),
            expires_at_ms: None,
        };
        assert!(!format!("{t:?}").contains("deadbeef"));
    }
}
