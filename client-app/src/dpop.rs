//! The client's DPoP key (RFC 9449): it binds the client's tokens to a key
//! only the client holds, and every request made with them carries a fresh
//! proof signed with it (docs/dpop-grpc.md for the gRPC calls).
//!
//! One Ed25519 key per token set, made when the tokens are first asked for
//! and kept with them in the token file (mode 0600): the tokens are useless
//! without it, and it is useless without them.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::rand::{SecureRandom as _, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use tollgate_token::Secret;

use crate::ClientError;

/// A DPoP key pair. `Debug` never shows the private key.
pub struct DpopKey {
    pair: Ed25519KeyPair,
    /// The PKCS#8 document, base64, as the token file keeps it.
    stored: Secret,
}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopKey").field("jkt", &self.jkt()).finish_non_exhaustive()
    }
}

impl DpopKey {
    /// A new key from the operating system's randomness.
    pub fn generate() -> Result<Self, ClientError> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| ClientError::Protocol("could not make a DPoP key".into()))?;
        Self::from_pkcs8(pkcs8.as_ref())
    }

    /// The key the token file kept ([`Self::stored`]).
    pub fn from_stored(stored: &Secret) -> Result<Self, ClientError> {
        let pkcs8 = base64::engine::general_purpose::STANDARD
            .decode(stored.expose())
            .map_err(|_| ClientError::TokenFile("the DPoP key is not base64".into()))?;
        Self::from_pkcs8(&pkcs8)
    }

    fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, ClientError> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8)
            .map_err(|_| ClientError::TokenFile("the DPoP key is not an Ed25519 key".into()))?;
        let stored = Secret::new(base64::engine::general_purpose::STANDARD.encode(pkcs8));
        Ok(Self { pair, stored })
    }

    /// The private key as the token file keeps it.
    pub fn stored(&self) -> &Secret {
        &self.stored
    }

    fn x(&self) -> String {
        B64.encode(self.pair.public_key().as_ref())
    }

    /// The key's JWK SHA-256 thumbprint (RFC 7638): the `cnf.jkt` of the
    /// tokens bound to it.
    pub fn jkt(&self) -> String {
        tollgate_token::jwk_thumbprint("OKP", "Ed25519", &self.x(), None)
    }

    /// A proof (RFC 9449 §4.2) for a POST to `htu` made at `iat`: with `ath`
    /// for the `access_token` it is sent with, and the server's `nonce` when
    /// it asked for one. Each proof has a fresh random `jti`.
    pub fn proof(
        &self,
        htu: &str,
        access_token: Option<&str>,
        iat: i64,
        nonce: Option<&str>,
    ) -> String {
        let mut jti = [0u8; 16];
        // The OS's randomness failing leaves a zero jti: the server refuses
        // its second use as a replay, which is the safe way to fail.
        let _ = SystemRandom::new().fill(&mut jti);
        let header = serde_json::json!({
            "typ": "dpop+jwt",
            "alg": "EdDSA",
            "jwk": { "kty": "OKP", "crv": "Ed25519", "x": self.x() },
        });
        let mut claims =
            serde_json::json!({ "jti": B64.encode(jti), "htm": "POST", "htu": htu, "iat": iat });
        if let Some(token) = access_token {
            claims["ath"] = tollgate_token::dpop::access_token_hash(token).into();
        }
        if let Some(nonce) = nonce {
            claims["nonce"] = nonce.into();
        }
        let input =
            format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
        let signature = self.pair.sign(input.as_bytes());
        format!("{input}.{}", B64.encode(signature.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_token::KeyAlgorithm;
    use tollgate_token::dpop::{ProofPolicy, ProofRequest, verify_proof};

    /// The server's own check accepts the client's proof, and the key kept
    /// in the token file is the same key.
    #[test]
    fn a_proof_passes_the_servers_checks_and_the_stored_key_is_the_same_key() {
        let key = DpopKey::generate().unwrap();
        let htu = "https://api.example/tollgate.resource.v1.ProfileService/GetProfile";
        let proof = key.proof(htu, Some("the.access.token"), 1_000, Some("n1"));
        let request = ProofRequest {
            method: "POST",
            uri: htu,
            access_token: Some("the.access.token"),
            nonce: Some("n1"),
        };
        let policy = ProofPolicy { algorithms: vec![KeyAlgorithm::EdDSA], ..Default::default() };
        let verified = verify_proof(&proof, &request, &policy, 1_000).unwrap();
        assert_eq!(verified.jkt, key.jkt());
        let again = DpopKey::from_stored(key.stored()).unwrap();
        assert_eq!(again.jkt(), key.jkt());
        assert!(!format!("{key:?}").contains(key.stored().expose().as_str()));
    }
}
