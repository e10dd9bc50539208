//! The resource side of revocation: a local copy of the authorization server's
//! denylist of revoked, unexpired access tokens, refreshed in the background.
//!
//! Access tokens are verified locally, so a revoked one would stay usable until
//! it expires. Instead of asking the authorization server on every request
//! (introspection), the resource server fetches the whole denylist every
//! `interval` (it only holds revoked tokens that have not expired, so it stays
//! small) and refuses what is on it. The bound: a revocation is enforced by every
//! resource server at most one interval plus one fetch after it happened, while
//! the authorization server is reachable. While it is not, the last list stays
//! in force and the access-token lifetime bounds the exposure.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tollgate_proto::auth::v1::revocation_list_service_client::RevocationListServiceClient;
use tollgate_proto::auth::v1::{ClientAuthentication, ListRevokedAccessTokensRequest};
use tollgate_token::Secret;

/// Where the denylist comes from, and how this service authenticates for it.
#[derive(Debug, Clone)]
pub struct RevocationConfig {
    /// The authorization server's gRPC endpoint.
    pub auth_grpc_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// How often the list is fetched: the enforcement bound.
    pub interval: Duration,
}

type Jtis = Arc<HashSet<String>>;
/// The senders a [`Denylist::fixed`] keeps alive (it has no sync task to own them).
type FixedSenders = (watch::Sender<Jtis>, watch::Sender<bool>);

/// The revoked `jti`s currently known. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Denylist {
    current: watch::Receiver<Jtis>,
    /// Whether the list has been fetched at least once.
    synced: watch::Receiver<bool>,
    _fixed: Option<Arc<FixedSenders>>,
}

impl Denylist {
    /// A list that never changes (revocation not configured, or tests).
    pub fn fixed(jtis: impl IntoIterator<Item = String>) -> Self {
        let (tx, rx) = watch::channel(Arc::new(jtis.into_iter().collect()));
        let (synced_tx, synced) = watch::channel(true);
        Self { current: rx, synced, _fixed: Some(Arc::new((tx, synced_tx))) }
    }

    /// Starts the background sync.
    pub fn spawn(
        config: RevocationConfig,
    ) -> Result<(Self, JoinHandle<()>), tonic::transport::Error> {
        let channel = tonic::transport::Endpoint::from_shared(config.auth_grpc_url.clone())?
            .timeout(config.interval.min(Duration::from_secs(5)))
            .connect_lazy();
        let (tx, rx) = watch::channel(Arc::new(HashSet::new()));
        let (synced_tx, synced) = watch::channel(false);
        let client = RevocationListServiceClient::new(channel);
        let task = tokio::spawn(sync_loop(config, client, tx, synced_tx));
        Ok((Self { current: rx, synced, _fixed: None }, task))
    }

    /// Waits until the list has been fetched once: before that, a token revoked
    /// before this service started would be accepted.
    pub async fn ready(&self) {
        let mut synced = self.synced.clone();
        let _ = synced.wait_for(|done| *done).await;
    }

    pub fn contains(&self, jti: &str) -> bool {
        self.current.borrow().contains(jti)
    }

    /// A receiver that sees each later successful sync (subscribe first, then act).
    pub fn watch(&self) -> watch::Receiver<Arc<HashSet<String>>> {
        let mut rx = self.current.clone();
        rx.mark_unchanged();
        rx
    }
}

async fn sync_loop(
    config: RevocationConfig,
    mut client: RevocationListServiceClient<tonic::transport::Channel>,
    tx: watch::Sender<Arc<HashSet<String>>>,
    synced: watch::Sender<bool>,
) {
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = tx.closed() => return,
        }
        let request = ListRevokedAccessTokensRequest {
            client: Some(ClientAuthentication {
                client_id: config.client_id.clone(),
                client_secret: Some(config.client_secret.expose().clone()),
                client_assertion: None,
            }),
        };
        match client.list_revoked_access_tokens(request).await {
            Ok(response) => {
                let jtis: HashSet<String> =
                    response.into_inner().tokens.into_iter().map(|t| t.jti).collect();
                tracing::debug!(revoked = jtis.len(), "denylist synced");
                tx.send_replace(Arc::new(jtis));
                synced.send_replace(true);
            }
            // Keep enforcing the last list; the next tick tries again.
            Err(status) => {
                tracing::warn!(code = ?status.code(), message = status.message(), "denylist sync failed")
            }
        }
    }
}
