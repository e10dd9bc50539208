//! The tokens the client holds, and the file it keeps them in.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tollgate_token::Secret;

use crate::ClientError;

/// How a token set was obtained, which decides how to renew it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Obtained {
    /// For a resource owner; renewed with the refresh token.
    AuthorizationCode,
    /// For the client itself; renewed by asking again.
    ClientCredentials,
}

/// An access token and what came with it. The tokens are [`Secret`]s: `Debug`
/// never shows them; only the token file writes them out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenSet {
    #[serde(serialize_with = "tollgate_token::secret::exposed")]
    pub access_token: Secret,
    #[serde(serialize_with = "tollgate_token::secret::exposed_opt")]
    pub refresh_token: Option<Secret>,
    /// Unix seconds, computed from `expires_in` when the token arrived.
    pub expires_at: i64,
    pub scope: String,
    pub obtained: Obtained,
    /// The client the tokens belong to; a token file is not shared across clients.
    pub client_id: String,
    /// `Bearer`, or `DPoP` for tokens bound to [`Self::dpop_key`] (RFC 9449).
    #[serde(default = "bearer")]
    pub token_type: String,
    /// The DPoP key (PKCS#8, base64) the tokens are bound to: kept with
    /// them, as private as they are ([`crate::dpop`]).
    #[serde(
        default,
        serialize_with = "tollgate_token::secret::exposed_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub dpop_key: Option<Secret>,
}

fn bearer() -> String {
    "Bearer".into()
}

/// Enough of a secret to tell two apart in a terminal, not enough to use it.
pub fn redact(secret: &str) -> String {
    let shown: String = secret.chars().take(8).collect();
    format!("{shown}…({} chars)", secret.chars().count())
}

impl TokenSet {
    /// Whether the access token is expired, or will be within `margin` seconds.
    pub fn expires_within(&self, now: i64, margin: i64) -> bool {
        now + margin >= self.expires_at
    }

    /// The DPoP key the tokens are bound to, if they are DPoP tokens.
    pub fn dpop_key(&self) -> Result<Option<crate::dpop::DpopKey>, ClientError> {
        match &self.dpop_key {
            Some(stored) if self.token_type.eq_ignore_ascii_case("DPoP") => {
                crate::dpop::DpopKey::from_stored(stored).map(Some)
            }
            _ => Ok(None),
        }
    }
}

/// A token file readable and writable by its owner only.
#[derive(Debug, Clone)]
pub struct TokenFile {
    path: PathBuf,
}

impl TokenFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn load(&self) -> Result<Option<TokenSet>, ClientError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| ClientError::TokenFile(format!("{}: {e}", self.path.display()))),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(ClientError::TokenFile(format!("{}: {err}", self.path.display()))),
        }
    }

    /// Writes a new file (mode 0600 from the start, never world-readable for an
    /// instant) beside the old one and renames it into place, so a crash leaves
    /// either the old tokens or the new ones.
    pub fn save(&self, tokens: &TokenSet) -> Result<(), ClientError> {
        let fail =
            |e: std::io::Error| ClientError::TokenFile(format!("{}: {e}", self.path.display()));
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let json =
            serde_json::to_vec_pretty(tokens).map_err(|e| ClientError::TokenFile(e.to_string()))?;
        let tmp = self.path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp).map_err(fail)?;
        std::io::Write::write_all(&mut file, &json).map_err(fail)?;
        file.sync_all().map_err(fail)?;
        std::fs::rename(&tmp, &self.path).map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TokenSet {
        TokenSet {
            access_token: Secret::new("eyJhbGciOiJFZERTQSJ9.payload.signature"),
            refresh_token: Some(Secret::new("refresh-secret-value")),
            expires_at: 1000,
            scope: "notes:read".into(),
            obtained: Obtained::AuthorizationCode,
            client_id: "cli".into(),
            token_type: "DPoP".into(),
            dpop_key: Some(Secret::new("dpop-private-key-value")),
        }
    }

    #[test]
    fn token_file_round_trips_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let file = TokenFile::new(dir.path().join("nested/tokens.json"));
        assert!(file.load().unwrap().is_none());
        file.save(&sample()).unwrap();
        let loaded = file.load().unwrap().unwrap();
        assert_eq!(
            loaded.refresh_token.as_ref().map(|t| t.expose().as_str()),
            Some("refresh-secret-value")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(file.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn debug_output_does_not_show_tokens() {
        let shown = format!("{:?}", sample());
        assert!(!shown.contains("payload.signature"), "{shown}");
        assert!(!shown.contains("refresh-secret-value"), "{shown}");
        assert!(!shown.contains("dpop-private-key-value"), "{shown}");
    }

    #[test]
    fn expiry_margin() {
        let tokens = sample();
        assert!(!tokens.expires_within(900, 30));
        assert!(tokens.expires_within(970, 30));
        assert!(tokens.expires_within(1000, 0));
    }
}
