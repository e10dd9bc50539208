//! The device authorization grant (RFC 8628): a device without a browser shows
//! the person a short code; they enter it on another device at the verification
//! page, sign in and approve; meanwhile the device polls the token endpoint.

use crate::domain::client_auth::Authenticated;
use rand::Rng as _;
use tollgate_token::{OAuthError, Scope, Secret};

use super::requested_scope;
use crate::domain::client_auth::ClientAuth;
use crate::domain::consent::consent_granted;
use crate::domain::model::{Client, DeviceCode, GrantRecord, GrantType};
use crate::domain::{OAuthCore, TokenResponse, secrets, storage_failure};
use crate::storage::{ClientStore, DevicePoll, DeviceStore, GrantSource, GrantStore};

/// RFC 8628 §6.1: a user code from 20 consonants (no vowels, so no words; no
/// look-alikes), 8 of them: 20^8 ≈ 2^34.6 codes, alive for minutes, and the
/// verification page is the only place to guess.
const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
const USER_CODE_LEN: usize = 8;
/// How many user codes one request draws before giving up: with even a million
/// codes in the table, eight taken in a row happens once in 10^28 requests.
const USER_CODE_DRAWS: usize = 8;

/// The answer to a device authorization request (RFC 8628 §3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAuthorization {
    pub device_code: Secret,
    /// For display: `XXXX-XXXX`.
    pub user_code: Secret,
    pub expires_in: i64,
    pub interval: i64,
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

impl<S: ClientStore + DeviceStore> OAuthCore<S> {
    /// RFC 8628 §3.1–3.2: starts a device authorization for a client registered
    /// for the device grant (public clients identify with `client_id`).
    #[tracing::instrument(name = "device_authorization", skip_all, fields(client_id = %auth.logged_id()))]
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
        // Each request writes a row, for anyone who knows a public client's id:
        // bound the rows one client can have pending.
        let (pending, first_expiry) = self
            .store
            .pending_device_codes(&client.client_id, now)
            .await
            .map_err(storage_failure)?;
        if pending >= self.settings.max_pending_device_codes {
            tracing::warn!(client_id = %client.client_id, pending, "device authorizations capped");
            let wait = first_expiry.map_or(1, |at| at - now).max(1);
            return Err(OAuthError::too_many_requests(std::time::Duration::from_secs(
                u64::try_from(wait).unwrap_or(1),
            )));
        }
        let device_code = secrets::generate_secret();
        let code = DeviceCode {
            device_code_hash: secrets::hash_secret(&device_code),
            user_code: String::new(),
            client_id: client.client_id.clone(),
            scope,
            created_at: now,
            expires_at: now + self.settings.device_code_ttl_secs,
            poll_interval: self.settings.device_poll_interval_secs,
            subject: None,
        };
        let user_code = self.insert_with_fresh_user_code(code, generate_user_code).await?;
        Ok(DeviceAuthorization {
            device_code: Secret::new(device_code),
            user_code: Secret::new(display_user_code(&user_code)),
            expires_in: self.settings.device_code_ttl_secs,
            interval: self.settings.device_poll_interval_secs,
        })
    }

    /// Stores `code` under a user code from `draw`, drawing again while the code
    /// drawn is taken (a live or not yet purged authorization holds it): a
    /// collision is rare (20^8 codes) but must not fail the request.
    async fn insert_with_fresh_user_code(
        &self,
        mut code: DeviceCode,
        mut draw: impl FnMut() -> String,
    ) -> Result<String, OAuthError> {
        for _ in 0..USER_CODE_DRAWS {
            code.user_code = draw();
            if self.store.insert_device_code(&code).await.map_err(storage_failure)? {
                return Ok(code.user_code);
            }
            tracing::info!("user code collision; drawing another");
        }
        tracing::error!(draws = USER_CODE_DRAWS, "every user code drawn was taken");
        Err(OAuthError::ServerError)
    }

    /// The pending authorization a typed code names, for the verification page,
    /// typed at an address whose throttle key is `from`: user codes are short,
    /// so guessing is throttled per address (RFC 8628 §5.1).
    pub async fn pending_device(
        &self,
        typed: &str,
        from: &str,
    ) -> Result<Option<PendingDevice>, OAuthError> {
        self.throttles().device_ip.check(from)?;
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
}

impl<S: DeviceStore> OAuthCore<S> {
    /// Records the signed-in person's decision; `false` if the code is no longer
    /// pending.
    pub async fn decide_device(
        &self,
        typed: &str,
        subject: &str,
        approve: bool,
    ) -> Result<bool, OAuthError> {
        // An approval is recorded as consent in the same transaction: an
        // approval the owner cannot see on `/account` (and withdraw) must not
        // exist, nor a consent without its approval.
        let decided = self
            .store
            .decide_device_code(&normalize_user_code(typed), subject, approve, self.clock.now())
            .await
            .map_err(storage_failure)?;
        let Some((client_id, scope)) = decided else { return Ok(false) };
        if approve {
            consent_granted(subject, &client_id, &scope);
        }
        tracing::info!(subject, approve, "device authorization decided");
        Ok(true)
    }
}

impl<S: DeviceStore + GrantStore> OAuthCore<S> {
    /// RFC 8628 §3.4–3.5: the device's poll at the token endpoint.
    pub(in crate::domain) async fn device_code_grant(
        &self,
        client: &Authenticated,
        device_code: &Secret,
    ) -> Result<TokenResponse, OAuthError> {
        let now = self.clock.now();
        let poll = self
            .store
            .poll_device_code(&secrets::hash_secret(device_code.expose()), &client.client_id, now)
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
            // RFC 9449 §5, as for a code: a public client's grant is bound to
            // the DPoP key its request proved.
            dpop_jkt: client.dpop_jkt.clone().filter(|_| client.is_public()),
        };
        self.issue_for_new_grant(
            client,
            grant,
            Some(GrantSource::DeviceCode(&code.device_code_hash)),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Grant;
    use crate::domain::grants::testing::{Fixture, SUBJECT, auth};
    use crate::domain::model::GrantType::{DeviceCode as Device, RefreshToken};

    const OTHERS: &str = "device code is invalid, another client's, or already used";

    fn poll(code: &Secret) -> Grant {
        Grant::DeviceCode { device_code: code.clone() }
    }

    async fn refused(fx: &Fixture, client: &str, code: &Secret) -> (&'static str, String) {
        let err = fx.core.token(&auth(client, None), poll(code)).await.expect_err("refused");
        (err.code(), err.description().to_owned())
    }

    #[tokio::test]
    async fn pending_then_approved_once() {
        let fx = Fixture::new().await;
        fx.client("tv", None, &[Device, RefreshToken]).await;
        let started = fx
            .core
            .device_authorization(&auth("tv", None), Some("notes:read"))
            .await
            .expect("started");
        assert_eq!(refused(&fx, "tv", &started.device_code).await.0, "authorization_pending");
        // RFC 8628 §3.5: polling faster than the interval is slow_down.
        assert_eq!(refused(&fx, "tv", &started.device_code).await.0, "slow_down");

        let pending = fx
            .core
            .pending_device(started.user_code.expose(), "192.0.2.1")
            .await
            .expect("ok")
            .expect("pending");
        assert_eq!(pending.scope.to_string(), "notes:read");
        assert!(
            fx.core.decide_device(started.user_code.expose(), SUBJECT, true).await.expect("ok")
        );
        fx.advance(60);
        let tokens =
            fx.core.token(&auth("tv", None), poll(&started.device_code)).await.expect("issued");
        assert_eq!(
            (tokens.subject.as_str(), tokens.scope.to_string().as_str()),
            (SUBJECT, "notes:read")
        );
        fx.advance(60);
        assert_eq!(
            refused(&fx, "tv", &started.device_code).await,
            ("invalid_grant", OTHERS.into())
        );
    }

    #[tokio::test]
    async fn another_client_registered_for_the_grant_cannot_redeem_it() {
        let fx = Fixture::new().await;
        fx.client("tv", None, &[Device]).await;
        fx.client("thief", None, &[Device]).await;
        let started = fx.core.device_authorization(&auth("tv", None), None).await.expect("started");
        assert!(
            fx.core.decide_device(started.user_code.expose(), SUBJECT, true).await.expect("ok")
        );
        assert_eq!(
            refused(&fx, "thief", &started.device_code).await,
            ("invalid_grant", OTHERS.into())
        );
        fx.core
            .token(&auth("tv", None), poll(&started.device_code))
            .await
            .expect("the device's own");
    }

    #[tokio::test]
    async fn denied_and_expired_codes_end_the_flow() {
        let fx = Fixture::new().await;
        fx.client("tv", None, &[Device]).await;
        let denied = fx.core.device_authorization(&auth("tv", None), None).await.expect("started");
        assert!(
            fx.core.decide_device(denied.user_code.expose(), SUBJECT, false).await.expect("ok")
        );
        assert_eq!(refused(&fx, "tv", &denied.device_code).await.0, "access_denied");

        let expired = fx.core.device_authorization(&auth("tv", None), None).await.expect("started");
        fx.advance(fx.core.settings().device_code_ttl_secs);
        assert_eq!(refused(&fx, "tv", &expired.device_code).await.0, "expired_token");
        assert!(
            !fx.core.decide_device(expired.user_code.expose(), SUBJECT, true).await.expect("ok")
        );
    }

    #[tokio::test]
    async fn a_client_cannot_have_more_than_the_cap_pending_and_gets_room_back_as_they_expire() {
        let fx = Fixture::with_settings(|s| s.max_pending_device_codes = 2).await;
        fx.client("tv", None, &[Device]).await;
        let tv = auth("tv", None);
        let start = || fx.core.device_authorization(&tv, None);
        let first = start().await.expect("first");
        fx.advance(100);
        start().await.expect("second");
        // The cap: refused without a row written, told to come back when the
        // first pending one expires.
        let ttl = fx.core.settings().device_code_ttl_secs;
        let retry = u64::try_from(ttl - 100).unwrap();
        assert_eq!(
            start().await.expect_err("capped"),
            OAuthError::TooManyRequests { retry_after_secs: retry }
        );
        // A decided code is no longer pending.
        assert!(fx.core.decide_device(first.user_code.expose(), SUBJECT, false).await.expect("ok"));
        start().await.expect("room again");
        assert!(start().await.is_err());
        fx.advance(ttl);
        start().await.expect("the expired ones no longer count");
    }

    #[tokio::test]
    async fn a_user_code_already_taken_is_drawn_again_not_a_server_error() {
        let fx = Fixture::new().await;
        fx.client("tv", None, &[Device]).await;
        let taken = fx.core.device_authorization(&auth("tv", None), None).await.expect("started");
        let taken = normalize_user_code(taken.user_code.expose());
        let code = |device_code: &str| DeviceCode {
            device_code_hash: secrets::hash_secret(device_code),
            user_code: String::new(),
            client_id: "tv".into(),
            scope: Scope::default(),
            created_at: fx.core.now(),
            expires_at: fx.core.now() + 600,
            poll_interval: 5,
            subject: None,
        };
        // The first draw collides; the second is free.
        let mut draws = vec!["BCDFGHJK".to_owned(), taken.clone()];
        let user_code = fx
            .core
            .insert_with_fresh_user_code(code("device-1"), || draws.pop().unwrap())
            .await
            .expect("stored under the second draw");
        assert_eq!(user_code, "BCDFGHJK");
        // Nothing but collisions: a clean refusal, nothing written.
        let refused = fx
            .core
            .insert_with_fresh_user_code(code("device-2"), || taken.clone())
            .await
            .expect_err("refused");
        assert_eq!(refused, OAuthError::ServerError);
    }

    #[tokio::test]
    async fn guessing_user_codes_from_one_address_is_throttled() {
        let fx = Fixture::with_settings(|s| s.throttles.device_ip = "3/1m".parse().unwrap()).await;
        let here = "198.51.100.7";
        for guess in ["BCDF-GHJK", "BCDF-GHJL", "BCDF-GHJM"] {
            assert!(fx.core.pending_device(guess, here).await.expect("looked up").is_none());
        }
        assert_eq!(
            fx.core.pending_device("BCDF-GHJN", here).await.expect_err("throttled"),
            OAuthError::TooManyRequests { retry_after_secs: 20 }
        );
        assert!(fx.core.pending_device("BCDF-GHJN", "198.51.100.8").await.is_ok());
        fx.advance(20);
        assert!(fx.core.pending_device("BCDF-GHJN", here).await.is_ok());
    }

    #[test]
    fn user_codes_are_typable() {
        let code = generate_user_code();
        assert_eq!(code.len(), USER_CODE_LEN);
        assert!(code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)));
        assert_eq!(normalize_user_code(&display_user_code(&code).to_lowercase()), code);
        assert_eq!(normalize_user_code(" bcdf ghjk "), "BCDFGHJK");
    }
}
