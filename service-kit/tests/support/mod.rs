//! What the service-kit integration tests share: a signing key that mints
//! access tokens, and a JWKS endpoint serving its public half.

// Each test binary uses part of this.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Instant;

use ring::signature::{Ed25519KeyPair, KeyPair as _};
use tokio::sync::Notify;
use tollgate_token::{AccessTokenClaims, Audience, Jwk, JwkSet};

pub const ISSUER: &str = "https://as.example";

/// What the fake authorization server serves, and when it was asked.
pub struct Served {
    pub keys: Vec<Jwk>,
    pub healthy: bool,
    pub fetches: Vec<Instant>,
}

pub struct JwksServer {
    pub served: Arc<Mutex<Served>>,
    pub fetched: Arc<Notify>,
    pub uri: String,
}

impl JwksServer {
    pub async fn start(keys: Vec<Jwk>) -> Self {
        let served = Arc::new(Mutex::new(Served { keys, healthy: true, fetches: Vec::new() }));
        let fetched = Arc::new(Notify::new());
        let (s, f) = (served.clone(), fetched.clone());
        let app = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let (s, f) = (s.clone(), f.clone());
                async move {
                    let mut served = s.lock().unwrap();
                    served.fetches.push(Instant::now());
                    f.notify_one();
                    if served.healthy {
                        Ok(axum::Json(JwkSet { keys: served.keys.clone() }))
                    } else {
                        Err(axum::http::StatusCode::SERVICE_UNAVAILABLE)
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { served, fetched, uri }
    }

    pub fn fetch_count(&self) -> usize {
        self.served.lock().unwrap().fetches.len()
    }
}

pub struct TestKey {
    pair: Ed25519KeyPair,
    pkcs8: Vec<u8>,
    kid: String,
}

impl TestKey {
    pub fn new(kid: &str) -> Self {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        Self { pair, pkcs8: pkcs8.as_ref().to_vec(), kid: kid.into() }
    }

    pub fn jwk(&self) -> Jwk {
        Jwk::ed25519(&self.kid, self.pair.public_key().as_ref())
    }

    /// A token for `api` with `notes:read`, issued `now`.
    pub fn token(&self, now: i64) -> String {
        self.token_with_jti(now, "jti-1")
    }

    /// The same, with its own `jti` (what the denylist lists).
    pub fn token_with_jti(&self, now: i64, jti: &str) -> String {
        self.token_with(now, jti, None)
    }

    /// A token bound to the DPoP key whose thumbprint is `jkt` (RFC 9449 §6.1).
    pub fn token_bound_to(&self, now: i64, jkt: &str) -> String {
        self.token_with(now, "jti-bound", Some(tollgate_token::Confirmation::dpop_key(jkt)))
    }

    fn token_with(&self, now: i64, jti: &str, cnf: Option<tollgate_token::Confirmation>) -> String {
        let claims = AccessTokenClaims {
            iss: ISSUER.into(),
            sub: "alice".into(),
            aud: Audience::One("api".into()),
            exp: now + 300,
            iat: now,
            nbf: Some(now),
            jti: jti.into(),
            client_id: "cli".into(),
            scope: Some("notes:read".into()),
            act: None,
            cnf,
        };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.typ = Some("at+jwt".into());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_ed_der(&self.pkcs8))
            .unwrap()
    }
}
