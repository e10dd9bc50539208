//! Storage behind narrow traits.
//!
//! The protocol core asks for exactly what it needs through these traits and
//! never sees SQL. Each method's doc comment is its contract; the atomic ones
//! (code exchange, refresh rotation) are what keep a code single-use and a
//! refresh token spent under concurrency, so any new backend must keep them
//! atomic too. A grant that must write does so in one transaction.
//! [`SqlStore`] implements them all over sqlx.

mod client_cache;
mod sql;

use std::future::Future;

use tollgate_token::Scope;

pub use client_cache::{CLIENT_CACHE_TTL, MAX_CACHED_CLIENTS};
pub use sql::SqlStore;

use crate::domain::model::{
    AuthorizationCode, Client, DeviceCode, GrantRecord, IssuedAccessToken, NextRefreshToken,
    RefreshTokenRecord, RotatedRefresh, StoredKey, User,
};

/// A storage failure. Never shown to callers: the adapters log it and answer
/// `server_error` (or `temporarily_unavailable` when the database is unreachable).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for StorageError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::WorkerCrashed => Self::Unavailable(err),
            // PostgreSQL going away under a pooled connection: a restart or
            // failover ("57P01 terminating connection due to administrator
            // command"), a lost connection (class 08) or no room for one (class
            // 53). The transaction was rolled back; the request may be retried.
            sqlx::Error::Database(ref db)
                if db.code().is_some_and(|code| {
                    code.starts_with("08") || code.starts_with("57P") || code.starts_with("53")
                }) =>
            {
                Self::Unavailable(err)
            }
            other => Self::Database(other),
        }
    }
}

pub type Result<T> = std::result::Result<T, StorageError>;

/// Registered clients.
pub trait ClientStore: Send + Sync {
    /// The client with this id, if registered.
    fn client(&self, client_id: &str) -> impl Future<Output = Result<Option<Client>>> + Send;
    /// Inserts the client, or replaces every field of an existing one (idempotent
    /// bootstrap).
    fn upsert_client(&self, client: &Client, now: i64) -> impl Future<Output = Result<()>> + Send;

    /// Records a client assertion's `jti` until it expires (RFC 7523 §3 item 7);
    /// `false` if this client used it before: a replay.
    fn use_assertion_jti(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> impl Future<Output = Result<bool>> + Send;
}

/// Resource owners.
pub trait UserStore: Send + Sync {
    fn user_by_username(&self, username: &str)
    -> impl Future<Output = Result<Option<User>>> + Send;
    /// Whether a user has this subject (client ids and subjects must not meet:
    /// a client-credentials token's `sub` is its client id, RFC 9068 §2.2).
    fn subject_exists(&self, subject: &str) -> impl Future<Output = Result<bool>> + Send;
    /// Inserts the user, or replaces the username and password hash of the user
    /// with the same subject.
    fn upsert_user(&self, user: &User, now: i64) -> impl Future<Output = Result<()>> + Send;
    /// Replaces a user's password hash with `new` if it is still `old` (a
    /// hash renewed at sign-in must not undo a password set meanwhile).
    /// Whether it was replaced.
    fn replace_password_hash(
        &self,
        subject: &str,
        old: &str,
        new: &str,
    ) -> impl Future<Output = Result<bool>> + Send;
}

/// Authorization codes (RFC 6749 §4.1.2).
pub trait CodeStore: Send + Sync {
    /// Stores a new, unredeemed authorization code.
    fn insert_code(&self, code: &AuthorizationCode) -> impl Future<Output = Result<()>> + Send;

    /// RFC 6749 §4.1.3 in one transaction. Spends the code if it is unredeemed
    /// and unexpired at `now` and hands it to `decide` (the client, redirect
    /// URI, PKCE and resource checks, and the tokens' making). If `decide`
    /// answers with a grant, the grant, its first tokens and the link from
    /// the code to it are written with the spending; if it refuses, the code
    /// is spent all the same (a code is single-use whatever follows). Either
    /// all of it is written or none.
    ///
    /// `decide` runs before the write (a code's fields never change once it
    /// is issued), so the signing does not hold the database's writer. Of two
    /// concurrent calls for one code, both may decide but only one spends
    /// the code and has its decision written; the other's is discarded and
    /// it sees the code spent. A code that was already spent is
    /// [`ExchangeOutcome::Replayed`] (without calling `decide`), naming the
    /// grant it produced (if it produced one) for revocation (RFC 6749
    /// §4.1.2), and is marked replayed.
    fn exchange_code<T: Send + 'static, E: Send + 'static>(
        &self,
        code_hash: &str,
        now: i64,
        decide: impl FnOnce(&AuthorizationCode) -> std::result::Result<(NewGrant, T), E> + Send,
    ) -> impl Future<Output = Result<ExchangeOutcome<T, E>>> + Send;
}

/// A grant to write with its first tokens: the grant, its first refresh token
/// (if its client may refresh) and its first access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGrant {
    pub grant: GrantRecord,
    pub refresh: Option<NextRefreshToken>,
    pub access: IssuedAccessToken,
}

/// What [`CodeStore::exchange_code`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExchangeOutcome<T, E> {
    /// The code was spent and its grant written; what `decide` answered.
    Exchanged(T),
    /// The code was spent and `decide` refused it.
    Refused(E),
    /// Spent before: the grant it produced, if it produced one.
    Replayed { grant_id: Option<String> },
    /// Unknown or expired.
    Invalid,
}

/// What a new grant was redeemed from, so a withdrawal that happened while it
/// was being written still reaches it. (An authorization code's grant is
/// written in the transaction that spends the code: see
/// [`CodeStore::exchange_code`].)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantSource<'a> {
    /// A device code, by its hash.
    DeviceCode(&'a str),
}

/// Grants (an owner's approval of a client) and their refresh tokens.
pub trait GrantStore: Send + Sync {
    /// Atomically stores a new grant, its first refresh token (if any; issued at
    /// the grant's creation, for its client and scope) and its first access
    /// token. Either all of it is written or none. If the owner withdrew the
    /// approval between the device code's redemption and now, the grant is
    /// stored revoked and `false` returned.
    fn create_grant(
        &self,
        grant: &GrantRecord,
        refresh: Option<&NextRefreshToken>,
        access: &IssuedAccessToken,
        source: Option<GrantSource<'_>>,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Atomically: spends the refresh token if it belongs to `client_id`, is
    /// unspent and unexpired at `now`, its grant is not revoked, and `narrow_to`
    /// (if any) lies within its scope; then stores `next` (the rotated token: the
    /// spent one's grant, client and scope, issued at `now`) and records `access`
    /// under the grant. With `bind_key`, a grant not yet bound to a DPoP key is
    /// bound to it (RFC 9449 §5: a public client's refresh tokens are bound
    /// from the first request that proves a key). Otherwise nothing changes. Of two concurrent calls for one
    /// token at most one sees [`RotateOutcome::Rotated`]; a token already spent is
    /// [`RotateOutcome::Reused`].
    #[allow(
        clippy::too_many_arguments,
        reason = "the refresh request's parts and what to write for it, each used once"
    )]
    fn rotate_refresh_token(
        &self,
        token_hash: &str,
        client_id: &str,
        now: i64,
        narrow_to: Option<&Scope>,
        next: &NextRefreshToken,
        access: &IssuedAccessToken,
        bind_key: Option<&str>,
    ) -> impl Future<Output = Result<RotateOutcome>> + Send;

    /// A refresh token by hash, spent or not, with its grant.
    fn refresh_token(
        &self,
        token_hash: &str,
    ) -> impl Future<Output = Result<Option<RefreshTokenRecord>>> + Send;

    /// Revokes a grant and every refresh and access token descended from it:
    /// its refresh tokens stop rotating, its unexpired access tokens join the
    /// denylist. `false` if it was already revoked or does not exist.
    fn revoke_grant(&self, grant_id: &str, now: i64) -> impl Future<Output = Result<bool>> + Send;
}

/// Revocation (RFC 7009) and what resource servers must deny.
pub trait RevocationStore: Send + Sync {
    /// Records a token derived (by exchange) from the access token `subject_jti`
    /// under the same grant, if that token belongs to one.
    fn record_derived_token(
        &self,
        subject_jti: &str,
        access: &IssuedAccessToken,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Puts one access token on the denylist until it expires.
    fn revoke_access_token(
        &self,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> impl Future<Output = Result<()>> + Send;

    fn is_access_token_revoked(&self, jti: &str) -> impl Future<Output = Result<bool>> + Send;

    /// One page of the denylist: at most `limit` revoked access tokens, as
    /// `(jti, exp)`, in `(exp, jti)` order, from the later of `after` (the last
    /// row of the page before) and the start of the live ones (`exp` ≥ `now`:
    /// at `exp` itself a verifier's leeway may still accept the token).
    ///
    /// Keyset paging, not an offset: a row deleted between two pages (the
    /// purge removes only expired ones) cannot shift a live row past the
    /// reader. The order starts with `exp` so a page seeks straight to live
    /// rows: expired ones stay in the table for the purge's retention window,
    /// which may be far more than are live. Must be an index range scan
    /// (`revoked_access_tokens_by_expiry_jti`), so a page costs `limit` rows
    /// however long the table.
    fn revoked_access_tokens(
        &self,
        now: i64,
        after: Option<(&str, i64)>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<(String, i64)>>> + Send;
}

/// What [`GrantStore::rotate_refresh_token`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateOutcome {
    Rotated(RotatedRefresh),
    /// Unknown, spent, expired, another client's, or its grant is revoked.
    Invalid,
    /// The narrowed scope asks for more than the token carries; nothing spent.
    ScopeExceeded,
    /// This client's token, spent before at `used_at`: a replay, or a
    /// concurrent refresh (RFC 9700 §4.14.2).
    Reused {
        grant_id: String,
        used_at: i64,
    },
}

/// The authorization server's signing keys.
pub trait KeyStore: Send + Sync {
    fn signing_keys(&self) -> impl Future<Output = Result<Vec<StoredKey>>> + Send;
    fn insert_signing_key(&self, key: &StoredKey) -> impl Future<Output = Result<()>> + Send;
}

/// Remembered consent.
pub trait ConsentStore: Send + Sync {
    /// The scope `subject` has approved for `client_id`, if any.
    fn consent(
        &self,
        subject: &str,
        client_id: &str,
    ) -> impl Future<Output = Result<Option<Scope>>> + Send;

    /// Adds `scope` to what `subject` approved `client_id` for (one
    /// transaction: two approvals at once both count).
    fn add_consent(
        &self,
        subject: &str,
        client_id: &str,
        scope: &Scope,
        now: i64,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Every approval `subject` gave: `(client_id, client name, scope, granted_at)`.
    fn consents_of(
        &self,
        subject: &str,
    ) -> impl Future<Output = Result<Vec<(String, String, Scope, i64)>>> + Send;

    /// Atomically forgets the approval and revokes every grant `subject` gave
    /// `client_id` (their refresh tokens stop, their access tokens are denied),
    /// with the codes and approved device authorizations not yet redeemed.
    /// `false` if there was no approval.
    fn withdraw_consent(
        &self,
        subject: &str,
        client_id: &str,
        now: i64,
    ) -> impl Future<Output = Result<bool>> + Send;
}

/// Device authorizations (RFC 8628).
pub trait DeviceStore: Send + Sync {
    /// Stores a new device authorization; `false` (nothing written) if its user
    /// code is already taken, so the caller can draw another.
    fn insert_device_code(&self, code: &DeviceCode) -> impl Future<Output = Result<bool>> + Send;

    /// How many device authorizations `client_id` has pending and unexpired at
    /// `now`, and when the first of them expires.
    fn pending_device_codes(
        &self,
        client_id: &str,
        now: i64,
    ) -> impl Future<Output = Result<(u64, Option<i64>)>> + Send;

    /// A pending, unexpired authorization by its user code.
    fn pending_device_code(
        &self,
        user_code: &str,
        now: i64,
    ) -> impl Future<Output = Result<Option<DeviceCode>>> + Send;

    /// Atomically records the user's decision on a pending, unexpired code
    /// and, for an approval, adds its scope to the user's consent for the
    /// code's client (as [`ConsentStore::add_consent`]): an approval exists
    /// exactly when its consent does. The decided code's client and scope;
    /// `None` if it was no longer pending (decided, expired, unknown).
    fn decide_device_code(
        &self,
        user_code: &str,
        subject: &str,
        approve: bool,
        now: i64,
    ) -> impl Future<Output = Result<Option<(String, Scope)>>> + Send;

    /// One poll by the device (RFC 8628 §3.4–3.5), atomically: enforces the
    /// interval, and hands out an approved authorization exactly once.
    fn poll_device_code(
        &self,
        device_code_hash: &str,
        client_id: &str,
        now: i64,
    ) -> impl Future<Output = Result<DevicePoll>> + Send;
}

/// What a device's poll finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevicePoll {
    /// Unknown, or another client's.
    Unknown,
    Expired,
    /// Polled before the interval passed; the interval has grown.
    SlowDown,
    Pending,
    Denied,
    /// Approved: handed out now, never again.
    Approved(DeviceCode),
    /// Handed out before.
    Redeemed,
}

/// Deleting what can no longer matter, so the tables stay the size of what is
/// live rather than of everything ever issued.
pub trait Housekeeping: Send + Sync {
    /// Deletes every code, device code, client-assertion `jti`, refresh token,
    /// access-token record and denylist entry that expired before `cutoff`, then
    /// every grant created before `cutoff` that has no token left. Each delete is
    /// safe on its own and against concurrent requests: a record expired before
    /// `cutoff` can no longer be redeemed, rotated or accepted, and a grant with
    /// no unexpired token can gain no new one (rotation needs an unexpired
    /// refresh token, exchange an unexpired access token; new grants are created
    /// after `cutoff`). What is lost with a record is only its use as evidence:
    /// a replay of a purged code or reuse of a purged refresh token is refused as
    /// unknown, without revoking the grant, hence the caller's retention window.
    fn purge_expired(&self, cutoff: i64) -> impl Future<Output = Result<Purged>> + Send;
}

/// How many records [`Housekeeping::purge_expired`] deleted, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub codes: u64,
    pub device_codes: u64,
    pub assertions: u64,
    pub refresh_tokens: u64,
    pub access_tokens: u64,
    pub denylist: u64,
    pub grants: u64,
}

impl Purged {
    pub fn total(&self) -> u64 {
        self.codes
            + self.device_codes
            + self.assertions
            + self.refresh_tokens
            + self.access_tokens
            + self.denylist
            + self.grants
    }
}

/// Everything the authorization server stores.
pub trait Store:
    ClientStore
    + Housekeeping
    + UserStore
    + CodeStore
    + GrantStore
    + RevocationStore
    + DeviceStore
    + ConsentStore
    + KeyStore
    + Clone
    + 'static
{
}
impl<T> Store for T where
    T: ClientStore
        + Housekeeping
        + UserStore
        + CodeStore
        + GrantStore
        + RevocationStore
        + DeviceStore
        + ConsentStore
        + KeyStore
        + Clone
        + 'static
{
}
