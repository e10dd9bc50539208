//! Tokens for refusal tests: what an attacker could make (signed JWTs with keys
//! the authorization server never published), here and against the compose
//! stack; and what only the issuer could make (its own key, claims of the
//! test's choosing), to reach the rules checked after the signature.

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use tollgate_auth_server::domain::OAuthCore;
use tollgate_auth_server::storage::SqlStore;
use tollgate_token::AccessTokenClaims;

/// A JWT with `header` and `claims`, signed with the Ed25519 `key`.
pub fn sign_jwt(
    header: &serde_json::Value,
    claims: &serde_json::Value,
    key: &Ed25519KeyPair,
) -> String {
    let signing_input =
        format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
    let signature = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", B64.encode(signature.as_ref()))
}

#[allow(
    clippy::expect_used,
    reason = "test support: without a working RNG no test can run, so it stops here"
)]
pub fn new_ed25519_key() -> Ed25519KeyPair {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("a fresh Ed25519 key");
    Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("the key just made")
}

/// `token`'s claims, re-signed with a key of the attacker's under a `kid` the
/// server never published: well-formed, but unverifiable by anyone who trusts
/// only the server's JWKS.
pub fn with_unknown_key(token: &str) -> String {
    let mut parts = token.split('.');
    let (header, claims) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let decode = |part: &str| -> serde_json::Value {
        serde_json::from_slice(&B64.decode(part).unwrap_or_default()).unwrap_or_default()
    };
    let (mut header, claims) = (decode(header), decode(claims));
    let attacker = new_ed25519_key();
    header["kid"] = B64.encode(attacker.public_key().as_ref()).into();
    sign_jwt(&header, &claims, &attacker)
}

/// `token`'s claims, changed by `edit` and signed again with `issuer`'s own
/// active key: validly signed, so a verifier gets past the signature to the
/// claims (`iat`, `nbf`, `exp`, `aud`).
pub fn reissued(
    issuer: &OAuthCore<SqlStore>,
    token: &str,
    edit: impl FnOnce(&mut AccessTokenClaims),
) -> anyhow::Result<String> {
    let claims = token.split('.').nth(1).context("not a JWT")?;
    let mut claims: AccessTokenClaims = serde_json::from_slice(&B64.decode(claims)?)?;
    edit(&mut claims);
    Ok(issuer.signer().sign(&claims, issuer.now())?)
}

/// [`reissued`] for a Transaction Token: its claims changed by `edit` and
/// signed again as a Txn-Token with `issuer`'s own active key.
pub fn reissued_txn(
    issuer: &OAuthCore<SqlStore>,
    token: &str,
    edit: impl FnOnce(&mut tollgate_token::TxnTokenClaims),
) -> anyhow::Result<String> {
    let claims = token.split('.').nth(1).context("not a JWT")?;
    let mut claims: tollgate_token::TxnTokenClaims = serde_json::from_slice(&B64.decode(claims)?)?;
    edit(&mut claims);
    Ok(issuer.signer().sign_txn_token(&claims, issuer.now())?)
}

/// `token` with its header and claims unchanged (the server's `kid`
/// included) and a signature by a key of the attacker's.
pub fn with_forged_signature(token: &str) -> String {
    let mut parts = token.split('.');
    let (header, claims) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let signing_input = format!("{header}.{claims}");
    let signature = new_ed25519_key().sign(signing_input.as_bytes());
    format!("{signing_input}.{}", B64.encode(signature.as_ref()))
}

/// A client's DPoP key (RFC 9449), made here independently of the services'
/// code and of the client app's (`tollgate_client_app::dpop`): the tests'
/// proofs and thumbprints do not share the code they check. It signs proofs
/// for token requests and protected calls.
pub struct DpopKey(Ed25519KeyPair);

impl Default for DpopKey {
    fn default() -> Self {
        Self(new_ed25519_key())
    }
}

impl DpopKey {
    /// The public JWK a proof carries.
    pub fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "x": B64.encode(self.0.public_key().as_ref()),
        })
    }

    /// The key's JWK SHA-256 thumbprint (RFC 7638 §3): `cnf.jkt` of the
    /// tokens bound to it. Computed here from the members, not by the
    /// services' own function.
    pub fn jkt(&self) -> String {
        use sha2::Digest as _;
        let x = B64.encode(self.0.public_key().as_ref());
        let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        B64.encode(sha2::Sha256::digest(canonical.as_bytes()))
    }

    /// A proof for a POST to `htu` made at `iat`, carrying `ath` for
    /// `access_token` when one is presented with it (RFC 9449 §4.2). Each
    /// proof gets a fresh `jti`.
    pub fn proof(&self, htu: &str, access_token: Option<&str>, iat: i64) -> String {
        self.proof_with_nonce(htu, access_token, iat, None)
    }

    /// [`Self::proof`] carrying a server's `nonce` (RFC 9449 §8).
    pub fn proof_with_nonce(
        &self,
        htu: &str,
        access_token: Option<&str>,
        iat: i64,
        nonce: Option<&str>,
    ) -> String {
        use sha2::Digest as _;
        let mut jti = [0u8; 12];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut jti)
            .unwrap_or_default();
        let mut claims = serde_json::json!({
            "jti": B64.encode(jti), "htm": "POST", "htu": htu, "iat": iat,
        });
        if let Some(token) = access_token {
            claims["ath"] = B64.encode(sha2::Sha256::digest(token.as_bytes())).into();
        }
        if let Some(nonce) = nonce {
            claims["nonce"] = nonce.into();
        }
        let header = serde_json::json!({ "typ": "dpop+jwt", "alg": "EdDSA", "jwk": self.jwk() });
        sign_jwt(&header, &claims, &self.0)
    }
}
