//! A credential held in memory: usable, never printed.
//!
//! Every client secret, password, private key, code and token that a Tollgate
//! process holds travels as a [`Secret`], from the configuration that reads it
//! to the one call that needs its value ([`Secret::expose`]). Its `Debug` is
//! `<redacted>`, so a `#[derive(Debug)]` on any struct that holds one cannot
//! leak it into a log or a span; it has no `Display` and no `Serialize`, so it
//! cannot be formatted or serialised by accident (a token file opts in with
//! [`exposed`]). Equality is constant-time (RFC 6749 §10.10, RFC 9700 §4.14:
//! comparing a presented credential must not reveal how much of it matched).

use std::fmt;

use subtle::ConstantTimeEq as _;

/// A secret value. `T` is `String` for text credentials, `Vec<u8>` for key bytes.
#[derive(Clone, Default)]
pub struct Secret<T = String>(T);

impl<T> Secret<T> {
    /// The value, at the point of use. Grep for `expose` to find every one.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// The value, consumed.
    pub fn into_exposed(self) -> T {
        self.0
    }
}

impl Secret<String> {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
}

// The one hand-written `Debug` for a credential: every other type derives its
// `Debug` and holds its credentials as `Secret`s.
impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Constant-time: the time taken depends on the lengths only, not on where the
/// first difference is.
impl<T: AsRef<[u8]>> PartialEq for Secret<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_ref().ct_eq(other.0.as_ref()).into()
    }
}

impl<T: AsRef<[u8]>> Eq for Secret<T> {}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl From<Vec<u8>> for Secret<Vec<u8>> {
    fn from(value: Vec<u8>) -> Self {
        Self(value)
    }
}

/// For clap (`--client-secret`, `OAUTH_CLIENT_SECRET`).
impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// Reading a secret from configuration (a bootstrap file) is fine; writing one
/// out is opt-in, see [`exposed`].
impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Secret<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Self)
    }
}

/// `#[serde(serialize_with = "tollgate_token::secret::exposed")]`: for the few
/// places whose job is to store a secret (the client's token file, mode 0600).
pub fn exposed<T: serde::Serialize, S: serde::Serializer>(
    secret: &Secret<T>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&secret.0, serializer)
}

/// [`exposed`], for an optional secret.
pub fn exposed_opt<T: serde::Serialize, S: serde::Serializer>(
    secret: &Option<Secret<T>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&secret.as_ref().map(|s| &s.0), serializer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Config {
            client_id: String,
            client_secret: Secret,
            key: Secret<Vec<u8>>,
        }
        let config = Config {
            client_id: "svc".into(),
            client_secret: Secret::new("hunter2-very-secret"),
            key: Secret::from(vec![0xde, 0xad]),
        };
        let shown = format!("{config:?} {config:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("222") && !shown.contains("173"), "{shown}");
        assert!(shown.contains("svc") && shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn equality_compares_the_whole_value() {
        let secret = Secret::new("abc");
        assert_eq!(secret, Secret::new("abc"));
        assert_ne!(secret, Secret::new("abd"));
        assert_ne!(secret, Secret::new("ab"));
    }

    #[test]
    fn serialises_only_when_asked() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct File {
            #[serde(serialize_with = "exposed")]
            token: Secret,
            #[serde(serialize_with = "exposed_opt")]
            refresh: Option<Secret>,
        }
        let file = File { token: Secret::new("t0k"), refresh: None };
        let json = serde_json::to_string(&file).expect("serialises");
        assert_eq!(json, r#"{"token":"t0k","refresh":null}"#);
        let back: File = serde_json::from_str(r#"{"token":"x","refresh":"y"}"#).expect("parses");
        assert_eq!(back.token.expose().as_str(), "x");
        assert_eq!(back.refresh.as_ref().map(|s| s.expose().as_str()), Some("y"));
    }
}
