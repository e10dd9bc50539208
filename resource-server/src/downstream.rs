//! Calling the notes store on a user's behalf, in one of two ways
//! ([`Delegation`]; docs/transaction-tokens.md compares them).
//!
//! **Token exchange** (RFC 8693). The user's token was issued for this
//! resource server; the notes store accepts only tokens for itself. So before
//! each call the user's token is exchanged at the authorization server for one
//! whose `aud` is the notes store, whose scope is just what the call needs, and
//! whose `act` names this server. Exchanged tokens are cached until shortly
//! before they expire, keyed by the user token's `jti` and the scope, so a
//! burst of calls costs one exchange.
//!
//! **Transaction Tokens** (draft-ietf-oauth-transaction-tokens). For each
//! incoming user call this server, the edge of the trust domain, asks the
//! authorization server for one Txn-Token (the user as `sub`, the call's scope,
//! a new `txn`) and sends it in `txn-token` beside its own access token for the
//! notes store, which authenticates this server. Every workload behind passes
//! the same Txn-Token on; none exchanges anything.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tollgate_proto::auth::v1::token_request::Grant;
use tollgate_proto::auth::v1::token_service_client::TokenServiceClient;
use tollgate_proto::auth::v1::{
    ClientAuthentication, ClientCredentialsGrant, TokenExchangeGrant, TokenRequest,
};
use tollgate_proto::notes::v1::note_store_client::NoteStoreClient;
use tollgate_service_kit::auth::{AuthContext, SubjectToken, TxnToken};
use tollgate_service_kit::balance::Balanced;
use tollgate_service_kit::telemetry::propagation::{Propagating, traced};
use tollgate_service_kit::tls::{ClientTls, GrpcTarget};
use tollgate_token::{Clock, Secret};

/// A channel whose calls carry the caller's trace context.
pub type TracedChannel = Propagating<Balanced>;
use tonic::{Request, Status};

const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
use crate::config::Delegation;
use tollgate_token::txn::{TXN_TOKEN_METADATA, TXN_TOKEN_TYPE};
/// An exchanged token is not reused in its last seconds.
const REUSE_MARGIN_SECS: i64 = 10;

/// The most exchanged tokens kept at once. An entry lives at most one
/// access-token lifetime (expired ones are dropped on every insert), so this is
/// room for 10,000 (user token, scope) pairs in use within one lifetime; past
/// it, the entry expiring soonest makes room. Callers choose the keys (each
/// user token is one), so the bound is what keeps a flood of distinct tokens
/// from growing memory.
pub const MAX_CACHED_TOKENS: usize = 10_000;

/// Exchanged tokens: (subject jti, or "" for this server's own token; scope) →
/// (token, expires at). Bounded by construction.
#[derive(Debug)]
struct TokenCache {
    entries: HashMap<(String, String), (Secret, i64)>,
    max: usize,
}

impl TokenCache {
    fn new(max: usize) -> Self {
        Self { entries: HashMap::new(), max: max.max(1) }
    }

    /// A cached token still good for more than [`REUSE_MARGIN_SECS`].
    fn get(&self, key: &(String, String), now: i64) -> Option<Secret> {
        self.entries
            .get(key)
            .filter(|(_, expires_at)| now + REUSE_MARGIN_SECS < *expires_at)
            .map(|(token, _)| token.clone())
    }

    fn insert(&mut self, key: (String, String), token: Secret, expires_at: i64, now: i64) {
        self.entries.retain(|_, (_, expires)| *expires > now);
        if self.entries.len() >= self.max && !self.entries.contains_key(&key) {
            let soonest = self
                .entries
                .iter()
                .min_by_key(|(_, (_, expires))| *expires)
                .map(|(key, _)| key.clone());
            if let Some(soonest) = soonest {
                self.entries.remove(&soonest);
            }
        }
        self.entries.insert(key, (token, expires_at));
    }
}

/// The notes store, reached with exchanged tokens.
#[derive(Debug, Clone)]
pub struct NotesBackend {
    channels: Arc<Mutex<Arc<Channels>>>,
    notes_url: String,
    auth_grpc_url: String,
    tls: ClientTls,
    credentials: Option<(String, Option<Secret>)>,
    audience: String,
    delegation: Delegation,
    trust_domain: String,
    clock: Arc<dyn Clock>,
}

impl NotesBackend {
    /// Both over TLS with `tls` (this server's certificate as the client
    /// certificate) where the URL is `https://`.
    pub fn new(
        notes_url: &str,
        auth_grpc_url: &str,
        credentials: Option<(String, Option<Secret>)>,
        settings: &crate::config::Settings,
        clock: Arc<dyn Clock>,
        tls: &ClientTls,
    ) -> anyhow::Result<Self> {
        let channels = Channels::connect(notes_url, auth_grpc_url, tls)?;
        Ok(Self {
            channels: Arc::new(Mutex::new(Arc::new(channels))),
            notes_url: notes_url.to_owned(),
            auth_grpc_url: auth_grpc_url.to_owned(),
            tls: tls.clone(),
            credentials,
            audience: settings.notes_store_audience.clone(),
            delegation: settings.delegation,
            trust_domain: settings.delegation_trust_domain.clone(),
            clock,
        })
    }

    /// A client for the notes store and the request metadata to call it with,
    /// acting for `caller` with `scope` only, for the user's call `rpc`. A
    /// call that arrived with a Txn-Token (`incoming`) is already part of a
    /// transaction: that token goes on unmodified.
    pub async fn for_caller<T>(
        &self,
        caller: &AuthContext,
        subject: &SubjectToken,
        incoming: Option<&TxnToken>,
        scope: &str,
        rpc: &str,
        message: T,
    ) -> Result<(NoteStoreClient<TracedChannel>, Request<T>), Status> {
        let channels = self.channels()?;
        if let Some(incoming) = incoming {
            let value = incoming.header_value().to_str().unwrap_or_default().to_owned();
            return self.with_txn_token(&channels, value, message).await;
        }
        if self.delegation == Delegation::TxnToken {
            return self.in_transaction(&channels, subject, scope, rpc, message).await;
        }
        let token = self
            .token(&channels, caller.token_id.clone(), scope, || {
                Grant::TokenExchange(TokenExchangeGrant {
                    subject_token: subject.expose().to_owned(),
                    subject_token_type: ACCESS_TOKEN_TYPE.into(),
                    audience: Some(self.audience.clone()),
                    resource: None,
                    scope: Some(scope.to_owned()),
                    requested_token_type: None,
                    request_context: None,
                    request_details: None,
                })
            })
            .await?;
        Ok((channels.notes.clone(), bearer(message, token.expose())?))
    }

    /// The Txn-Token way: this server's own token (cached like any other)
    /// authenticates it; a new Txn-Token, never cached, carries the user's
    /// call. One per incoming call: the draft binds a Txn-Token to one
    /// transaction.
    async fn in_transaction<T>(
        &self,
        channels: &Channels,
        subject: &SubjectToken,
        scope: &str,
        rpc: &str,
        message: T,
    ) -> Result<(NoteStoreClient<TracedChannel>, Request<T>), Status> {
        let txn_token = self
            .issue(
                channels,
                Grant::TokenExchange(TokenExchangeGrant {
                    subject_token: subject.expose().to_owned(),
                    subject_token_type: ACCESS_TOKEN_TYPE.into(),
                    audience: Some(self.trust_domain.clone()),
                    resource: None,
                    scope: Some(scope.to_owned()),
                    requested_token_type: Some(TXN_TOKEN_TYPE.into()),
                    request_context: None,
                    // What the user asked for, fixed for the whole chain (`tctx`).
                    request_details: Some(format!(r#"{{"rpc":"{rpc}"}}"#)),
                }),
            )
            .await?;
        self.with_txn_token(channels, txn_token.access_token, message).await
    }

    /// `message` for the notes store with this server's own token and
    /// `txn_token`.
    async fn with_txn_token<T>(
        &self,
        channels: &Channels,
        txn_token: String,
        message: T,
    ) -> Result<(NoteStoreClient<TracedChannel>, Request<T>), Status> {
        let own = self
            .token(channels, String::new(), "", || {
                Grant::ClientCredentials(ClientCredentialsGrant { scope: None, resource: None })
            })
            .await?;
        let mut request = bearer(message, own.expose())?;
        let value =
            txn_token.parse().map_err(|_| Status::internal("a Txn-Token is not a header value"))?;
        request.metadata_mut().insert(TXN_TOKEN_METADATA, value);
        Ok((channels.notes.clone(), request))
    }

    /// A client for the notes store with this server's own token (client
    /// credentials; aggregate calls that act for nobody).
    pub async fn as_service<T>(
        &self,
        scope: &str,
        message: T,
    ) -> Result<(NoteStoreClient<TracedChannel>, Request<T>), Status> {
        let channels = self.channels()?;
        let token = self
            .token(&channels, String::new(), scope, || {
                Grant::ClientCredentials(ClientCredentialsGrant {
                    scope: Some(scope.to_owned()),
                    resource: None,
                })
            })
            .await?;
        Ok((channels.notes.clone(), bearer(message, token.expose())?))
    }

    /// The connections to the notes store and the authorization server, and
    /// the tokens obtained over them, all made again once this server's
    /// certificate has changed: RFC 8705 binds an exchanged token to the
    /// certificate of the connection it was asked for on, and the notes store
    /// checks it against the one its own connection presents. A call uses one
    /// generation throughout, so the two always match.
    fn channels(&self) -> Result<Arc<Channels>, Status> {
        let mut channels = self.channels.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let generation = self.tls.generation();
        if channels.generation != generation {
            let renewed = Channels::connect(&self.notes_url, &self.auth_grpc_url, &self.tls)
                .map_err(|err| {
                    tracing::error!(error = %err, "cannot connect to the notes store");
                    Status::unavailable("the notes store cannot be reached")
                })?;
            *channels = Arc::new(renewed);
            tracing::info!("TLS certificate changed: new connections, cached tokens dropped");
        }
        Ok(channels.clone())
    }

    async fn token(
        &self,
        channels: &Channels,
        subject_jti: String,
        scope: &str,
        grant: impl FnOnce() -> Grant,
    ) -> Result<Secret, Status> {
        let now = self.clock.now();
        let key = (subject_jti, scope.to_owned());
        if let Some(token) = channels.lock().get(&key, now) {
            return Ok(token);
        }
        let issued = self.issue(channels, grant()).await?;
        let token = Secret::new(issued.access_token);
        channels.lock().insert(key, token.clone(), now + issued.expires_in, now);
        Ok(token)
    }
}

impl NotesBackend {
    /// Asks the authorization server for a token with this server's
    /// credentials.
    async fn issue(
        &self,
        channels: &Channels,
        grant: Grant,
    ) -> Result<tollgate_proto::auth::v1::TokenResponse, Status> {
        let Some((client_id, secret)) = &self.credentials else {
            return Err(Status::unavailable("the notes store is not configured here"));
        };
        let request = TokenRequest {
            client: Some(ClientAuthentication {
                client_id: client_id.clone(),
                client_secret: secret.as_ref().map(|s| s.expose().clone()),
                client_assertion: None,
            }),
            grant: Some(grant),
        };
        let mut tokens = channels.tokens.clone();
        let issued = tokens.token(request).await.map_err(|status| {
            tracing::warn!(code = ?status.code(), message = status.message(), "token for the notes store refused");
            if status.code() == tonic::Code::Unavailable {
                Status::unavailable("the authorization server is unavailable")
            } else {
                Status::permission_denied("the notes store cannot be reached for this caller")
            }
        })?;
        Ok(issued.into_inner())
    }
}

/// The two connections, made with one generation of this server's TLS files.
#[derive(Debug)]
struct Channels {
    notes: NoteStoreClient<TracedChannel>,
    tokens: TokenServiceClient<TracedChannel>,
    generation: u64,
    /// The tokens obtained over `tokens`, so bound to this generation's
    /// certificate.
    cache: Mutex<TokenCache>,
}

impl Channels {
    fn connect(notes_url: &str, auth_grpc_url: &str, tls: &ClientTls) -> anyhow::Result<Self> {
        let generation = tls.generation();
        // Every call carries the caller's trace on (W3C traceparent), and
        // goes to one of the SERVING replicas the URL's name resolves to
        // (service-kit's `balance`: calls spread, a draining replica gets none).
        let channel = |url: &str| -> anyhow::Result<TracedChannel> {
            Ok(traced(GrpcTarget::new(url, tls)?.balanced()))
        };
        Ok(Self {
            notes: NoteStoreClient::new(channel(notes_url)?),
            tokens: TokenServiceClient::new(channel(auth_grpc_url)?),
            generation,
            cache: Mutex::new(TokenCache::new(MAX_CACHED_TOKENS)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TokenCache> {
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn bearer<T>(message: T, token: &str) -> Result<Request<T>, Status> {
    let mut request = Request::new(message);
    let value = format!("Bearer {token}")
        .parse()
        .map_err(|_| Status::internal("an exchanged token is not a header value"))?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(jti: &str) -> (String, String) {
        (jti.to_owned(), "notes:read".to_owned())
    }

    #[test]
    fn a_cached_token_is_reused_until_its_last_seconds() {
        let mut cache = TokenCache::new(4);
        cache.insert(key("a"), Secret::new("t"), 100, 0);
        assert_eq!(cache.get(&key("a"), 100 - REUSE_MARGIN_SECS - 1), Some(Secret::new("t")));
        assert_eq!(cache.get(&key("a"), 100 - REUSE_MARGIN_SECS), None);
        assert_eq!(cache.get(&key("b"), 0), None);
    }

    #[test]
    fn the_cache_never_holds_more_than_its_bound() {
        let mut cache = TokenCache::new(3);
        for (i, jti) in ["a", "b", "c"].into_iter().enumerate() {
            cache.insert(key(jti), Secret::new(jti), 100 + i as i64, 0);
        }
        // Full: the entry expiring soonest ("a") makes room.
        cache.insert(key("d"), Secret::new("d"), 200, 0);
        assert_eq!(cache.entries.len(), 3);
        assert_eq!(cache.get(&key("a"), 0), None);
        assert!(cache.get(&key("b"), 0).is_some() && cache.get(&key("d"), 0).is_some());
        // Replacing a key that is there evicts nothing.
        cache.insert(key("d"), Secret::new("d2"), 300, 0);
        assert_eq!(cache.entries.len(), 3);
        // Expired entries go first, whatever the bound.
        cache.insert(key("e"), Secret::new("e"), 400, 150);
        assert_eq!(cache.entries.len(), 2);
        assert!(cache.get(&key("b"), 150).is_none());
    }

    #[test]
    fn the_production_bound_is_reached_and_held() {
        let mut cache = TokenCache::new(MAX_CACHED_TOKENS);
        for i in 0..MAX_CACHED_TOKENS + 50 {
            cache.insert(key(&i.to_string()), Secret::new("t"), 1_000 + i as i64, 0);
        }
        assert_eq!(cache.entries.len(), MAX_CACHED_TOKENS);
    }
}
