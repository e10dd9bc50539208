//! Transaction Tokens (draft-ietf-oauth-transaction-tokens-10): what a
//! Txn-Token *is*, and how a workload inside the trust domain decides whether
//! to believe one.
//!
//! A Txn-Token is not an access token (§"Transaction Tokens Are Not OAuth 2.0
//! Access Tokens"): it grants nothing to whoever holds it. It carries who the
//! transaction is for (`sub`), what it is for (`scope`, `tctx`), where it came
//! from (`rctx`, `req_wl`) and one identifier for the whole call chain (`txn`),
//! unchanged from the edge of the trust domain to its last hop. Each workload
//! authenticates its caller separately and authorizes on this.
//!
//! The checks, in order: size, header (`typ: txntoken+jwt`, an allowed `alg`,
//! no `crit`, a `kid` from the authorization server's JWKS), signature, then
//! claims: `aud` is this trust domain, not expired, not issued in the future,
//! a lifetime of at most [`MAX_TXN_TOKEN_LIFETIME_SECS`], and an `iss`, when
//! there is one, that is the authorization server's.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::jwk::KeyAlgorithm;
use crate::jws::{self, JwsError};
use crate::verifier::KeySet;

/// The JWT `typ` of a Txn-Token (draft §"JWT Header"): no other token type
/// verifies as one, and a Txn-Token verifies as nothing else (an access
/// token's verifier wants `at+jwt`).
pub const TXN_TOKEN_JWT_TYPE: &str = "txntoken+jwt";
/// The token-type URN of a Txn-Token, for token exchange (RFC 8693 §3).
pub const TXN_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:txn_token";
/// The gRPC metadata entry a Txn-Token travels in: the draft's `Txn-Token`
/// HTTP header, lower-case as gRPC metadata keys are. Never `authorization`,
/// which authenticates the calling workload itself.
pub const TXN_TOKEN_METADATA: &str = "txn-token";
/// The longest lifetime (`exp - iat`) a workload accepts. The draft asks for
/// tokens "on the order of minutes or less" and a short one limits replay;
/// the authorization server issues them for 60 s by default and never for
/// longer than this.
pub const MAX_TXN_TOKEN_LIFETIME_SECS: i64 = 300;
/// A Txn-Token larger than this is refused before any decoding: the claims
/// carry two small JSON objects at most (the authorization server bounds each
/// at [`MAX_CONTEXT_BYTES`]).
pub const MAX_TXN_TOKEN_BYTES: usize = 8 * 1024;
/// The largest `request_context` or `request_details` object (serialized) the
/// authorization server copies into a Txn-Token's `rctx` or `tctx`.
pub const MAX_CONTEXT_BYTES: usize = 1024;

/// The claims of a Txn-Token (draft §"JWT Body Claims").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxnTokenClaims {
    /// OPTIONAL in the draft; ours always names the authorization server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    pub iat: i64,
    /// The trust domain the token is valid in, and nowhere else.
    pub aud: String,
    pub exp: i64,
    /// The transaction's identifier (RFC 8417 §2.2), the same on every hop and
    /// in every replacement.
    pub txn: String,
    /// The principal of the transaction, unique within the trust domain.
    pub sub: String,
    /// The purpose of the transaction: never more than the token it was
    /// obtained with granted.
    pub scope: String,
    /// What stays fixed along the call chain (from `request_details`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tctx: Option<Map<String, Value>>,
    /// The environment of the request (from `request_context`), and
    /// [`REQUESTER_CHAIN`]: every workload that requested this token or one it
    /// replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rctx: Option<Map<String, Value>>,
    /// The workload that requested this Txn-Token.
    pub req_wl: String,
}

/// The `rctx` member that keeps the call chain of requesting workloads across
/// replacements (the draft requires the chain kept and leaves the mechanism
/// to the Txn-Token Service): an array, first requester first.
pub const REQUESTER_CHAIN: &str = "req_wl_chain";

impl TxnTokenClaims {
    /// The scopes of the transaction, one by one.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split(' ').filter(|s| !s.is_empty())
    }

    /// Whether the transaction's purpose includes `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes().any(|s| s == scope)
    }

    /// Every workload that requested this token or one it replaced, first
    /// first; just `req_wl` for a token never replaced.
    pub fn requesters(&self) -> Vec<String> {
        let chain = self
            .rctx
            .as_ref()
            .and_then(|rctx| rctx.get(REQUESTER_CHAIN))
            .and_then(Value::as_array)
            .map(|all| all.iter().filter_map(Value::as_str).map(str::to_owned).collect::<Vec<_>>())
            .unwrap_or_default();
        if chain.is_empty() { vec![self.req_wl.clone()] } else { chain }
    }

    /// The workload that started the chain: the first requester.
    pub fn original_requester(&self) -> String {
        self.requesters().into_iter().next().unwrap_or_else(|| self.req_wl.clone())
    }
}

/// What a workload expects of the Txn-Tokens it accepts.
#[derive(Debug, Clone)]
pub struct TxnTokenPolicy {
    /// This workload's trust domain: the `aud` every Txn-Token must carry.
    pub trust_domain: String,
    /// The authorization server's issuer: a Txn-Token's `iss`, if present,
    /// must be it.
    pub issuer: String,
    /// Tolerated clock skew for `exp` and `iat`, in seconds.
    pub leeway_secs: i64,
    /// The algorithm allow-list (RFC 8725 §3.1).
    pub algorithms: Vec<KeyAlgorithm>,
}

impl TxnTokenPolicy {
    pub fn new(trust_domain: impl Into<String>, issuer: impl Into<String>) -> Self {
        Self {
            trust_domain: trust_domain.into(),
            issuer: issuer.into(),
            leeway_secs: 30,
            algorithms: vec![KeyAlgorithm::EdDSA, KeyAlgorithm::ES256],
        }
    }
}

/// Why a Txn-Token was refused. Each is `invalid_token` on the wire; the
/// label is for logs, metrics and tests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxnTokenError {
    #[error("Txn-Token is larger than the accepted maximum")]
    TooLarge,
    #[error("Txn-Token is not a well-formed JWT ({0})")]
    Malformed(&'static str),
    #[error("Txn-Token type is not txntoken+jwt")]
    WrongType,
    #[error("Txn-Token signature algorithm is not allowed")]
    AlgorithmNotAllowed,
    #[error("Txn-Token has a critical header parameter")]
    CriticalHeader,
    #[error("Txn-Token is signed with an unknown key")]
    UnknownKey(String),
    #[error("Txn-Token signature is invalid")]
    BadSignature,
    #[error("Txn-Token was issued by another issuer")]
    WrongIssuer,
    #[error("Txn-Token is for another trust domain")]
    OtherTrustDomain,
    #[error("Txn-Token has expired")]
    Expired,
    #[error("Txn-Token was issued in the future")]
    IssuedInFuture,
    #[error("Txn-Token lives longer than this workload accepts")]
    TooLongLived,
}

impl TxnTokenError {
    /// A short stable label (metrics, span attributes), `txn_…` so it is told
    /// apart from the access token's own.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooLarge => "txn_too_large",
            Self::Malformed(_) => "txn_malformed",
            Self::WrongType => "txn_wrong_type",
            Self::AlgorithmNotAllowed => "txn_algorithm_not_allowed",
            Self::CriticalHeader => "txn_critical_header",
            Self::UnknownKey(_) => "txn_unknown_key",
            Self::BadSignature => "txn_bad_signature",
            Self::WrongIssuer => "txn_wrong_issuer",
            Self::OtherTrustDomain => "txn_other_trust_domain",
            Self::Expired => "txn_expired",
            Self::IssuedInFuture => "txn_issued_in_future",
            Self::TooLongLived => "txn_too_long_lived",
        }
    }
}

impl From<TxnTokenError> for crate::OAuthError {
    fn from(err: TxnTokenError) -> Self {
        crate::OAuthError::invalid_token(err.to_string())
    }
}

impl From<JwsError> for TxnTokenError {
    fn from(err: JwsError) -> Self {
        match err {
            JwsError::Malformed(what) => Self::Malformed(what),
            JwsError::BadSignature => Self::BadSignature,
        }
    }
}

/// Verifies `token` as a Txn-Token of `policy`'s trust domain, signed by one
/// of `keys` (the authorization server's JWKS), at `now` (draft §"Txn-Token
/// Validation": signature, `aud`, expiry; the rest is this platform's policy).
pub fn verify_txn_token(
    keys: &KeySet,
    token: &str,
    policy: &TxnTokenPolicy,
    now: i64,
) -> Result<TxnTokenClaims, TxnTokenError> {
    if token.len() > MAX_TXN_TOKEN_BYTES {
        return Err(TxnTokenError::TooLarge);
    }
    let header = jws::header(token)?;
    let typ = header.get("typ").and_then(Value::as_str).ok_or(TxnTokenError::WrongType)?;
    // Media types compare case-insensitively (RFC 7515 §4.1.9), with or
    // without the `application/` prefix.
    let typ = typ.to_ascii_lowercase();
    if typ != TXN_TOKEN_JWT_TYPE && typ != format!("application/{TXN_TOKEN_JWT_TYPE}") {
        return Err(TxnTokenError::WrongType);
    }
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(KeyAlgorithm::parse)
        .filter(|alg| policy.algorithms.contains(alg))
        .ok_or(TxnTokenError::AlgorithmNotAllowed)?;
    if header.contains_key("crit") {
        return Err(TxnTokenError::CriticalHeader);
    }
    let kid =
        header.get("kid").and_then(Value::as_str).ok_or(TxnTokenError::Malformed("no kid"))?;
    let (key_alg, key) = keys.get(kid).ok_or_else(|| TxnTokenError::UnknownKey(kid.to_owned()))?;
    if key_alg != alg {
        return Err(TxnTokenError::AlgorithmNotAllowed);
    }
    let claims: TxnTokenClaims = jws::verify(token, alg, key)?;

    if claims.iss.as_deref().is_some_and(|iss| iss != policy.issuer) {
        return Err(TxnTokenError::WrongIssuer);
    }
    // "A Txn-Token MUST NOT be accepted outside the Trust Domain identified
    // by the aud claim."
    if claims.aud != policy.trust_domain {
        return Err(TxnTokenError::OtherTrustDomain);
    }
    let leeway = policy.leeway_secs;
    if now >= claims.exp.saturating_add(leeway) {
        return Err(TxnTokenError::Expired);
    }
    if claims.iat > now.saturating_add(leeway) {
        return Err(TxnTokenError::IssuedInFuture);
    }
    if claims.exp.saturating_sub(claims.iat) > MAX_TXN_TOKEN_LIFETIME_SECS {
        return Err(TxnTokenError::TooLongLived);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verifier::tests::{NOW, TestKey, ed25519, keyset, sign_with_typ};

    const DOMAIN: &str = "tollgate.internal";
    const ISS: &str = "https://auth.example";

    fn claims() -> TxnTokenClaims {
        TxnTokenClaims {
            iss: Some(ISS.into()),
            iat: NOW,
            aud: DOMAIN.into(),
            exp: NOW + 60,
            txn: "97053963-771d-49cc-a4e3-20aad399c312".into(),
            sub: "alice".into(),
            scope: "notes:write".into(),
            tctx: None,
            rctx: None,
            req_wl: "tollgate-resource".into(),
        }
    }

    fn txn(key: &TestKey, claims: &TxnTokenClaims) -> String {
        sign_with_typ(key, claims, TXN_TOKEN_JWT_TYPE)
    }

    fn policy() -> TxnTokenPolicy {
        TxnTokenPolicy::new(DOMAIN, ISS)
    }

    #[test]
    fn a_txn_token_of_this_trust_domain_verifies() {
        let key = ed25519("k1");
        let verified = verify_txn_token(&keyset(&[&key]), &txn(&key, &claims()), &policy(), NOW);
        assert_eq!(verified, Ok(claims()));
        assert!(claims().has_scope("notes:write") && !claims().has_scope("notes"));
        assert_eq!(claims().requesters(), vec!["tollgate-resource".to_owned()]);
    }

    #[test]
    fn an_access_token_is_not_a_txn_token_and_a_txn_token_is_no_access_token() {
        let key = ed25519("k1");
        let keys = keyset(&[&key]);
        let access = crate::verifier::tests::sign(&key, &crate::verifier::tests::claims());
        assert_eq!(verify_txn_token(&keys, &access, &policy(), NOW), Err(TxnTokenError::WrongType));
        // The other way round: the access-token verifier wants `at+jwt`.
        let as_access = crate::verifier::tests::verifier().verify_any_audience(
            &keys,
            &txn(&key, &claims()),
            NOW,
        );
        assert_eq!(as_access, Err(crate::TokenError::WrongType));
    }

    #[test]
    fn outside_its_trust_domain_expired_long_lived_or_forged_it_is_refused() {
        let key = ed25519("k1");
        let keys = keyset(&[&key]);
        let check = |claims: &TxnTokenClaims, now| {
            verify_txn_token(&keys, &txn(&key, claims), &policy(), now)
        };
        let other_domain = TxnTokenClaims { aud: "elsewhere.example".into(), ..claims() };
        assert_eq!(check(&other_domain, NOW), Err(TxnTokenError::OtherTrustDomain));
        assert_eq!(check(&claims(), NOW + 60 + 30), Err(TxnTokenError::Expired));
        assert!(check(&claims(), NOW + 60 + 29).is_ok(), "within the leeway");
        let long = TxnTokenClaims { exp: NOW + MAX_TXN_TOKEN_LIFETIME_SECS + 1, ..claims() };
        assert_eq!(check(&long, NOW), Err(TxnTokenError::TooLongLived));
        assert_eq!(check(&claims(), NOW - 31), Err(TxnTokenError::IssuedInFuture));
        let other_issuer = TxnTokenClaims { iss: Some("https://evil.example".into()), ..claims() };
        assert_eq!(check(&other_issuer, NOW), Err(TxnTokenError::WrongIssuer));
        // Signed by a key the trust domain does not publish.
        let forger = ed25519("k1");
        let forged = txn(&forger, &claims());
        assert_eq!(
            verify_txn_token(&keys, &forged, &policy(), NOW),
            Err(TxnTokenError::BadSignature)
        );
        let unknown = ed25519("k9");
        assert_eq!(
            verify_txn_token(&keys, &txn(&unknown, &claims()), &policy(), NOW),
            Err(TxnTokenError::UnknownKey("k9".into()))
        );
        assert_eq!(
            verify_txn_token(&keys, &"x".repeat(MAX_TXN_TOKEN_BYTES + 1), &policy(), NOW),
            Err(TxnTokenError::TooLarge)
        );
    }

    #[test]
    fn the_requester_chain_is_read_from_rctx() {
        let mut rctx = Map::new();
        rctx.insert(REQUESTER_CHAIN.into(), serde_json::json!(["edge", "tollgate-notes-store"]));
        let replaced =
            TxnTokenClaims { rctx: Some(rctx), req_wl: "tollgate-notes-store".into(), ..claims() };
        assert_eq!(replaced.requesters(), vec!["edge".to_owned(), "tollgate-notes-store".into()]);
        assert_eq!(replaced.original_requester(), "edge");
    }
}
