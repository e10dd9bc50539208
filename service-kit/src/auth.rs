//! Access-token validation as a tower layer, in front of every gRPC method.
//!
//! For each request the layer looks the method up in the service's
//! [`ScopePolicy`], reads `authorization: Bearer …` (RFC 6750 §2.1 carried in gRPC
//! metadata), verifies the token against the cached keys with no I/O, checks the
//! method's scope, and puts an [`AuthContext`] into the request extensions.
//! Handlers read that context; they never see or parse the token.
//!
//! Refusals: a missing or bad token is `UNAUTHENTICATED` (`invalid_token`); a good
//! token without the method's scope, or a method with no declared requirement,
//! is `PERMISSION_DENIED` (`insufficient_scope`). Deny by default: a method added
//! to a service but not to its policy is unreachable until someone decides.
//! A token bound to a client certificate (RFC 8705 §3, `cnf.x5t#S256`) is
//! `UNAUTHENTICATED` (`invalid_token`) unless the call's connection presented
//! that certificate.
//! A token bound to a DPoP key (RFC 9449, `cnf.jkt`) comes as
//! `authorization: DPoP …` with a fresh proof in the `dpop` metadata entry
//! (docs/dpop-grpc.md); it is `UNAUTHENTICATED` as a bearer token, and a
//! proof that fails is `UNAUTHENTICATED` (`invalid_dpop_proof`).
//! A call may carry a Transaction Token (draft-ietf-oauth-transaction-tokens)
//! in the `txn-token` metadata entry, beside the calling workload's own
//! access token in `authorization`: then the method's scope is checked
//! against the Txn-Token's, and the caller is the transaction's subject, with
//! the workload as the actor (docs/transaction-tokens.md). A bad Txn-Token is
//! `UNAUTHENTICATED` (`invalid_token`); one requested by a workload this
//! service does not accept is `PERMISSION_DENIED`.
//! When the service cannot judge a token (keys not loaded, the revocation
//! denylist not loaded or stale) the call is `UNAVAILABLE`
//! (`temporarily_unavailable`): try later, not "invalid".

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tollgate_token::dpop::{ProofPolicy, ProofReplayCache, ProofRequest, verify_proof};
use tollgate_token::txn::{TXN_TOKEN_METADATA, TxnTokenError, TxnTokenPolicy, verify_txn_token};
use tollgate_token::{AccessTokenClaims, Clock, OAuthError, TokenError, VerifiedTokens, Verifier};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower::{Layer, Service};

use crate::jwks::JwksCache;
use crate::revocation::{Denylist, Freshness};
use crate::status::{TokenScheme, to_status, to_status_for};

/// What a method requires of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// No token needed (health checks, reflection).
    Public,
    /// A valid access token carrying this scope.
    Scope(&'static str),
}

/// Per-method requirements, keyed by gRPC path (`/package.Service/Method`).
/// Declared in one table next to the service, not scattered through handlers.
#[derive(Debug, Clone, Default)]
pub struct ScopePolicy {
    methods: HashMap<String, Requirement>,
    public_services: Vec<String>,
}

impl ScopePolicy {
    pub fn new() -> Self {
        Self::default()
    }

    /// `path` is `/package.Service/Method`.
    pub fn method(mut self, path: &str, requirement: Requirement) -> Self {
        self.methods.insert(path.to_owned(), requirement);
        self
    }

    /// The usual policy of a Tollgate API: `(path, scope)` for each method,
    /// with health checks and reflection open (orchestrators and tools probe
    /// without tokens).
    pub fn for_api(method_scopes: &[(&str, &'static str)]) -> Self {
        method_scopes
            .iter()
            .fold(Self::new(), |policy, (path, scope)| {
                policy.method(path, Requirement::Scope(scope))
            })
            .public_service("grpc.health.v1.Health")
            .public_service("grpc.reflection.v1.ServerReflection")
            .public_service("grpc.reflection.v1alpha.ServerReflection")
    }

    /// Every method of a whole service is public (`package.Service`).
    pub fn public_service(mut self, service: &str) -> Self {
        self.public_services.push(format!("/{service}/"));
        self
    }

    pub fn requirement(&self, path: &str) -> Option<Requirement> {
        if self.public_services.iter().any(|prefix| path.starts_with(prefix)) {
            return Some(Requirement::Public);
        }
        self.methods.get(path).copied()
    }
}

/// Who is calling, as established by a verified access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthContext {
    /// The resource owner (`sub`); the client's id for client-credentials tokens.
    pub subject: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub token_id: String,
    pub expires_at: i64,
    /// The service acting for `subject`: RFC 8693 `act.sub` when the token was
    /// obtained by token exchange; the calling workload when the call carries
    /// a Txn-Token.
    pub actor: Option<String>,
    /// The transaction the call belongs to, when it carries a Txn-Token.
    pub transaction: Option<Transaction>,
}

/// What a verified Txn-Token says about the call's transaction, beside the
/// subject and scope in [`AuthContext`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// The transaction's identifier (`txn`): the same on every hop.
    pub txn: String,
    /// Every workload that requested the Txn-Token or one it replaced, the
    /// edge of the trust domain first.
    pub requesters: Vec<String>,
    /// The immutable details of the transaction (`tctx`), as JSON.
    pub details: Option<String>,
}

/// The verified Txn-Token itself, for a workload that calls another inside
/// the trust domain: it passes the token on unmodified (the draft's
/// "Txn-Token Validation"). `Debug` never shows it.
#[derive(Clone)]
pub struct TxnToken(http::HeaderValue);

impl TxnToken {
    /// The value to send on in the `txn-token` metadata entry.
    pub fn header_value(&self) -> &http::HeaderValue {
        &self.0
    }
}

impl std::fmt::Debug for TxnToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TxnToken([redacted])")
    }
}

/// Txn-Tokens at a protected service: what they must be, and who may have
/// requested them.
#[derive(Debug, Clone)]
pub struct TxnCheck {
    pub policy: TxnTokenPolicy,
    /// Every requester in a Txn-Token's chain must be one of these.
    pub requesters: Vec<String>,
    /// The workloads that may present a Txn-Token here (the client id of the
    /// access token beside it).
    pub callers: Vec<String>,
}

/// The verified bearer token itself, for the few services that exchange it for
/// a token to a service behind them (RFC 8693). `Debug` never shows it.
///
/// It keeps the request's `authorization` value, which shares the received
/// bytes, rather than a copy of the token: most calls never exchange it, and
/// copying it on each was a measurable part of the layer's cost.
#[derive(Clone)]
pub struct SubjectToken(http::HeaderValue);

impl SubjectToken {
    pub fn expose(&self) -> &str {
        // The layer made one only from a value `presented_token` accepted.
        presented_token(self.0.as_bytes()).map(|(_, token)| token).unwrap_or_default()
    }
}

impl std::fmt::Debug for SubjectToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubjectToken([redacted])")
    }
}

impl AuthContext {
    fn from_claims(claims: &AccessTokenClaims) -> Self {
        Self {
            subject: claims.sub.clone(),
            client_id: claims.client_id.clone(),
            scopes: claims.scopes().map(str::to_owned).collect(),
            token_id: claims.jti.clone(),
            expires_at: claims.exp,
            actor: claims.act.as_ref().map(|act| act.sub.clone()),
            transaction: None,
        }
    }
}

/// The gRPC metadata entry that carries a DPoP proof (docs/dpop-grpc.md).
pub const DPOP_METADATA: &str = "dpop";
/// The most DPoP proofs a service remembers for replay detection. A proof is
/// remembered through its last valid second ([`DPOP_MAX_AGE_SECS`] plus
/// [`DPOP_LEEWAY_SECS`]); at this bound that carries about 2,000 DPoP calls a
/// second. Beyond it a new proof is refused as `temporarily_unavailable`,
/// never accepted unremembered. About 1.5 MiB when full.
pub const DPOP_REPLAY_CAPACITY: usize = 32_768;
/// How old a proof's `iat` may be at a protected service, seconds: a proof is
/// made for one call, just before it (RFC 9449 §11.1 asks for a short window).
pub const DPOP_MAX_AGE_SECS: i64 = 10;
/// Clock skew tolerated on a proof's `iat`, both ways, seconds.
pub const DPOP_LEEWAY_SECS: i64 = 5;

/// DPoP at a protected service: the origin its clients call it at, and the
/// proofs seen recently.
struct DpopCheck {
    /// `scheme://authority` as the clients address this service; a proof's
    /// `htu` is this followed by the method's path. Configured, not read from
    /// the request: a proof made for another server (another authority) must
    /// fail here even if its sender forges `:authority`.
    origin: String,
    policy: ProofPolicy,
    seen: std::sync::Mutex<ProofReplayCache>,
}

impl std::fmt::Debug for DpopCheck {
    /// Not the proofs seen: up to [`DPOP_REPLAY_CAPACITY`] entries.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopCheck").field("origin", &self.origin).finish_non_exhaustive()
    }
}

/// Everything the layer needs; shared by all connections.
#[derive(Debug, Clone)]
struct Shared {
    verifier: Verifier,
    /// Each token's signature is verified once ([`VerifiedTokens`]); the time,
    /// denylist, binding and scope checks below run on every call.
    verified: VerifiedTokens,
    jwks: JwksCache,
    policy: ScopePolicy,
    clock: Arc<dyn Clock>,
    denylist: Denylist,
    /// DPoP-bound tokens are refused unless this is set.
    dpop: Option<Arc<DpopCheck>>,
    /// Txn-Tokens are refused unless this is set.
    txn: Option<Arc<TxnCheck>>,
    /// Tests that assert who a service admitted listen here.
    #[cfg(feature = "test-support")]
    access_log: Option<tokio::sync::broadcast::Sender<AuthContext>>,
    /// Names this service in spans and metrics.
    service: &'static str,
    /// The benchmark's "auth layer switched off": every call admitted as this
    /// caller, nothing checked. Only the `bench` feature can set it, from code;
    /// no binary calls it and no setting reaches it.
    #[cfg(feature = "bench")]
    admit_as: Option<AuthContext>,
}

impl Shared {
    /// Decides a request for a protected method from its `authorization` header
    /// value. A refusal carries the error and a fixed reason label (metrics,
    /// spans): never the token.
    fn authorize(
        &self,
        scope: &str,
        path: &str,
        headers: &http::HeaderMap,
        client_certificate: Option<&[u8]>,
    ) -> Result<(AuthContext, SubjectToken, Option<TxnToken>), (OAuthError, &'static str)> {
        let (authorization, scheme, token) = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|value| {
                let (scheme, token) = presented_token(value.as_bytes())?;
                Some((value, scheme, token))
            })
            .ok_or((OAuthError::invalid_token("missing bearer token"), "missing_token"))?;
        let Some(snapshot) = self.jwks.current() else {
            return Err((
                OAuthError::TemporarilyUnavailable("signing keys are not loaded yet".into()),
                "keys_not_loaded",
            ));
        };
        // RFC 7009 is only as good as the denylist: before its first sync a
        // token revoked before this service started would pass, and past the
        // staleness bound revocations since the last sync would. Say "try
        // later" rather than guess.
        match self.denylist.freshness() {
            Freshness::Fresh => {}
            Freshness::NotLoaded => {
                return Err((
                    OAuthError::TemporarilyUnavailable(
                        "the revocation denylist is not loaded yet".into(),
                    ),
                    "denylist_not_loaded",
                ));
            }
            Freshness::Stale => {
                return Err((
                    OAuthError::TemporarilyUnavailable(
                        "the revocation denylist is stale; try again later".into(),
                    ),
                    "denylist_stale",
                ));
            }
        }
        let now = self.clock.now();
        let claims = match self.verified.verify(&self.verifier, &snapshot.keys, token, now) {
            Ok(claims) => claims,
            Err(err) => {
                if matches!(err, TokenError::UnknownKey(_)) {
                    self.jwks.request_refetch();
                    // Keys this old may be missing a new one: the token might be
                    // valid, so say "try later", not "invalid".
                    if self.jwks.is_stale(&snapshot, now) {
                        tracing::warn!(reason = "keys_stale", "access token not verifiable");
                        return Err((
                            OAuthError::TemporarilyUnavailable(
                                "signing keys are stale; try again later".into(),
                            ),
                            "keys_stale",
                        ));
                    }
                }
                let reason = err.reason();
                tracing::info!(reason, "access token refused");
                return Err((err.into(), reason));
            }
        };
        // RFC 7009: revoked at the authorization server, learned by the denylist sync.
        if self.denylist.contains(&claims.jti) {
            tracing::info!(reason = "revoked", "access token refused");
            return Err((OAuthError::invalid_token("token has been revoked"), "revoked"));
        }
        // RFC 8705 §3: a certificate-bound token is good only over a
        // connection that presented that certificate (mutual TLS); stolen,
        // it is useless without the certificate's private key.
        if let Some(bound) = claims.cnf.as_ref().and_then(|cnf| cnf.x5t_s256.as_deref()) {
            let presented = client_certificate.map(tollgate_token::certificate_thumbprint);
            if presented.as_deref() != Some(bound) {
                tracing::info!(
                    reason = "certificate_mismatch", client_id = %claims.client_id,
                    "access token refused"
                );
                return Err((
                    OAuthError::invalid_token(
                        "token is bound to a client certificate this connection did not present",
                    ),
                    "certificate_mismatch",
                ));
            }
        }
        self.check_dpop(&claims, scheme, token, path, headers, now)?;
        let mut txn_tokens = headers.get_all(TXN_TOKEN_METADATA).iter();
        if let Some(txn_token) = txn_tokens.next() {
            // The draft's "Txn-Token" header: "exactly one Txn-Token".
            if txn_tokens.next().is_some() {
                tracing::info!(reason = "txn_two_tokens", "Txn-Token refused");
                return Err((
                    OAuthError::invalid_token("more than one Txn-Token"),
                    "txn_two_tokens",
                ));
            }
            let context = self.admit_transaction(&claims, txn_token, scope, &snapshot.keys, now)?;
            return Ok((
                context,
                SubjectToken(authorization.clone()),
                Some(TxnToken(txn_token.clone())),
            ));
        }
        if !claims.has_scope(scope) {
            tracing::info!(
                subject = %claims.sub, client_id = %claims.client_id, required = scope,
                "access token lacks scope"
            );
            return Err((
                OAuthError::insufficient_scope(format!("requires scope {scope}")),
                "insufficient_scope",
            ));
        }
        Ok((AuthContext::from_claims(&claims), SubjectToken(authorization.clone()), None))
    }

    /// A call inside the trust domain: `claims` (already verified) authenticate
    /// the calling workload, and the Txn-Token says for whom and for what.
    /// The method's scope is the transaction's to grant, not the workload's.
    fn admit_transaction(
        &self,
        claims: &AccessTokenClaims,
        value: &http::HeaderValue,
        scope: &str,
        keys: &tollgate_token::KeySet,
        now: i64,
    ) -> Result<AuthContext, (OAuthError, &'static str)> {
        let refuse = |err: OAuthError, reason: &'static str| {
            tracing::info!(reason, client_id = %claims.client_id, "Txn-Token refused");
            Err((err, reason))
        };
        let Some(check) = &self.txn else {
            return refuse(
                OAuthError::invalid_token("this service does not accept Txn-Tokens"),
                "txn_not_accepted",
            );
        };
        // A Txn-Token authenticates nobody (the draft: "not authentication
        // credentials"): the workload presents its own token, one for itself
        // (RFC 9068 §2.2: `sub` is the client), never a user's.
        if claims.sub != claims.client_id || claims.act.is_some() {
            return refuse(
                OAuthError::invalid_token(
                    "a Txn-Token comes with the calling workload's own access token, not a user's",
                ),
                "txn_not_workload_token",
            );
        }
        if !check.callers.contains(&claims.client_id) {
            tracing::warn!(client_id = %claims.client_id, "Txn-Token from a workload not accepted as a caller");
            return Err((
                OAuthError::AccessDenied(
                    "this service does not take Txn-Tokens from the calling workload".into(),
                ),
                "txn_untrusted_caller",
            ));
        }
        let verified =
            match verify_txn_token(keys, value.to_str().unwrap_or_default(), &check.policy, now) {
                Ok(verified) => verified,
                Err(err) => {
                    if matches!(err, TxnTokenError::UnknownKey(_)) {
                        self.jwks.request_refetch();
                        // As for an access token: keys this old may be missing
                        // a new one, so "try later", not "invalid".
                        if let Some(snapshot) = self.jwks.current()
                            && self.jwks.is_stale(&snapshot, now)
                        {
                            return refuse(
                                OAuthError::TemporarilyUnavailable(
                                    "signing keys are stale; try again later".into(),
                                ),
                                "keys_stale",
                            );
                        }
                    }
                    return refuse(err.clone().into(), err.reason());
                }
            };
        let requesters = verified.requesters();
        if requesters.iter().any(|requester| !check.requesters.contains(requester)) {
            tracing::warn!(
                txn = %verified.txn, client_id = %claims.client_id,
                "Txn-Token requested by a workload this service does not accept"
            );
            return Err((
                OAuthError::AccessDenied(
                    "the Txn-Token was requested by a workload this service does not accept".into(),
                ),
                "txn_untrusted_requester",
            ));
        }
        if !verified.has_scope(scope) {
            return refuse(
                OAuthError::insufficient_scope(format!("the transaction does not include {scope}")),
                "insufficient_scope",
            );
        }
        Ok(AuthContext {
            scopes: verified.scopes().map(str::to_owned).collect(),
            subject: verified.sub,
            client_id: claims.client_id.clone(),
            token_id: claims.jti.clone(),
            expires_at: claims.exp.min(verified.exp),
            actor: Some(claims.client_id.clone()),
            transaction: Some(Transaction {
                txn: verified.txn,
                requesters,
                details: verified.tctx.map(|tctx| serde_json::Value::Object(tctx).to_string()),
            }),
        })
    }

    /// RFC 9449 §7.1 over gRPC (docs/dpop-grpc.md): a DPoP-bound token only
    /// with the DPoP scheme and a fresh proof of its key for this call; an
    /// unbound token only as a bearer token.
    fn check_dpop(
        &self,
        claims: &AccessTokenClaims,
        scheme: TokenScheme,
        token: &str,
        path: &str,
        headers: &http::HeaderMap,
        now: i64,
    ) -> Result<(), (OAuthError, &'static str)> {
        let bound = claims.cnf.as_ref().and_then(|cnf| cnf.jkt.as_deref());
        let refuse = |err: OAuthError, reason: &'static str| {
            tracing::info!(reason, client_id = %claims.client_id, "access token refused");
            Err((err, reason))
        };
        let jkt = match (scheme, bound) {
            (TokenScheme::Bearer, None) => return Ok(()),
            // Stolen, a bound token is useless without the key: it is never
            // accepted on its own.
            (TokenScheme::Bearer, Some(_)) => {
                return refuse(
                    OAuthError::invalid_token(
                        "token is bound to a DPoP key: present it with the DPoP scheme and a proof",
                    ),
                    "dpop_bound_as_bearer",
                );
            }
            (TokenScheme::Dpop, None) => {
                return refuse(
                    OAuthError::invalid_token("token is not DPoP-bound: present it as Bearer"),
                    "not_dpop_bound",
                );
            }
            (TokenScheme::Dpop, Some(jkt)) => jkt,
        };
        let Some(dpop) = &self.dpop else {
            return refuse(
                OAuthError::invalid_token("this service does not accept DPoP-bound tokens"),
                "dpop_not_configured",
            );
        };
        // RFC 9449 §4.3 step 1: exactly one proof.
        let mut proofs = headers.get_all(DPOP_METADATA).iter();
        let proof = match (proofs.next(), proofs.next()) {
            (Some(proof), None) => proof.to_str().unwrap_or_default(),
            (None, _) => {
                return refuse(
                    OAuthError::invalid_dpop_proof("missing DPoP proof"),
                    "dpop_no_proof",
                );
            }
            (Some(_), Some(_)) => {
                return refuse(
                    OAuthError::invalid_dpop_proof("more than one DPoP proof"),
                    "dpop_two_proofs",
                );
            }
        };
        let uri = format!("{}{path}", dpop.origin);
        let request =
            ProofRequest { method: "POST", uri: &uri, access_token: Some(token), nonce: None };
        let proof = match verify_proof(proof, &request, &dpop.policy, now) {
            Ok(proof) => proof,
            Err(err) => return refuse(err.clone().into(), err.reason()),
        };
        // RFC 9449 §7.1's example: a proof by another key is a token not
        // usable by this caller (`invalid_token`), not a malformed proof.
        if proof.jkt != jkt {
            return refuse(
                OAuthError::invalid_token("token is bound to another DPoP key"),
                tollgate_token::dpop::DpopError::KeyMismatch.reason(),
            );
        }
        // Remembered only once it is known to come from the token's key: a
        // caller without a bound token cannot fill the cache.
        let recorded =
            dpop.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).record(&proof, now);
        if let Err(err) = recorded {
            return refuse(err.clone().into(), err.reason());
        }
        Ok(())
    }
}

/// The access token of an `authorization` value and how it was presented:
/// `Bearer` (RFC 6750 §2.1) or `DPoP` (RFC 9449 §7.1), case-insensitive
/// scheme (RFC 9110 §11.1), one space, the token.
fn presented_token(value: &[u8]) -> Option<(TokenScheme, &str)> {
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        TokenScheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        TokenScheme::Dpop
    } else {
        return None;
    };
    (!token.is_empty() && !token.contains(' ')).then_some((scheme, token))
}

/// RFC 6750 §2.1: `Bearer` (case-insensitive scheme, RFC 9110 §11.1), one space,
/// the token.
pub fn bearer_token(header: Option<&[u8]>) -> Option<&str> {
    let value = std::str::from_utf8(header?).ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' '))
        .then_some(token)
}

/// The tower layer. Add it to a tonic `Server::builder().layer(...)`.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    shared: Arc<Shared>,
}

impl AuthLayer {
    pub fn new(
        verifier: Verifier,
        jwks: JwksCache,
        policy: ScopePolicy,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let denylist = Denylist::fixed([]);
        Self {
            shared: Arc::new(Shared {
                verifier,
                verified: VerifiedTokens::default(),
                jwks,
                policy,
                clock,
                denylist,
                dpop: None,
                txn: None,
                #[cfg(feature = "test-support")]
                access_log: None,
                service: "protected-service",
                #[cfg(feature = "bench")]
                admit_as: None,
            }),
        }
    }

    /// Refuses tokens on `denylist` (revoked at the authorization server).
    pub fn with_denylist(self, denylist: Denylist) -> Self {
        let mut shared = Arc::unwrap_or_clone(self.shared);
        shared.denylist = denylist;
        Self { shared: Arc::new(shared) }
    }

    /// Accepts DPoP-bound tokens (RFC 9449) with a proof whose `htu` is
    /// `origin` (`scheme://authority`, as clients address this service)
    /// followed by the method's path (docs/dpop-grpc.md). Without it a
    /// DPoP-bound token is refused.
    pub fn with_dpop(self, origin: &str) -> Self {
        let policy = ProofPolicy {
            max_age_secs: DPOP_MAX_AGE_SECS,
            leeway_secs: DPOP_LEEWAY_SECS,
            ..ProofPolicy::default()
        };
        let seen = std::sync::Mutex::new(ProofReplayCache::new(DPOP_REPLAY_CAPACITY, &policy));
        let origin = origin.trim_end_matches('/').to_owned();
        let mut shared = Arc::unwrap_or_clone(self.shared);
        shared.dpop = Some(Arc::new(DpopCheck { origin, policy, seen }));
        Self { shared: Arc::new(shared) }
    }

    /// Accepts calls carrying a Txn-Token of `check`'s trust domain, requested
    /// by `check`'s workloads (docs/transaction-tokens.md). Without it a call
    /// with a `txn-token` entry is refused.
    pub fn with_txn_tokens(self, check: TxnCheck) -> Self {
        let mut shared = Arc::unwrap_or_clone(self.shared);
        shared.txn = Some(Arc::new(check));
        Self { shared: Arc::new(shared) }
    }

    /// Publishes the [`AuthContext`] of every admitted call on `log`, for tests
    /// that assert who a service saw. Never the token. Test support only.
    #[cfg(feature = "test-support")]
    pub fn with_access_log(self, log: tokio::sync::broadcast::Sender<AuthContext>) -> Self {
        let mut shared = Arc::unwrap_or_clone(self.shared);
        shared.access_log = Some(log);
        Self { shared: Arc::new(shared) }
    }

    /// Checks nothing: every call to a protected method is admitted as
    /// `caller`. For the benchmark's baseline only (a protected RPC against
    /// the same RPC with the auth layer switched off, docs/performance.md).
    #[cfg(feature = "bench")]
    pub fn admitting_everyone_as(self, caller: AuthContext) -> Self {
        let mut shared = Arc::unwrap_or_clone(self.shared);
        shared.admit_as = Some(caller);
        Self { shared: Arc::new(shared) }
    }

    /// Names this service in the validation spans and metrics.
    pub fn with_service(self, service: &'static str) -> Self {
        let mut shared = Arc::unwrap_or_clone(self.shared);
        shared.service = service;
        Self { shared: Arc::new(shared) }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService { inner, shared: self.shared.clone() }
    }
}

/// The service [`AuthLayer`] wraps around the gRPC routes.
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for AuthService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: http_body::Body + Send + 'static,
    ReqBody::Data: Send,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<ReqBody>) -> Self::Future {
        let scope = match self.shared.policy.requirement(req.uri().path()) {
            // Health and reflection: no token, no validation span.
            Some(Requirement::Public) => return self.forward(req),
            #[cfg(feature = "bench")]
            Some(Requirement::Scope(_)) if let Some(caller) = self.shared.admit_as.clone() => {
                req.extensions_mut().insert(caller);
                return self.forward(req);
            }
            Some(Requirement::Scope(scope)) => scope,
            None => {
                let err = OAuthError::insufficient_scope("method has no access policy");
                tollgate_telemetry::metrics::token_validated(
                    self.shared.service,
                    Some("no_policy"),
                );
                let mut response = to_status(&err).into_http();
                // Not a method this service serves: its latency is recorded
                // as `unmatched`, not under the caller's chosen path.
                response.extensions_mut().insert(tollgate_telemetry::propagation::UnmatchedRoute);
                return refuse_after_reading(req, response);
            }
        };
        // The validation span is for traces. Without an exporter nobody sees
        // it, and the log layer formatting its fields on every call was about
        // 2 % of a light protected call (`perf`, docs/performance.md). The
        // refusals' log lines do not need it: they are written inside the
        // request's `grpc.server` span, which names the service and method.
        let span = if tollgate_telemetry::traces_exported() {
            tracing::info_span!(
                "token.validate",
                tollgate.service = self.shared.service,
                rpc.method = %req.uri().path().trim_start_matches('/'),
                required_scope = scope,
                decision = tracing::field::Empty,
                reason = tracing::field::Empty,
                subject = tracing::field::Empty,
                client_id = tracing::field::Empty,
                scope = tracing::field::Empty,
                txn = tracing::field::Empty,
            )
        } else {
            tracing::Span::none()
        };
        // The connection's client certificate (mutual TLS), for bound tokens.
        let certificates = req
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(TlsConnectInfo::peer_certs);
        let decision = span.in_scope(|| {
            self.shared.authorize(
                scope,
                req.uri().path(),
                req.headers(),
                certificates.as_ref().and_then(|chain| chain.first()).map(|cert| cert.as_ref()),
            )
        });
        match decision {
            Ok((context, token, txn_token)) => {
                span.record("decision", "allowed");
                span.record("subject", context.subject.as_str());
                span.record("client_id", context.client_id.as_str());
                span.record("scope", tracing::field::display(Scopes(&context.scopes)));
                if let Some(transaction) = &context.transaction {
                    span.record("txn", transaction.txn.as_str());
                    // One line per hop with the same `txn`: the transaction
                    // can be followed across services (never the token).
                    tollgate_telemetry::audit::record(
                        tollgate_telemetry::audit::Event::TxnTokenAccepted,
                        tollgate_telemetry::audit::Subject {
                            subject: Some(&context.subject),
                            client_id: Some(&context.client_id),
                            scope: Some(scope),
                            txn: Some(&transaction.txn),
                            ..Default::default()
                        },
                    );
                }
                tollgate_telemetry::metrics::token_validated(self.shared.service, None);
                // Only tests listen: no clone per call when nobody does.
                #[cfg(feature = "test-support")]
                if let Some(log) = &self.shared.access_log
                    && log.receiver_count() > 0
                {
                    let _ = log.send(context.clone());
                }
                req.extensions_mut().insert(context);
                req.extensions_mut().insert(token);
                if let Some(txn_token) = txn_token {
                    req.extensions_mut().insert(txn_token);
                }
                self.forward(req)
            }
            Err((err, reason)) => {
                span.record("decision", "refused");
                span.record("reason", reason);
                tollgate_telemetry::metrics::token_validated(self.shared.service, Some(reason));
                // The challenge names the scheme the call used (RFC 9449 §7.1).
                let scheme = req
                    .headers()
                    .get(http::header::AUTHORIZATION)
                    .and_then(|value| presented_token(value.as_bytes()))
                    .map_or(TokenScheme::Bearer, |(scheme, _)| scheme);
                refuse_after_reading(req, to_status_for(&err, scheme).into_http())
            }
        }
    }
}

/// A token's scopes as the `scope` claim spells them, space-separated,
/// written straight into a span field (no string built per call).
struct Scopes<'a>(&'a [String]);

impl std::fmt::Display for Scopes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, scope) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(scope)?;
        }
        Ok(())
    }
}

/// The most of a refused call's request body read before the refusal is sent:
/// more than any request message of the platform's APIs
/// ([`crate::limits::DEFAULT_MAX_MESSAGE_BYTES`]).
pub const MAX_DRAINED_BYTES: usize = 1024 * 1024;
/// How long a refusal waits for the rest of the request body.
pub const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Answers a refused call with `response` once its request body has been read
/// (bounded by [`MAX_DRAINED_BYTES`] and [`DRAIN_TIMEOUT`]).
///
/// Why read a body only to drop it: a response that ends the stream while the
/// request is still open makes h2 reset the stream (`RST_STREAM(NO_ERROR)`,
/// RFC 9113 §8.1) to stop the client sending. Under load the client can see the
/// reset before, or instead of, the response and report `CANCELLED` or
/// `UNKNOWN` for a call that was in fact refused `UNAUTHENTICATED`. Reading the
/// (small) unary request first lets the stream close cleanly from both sides,
/// as it does when a handler refuses after decoding its message.
fn refuse_after_reading<ReqBody, ResBody, E>(
    request: http::Request<ReqBody>,
    response: http::Response<ResBody>,
) -> BoxFuture<'static, Result<http::Response<ResBody>, E>>
where
    ReqBody: http_body::Body + Send + 'static,
    ReqBody::Data: Send,
    ResBody: Send + 'static,
    E: 'static,
{
    Box::pin(async move {
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain(request.into_body())).await;
        Ok(response)
    })
}

/// Reads and drops `body` up to [`MAX_DRAINED_BYTES`].
async fn drain<B: http_body::Body>(body: B) {
    use http_body::Body as _;
    use http_body_util::BodyExt as _;
    let mut body = std::pin::pin!(body);
    let mut read = 0usize;
    while read <= MAX_DRAINED_BYTES && !body.is_end_stream() {
        match body.as_mut().frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    read += bytes::Buf::remaining(data);
                }
            }
            Some(Err(_)) | None => break,
        }
    }
}

impl<S> AuthService<S> {
    /// Calls the inner service: the clone that was polled ready is the one that
    /// must be called.
    fn forward<ReqBody, ResBody>(
        &mut self,
        req: http::Request<ReqBody>,
    ) -> BoxFuture<'static, Result<http::Response<ResBody>, S::Error>>
    where
        S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(inner.call(req))
    }
}

/// The caller's [`AuthContext`]: how every handler learns who is calling.
/// `UNAUTHENTICATED` if the layer did not run for this method (a wiring bug,
/// refused rather than trusted).
pub fn caller<T>(request: &tonic::Request<T>) -> Result<&AuthContext, tonic::Status> {
    from_layer(request)
}

/// The caller's verified token, for a service that exchanges it (RFC 8693);
/// refused like [`caller`] if the layer did not run.
pub fn subject_token<T>(request: &tonic::Request<T>) -> Result<&SubjectToken, tonic::Status> {
    from_layer(request)
}

/// The call's Txn-Token, if it carried one, to pass on unmodified to the
/// workloads this one calls.
pub fn txn_token<T>(request: &tonic::Request<T>) -> Option<&TxnToken> {
    request.extensions().get::<TxnToken>()
}

fn from_layer<X: Send + Sync + 'static, T>(
    request: &tonic::Request<T>,
) -> Result<&X, tonic::Status> {
    request
        .extensions()
        .get::<X>()
        .ok_or_else(|| to_status(&OAuthError::invalid_token("no authenticated caller")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing_follows_rfc_6750() {
        assert_eq!(bearer_token(Some(b"Bearer abc.def.ghi")), Some("abc.def.ghi"));
        assert_eq!(bearer_token(Some(b"bearer abc")), Some("abc"));
        assert_eq!(bearer_token(Some(b"Basic abc")), None);
        assert_eq!(bearer_token(Some(b"Bearer ")), None);
        assert_eq!(bearer_token(Some(b"Bearer a b")), None);
        assert_eq!(bearer_token(None), None);
    }

    #[test]
    fn the_subject_token_is_the_bearer_token_and_never_printed() {
        let header = http::HeaderValue::from_static("Bearer abc.def.ghi");
        let token = SubjectToken(header);
        assert_eq!(token.expose(), "abc.def.ghi");
        assert_eq!(format!("{token:?}"), "SubjectToken([redacted])");
    }

    #[test]
    fn policy_denies_undeclared_methods_and_opens_public_services() {
        let policy = ScopePolicy::new()
            .method("/x.v1.Notes/List", Requirement::Scope("notes:read"))
            .public_service("grpc.health.v1.Health");
        assert_eq!(policy.requirement("/x.v1.Notes/List"), Some(Requirement::Scope("notes:read")));
        assert_eq!(policy.requirement("/grpc.health.v1.Health/Check"), Some(Requirement::Public));
        assert_eq!(policy.requirement("/x.v1.Notes/Delete"), None);
        assert_eq!(policy.requirement("/grpc.health.v1.HealthX/Check"), None);
    }
}
