//! A protocol core on a fresh SQLite file with a manual clock, and the clients
//! the grants' unit tests need. The real store, not a mock: the grants' rules
//! and the store's atomic contracts are tested together.

use std::sync::Arc;

use tempfile::TempDir;
use tollgate_token::{Clock as _, KeyAlgorithm, ManualClock, Scope, Secret};

use crate::domain::client_auth::ClientAuth;
use crate::domain::hashing::HashLimits;
use crate::domain::keys::{KeyRing, RotationPolicy};
use crate::domain::model::{Client, GrantType, User};
use crate::domain::throttle::ThrottleSettings;
use crate::domain::{OAuthCore, OAuthSettings, secrets};
use crate::storage::{ClientStore, SqlStore, UserStore};

pub const ISSUER: &str = "https://as.example";
pub const SUBJECT: &str = "user-1";
/// alice's password, and its argon2id hash with the settings of earlier
/// releases (m=19456, t=2, p=1): a sign-in renews it.
pub const PASSWORD: &str = "correct horse battery staple";
pub const PASSWORD_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$D2BFm1kNfRA/8ORSU2ebRw$fPAy/lWheO2O3OWqc3qT+4dXZKH5MhYzhogLfDd9F7Q";

pub struct Fixture {
    pub core: OAuthCore<SqlStore>,
    pub clock: Arc<ManualClock>,
    _dir: TempDir,
}

impl Fixture {
    pub async fn new() -> Self {
        Self::with_hash_limits(HashLimits::for_this_machine()).await
    }

    /// With the password-hashing gate's limits chosen by the test.
    pub async fn with_hash_limits(hash_limits: HashLimits) -> Self {
        Self::with_settings(|settings| settings.hash_limits = hash_limits).await
    }

    /// With settings changed by the test (limits, throttles).
    pub async fn with_settings(change: impl FnOnce(&mut OAuthSettings)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = tollgate_service_kit::db::sqlite_url(dir.path(), "auth.db");
        let store = SqlStore::connect(&url).await.expect("store");
        let clock = Arc::new(ManualClock::new(1_800_000_000));
        let policy =
            RotationPolicy { propagation_secs: 0, retire_after_secs: 3600, rotate_every_secs: 0 };
        let keys = KeyRing::load_or_create(&store, KeyAlgorithm::EdDSA, policy, clock.now())
            .await
            .expect("keys");
        let mut settings = OAuthSettings {
            issuer: ISSUER.into(),
            access_token_ttl_secs: 300,
            txn_trust_domain: "tollgate.internal".into(),
            txn_token_ttl_secs: 60,
            refresh_token_ttl_secs: 86_400,
            grant_max_lifetime_secs: 7 * 86_400,
            code_ttl_secs: 60,
            refresh_reuse_grace_secs: 10,
            device_code_ttl_secs: 600,
            device_poll_interval_secs: 5,
            hash_limits: HashLimits::for_this_machine(),
            throttles: ThrottleSettings::default(),
            max_pending_device_codes: crate::config::DEFAULT_MAX_PENDING_DEVICE_CODES,
            dpop_nonces: None,
        };
        change(&mut settings);
        let user = User {
            subject: SUBJECT.into(),
            username: "alice".into(),
            password_hash: Secret::new(PASSWORD_HASH),
        };
        store.upsert_user(&user, clock.now()).await.expect("user");
        let core = OAuthCore::new(store, Arc::new(keys), clock.clone(), settings);
        Self { core, clock, _dir: dir }
    }

    /// Registers a client; `secret` `None` makes it public.
    pub async fn client(&self, id: &str, secret: Option<&str>, grants: &[GrantType]) -> Client {
        let client = Client {
            client_id: id.into(),
            name: id.into(),
            secret_hash: secret.map(secrets::hash_secret),
            redirect_uris: vec!["https://app.example/cb".into()],
            grant_types: grants.to_vec(),
            scope: Scope::parse("notes:read notes:write").expect("scope"),
            audience: "tollgate-resource".into(),
            exchange_audiences: vec!["tollgate-notes-store".into()],
            jwks: None,
            tls_client_auth_san_dns: None,
            resources: vec![],
            dpop_bound_access_tokens: false,
        };
        self.core.store().upsert_client(&client, self.clock.now()).await.expect("client");
        client
    }

    /// A token of `SUBJECT`'s for `audience` (`notes:read notes:write`),
    /// through the confidential client "web" (registered here).
    pub async fn users_token_for(&self, audience: &str) -> tollgate_token::Secret {
        let web = self.client("web", Some("s3cret"), &[GrantType::AuthorizationCode]).await;
        let grant = crate::domain::model::GrantRecord {
            grant_id: "grant-1".into(),
            client_id: "web".into(),
            subject: SUBJECT.into(),
            scope: Scope::parse("notes:read notes:write").expect("scope"),
            audience: audience.into(),
            created_at: self.clock.now(),
            dpop_jkt: None,
        };
        self.core.issue_for_new_grant(&web.into(), grant, None).await.expect("grant").access_token
    }

    pub fn advance(&self, secs: i64) {
        self.clock.advance(secs);
    }
}

/// `client_secret_basic` with `secret`, or `none`.
pub fn auth(client_id: &str, secret: Option<&str>) -> ClientAuth {
    match secret {
        Some(secret) => {
            ClientAuth::SecretBasic { client_id: client_id.into(), secret: Secret::new(secret) }
        }
        None => ClientAuth::None { client_id: client_id.into() },
    }
}
