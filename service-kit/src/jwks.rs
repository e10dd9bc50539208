//! The resource side's cache of the authorization server's signing keys.
//!
//! Keys are fetched from the JWKS URI in the background and parsed once per
//! fetch, so validating a token never waits on the network:
//! - a periodic refresh picks up new keys (the authorization server publishes a
//!   key before it signs with it);
//! - a token with an unknown `kid` asks for an early refresh, single-flight and no
//!   more often than the minimum interval, so garbage `kid`s cannot turn the
//!   resource server into a flood against the authorization server;
//! - a failed fetch keeps the keys already known: the authorization server being
//!   down does not stop valid tokens from being accepted.

use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument as _;

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tollgate_token::{Clock, JwkSet, KeySet};

use crate::tls::ClientTls;

/// Where and how often to fetch keys.
#[derive(Debug, Clone)]
pub struct JwksConfig {
    pub jwks_uri: String,
    /// Regular refresh period.
    pub refresh_interval: Duration,
    /// The least time between two fetches, also when an unknown `kid` asks for one.
    pub min_refetch_interval: Duration,
    /// Per-fetch time limit.
    pub fetch_timeout: Duration,
    /// How old the keys may grow (no successful fetch) before a token with an
    /// unknown `kid` is answered "unavailable" rather than "invalid": with stale
    /// keys the service cannot tell a new key from a forged one.
    pub max_staleness: Duration,
    /// The CA bundle an `https://` JWKS URI is verified against, and this
    /// service's client certificate.
    pub tls: ClientTls,
}

impl JwksConfig {
    pub fn new(jwks_uri: impl Into<String>) -> Self {
        Self {
            jwks_uri: jwks_uri.into(),
            refresh_interval: Duration::from_secs(300),
            min_refetch_interval: Duration::from_secs(10),
            fetch_timeout: Duration::from_secs(5),
            max_staleness: Duration::from_secs(3600),
            tls: ClientTls::public_roots(),
        }
    }
}

/// One successfully fetched key set.
#[derive(Debug)]
pub struct KeySnapshot {
    pub keys: KeySet,
    /// When it was fetched (Unix seconds, from the service's clock).
    pub fetched_at: i64,
}

/// A handle on the current keys. Cheap to clone.
#[derive(Debug, Clone)]
pub struct JwksCache {
    current: watch::Receiver<Option<Arc<KeySnapshot>>>,
    refetch: Arc<Notify>,
    /// Seconds after a fetch that its keys count as stale.
    max_staleness_secs: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("JWKS request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("JWKS is larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    #[error("JWKS is not a JSON key set: {0}")]
    Json(#[from] serde_json::Error),
    #[error("JWKS has no usable signing key")]
    NoKeys,
}

/// The largest JWKS document read, in bytes. A key is a few hundred bytes and a
/// set holds two or three during a rotation; the bound keeps a misbehaving (or,
/// on a plaintext network, impersonated) key server from growing our memory.
pub const MAX_JWKS_BYTES: usize = 64 * 1024;

impl JwksCache {
    /// Starts the background refresher. The cache is empty until the first fetch
    /// succeeds; [`JwksCache::ready`] waits for that.
    pub fn spawn(config: JwksConfig, clock: Arc<dyn Clock>) -> (Self, JoinHandle<()>) {
        let (tx, rx) = watch::channel(None);
        let refetch = Arc::new(Notify::new());
        let max_staleness_secs = i64::try_from(config.max_staleness.as_secs()).unwrap_or(i64::MAX);
        let task = tokio::spawn(refresh_loop(config, clock, tx, refetch.clone()));
        (Self { current: rx, refetch, max_staleness_secs }, task)
    }

    /// The keys as of the last successful fetch, if any.
    pub fn current(&self) -> Option<Arc<KeySnapshot>> {
        self.current.borrow().clone()
    }

    /// Whether `snapshot` is older than the configured maximum staleness at `now`.
    pub fn is_stale(&self, snapshot: &KeySnapshot, now: i64) -> bool {
        now.saturating_sub(snapshot.fetched_at) > self.max_staleness_secs
    }

    /// Asks the refresher for an early fetch (e.g. a token named an unknown `kid`).
    /// Returns at once; the refresher honours the minimum interval.
    pub fn request_refetch(&self) {
        self.refetch.notify_one();
    }

    /// A receiver that sees each later successful fetch (`changed()`), for
    /// readiness, metrics and tests. Subscribe before triggering what you wait for.
    pub fn watch(&self) -> watch::Receiver<Option<Arc<KeySnapshot>>> {
        let mut rx = self.current.clone();
        rx.mark_unchanged();
        rx
    }

    /// Waits until keys have been fetched at least once.
    pub async fn ready(&self) {
        let mut rx = self.current.clone();
        let _ = rx.wait_for(Option::is_some).await;
    }
}

async fn refresh_loop(
    config: JwksConfig,
    clock: Arc<dyn Clock>,
    tx: watch::Sender<Option<Arc<KeySnapshot>>>,
    refetch: Arc<Notify>,
) {
    // The HTTP client, built again when the TLS files have changed.
    let mut http: Option<(u64, reqwest::Client)> = None;
    loop {
        let generation = config.tls.generation();
        if http.as_ref().is_none_or(|(built_with, _)| *built_with != generation) {
            let client = config
                .tls
                .reqwest()
                .timeout(config.fetch_timeout)
                // Never follows a redirect from https:// to plain http://.
                .https_only(config.jwks_uri.starts_with("https://"))
                .build();
            match client {
                Ok(client) => http = Some((generation, client)),
                Err(err) => {
                    tracing::error!(error = %err, "cannot build the JWKS HTTP client");
                    return;
                }
            }
        }
        let Some((_, http)) = &http else { return };
        let fetched = {
            // Its own trace: a refresh is background work, not part of a
            // request. The span ends here, with the fetch: held across the
            // wait below it would last until the next refresh, and would only
            // be exported then.
            let span = tracing::info_span!(
                parent: None,
                "jwks.refresh",
                url.full = %config.jwks_uri,
                outcome = tracing::field::Empty,
                keys = tracing::field::Empty,
            );
            let fetched = fetch(http, &config.jwks_uri).instrument(span.clone()).await;
            span.record("outcome", if fetched.is_ok() { "success" } else { "failure" });
            if let Ok(keys) = &fetched {
                span.record("keys", keys.len());
            }
            fetched
        };
        tollgate_telemetry::metrics::jwks_refreshed(fetched.is_ok());
        let wait = match fetched {
            Ok(keys) => {
                tracing::debug!(keys = keys.len(), "JWKS refreshed");
                tx.send_replace(Some(Arc::new(KeySnapshot { keys, fetched_at: clock.now() })));
                config.refresh_interval
            }
            Err(err) => {
                // Keep serving what we have; try again soon.
                tracing::warn!(error = %err, uri = %config.jwks_uri, "JWKS refresh failed");
                config.min_refetch_interval
            }
        };
        let started = tokio::time::Instant::now();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = refetch.notified() => {
                tokio::time::sleep_until(started + config.min_refetch_interval).await;
            }
            () = tx.closed() => return,
        }
    }
}

async fn fetch(http: &reqwest::Client, uri: &str) -> Result<KeySet, FetchError> {
    let mut response = http
        .get(uri)
        .headers(tollgate_telemetry::propagation::current_headers())
        .send()
        .await?
        .error_for_status()?;
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(FetchError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    parse_jwks(&body)
}

/// The verification keys of a fetched JWKS document (RFC 7517 §5). Everything
/// the cache reads from the key server goes through here (fuzz target
/// `client_responses`).
pub fn parse_jwks(body: &[u8]) -> Result<KeySet, FetchError> {
    if body.len() > MAX_JWKS_BYTES {
        return Err(FetchError::TooLarge);
    }
    let set: JwkSet = serde_json::from_slice(body)?;
    let keys = KeySet::from_jwks(&set);
    if keys.is_empty() {
        return Err(FetchError::NoKeys);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid key set padded with JSON whitespace to `len` bytes.
    fn padded_jwks(len: usize) -> Vec<u8> {
        let jwk = tollgate_token::Jwk::ed25519("k", &[7; 32]);
        let mut body = serde_json::to_vec(&JwkSet { keys: vec![jwk] }).unwrap_or_default();
        body.resize(len, b' ');
        body
    }

    #[test]
    fn a_key_set_of_the_limit_parses_and_one_byte_more_does_not() {
        assert!(parse_jwks(&padded_jwks(MAX_JWKS_BYTES)).is_ok_and(|keys| keys.contains("k")));
        assert!(matches!(parse_jwks(&padded_jwks(MAX_JWKS_BYTES + 1)), Err(FetchError::TooLarge)));
    }
}
