//! The device authorization grant (RFC 8628): a device without a browser shows
//! the person a short code; they enter it on another device at the verification
//! page, sign in and approve; meanwhile the device polls the token endpoint.

use rand::Rng as _;
use tollgate_token::{OAuthError, Scope};

use super::model::{Client, DeviceCode, GrantRecord, GrantType};
use super::{ClientAuth, OAuthCore, TokenResponse, requested_scope, secrets, storage_failure};
use crate::storage::{DevicePoll, Store};

/// RFC 8628 §6.1: a user code from 20 consonants (no vowels, so no words; no
/// look-alikes), 8 of them: 20^8 ≈ 2^34.6 codes, alive for minutes, and the
/// verification page is the only place to guess.
const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
const USER_CODE_LEN: usize = 8;

/// The answer to a device authorization request (RFC 8628 §3.2).
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceAuthorization {
    pub device_code: String,
    /// For display: `XXXX-XXXX`.
    pub user_code: String,
    pub expires_in: i64,
    pub interval: i64,
}

impl std::fmt::Debug for DeviceAuthorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceAuthorization")
            .field("expires_in", &self.expires_in)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// What the verification page shows for a code.
#[derive(Debug, Clone)]
pub struct PendingDevice {
    pub client: Client,
    pub scope: Scope,
    pub user_code: String,
}

/// Upper-cases and drops separators, so `bcdf-ghjk`, `BCDF GHJK` and
/// `BCDFGHJK` are one code (RFC 8628 §6.1).
pub fn normalize_user_code(typed: &str) -> String {
    typed.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_uppercase()).collect()
}

/// `BCDFGHJK` → `BCDF-GHJK`.
pub fn display_user_code(code: &str) -> String {
    let (head, tail) = code.split_at(code.len() / 2);
    format!("{head}-{tail}")
}

fn generate_user_code() -> String {
    let mut rng = rand::rngs::OsRng;
    (0..USER_CODE_LEN)
        .map(|_| char::from(USER_CODE_ALPHABET[rng.gen_range(0..USER_CODE_ALPHABET.len())]))
        .collect()
}

impl<S: Store> OAuthCore<S> {
    /// RFC 8628 §3.1–3.2: starts a device authorization for a client registered
    /// for the device grant (public clients identify with `client_id`).
    #[tracing::instrument(name = "device_authorization", skip_all, fields(client_id = %auth.client_id()))]
    pub async fn device_authorization(
        &self,
        auth: &ClientAuth,
        scope: Option<&str>,
    ) -> Result<DeviceAuthorization, OAuthError> {
        let client = self.authenticate_client(auth).await?;
        if !client.may_use(GrantType::DeviceCode) {
            return Err(OAuthError::unauthorized_client(
                "client may not use the device authorization grant",
            ));
        }
        let scope = requested_scope(scope, &client.scope)?;
        let now = self.clock.now();
        let device_code = secrets::generate_secret();
        let user_code = generate_user_code();
        self.store
            .insert_device_code(&DeviceCode {
                device_code_hash: secrets::hash_secret(&device_code),
                user_code: user_code.clone(),
                client_id: client.client_id.clone(),
                scope,
                created_at: now,
                expires_at: now + self.settings.device_code_ttl_secs,
                poll_interval: self.settings.device_poll_interval_secs,
                subject: None,
            })
            .await
            .map_err(storage_failure)?;
        Ok(DeviceAuthorization {
            device_code,
            user_code: display_user_code(&user_code),
            expires_in: self.settings.device_code_ttl_secs,
            interval: self.settings.device_poll_interval_secs,
        })
    }

    /// The pending authorization a typed code names, for the verification page.
    pub async fn pending_device(&self, typed: &str) -> Result<Option<PendingDevice>, OAuthError> {
        let user_code = normalize_user_code(typed);
        if user_code.len() != USER_CODE_LEN {
            return Ok(None);
        }
        let Some(code) = self
            .store
            .pending_device_code(&user_code, self.clock.now())
            .await
            .map_err(storage_failure)?
        else {
            return Ok(None);
        };
        let client = self
            .store
            .client(&code.client_id)
            .await
            .map_err(storage_failure)?
            .ok_or(OAuthError::ServerError)?;
        Ok(Some(PendingDevice {
            client,
            scope: code.scope,
            user_code: display_user_code(&user_code),
        }))
    }

    /// Records the signed-in person's decision; `false` if the code is no longer
    /// pending.
    pub async fn decide_device(
        &self,
        typed: &str,
        subject: &str,
        approve: bool,
    ) -> Result<bool, OAuthError> {
        let decided = self
            .store
            .decide_device_code(&normalize_user_code(typed), subject, approve, self.clock.now())
            .await
            .map_err(storage_failure)?;
        if decided {
            tracing::info!(subject, approve, "device authorization decided");
        }
        Ok(decided)
    }

    /// RFC 8628 §3.4–3.5: the device's poll at the token endpoint.
    pub(super) async fn device_code_grant(
        &self,
        client: &Client,
        device_code: &str,
    ) -> Result<TokenResponse, OAuthError> {
        let now = self.clock.now();
        let poll = self
            .store
            .poll_device_code(&secrets::hash_secret(device_code), &client.client_id, now)
            .await
            .map_err(storage_failure)?;
        let code = match poll {
            DevicePoll::Approved(code) => code,
            DevicePoll::Pending => {
                return Err(OAuthError::AuthorizationPending(
                    "the user has not finished yet".into(),
                ));
            }
            DevicePoll::SlowDown => {
                return Err(OAuthError::SlowDown("polling too often; wait 5 s longer".into()));
            }
            DevicePoll::Expired => {
                return Err(OAuthError::ExpiredToken("the device code has expired".into()));
            }
            DevicePoll::Denied => {
                return Err(OAuthError::AccessDenied("the user denied the request".into()));
            }
            DevicePoll::Unknown | DevicePoll::Redeemed => {
                return Err(OAuthError::invalid_grant(
                    "device code is invalid, another client's, or already used",
                ));
            }
        };
        let subject = code.subject.ok_or(OAuthError::ServerError)?;
        let grant = GrantRecord {
            grant_id: secrets::generate_secret(),
            client_id: client.client_id.clone(),
            subject,
            scope: code.scope,
            audience: client.audience.clone(),
            created_at: now,
        };
        self.issue_for_grant(client, grant, None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_are_typable() {
        let code = generate_user_code();
        assert_eq!(code.len(), USER_CODE_LEN);
        assert!(code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)));
        assert_eq!(normalize_user_code(&display_user_code(&code).to_lowercase()), code);
        assert_eq!(normalize_user_code(" bcdf ghjk "), "BCDFGHJK");
    }
}
