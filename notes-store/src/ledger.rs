//! The second internal hop: recording each change in the ledger, inside the
//! transaction the change belongs to.
//!
//! The notes store passes on the Txn-Token it received, unmodified (the
//! draft's "Txn-Token Validation": outbound calls carry it as received), and
//! authenticates itself with its own access token for the ledger (client
//! credentials, cached until shortly before it expires). It asks the
//! authorization server for nothing on the user's behalf: that is what a
//! Transaction Token saves over a token exchange at every hop.

use std::sync::{Arc, Mutex};

use tollgate_proto::auth::v1::token_request::Grant;
use tollgate_proto::auth::v1::token_service_client::TokenServiceClient;
use tollgate_proto::auth::v1::{ClientAuthentication, ClientCredentialsGrant, TokenRequest};
use tollgate_proto::ledger::v1::ledger_client::LedgerClient;
use tollgate_proto::ledger::v1::{Entry, RecordRequest};
use tollgate_service_kit::auth::TxnToken;
use tollgate_service_kit::balance::Balanced;
use tollgate_service_kit::telemetry::propagation::{Propagating, traced};
use tollgate_service_kit::tls::{ClientTls, GrpcTarget};
use tollgate_token::txn::TXN_TOKEN_METADATA;
use tollgate_token::{Clock, Secret};
use tonic::Status;

/// The notes store's own token is not reused in its last seconds.
const REUSE_MARGIN_SECS: i64 = 10;

/// The ledger, and the notes store's credentials to call it with.
#[derive(Debug, Clone)]
pub struct Ledger {
    ledger_url: String,
    auth_grpc_url: String,
    tls: ClientTls,
    credentials: (String, Option<Secret>),
    clock: Arc<dyn Clock>,
    connected: Arc<Mutex<Connected>>,
}

/// The connections to the ledger and the authorization server, and the
/// token obtained over them, made with one generation of this service's TLS
/// files. Under mutual TLS the token is bound to that generation's
/// certificate (RFC 8705), which the ledger checks against the connection's:
/// once the certificate changes, all three are made again.
#[derive(Debug, Clone)]
struct Connected {
    ledger: LedgerClient<Propagating<Balanced>>,
    tokens: TokenServiceClient<Propagating<Balanced>>,
    generation: u64,
    /// This service's own token for the ledger, and when it expires.
    own: Option<(Secret, i64)>,
}

impl Connected {
    fn new(ledger_url: &str, auth_grpc_url: &str, tls: &ClientTls) -> anyhow::Result<Self> {
        let generation = tls.generation();
        // Calls spread over the SERVING replicas (service-kit's `balance`).
        let channel = |url: &str| -> anyhow::Result<Propagating<Balanced>> {
            Ok(traced(GrpcTarget::new(url, tls)?.balanced()))
        };
        Ok(Self {
            ledger: LedgerClient::new(channel(ledger_url)?),
            tokens: TokenServiceClient::new(channel(auth_grpc_url)?),
            generation,
            own: None,
        })
    }
}

impl Ledger {
    pub fn new(
        ledger_url: &str,
        auth_grpc_url: &str,
        credentials: (String, Option<Secret>),
        clock: Arc<dyn Clock>,
        tls: &ClientTls,
    ) -> anyhow::Result<Self> {
        let connected = Connected::new(ledger_url, auth_grpc_url, tls)?;
        Ok(Self {
            ledger_url: ledger_url.to_owned(),
            auth_grpc_url: auth_grpc_url.to_owned(),
            tls: tls.clone(),
            credentials,
            clock,
            connected: Arc::new(Mutex::new(connected)),
        })
    }

    /// Records `action` on `note_id` in the transaction `txn_token` carries.
    pub async fn record(
        &self,
        txn_token: &TxnToken,
        action: &str,
        note_id: &str,
    ) -> Result<Entry, Status> {
        let (connected, own) = self.own_token().await?;
        let mut request =
            tonic::Request::new(RecordRequest { action: action.into(), note_id: note_id.into() });
        let bearer = format!("Bearer {}", own.expose())
            .parse()
            .map_err(|_| Status::internal("a token is not a header value"))?;
        request.metadata_mut().insert("authorization", bearer);
        request.metadata_mut().insert(
            TXN_TOKEN_METADATA,
            txn_token
                .header_value()
                .to_str()
                .ok()
                .and_then(|value| value.parse().ok())
                .ok_or_else(|| Status::internal("a Txn-Token is not a header value"))?,
        );
        Ok(connected.ledger.clone().record(request).await?.into_inner())
    }

    /// The connections of the current certificate, made again if it changed.
    fn connected(&self) -> Result<Connected, Status> {
        let mut connected = self.lock();
        if connected.generation != self.tls.generation() {
            *connected = Connected::new(&self.ledger_url, &self.auth_grpc_url, &self.tls).map_err(
                |err| {
                    tracing::error!(error = %err, "cannot connect to the ledger");
                    Status::unavailable("the ledger cannot be reached")
                },
            )?;
            tracing::info!("TLS certificate changed: new connections to the ledger");
        }
        Ok(connected.clone())
    }

    /// This service's own token for the ledger, cached until its last
    /// seconds, and the connections it was obtained over.
    async fn own_token(&self) -> Result<(Connected, Secret), Status> {
        let now = self.clock.now();
        let connected = self.connected()?;
        if let Some((token, expires_at)) = &connected.own
            && now + REUSE_MARGIN_SECS < *expires_at
        {
            return Ok((connected.clone(), token.clone()));
        }
        let (client_id, secret) = &self.credentials;
        let request = TokenRequest {
            client: Some(ClientAuthentication {
                client_id: client_id.clone(),
                client_secret: secret.as_ref().map(|s| s.expose().clone()),
                client_assertion: None,
            }),
            grant: Some(Grant::ClientCredentials(ClientCredentialsGrant {
                scope: None,
                resource: None,
            })),
        };
        let issued = connected.tokens.clone().token(request).await.map_err(|status| {
            tracing::warn!(code = ?status.code(), message = status.message(), "token for the ledger refused");
            Status::unavailable("the ledger cannot be reached")
        })?;
        let issued = issued.into_inner();
        let token = Secret::new(issued.access_token);
        let mut current = self.lock();
        // Kept only if the connections it was obtained over are still the
        // current ones.
        if current.generation == connected.generation {
            current.own = Some((token.clone(), now + issued.expires_in));
        }
        Ok((connected, token))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connected> {
        self.connected.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
