//! The storage traits over sqlx's `Any` driver: one implementation for SQLite
//! (the embedded default) and PostgreSQL. Queries
//! use `$N` placeholders, which both accept, and only types both share (TEXT,
//! 64-bit integers).

use base64::Engine as _;
use sqlx::AnyConnection;
use sqlx::Row;
use sqlx::any::AnyRow;
use tollgate_service_kit::db::{Database, Decision};
use tollgate_token::{Jwk, KeyAlgorithm, Scope, Secret};

use super::{
    ClientStore, CodeStore, ConsentStore, DevicePoll, DeviceStore, ExchangeOutcome, GrantSource,
    GrantStore, Housekeeping, KeyStore, NewGrant, Purged, Result, RevocationStore, RotateOutcome,
    StorageError, UserStore,
};
use crate::domain::model::{
    AuthorizationCode, Client, DeviceCode, GrantRecord, GrantType, IssuedAccessToken,
    NextRefreshToken, RefreshTokenRecord, RotatedRefresh, StoredKey, User,
};

static SQLITE_MIGRATIONS: tollgate_service_kit::db::Migrations =
    tollgate_service_kit::db::Migrations { sqlite: &SQLITE, postgres: &POSTGRES };
static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The authorization server's database.
#[derive(Debug, Clone)]
pub struct SqlStore {
    db: Database,
    /// Registered clients, read once per [`super::CLIENT_CACHE_TTL`].
    clients: std::sync::Arc<super::client_cache::ClientCache>,
}

impl SqlStore {
    /// Connects to `url` (`sqlite://…`), creating a SQLite file if
    /// needed, and applies the migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        let db = tollgate_service_kit::db::connect(url, &SQLITE_MIGRATIONS).await?;
        Ok(Self { db, clients: Default::default() })
    }
}

fn scope_of(raw: &str) -> Result<Scope> {
    Scope::parse(raw).map_err(|e| StorageError::Corrupt(format!("scope: {e}")))
}

fn client_from_row(row: &AnyRow) -> Result<Client> {
    let redirect_uris: Vec<String> = serde_json::from_str(row.try_get("redirect_uris")?)
        .map_err(|e| StorageError::Corrupt(format!("redirect_uris: {e}")))?;
    let grant_types = row
        .try_get::<&str, _>("grant_types")?
        .split(' ')
        .filter(|g| !g.is_empty())
        .map(|g| GrantType::parse(g).ok_or_else(|| StorageError::Corrupt(format!("grant {g}"))))
        .collect::<Result<Vec<_>>>()?;
    Ok(Client {
        client_id: row.try_get("client_id")?,
        name: row.try_get("name")?,
        secret_hash: row.try_get("secret_hash")?,
        redirect_uris,
        grant_types,
        scope: scope_of(row.try_get("scope")?)?,
        audience: row.try_get("audience")?,
        exchange_audiences: serde_json::from_str(row.try_get("exchange_audiences")?)
            .map_err(|e| StorageError::Corrupt(format!("exchange_audiences: {e}")))?,
        resources: serde_json::from_str(row.try_get("resources")?)
            .map_err(|e| StorageError::Corrupt(format!("resources: {e}")))?,
        jwks: row
            .try_get::<Option<String>, _>("jwks")?
            .map(|json| serde_json::from_str(&json))
            .transpose()
            .map_err(|e| StorageError::Corrupt(format!("jwks: {e}")))?,
        tls_client_auth_san_dns: row.try_get("tls_client_auth_san_dns")?,
        dpop_bound_access_tokens: row.try_get::<i64, _>("dpop_bound_access_tokens")? != 0,
    })
}

impl ClientStore for SqlStore {
    /// Records a client assertion's `jti`; `false` if it was seen before and
    /// has not expired (a replay). One statement, touching only this `jti`'s
    /// row: an expired record is taken over, the rest are left to the purge
    /// (not a table-wide delete on every authentication).
    async fn use_assertion_jti(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool> {
        let inserted = sqlx::query(
            "INSERT INTO client_assertions (client_id, jti, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (client_id, jti) DO UPDATE SET expires_at = excluded.expires_at
             WHERE client_assertions.expires_at <= $4",
        )
        .bind(client_id)
        .bind(jti)
        .bind(expires_at)
        .bind(now)
        .execute(&self.db.writes)
        .await?;
        Ok(inserted.rows_affected() == 1)
    }

    async fn client(&self, client_id: &str) -> Result<Option<Client>> {
        let now = std::time::Instant::now();
        if let Some(client) = self.clients.get(client_id, now) {
            return Ok(Some(client));
        }
        let row = sqlx::query(
            "SELECT client_id, name, secret_hash, redirect_uris, grant_types, scope, audience,
                    exchange_audiences, jwks, resources, tls_client_auth_san_dns,
                    dpop_bound_access_tokens
             FROM clients WHERE client_id = $1",
        )
        .bind(client_id)
        .fetch_optional(&self.db.reads)
        .await?;
        let client = row.as_ref().map(client_from_row).transpose()?;
        if let Some(client) = &client {
            self.clients.put(client, now);
        }
        Ok(client)
    }

    async fn upsert_client(&self, client: &Client, now: i64) -> Result<()> {
        let redirect_uris = serde_json::to_string(&client.redirect_uris)
            .map_err(|e| StorageError::Corrupt(e.to_string()))?;
        let grant_types =
            client.grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>().join(" ");
        let exchange_audiences = serde_json::to_string(&client.exchange_audiences)
            .map_err(|e| StorageError::Corrupt(e.to_string()))?;
        let resources = serde_json::to_string(&client.resources)
            .map_err(|e| StorageError::Corrupt(e.to_string()))?;
        let jwks = client
            .jwks
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StorageError::Corrupt(e.to_string()))?;
        sqlx::query(
            "INSERT INTO clients
                 (client_id, name, secret_hash, redirect_uris, grant_types, scope, audience,
                  created_at, exchange_audiences, jwks, resources, tls_client_auth_san_dns,
                  dpop_bound_access_tokens)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT (client_id) DO UPDATE SET
                 name = excluded.name, secret_hash = excluded.secret_hash,
                 redirect_uris = excluded.redirect_uris, grant_types = excluded.grant_types,
                 scope = excluded.scope, audience = excluded.audience,
                 exchange_audiences = excluded.exchange_audiences, jwks = excluded.jwks,
                 resources = excluded.resources,
                 tls_client_auth_san_dns = excluded.tls_client_auth_san_dns,
                 dpop_bound_access_tokens = excluded.dpop_bound_access_tokens",
        )
        .bind(&client.client_id)
        .bind(&client.name)
        .bind(client.secret_hash.as_deref())
        .bind(redirect_uris)
        .bind(grant_types)
        .bind(client.scope.to_string())
        .bind(&client.audience)
        .bind(now)
        .bind(exchange_audiences)
        .bind(jwks)
        .bind(resources)
        .bind(client.tls_client_auth_san_dns.as_deref())
        .bind(i64::from(client.dpop_bound_access_tokens))
        .execute(&self.db.writes)
        .await?;
        self.clients.forget(&client.client_id);
        Ok(())
    }
}

impl UserStore for SqlStore {
    async fn subject_exists(&self, subject: &str) -> Result<bool> {
        let row = sqlx::query("SELECT 1 AS found FROM users WHERE subject = $1")
            .bind(subject)
            .fetch_optional(&self.db.reads)
            .await?;
        Ok(row.is_some())
    }

    async fn user_by_username(&self, username: &str) -> Result<Option<User>> {
        let row =
            sqlx::query("SELECT subject, username, password_hash FROM users WHERE username = $1")
                .bind(username)
                .fetch_optional(&self.db.reads)
                .await?;
        row.map(|row| {
            Ok(User {
                subject: row.try_get("subject")?,
                username: row.try_get("username")?,
                password_hash: Secret::new(row.try_get::<String, _>("password_hash")?),
            })
        })
        .transpose()
    }

    async fn upsert_user(&self, user: &User, now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO users (subject, username, password_hash, created_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (subject) DO UPDATE SET
                 username = excluded.username, password_hash = excluded.password_hash",
        )
        .bind(&user.subject)
        .bind(&user.username)
        .bind(user.password_hash.expose())
        .bind(now)
        .execute(&self.db.writes)
        .await?;
        Ok(())
    }

    async fn replace_password_hash(&self, subject: &str, old: &str, new: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE users SET password_hash = $1 WHERE subject = $2 AND password_hash = $3",
        )
        .bind(new)
        .bind(subject)
        .bind(old)
        .execute(&self.db.writes)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

impl CodeStore for SqlStore {
    async fn insert_code(&self, code: &AuthorizationCode) -> Result<()> {
        sqlx::query(
            "INSERT INTO authorization_codes
                 (code_hash, client_id, subject, redirect_uri, scope, code_challenge,
                  issued_at, expires_at, audience)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&code.code_hash)
        .bind(&code.client_id)
        .bind(&code.subject)
        .bind(&code.redirect_uri)
        .bind(code.scope.to_string())
        .bind(&code.code_challenge)
        .bind(code.issued_at)
        .bind(code.expires_at)
        .bind(&code.audience)
        .execute(&self.db.writes)
        .await?;
        Ok(())
    }

    async fn exchange_code<T: Send + 'static, E: Send + 'static>(
        &self,
        code_hash: &str,
        now: i64,
        decide: impl FnOnce(&AuthorizationCode) -> std::result::Result<(NewGrant, T), E> + Send,
    ) -> Result<ExchangeOutcome<T, E>> {
        // Read first. A code's fields never change once it is issued, so the
        // checks and the signing run here, outside the write; the write then
        // spends the code only if it is still unspent, and writes what was
        // decided only if it spent it.
        let row = sqlx::query(
            "SELECT code_hash, client_id, subject, redirect_uri, scope, code_challenge,
                    issued_at, expires_at, audience, redeemed_at
             FROM authorization_codes WHERE code_hash = $1",
        )
        .bind(code_hash)
        .fetch_optional(&self.db.reads)
        .await?;
        let Some(row) = row else { return Ok(ExchangeOutcome::Invalid) };
        let spent = row.try_get::<Option<i64>, _>("redeemed_at")?.is_some();
        let code = AuthorizationCode {
            code_hash: row.try_get("code_hash")?,
            client_id: row.try_get("client_id")?,
            subject: row.try_get("subject")?,
            redirect_uri: row.try_get("redirect_uri")?,
            scope: scope_of(row.try_get("scope")?)?,
            code_challenge: row.try_get("code_challenge")?,
            issued_at: row.try_get("issued_at")?,
            expires_at: row.try_get("expires_at")?,
            audience: row.try_get("audience")?,
        };
        if !spent && code.expires_at <= now {
            return Ok(ExchangeOutcome::Invalid);
        }
        // A spent code is not decided on: it only goes to the replay path.
        let decided = (!spent).then(|| decide(&code));
        let code_hash = code.code_hash;
        self.db
            .transaction(Box::new(move |conn| {
                Box::pin(async move {
                    // One conditional UPDATE spends the code: the database
                    // decides which of two concurrent exchanges wins, on
                    // SQLite and PostgreSQL alike (PostgreSQL's loser waits
                    // for the row and then finds it spent).
                    let won = match decided {
                        None => None,
                        Some(decided) => sqlx::query(
                            "UPDATE authorization_codes SET redeemed_at = $1
                             WHERE code_hash = $2 AND redeemed_at IS NULL AND expires_at > $1",
                        )
                        .bind(now)
                        .bind(&code_hash)
                        .execute(&mut *conn)
                        .await?
                        .rows_affected()
                        .eq(&1)
                        .then_some(decided),
                    };
                    let outcome = match won {
                        // Refused: the spending alone is committed.
                        Some(Err(refusal)) => ExchangeOutcome::Refused(refusal),
                        Some(Ok((new, answer))) => {
                            insert_grant(conn, &new.grant, new.refresh.as_ref(), &new.access)
                                .await?;
                            sqlx::query(
                                "UPDATE authorization_codes SET grant_id = $1 WHERE code_hash = $2",
                            )
                            .bind(&new.grant.grant_id)
                            .bind(&code_hash)
                            .execute(&mut *conn)
                            .await?;
                            ExchangeOutcome::Exchanged(answer)
                        }
                        // Spent before (or just now, by a concurrent
                        // exchange): the replay is marked (evidence until
                        // the purge) and names the grant the code produced.
                        None => {
                            let replayed = sqlx::query(
                                "UPDATE authorization_codes
                                 SET replayed_at = COALESCE(replayed_at, $1)
                                 WHERE code_hash = $2 AND redeemed_at IS NOT NULL
                                 RETURNING grant_id",
                            )
                            .bind(now)
                            .bind(&code_hash)
                            .fetch_optional(&mut *conn)
                            .await?;
                            match replayed {
                                Some(row) => {
                                    ExchangeOutcome::Replayed { grant_id: row.try_get("grant_id")? }
                                }
                                None => ExchangeOutcome::Invalid,
                            }
                        }
                    };
                    Ok(Decision::Commit(outcome))
                })
            }))
            .await
    }
}

/// A `grants` row (columns `grant_id, client_id, subject, scope, audience,
/// created_at, dpop_jkt`), the one place it is mapped.
fn grant_from_row(row: &AnyRow) -> Result<GrantRecord> {
    Ok(GrantRecord {
        grant_id: row.try_get("grant_id")?,
        client_id: row.try_get("client_id")?,
        subject: row.try_get("subject")?,
        scope: scope_of(row.try_get("scope")?)?,
        audience: row.try_get("audience")?,
        created_at: row.try_get("created_at")?,
        dpop_jkt: row.try_get("dpop_jkt")?,
    })
}

impl GrantStore for SqlStore {
    async fn create_grant(
        &self,
        grant: &GrantRecord,
        refresh: Option<&NextRefreshToken>,
        access: &IssuedAccessToken,
        source: Option<GrantSource<'_>>,
    ) -> Result<bool> {
        let mut tx = self.db.writes.begin().await?;
        insert_grant(&mut tx, grant, refresh, access).await?;
        // Its approval withdrawn since the device code's redemption: the grant
        // is born revoked.
        let spoilt = match source {
            Some(GrantSource::DeviceCode(device_code_hash)) => {
                sqlx::query("SELECT status FROM device_codes WHERE device_code_hash = $1")
                    .bind(device_code_hash)
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get::<String, _>("status")?
                    == "withdrawn"
            }
            None => false,
        };
        if spoilt {
            sqlx::query("UPDATE grants SET revoked_at = created_at WHERE grant_id = $1")
                .bind(&grant.grant_id)
                .execute(&mut *tx)
                .await?;
        }
        let live = !spoilt;
        tx.commit().await?;
        Ok(live)
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "the refresh request's parts and what to write for it, each used once"
    )]
    async fn rotate_refresh_token(
        &self,
        token_hash: &str,
        client_id: &str,
        now: i64,
        narrow_to: Option<&Scope>,
        next: &NextRefreshToken,
        access: &IssuedAccessToken,
        bind_key: Option<&str>,
    ) -> Result<RotateOutcome> {
        let (token_hash, client_id) = (token_hash.to_owned(), client_id.to_owned());
        let bind_key = bind_key.map(str::to_owned);
        let (narrow_to, next, access) = (narrow_to.cloned(), next.clone(), access.clone());
        self.db
            .transaction(Box::new(move |conn| {
                Box::pin(async move {
                    // Spend first, atomically: of two concurrent rotations one
                    // updates the row.
                    let spent = sqlx::query(
                        "UPDATE refresh_tokens SET used_at = $1
                         WHERE token_hash = $2 AND client_id = $3 AND used_at IS NULL
                           AND expires_at > $1
                         RETURNING grant_id, scope",
                    )
                    .bind(now)
                    .bind(&token_hash)
                    .bind(&client_id)
                    .fetch_optional(&mut *conn)
                    .await?;
                    let Some(spent) = spent else {
                        // Not spendable: tell a reuse of this client's spent
                        // token apart.
                        let previous = sqlx::query(
                            "SELECT grant_id, used_at FROM refresh_tokens
                             WHERE token_hash = $1 AND client_id = $2 AND used_at IS NOT NULL",
                        )
                        .bind(&token_hash)
                        .bind(&client_id)
                        .fetch_optional(&mut *conn)
                        .await?;
                        return Ok(Decision::Rollback(match previous {
                            Some(row) => RotateOutcome::Reused {
                                grant_id: row.try_get("grant_id")?,
                                used_at: row.try_get("used_at")?,
                            },
                            None => RotateOutcome::Invalid,
                        }));
                    };
                    let grant_id: String = spent.try_get("grant_id")?;
                    let scope = scope_of(spent.try_get("scope")?)?;
                    if narrow_to.is_some_and(|asked| !asked.is_subset(&scope)) {
                        return Ok(Decision::Rollback(RotateOutcome::ScopeExceeded));
                    }
                    let grant = sqlx::query(
                        "SELECT grant_id, client_id, subject, scope, audience, created_at,
                                dpop_jkt
                         FROM grants WHERE grant_id = $1 AND revoked_at IS NULL",
                    )
                    .bind(&grant_id)
                    .fetch_optional(&mut *conn)
                    .await?;
                    let Some(grant) = grant else {
                        // A revoked grant: leave everything as it was.
                        return Ok(Decision::Rollback(RotateOutcome::Invalid));
                    };
                    let mut grant = grant_from_row(&grant)?;
                    if let Some(jkt) = bind_key
                        && grant.dpop_jkt.is_none()
                    {
                        sqlx::query(
                            "UPDATE grants SET dpop_jkt = $1 WHERE grant_id = $2 AND dpop_jkt IS NULL",
                        )
                        .bind(&jkt)
                        .bind(&grant.grant_id)
                        .execute(&mut *conn)
                        .await?;
                        grant.dpop_jkt = Some(jkt);
                    }
                    let owner = RefreshOwner {
                        grant_id: &grant.grant_id,
                        client_id: &client_id,
                        scope: &scope,
                    };
                    insert_refresh(conn, owner, &next, now).await?;
                    insert_access(conn, &grant.grant_id, &access).await?;
                    Ok(Decision::Commit(RotateOutcome::Rotated(RotatedRefresh { grant, scope })))
                })
            }))
            .await
    }

    async fn refresh_token(&self, token_hash: &str) -> Result<Option<RefreshTokenRecord>> {
        let row = sqlx::query(
            "SELECT r.client_id AS token_client_id, r.scope AS token_scope, r.issued_at,
                    r.expires_at, r.used_at, g.grant_id, g.client_id, g.subject, g.scope,
                    g.audience, g.created_at, g.dpop_jkt, g.revoked_at
             FROM refresh_tokens r JOIN grants g ON g.grant_id = r.grant_id
             WHERE r.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.db.reads)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(RefreshTokenRecord {
            grant: grant_from_row(&row)?,
            client_id: row.try_get("token_client_id")?,
            scope: scope_of(row.try_get("token_scope")?)?,
            issued_at: row.try_get("issued_at")?,
            expires_at: row.try_get("expires_at")?,
            used_at: row.try_get("used_at")?,
            grant_revoked: row.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
        }))
    }

    async fn revoke_grant(&self, grant_id: &str, now: i64) -> Result<bool> {
        let mut tx = self.db.writes.begin().await?;
        let revoked = revoke_grant_in(&mut tx, grant_id, now).await?;
        tx.commit().await?;
        Ok(revoked)
    }
}

/// A new grant with its first refresh token (if any) and access token, inside `tx`.
async fn insert_grant(
    conn: &mut AnyConnection,
    grant: &GrantRecord,
    refresh: Option<&NextRefreshToken>,
    access: &IssuedAccessToken,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO grants (grant_id, client_id, subject, scope, audience, created_at, dpop_jkt)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&grant.grant_id)
    .bind(&grant.client_id)
    .bind(&grant.subject)
    .bind(grant.scope.to_string())
    .bind(&grant.audience)
    .bind(grant.created_at)
    .bind(grant.dpop_jkt.as_deref())
    .execute(&mut *conn)
    .await?;
    if let Some(refresh) = refresh {
        let owner = RefreshOwner {
            grant_id: &grant.grant_id,
            client_id: &grant.client_id,
            scope: &grant.scope,
        };
        insert_refresh(conn, owner, refresh, grant.created_at).await?;
    }
    insert_access(conn, &grant.grant_id, access).await
}

async fn insert_access(
    conn: &mut AnyConnection,
    grant_id: &str,
    access: &IssuedAccessToken,
) -> Result<()> {
    sqlx::query("INSERT INTO access_tokens (jti, grant_id, expires_at) VALUES ($1, $2, $3)")
        .bind(&access.jti)
        .bind(grant_id)
        .bind(access.expires_at)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl RevocationStore for SqlStore {
    async fn record_derived_token(
        &self,
        subject_jti: &str,
        access: &IssuedAccessToken,
    ) -> Result<()> {
        // Joins the subject token's grant, if it has one, so revoking the grant
        // reaches tokens exchanged from it too.
        sqlx::query(
            "INSERT INTO access_tokens (jti, grant_id, expires_at)
             SELECT $1, grant_id, $2 FROM access_tokens WHERE jti = $3",
        )
        .bind(&access.jti)
        .bind(access.expires_at)
        .bind(subject_jti)
        .execute(&self.db.writes)
        .await?;
        Ok(())
    }

    async fn revoke_access_token(&self, jti: &str, expires_at: i64, now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO revoked_access_tokens (jti, expires_at, revoked_at) VALUES ($1, $2, $3)
             ON CONFLICT (jti) DO NOTHING",
        )
        .bind(jti)
        .bind(expires_at)
        .bind(now)
        .execute(&self.db.writes)
        .await?;
        Ok(())
    }

    async fn is_access_token_revoked(&self, jti: &str) -> Result<bool> {
        let row = sqlx::query("SELECT 1 AS found FROM revoked_access_tokens WHERE jti = $1")
            .bind(jti)
            .fetch_optional(&self.db.reads)
            .await?;
        Ok(row.is_some())
    }

    async fn revoked_access_tokens(
        &self,
        now: i64,
        after: Option<(&str, i64)>,
        limit: u32,
    ) -> Result<Vec<(String, i64)>> {
        // One row-value bound, so both backends seek the (expires_at, jti)
        // index to it and stop after `limit` rows (SQLite, given a second
        // condition on expires_at, scans from that one instead). The live
        // rows start at (now, ""): no jti is empty. The comparison and the
        // order use the column's collation, as the index does, so pages meet
        // without gap or overlap on either backend.
        let (from_jti, from_exp) = match after {
            Some((jti, exp)) if exp >= now => (jti, exp),
            _ => ("", now),
        };
        let rows = sqlx::query(
            "SELECT jti, expires_at FROM revoked_access_tokens
             WHERE (expires_at, jti) > ($1, $2)
             ORDER BY expires_at, jti LIMIT $3",
        )
        .bind(from_exp)
        .bind(from_jti)
        .bind(i64::from(limit))
        .fetch_all(&self.db.reads)
        .await?;
        rows.iter().map(|row| Ok((row.try_get("jti")?, row.try_get("expires_at")?))).collect()
    }
}

/// Whose a stored refresh token is.
struct RefreshOwner<'a> {
    grant_id: &'a str,
    client_id: &'a str,
    scope: &'a Scope,
}

async fn insert_refresh(
    conn: &mut AnyConnection,
    owner: RefreshOwner<'_>,
    refresh: &NextRefreshToken,
    issued_at: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO refresh_tokens
             (token_hash, grant_id, client_id, scope, issued_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&refresh.token_hash)
    .bind(owner.grant_id)
    .bind(owner.client_id)
    .bind(owner.scope.to_string())
    .bind(issued_at)
    .bind(refresh.expires_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Revokes a grant inside a transaction: the grant marked, its unexpired access
/// tokens put on the denylist.
async fn revoke_grant_in(conn: &mut AnyConnection, grant_id: &str, now: i64) -> Result<bool> {
    let revoked =
        sqlx::query("UPDATE grants SET revoked_at = $1 WHERE grant_id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(grant_id)
            .execute(&mut *conn)
            .await?
            .rows_affected()
            == 1;
    // Its refresh tokens are dead with the grant (rotation checks revoked_at);
    // its access tokens are verified locally, so they go on the denylist.
    sqlx::query(
        "INSERT INTO revoked_access_tokens (jti, expires_at, revoked_at)
         SELECT jti, expires_at, $1 FROM access_tokens
         WHERE grant_id = $2 AND expires_at > $1
         ON CONFLICT (jti) DO NOTHING",
    )
    .bind(now)
    .bind(grant_id)
    .execute(&mut *conn)
    .await?;
    Ok(revoked)
}

impl ConsentStore for SqlStore {
    async fn consent(&self, subject: &str, client_id: &str) -> Result<Option<Scope>> {
        let row = sqlx::query("SELECT scope FROM consents WHERE subject = $1 AND client_id = $2")
            .bind(subject)
            .bind(client_id)
            .fetch_optional(&self.db.reads)
            .await?;
        row.map(|row| scope_of(row.try_get("scope")?)).transpose()
    }

    async fn add_consent(
        &self,
        subject: &str,
        client_id: &str,
        scope: &Scope,
        now: i64,
    ) -> Result<()> {
        let mut tx = self.db.writes.begin().await?;
        add_consent_in(&mut tx, subject, client_id, scope, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn consents_of(&self, subject: &str) -> Result<Vec<(String, String, Scope, i64)>> {
        let rows = sqlx::query(
            "SELECT c.client_id, k.name, c.scope, c.granted_at
             FROM consents c JOIN clients k ON k.client_id = c.client_id
             WHERE c.subject = $1 ORDER BY k.name",
        )
        .bind(subject)
        .fetch_all(&self.db.reads)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("client_id")?,
                    row.try_get("name")?,
                    scope_of(row.try_get("scope")?)?,
                    row.try_get("granted_at")?,
                ))
            })
            .collect()
    }

    async fn withdraw_consent(&self, subject: &str, client_id: &str, now: i64) -> Result<bool> {
        let mut tx = self.db.writes.begin().await?;
        let forgotten = sqlx::query("DELETE FROM consents WHERE subject = $1 AND client_id = $2")
            .bind(subject)
            .bind(client_id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        // What the owner approved but the client has not yet redeemed goes too:
        // its codes (RFC 6749 §4.1.2) and approved device authorizations. A
        // device code already handed out whose grant is still being written
        // is marked withdrawn, so that grant is born revoked (create_grant).
        // (A code's grant is written in the transaction that spends it.)
        sqlx::query(
            "DELETE FROM authorization_codes
             WHERE subject = $1 AND client_id = $2 AND redeemed_at IS NULL",
        )
        .bind(subject)
        .bind(client_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE device_codes SET status = CASE status WHEN 'approved' THEN 'denied'
                                                          ELSE 'withdrawn' END
             WHERE subject = $1 AND client_id = $2 AND status IN ('approved', 'redeemed')",
        )
        .bind(subject)
        .bind(client_id)
        .execute(&mut *tx)
        .await?;
        let grants = sqlx::query(
            "SELECT grant_id FROM grants WHERE subject = $1 AND client_id = $2 AND revoked_at IS NULL",
        )
        .bind(subject)
        .bind(client_id)
        .fetch_all(&mut *tx)
        .await?;
        for row in &grants {
            let grant_id: String = row.try_get("grant_id")?;
            revoke_grant_in(&mut tx, &grant_id, now).await?;
        }
        tx.commit().await?;
        Ok(forgotten)
    }
}

/// Adds `scope` to the consent row of (`subject`, `client_id`), inside `tx`.
async fn add_consent_in(
    conn: &mut AnyConnection,
    subject: &str,
    client_id: &str,
    scope: &Scope,
    now: i64,
) -> Result<()> {
    let before = sqlx::query("SELECT scope FROM consents WHERE subject = $1 AND client_id = $2")
        .bind(subject)
        .bind(client_id)
        .fetch_optional(&mut *conn)
        .await?;
    let scope = match before {
        Some(row) => {
            let before = scope_of(row.try_get("scope")?)?;
            Scope::from_tokens(before.iter().chain(scope.iter()))
        }
        None => scope.clone(),
    };
    sqlx::query(
        "INSERT INTO consents (subject, client_id, scope, granted_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (subject, client_id) DO UPDATE SET
             scope = excluded.scope, granted_at = excluded.granted_at",
    )
    .bind(subject)
    .bind(client_id)
    .bind(scope.to_string())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn device_from_row(row: &AnyRow) -> Result<DeviceCode> {
    Ok(DeviceCode {
        device_code_hash: row.try_get("device_code_hash")?,
        user_code: row.try_get("user_code")?,
        client_id: row.try_get("client_id")?,
        scope: scope_of(row.try_get("scope")?)?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        poll_interval: row.try_get("poll_interval")?,
        subject: row.try_get("subject")?,
    })
}

const DEVICE_COLUMNS: &str = "device_code_hash, user_code, client_id, scope, created_at, \
                              expires_at, poll_interval, subject";

impl DeviceStore for SqlStore {
    async fn insert_device_code(&self, code: &DeviceCode) -> Result<bool> {
        let inserted = sqlx::query(
            "INSERT INTO device_codes (device_code_hash, user_code, client_id, scope, created_at,
                                       expires_at, poll_interval, status)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending')
             ON CONFLICT DO NOTHING",
        )
        .bind(&code.device_code_hash)
        .bind(&code.user_code)
        .bind(&code.client_id)
        .bind(code.scope.to_string())
        .bind(code.created_at)
        .bind(code.expires_at)
        .bind(code.poll_interval)
        .execute(&self.db.writes)
        .await?;
        Ok(inserted.rows_affected() == 1)
    }

    async fn pending_device_codes(&self, client_id: &str, now: i64) -> Result<(u64, Option<i64>)> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS pending, MIN(expires_at) AS first_expiry FROM device_codes
             WHERE client_id = $1 AND status = 'pending' AND expires_at > $2",
        )
        .bind(client_id)
        .bind(now)
        .fetch_one(&self.db.reads)
        .await?;
        let pending: i64 = row.try_get("pending")?;
        Ok((u64::try_from(pending).unwrap_or(0), row.try_get("first_expiry")?))
    }

    async fn pending_device_code(&self, user_code: &str, now: i64) -> Result<Option<DeviceCode>> {
        let row = sqlx::query(&format!(
            "SELECT {DEVICE_COLUMNS} FROM device_codes
             WHERE user_code = $1 AND status = 'pending' AND expires_at > $2"
        ))
        .bind(user_code)
        .bind(now)
        .fetch_optional(&self.db.reads)
        .await?;
        row.as_ref().map(device_from_row).transpose()
    }

    async fn decide_device_code(
        &self,
        user_code: &str,
        subject: &str,
        approve: bool,
        now: i64,
    ) -> Result<Option<(String, Scope)>> {
        let mut tx = self.db.writes.begin().await?;
        let decided = sqlx::query(
            "UPDATE device_codes SET status = $1, subject = $2
             WHERE user_code = $3 AND status = 'pending' AND expires_at > $4
             RETURNING client_id, scope",
        )
        .bind(if approve { "approved" } else { "denied" })
        .bind(subject)
        .bind(user_code)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = decided else { return Ok(None) };
        let client_id: String = row.try_get("client_id")?;
        let scope = scope_of(row.try_get("scope")?)?;
        if approve {
            add_consent_in(&mut tx, subject, &client_id, &scope, now).await?;
        }
        tx.commit().await?;
        Ok(Some((client_id, scope)))
    }

    async fn poll_device_code(
        &self,
        device_code_hash: &str,
        client_id: &str,
        now: i64,
    ) -> Result<DevicePoll> {
        let mut tx = self.db.writes.begin().await?;
        let row = sqlx::query(&format!(
            "SELECT {DEVICE_COLUMNS}, status, last_polled_at FROM device_codes
             WHERE device_code_hash = $1 AND client_id = $2"
        ))
        .bind(device_code_hash)
        .bind(client_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(DevicePoll::Unknown) };
        let code = device_from_row(&row)?;
        let status: String = row.try_get("status")?;
        let last: Option<i64> = row.try_get("last_polled_at")?;
        if now >= code.expires_at {
            return Ok(DevicePoll::Expired);
        }
        // RFC 8628 §3.5: too soon, and the interval grows by five seconds.
        if last.is_some_and(|last| now - last < code.poll_interval) {
            sqlx::query(
                "UPDATE device_codes SET poll_interval = poll_interval + 5, last_polled_at = $1
                 WHERE device_code_hash = $2",
            )
            .bind(now)
            .bind(device_code_hash)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(DevicePoll::SlowDown);
        }
        sqlx::query("UPDATE device_codes SET last_polled_at = $1 WHERE device_code_hash = $2")
            .bind(now)
            .bind(device_code_hash)
            .execute(&mut *tx)
            .await?;
        let poll = match status.as_str() {
            "pending" => DevicePoll::Pending,
            "denied" => DevicePoll::Denied,
            "approved" => {
                // Handed out once: of two racing polls one flips the status.
                let taken = sqlx::query(
                    "UPDATE device_codes SET status = 'redeemed'
                     WHERE device_code_hash = $1 AND status = 'approved'",
                )
                .bind(device_code_hash)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if taken { DevicePoll::Approved(code) } else { DevicePoll::Redeemed }
            }
            _ => DevicePoll::Redeemed,
        };
        tx.commit().await?;
        Ok(poll)
    }
}

impl KeyStore for SqlStore {
    async fn signing_keys(&self) -> Result<Vec<StoredKey>> {
        let rows = sqlx::query(
            "SELECT kid, alg, private_key, public_jwk, created_at, activate_at FROM signing_keys
             ORDER BY activate_at, kid",
        )
        .fetch_all(&self.db.reads)
        .await?;
        rows.iter()
            .map(|row| {
                let alg: &str = row.try_get("alg")?;
                let private: &str = row.try_get("private_key")?;
                let jwk: &str = row.try_get("public_jwk")?;
                Ok(StoredKey {
                    kid: row.try_get("kid")?,
                    alg: KeyAlgorithm::parse(alg)
                        .ok_or_else(|| StorageError::Corrupt(format!("key alg {alg}")))?,
                    private_pkcs8: Secret::from(
                        base64::engine::general_purpose::STANDARD
                            .decode(private)
                            .map_err(|e| StorageError::Corrupt(format!("private key: {e}")))?,
                    ),
                    public_jwk: serde_json::from_str::<Jwk>(jwk)
                        .map_err(|e| StorageError::Corrupt(format!("public jwk: {e}")))?,
                    created_at: row.try_get("created_at")?,
                    activate_at: row.try_get("activate_at")?,
                })
            })
            .collect()
    }

    async fn insert_signing_key(&self, key: &StoredKey) -> Result<()> {
        let jwk = serde_json::to_string(&key.public_jwk)
            .map_err(|e| StorageError::Corrupt(e.to_string()))?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_key, public_jwk, created_at, activate_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&key.kid)
        .bind(key.alg.as_str())
        .bind(base64::engine::general_purpose::STANDARD.encode(key.private_pkcs8.expose()))
        .bind(jwk)
        .bind(key.created_at)
        .bind(key.activate_at)
        .execute(&self.db.writes)
        .await?;
        Ok(())
    }
}

impl Housekeeping for SqlStore {
    async fn purge_expired(&self, cutoff: i64) -> Result<Purged> {
        // One statement each, not one transaction: every delete is correct on
        // its own (see the trait), and short statements keep SQLite's single
        // writer free for requests between them. Grants go last, once their
        // tokens are gone.
        let delete = |sql: &'static str| async move {
            Ok::<_, StorageError>(
                sqlx::query(sql).bind(cutoff).execute(&self.db.writes).await?.rows_affected(),
            )
        };
        // Struct fields are evaluated in the order written: grants last.
        Ok(Purged {
            codes: delete("DELETE FROM authorization_codes WHERE expires_at < $1").await?,
            device_codes: delete("DELETE FROM device_codes WHERE expires_at < $1").await?,
            assertions: delete("DELETE FROM client_assertions WHERE expires_at < $1").await?,
            refresh_tokens: delete("DELETE FROM refresh_tokens WHERE expires_at < $1").await?,
            access_tokens: delete("DELETE FROM access_tokens WHERE expires_at < $1").await?,
            denylist: delete("DELETE FROM revoked_access_tokens WHERE expires_at < $1").await?,
            grants: delete(
                "DELETE FROM grants WHERE created_at < $1
                   AND NOT EXISTS (SELECT 1 FROM refresh_tokens r WHERE r.grant_id = grants.grant_id)
                   AND NOT EXISTS (SELECT 1 FROM access_tokens a WHERE a.grant_id = grants.grant_id)",
            )
            .await?,
        })
    }
}
