//! The declarative bootstrap file: clients and users registered at start-up,
//! idempotently (applying the same file twice changes nothing).
//!
//! ```toml
//! [[clients]]
//! client_id = "demo-web"
//! name = "Demo web app"
//! secret_env = "DEMO_WEB_SECRET"        # or `secret = "…"`, or `public = true`
//! redirect_uris = ["http://127.0.0.1/callback"]
//! grant_types = ["authorization_code", "refresh_token"]
//! scopes = ["profile:read", "notes:read", "notes:write"]
//! audience = "tollgate-resource"         # optional: the server's default
//!
//! [[users]]
//! username = "alice"
//! subject = "alice"                      # optional: defaults to the username
//! password_env = "ALICE_PASSWORD"        # or `password = "…"`, or `password_hash = "$argon2id$…"`
//! ```
//!
//! The full format is documented in `docs/bootstrap.md`.

use std::path::Path;

use anyhow::{Context as _, bail};
use serde::Deserialize;
use tollgate_token::{Scope, Secret};

use crate::domain::model::{Client, GrantType, User};
use crate::domain::secrets;
use crate::storage::{ClientStore, UserStore};

/// Client secrets given in a bootstrap file must be at least this long: the fast
/// hash they are stored under is only safe for high-entropy values.
pub const MIN_SECRET_LEN: usize = 32;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapFile {
    #[serde(default)]
    pub clients: Vec<ClientSpec>,
    #[serde(default)]
    pub users: Vec<UserSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSpec {
    pub client_id: String,
    pub name: Option<String>,
    pub secret: Option<Secret>,
    pub secret_env: Option<String>,
    #[serde(default)]
    pub public: bool,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    pub audience: Option<String>,
    /// RFC 8693: audiences this client may exchange a subject's token for.
    #[serde(default)]
    pub token_exchange_audiences: Vec<String>,
    /// RFC 8707: resource URIs the client may ask tokens for (absolute, no fragment).
    #[serde(default)]
    pub resources: Vec<String>,
    /// RFC 7523 `private_key_jwt`: the client's public keys (instead of a secret).
    #[serde(default)]
    pub jwks: Vec<tollgate_token::Jwk>,
    /// RFC 8705 `tls_client_auth`: the DNS name the client's TLS certificate
    /// carries (instead of a secret). Its tokens are bound to that certificate.
    pub tls_client_auth_san_dns: Option<String>,
    /// RFC 9449 §5.2: the client must prove a DPoP key on every token request.
    #[serde(default)]
    pub dpop_bound_access_tokens: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    pub username: String,
    pub subject: Option<String>,
    pub password: Option<Secret>,
    pub password_env: Option<String>,
    pub password_hash: Option<Secret>,
}

impl BootstrapFile {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading bootstrap file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("parsing bootstrap file {}", path.display()))
    }

    /// Parses the file's text (fuzz target `bootstrap_file`, with
    /// [`client_from_spec`] on every client).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        Ok(toml::from_str(text)?)
    }
}

fn from_env(var: &str) -> anyhow::Result<String> {
    std::env::var(var).with_context(|| format!("environment variable {var} is not set"))
}

/// Builds the client record a spec describes, checking what the RFCs require of a
/// registration.
pub fn client_from_spec(spec: &ClientSpec, default_audience: &str) -> anyhow::Result<Client> {
    let id = &spec.client_id;
    if id.is_empty() || id.contains(':') {
        bail!("client_id {id:?} must be non-empty and contain no ':' (RFC 6749 §2.3.1)");
    }
    let keys = !spec.jwks.is_empty();
    if keys && (spec.public || spec.secret.is_some() || spec.secret_env.is_some()) {
        bail!("client {id}: a client with jwks (private_key_jwt) has no secret and is not public");
    }
    let tls = spec.tls_client_auth_san_dns.is_some();
    if tls && (keys || spec.public || spec.secret.is_some() || spec.secret_env.is_some()) {
        bail!(
            "client {id}: a client with tls_client_auth_san_dns authenticates with its \
             certificate only: no secret, no jwks, not public"
        );
    }
    if let Some(name) = &spec.tls_client_auth_san_dns
        && (name.contains('*') || rustls::pki_types::DnsName::try_from(name.as_str()).is_err())
    {
        bail!("client {id}: tls_client_auth_san_dns {name:?} is not a DNS name");
    }
    for jwk in &spec.jwks {
        if jwk.algorithm().is_none() || jwk.kid.is_empty() {
            bail!("client {id}: each JWK needs a kid and alg EdDSA or ES256");
        }
        if tollgate_token::KeySet::from_jwks(&tollgate_token::JwkSet { keys: vec![jwk.clone()] })
            .is_empty()
        {
            bail!("client {id}: JWK {} is not a usable public key", jwk.kid);
        }
    }
    let secret = match (&spec.secret, &spec.secret_env, spec.public) {
        (None, None, _) if keys || tls => None,
        (None, None, true) => None,
        (Some(s), None, false) => Some(s.clone()),
        (None, Some(var), false) => Some(Secret::new(from_env(var)?)),
        (_, _, true) => bail!("client {id}: a public client has no secret"),
        _ => bail!("client {id}: give exactly one of secret, secret_env, or public = true"),
    };
    if let Some(secret) = &secret
        && secret.expose().len() < MIN_SECRET_LEN
    {
        bail!("client {id}: secret must be at least {MIN_SECRET_LEN} characters of random data");
    }
    let grant_types = spec
        .grant_types
        .iter()
        .map(|g| {
            GrantType::parse(g).with_context(|| format!("client {id}: unknown grant type {g}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if spec.public && grant_types.contains(&GrantType::ClientCredentials) {
        bail!("client {id}: a public client cannot use client_credentials");
    }
    if spec.public && grant_types.contains(&GrantType::TokenExchange) {
        bail!("client {id}: a public client cannot use token exchange");
    }
    let exchanges = grant_types.contains(&GrantType::TokenExchange);
    let has_audiences = !spec.token_exchange_audiences.is_empty();
    if exchanges != has_audiences {
        bail!("client {id}: token exchange needs both the grant type and token_exchange_audiences");
    }
    if grant_types.contains(&GrantType::AuthorizationCode) && spec.redirect_uris.is_empty() {
        bail!("client {id}: the authorization_code grant needs at least one redirect URI");
    }
    for uri in &spec.redirect_uris {
        let parsed =
            url::Url::parse(uri).with_context(|| format!("client {id}: redirect URI {uri}"))?;
        // RFC 6749 §3.1.2: absolute, no fragment.
        if parsed.fragment().is_some() {
            bail!("client {id}: redirect URI {uri} must not have a fragment");
        }
        // RFC 9700 §2.6 / RFC 8252 §8.3: the code travels over TLS, except to a
        // native app's loopback listener, which never leaves the machine.
        let loopback = matches!(parsed.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
            || matches!(parsed.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback());
        if parsed.scheme() == "http" && !loopback {
            bail!(
                "client {id}: redirect URI {uri} must use https (plain http only to a loopback IP)"
            );
        }
    }
    for resource in &spec.resources {
        if !crate::domain::resource::is_valid_resource(resource) {
            bail!(
                "client {id}: resource {resource} must be an absolute URI without a fragment (RFC 8707 §2)"
            );
        }
    }
    let scope =
        Scope::parse(&spec.scopes.join(" ")).with_context(|| format!("client {id}: scopes"))?;
    Ok(Client {
        client_id: id.clone(),
        name: spec.name.clone().unwrap_or_else(|| id.clone()),
        secret_hash: secret.as_ref().map(|s| secrets::hash_secret(s.expose())),
        redirect_uris: spec.redirect_uris.clone(),
        grant_types,
        scope,
        audience: spec.audience.clone().unwrap_or_else(|| default_audience.to_owned()),
        exchange_audiences: spec.token_exchange_audiences.clone(),
        jwks: keys.then(|| spec.jwks.clone()),
        resources: spec.resources.clone(),
        tls_client_auth_san_dns: spec.tls_client_auth_san_dns.clone(),
        dpop_bound_access_tokens: spec.dpop_bound_access_tokens,
    })
}

/// Refuses a client id that is some user's subject: the client's own tokens
/// carry its id as `sub` (RFC 9068 §2.2) and must never be mistaken for that
/// user's.
async fn check_client_id_free(store: &impl UserStore, client_id: &str) -> anyhow::Result<()> {
    if store.subject_exists(client_id).await? {
        bail!("client_id {client_id} is already a user's subject; choose another");
    }
    Ok(())
}

/// Refuses a subject that is some client's id (see [`check_client_id_free`]).
async fn check_subject_free(store: &impl ClientStore, subject: &str) -> anyhow::Result<()> {
    if store.client(subject).await?.is_some() {
        bail!("subject {subject} is already a client's id; choose another");
    }
    Ok(())
}

/// Stores a client, refusing an id that is some user's subject.
pub async fn register_client(
    store: &(impl ClientStore + UserStore),
    client: &Client,
    now: i64,
) -> anyhow::Result<()> {
    check_client_id_free(store, &client.client_id).await?;
    store.upsert_client(client, now).await?;
    Ok(())
}

/// Stores a user, refusing a subject that is some client's id.
pub async fn register_user(
    store: &(impl ClientStore + UserStore),
    user: &User,
    now: i64,
) -> anyhow::Result<()> {
    check_subject_free(store, &user.subject).await?;
    store.upsert_user(user, now).await?;
    Ok(())
}

/// Where a user's password comes from, checked before anything is written.
enum PasswordSource {
    /// An argon2 PHC string, stored as given.
    Hash(Secret),
    /// A plain password (from the file or the environment), hashed if changed.
    Plain(Secret),
}

/// Applies the file: upserts every client and user. Passwords are only re-hashed
/// when they changed (an unchanged one costs one argon2 verification per user).
///
/// The whole file is checked first (every client spec, every user's password
/// source, client ids against subjects within the file and in the store), so
/// a mistake anywhere in it writes nothing rather than half the file.
pub async fn apply(
    file: &BootstrapFile,
    store: &(impl ClientStore + UserStore),
    default_audience: &str,
    now: i64,
) -> anyhow::Result<()> {
    // 1. Check everything.
    let clients = file
        .clients
        .iter()
        .map(|spec| client_from_spec(spec, default_audience))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut users = Vec::with_capacity(file.users.len());
    for spec in &file.users {
        let subject = spec.subject.clone().unwrap_or_else(|| spec.username.clone());
        let source = match (&spec.password, &spec.password_env, &spec.password_hash) {
            (None, None, Some(hash)) if secrets::is_password_hash(hash.expose()) => {
                PasswordSource::Hash(hash.clone())
            }
            (None, None, Some(_)) => {
                bail!("user {}: password_hash must be an argon2 PHC string", spec.username)
            }
            (Some(password), None, None) => PasswordSource::Plain(password.clone()),
            (None, Some(var), None) => PasswordSource::Plain(Secret::new(from_env(var)?)),
            _ => bail!(
                "user {}: give exactly one of password, password_env, password_hash",
                spec.username
            ),
        };
        let existing = store.user_by_username(&spec.username).await?;
        if let Some(user) = &existing
            && user.subject != subject
        {
            bail!(
                "user {}: registered with subject {}; a subject cannot change",
                spec.username,
                user.subject
            );
        }
        if clients.iter().any(|c| c.client_id == subject) {
            bail!("subject {subject} is also a client_id in this file; choose another");
        }
        check_subject_free(store, &subject).await?;
        users.push((spec, subject, source, existing));
    }
    for client in &clients {
        check_client_id_free(store, &client.client_id).await?;
    }

    // 2. Write it: every check above has passed.
    for client in &clients {
        store.upsert_client(client, now).await?;
        tracing::info!(client_id = %client.client_id, public = client.is_public(), "client registered");
    }
    for (spec, subject, source, existing) in users {
        let password_hash = match (source, existing) {
            (PasswordSource::Hash(hash), _) => hash,
            // Unchanged (the subject matched above) and hashed with the
            // current settings: keep the stored hash. An older setting's hash
            // is renewed here rather than at the user's next sign-in.
            (PasswordSource::Plain(password), Some(user))
                if secrets::is_current(user.password_hash.expose())
                    && secrets::verify_password(
                        password.expose().clone(),
                        Some(user.password_hash.expose().clone()),
                    )
                    .await =>
            {
                user.password_hash
            }
            (PasswordSource::Plain(password), _) => {
                Secret::new(secrets::hash_password(password.into_exposed()).await?)
            }
        };
        store
            .upsert_user(
                &User { subject: subject.clone(), username: spec.username.clone(), password_hash },
                now,
            )
            .await?;
        tracing::info!(subject = %subject, "user registered");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ClientSpec {
        ClientSpec {
            client_id: "web".into(),
            name: None,
            secret: Some(Secret::new("s".repeat(32))),
            secret_env: None,
            public: false,
            redirect_uris: vec!["https://app.example/cb".into()],
            grant_types: vec!["authorization_code".into()],
            scopes: vec!["notes:read".into()],
            audience: None,
            token_exchange_audiences: vec![],
            jwks: vec![],
            tls_client_auth_san_dns: None,
            dpop_bound_access_tokens: false,
            resources: vec![],
        }
    }

    #[test]
    fn debug_output_hides_secrets_and_passwords() {
        let file: BootstrapFile = toml::from_str(
            r#"
            [[clients]]
            client_id = "c"
            secret = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t"
            grant_types = ["client_credentials"]
            scopes = ["a"]
            [[users]]
            username = "u"
            password = "hunter2-password"
            "#,
        )
        .unwrap();
        let shown = format!("{file:?}");
        assert!(!shown.contains("s3cr3t") && !shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn stores_only_the_hash_of_the_secret() {
        let client = client_from_spec(&spec(), "aud").unwrap();
        assert_eq!(client.secret_hash, Some(secrets::hash_secret(&"s".repeat(32))));
        assert_eq!(client.audience, "aud");
    }

    #[test]
    fn refuses_unsafe_registrations() {
        let mut short = spec();
        short.secret = Some("short".into());
        assert!(client_from_spec(&short, "aud").is_err());
        let mut fragment = spec();
        fragment.redirect_uris = vec!["https://app.example/cb#x".into()];
        assert!(client_from_spec(&fragment, "aud").is_err());
        let mut public_cc = spec();
        public_cc.secret = None;
        public_cc.public = true;
        public_cc.grant_types = vec!["client_credentials".into()];
        assert!(client_from_spec(&public_cc, "aud").is_err());
        let mut password = spec();
        password.grant_types = vec!["password".into()];
        assert!(client_from_spec(&password, "aud").is_err());
        // Plain http only to a loopback IP (RFC 9700 §2.6, RFC 8252 §8.3).
        let mut cleartext = spec();
        cleartext.redirect_uris = vec!["http://app.example/cb".into()];
        let err = client_from_spec(&cleartext, "aud").unwrap_err().to_string();
        assert!(err.contains("must use https"), "{err}");
        let mut loopback = spec();
        loopback.redirect_uris = vec!["http://127.0.0.1/cb".into(), "http://[::1]/cb".into()];
        assert!(client_from_spec(&loopback, "aud").is_ok());
    }
}
