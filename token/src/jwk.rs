//! JSON Web Keys (RFC 7517) for the two signature algorithms Tollgate uses.
//!
//! Only public keys are ever represented here: the authorization server builds
//! these from its key pairs to publish them, resource servers parse them.

use serde::{Deserialize, Serialize};

/// The signature algorithms Tollgate signs with. Anything else (`none`, HMAC, RSA)
/// is refused by the verifier's allow-list (RFC 8725 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyAlgorithm {
    /// Ed25519 signatures (RFC 8037). The default.
    EdDSA,
    /// ECDSA on P-256 with SHA-256 (RFC 7518 §3.4).
    ES256,
}

impl KeyAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EdDSA => "EdDSA",
            Self::ES256 => "ES256",
        }
    }

    pub fn parse(alg: &str) -> Option<Self> {
        match alg {
            "EdDSA" => Some(Self::EdDSA),
            "ES256" => Some(Self::ES256),
            _ => None,
        }
    }

    pub fn to_jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::EdDSA => jsonwebtoken::Algorithm::EdDSA,
            Self::ES256 => jsonwebtoken::Algorithm::ES256,
        }
    }
}

/// One public key (RFC 7517 §4), as published in the JWKS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// `OKP` for Ed25519 (RFC 8037 §2), `EC` for P-256 (RFC 7518 §6.2).
    pub kty: String,
    pub crv: String,
    /// Base64url public key (Ed25519) or x coordinate (P-256).
    pub x: String,
    /// Base64url y coordinate (P-256 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    pub kid: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub use_: String,
}

impl Jwk {
    /// The public JWK of an Ed25519 key (RFC 8037 §2).
    pub fn ed25519(kid: impl Into<String>, public_key: &[u8]) -> Self {
        Self {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: b64(public_key),
            y: None,
            kid: kid.into(),
            alg: KeyAlgorithm::EdDSA.as_str().into(),
            use_: "sig".into(),
        }
    }

    /// The public JWK of a P-256 key from its SEC1 uncompressed point
    /// (`0x04 || x || y`, 65 bytes). `None` if the point is not in that form.
    pub fn p256(kid: impl Into<String>, uncompressed_point: &[u8]) -> Option<Self> {
        if uncompressed_point.len() != 65 || uncompressed_point[0] != 0x04 {
            return None;
        }
        Some(Self {
            kty: "EC".into(),
            crv: "P-256".into(),
            x: b64(&uncompressed_point[1..33]),
            y: Some(b64(&uncompressed_point[33..])),
            kid: kid.into(),
            alg: KeyAlgorithm::ES256.as_str().into(),
            use_: "sig".into(),
        })
    }

    /// The key's algorithm, if this JWK is a signing key of a type we use and its
    /// `kty`/`crv` agree with its `alg`.
    pub fn algorithm(&self) -> Option<KeyAlgorithm> {
        if self.use_ != "sig" {
            return None;
        }
        match (KeyAlgorithm::parse(&self.alg)?, self.kty.as_str(), self.crv.as_str()) {
            (KeyAlgorithm::EdDSA, "OKP", "Ed25519") => Some(KeyAlgorithm::EdDSA),
            (KeyAlgorithm::ES256, "EC", "P-256") if self.y.is_some() => Some(KeyAlgorithm::ES256),
            _ => None,
        }
    }
}

impl Jwk {
    /// The key's JWK SHA-256 thumbprint (RFC 7638): the authorization server's
    /// `kid`s.
    pub fn thumbprint(&self) -> String {
        jwk_thumbprint(&self.kty, &self.crv, &self.x, self.y.as_deref())
    }
}

/// The JWK SHA-256 thumbprint (RFC 7638 §3) of an `OKP` (Ed25519) or `EC`
/// (P-256) public key: the required members only, in lexicographic order, no
/// whitespace, then SHA-256 and base64url. A signing key's `kid`, and a DPoP
/// key's `cnf.jkt` (RFC 9449 §6.1).
pub fn jwk_thumbprint(kty: &str, crv: &str, x: &str, y: Option<&str>) -> String {
    use sha2::Digest as _;
    // The members' values are base64url and curve names: nothing to escape,
    // but serde_json writes them as JSON strings all the same.
    let text = |value: &str| serde_json::Value::from(value).to_string();
    let canonical = match y {
        None => format!(r#"{{"crv":{},"kty":{},"x":{}}}"#, text(crv), text(kty), text(x)),
        Some(y) => format!(
            r#"{{"crv":{},"kty":{},"x":{},"y":{}}}"#,
            text(crv),
            text(kty),
            text(x),
            text(y)
        ),
    };
    b64(&sha2::Sha256::digest(canonical.as_bytes()))
}

/// A JWK Set (RFC 7517 §5).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_requires_matching_type_curve_and_use() {
        let mut jwk = Jwk::ed25519("k1", &[7; 32]);
        assert_eq!(jwk.algorithm(), Some(KeyAlgorithm::EdDSA));
        jwk.crv = "P-256".into();
        assert_eq!(jwk.algorithm(), None);
        let mut enc = Jwk::ed25519("k1", &[7; 32]);
        enc.use_ = "enc".into();
        assert_eq!(enc.algorithm(), None);
    }

    #[test]
    fn the_thumbprint_is_rfc_7638s() {
        // RFC 8037 Appendix A.3: the thumbprint of its Ed25519 example key.
        let jwk = Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo".into(),
            y: None,
            kid: String::new(),
            alg: "EdDSA".into(),
            use_: "sig".into(),
        };
        assert_eq!(jwk.thumbprint(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
        assert_eq!(
            jwk_thumbprint("OKP", "Ed25519", "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", None),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn p256_needs_an_uncompressed_point() {
        assert!(Jwk::p256("k", &[4; 33]).is_none());
        let mut point = [1u8; 65];
        point[0] = 4;
        let jwk = Jwk::p256("k", &point).unwrap();
        assert_eq!(jwk.algorithm(), Some(KeyAlgorithm::ES256));
        assert_eq!(serde_json::to_value(&jwk).unwrap()["use"], "sig");
    }
}
