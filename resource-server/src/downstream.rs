//! Calling the notes store on a user's behalf (RFC 8693).
//!
//! The user's token was issued for this resource server; the notes store accepts
//! only tokens for itself. So before each call the user's token is exchanged at
//! the authorization server for one whose `aud` is the notes store, whose scope
//! is just what the call needs, and whose `act` names this server. Exchanged
//! tokens are cached until shortly before they expire, keyed by the user token's
//! `jti` and the scope, so a burst of calls costs one exchange.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tollgate_proto::auth::v1::token_request::Grant;
use tollgate_proto::auth::v1::token_service_client::TokenServiceClient;
use tollgate_proto::auth::v1::{
    ClientAuthentication, ClientCredentialsGrant, TokenExchangeGrant, TokenRequest,
};
use tollgate_proto::notes::v1::note_store_client::NoteStoreClient;
use tollgate_service_kit::auth::{AuthContext, SubjectToken};
use tollgate_service_kit::telemetry::propagation::{Propagating, traced};
use tollgate_token::{Clock, Secret};
use tonic::transport::Channel;

/// A channel whose calls carry the caller's trace context.
pub type TracedChannel = Propagating<Channel>;
use tonic::{Request, Status};

const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// An exchanged token is not reused in its last seconds.
const REUSE_MARGIN_SECS: i64 = 10;

/// (subject jti, or "" for this server's own token; scope) → (token, expires at).
type TokenCache = HashMap<(String, String), (Secret, i64)>;

/// The notes store, reached with exchanged tokens.
#[derive(Debug, Clone)]
pub struct NotesBackend {
    notes: NoteStoreClient<TracedChannel>,
    tokens: TokenServiceClient<TracedChannel>,
    credentials: Option<(String, Secret)>,
    audience: String,
    clock: Arc<dyn Clock>,
    cache: Arc<Mutex<TokenCache>>,
}

impl NotesBackend {
    pub fn new(
        notes_url: &str,
        auth_grpc_url: &str,
        credentials: Option<(String, Secret)>,
        audience: String,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        // Every call carries the caller's trace on (W3C traceparent).
        let channel = |url: &str| -> anyhow::Result<TracedChannel> {
            Ok(traced(
                Channel::from_shared(url.to_owned())
                    .map_err(|e| anyhow::anyhow!("{url:?} is not a gRPC URL: {e}"))?
                    .connect_lazy(),
            ))
        };
        let notes = channel(notes_url)?;
        let tokens = channel(auth_grpc_url)?;
        Ok(Self {
            notes: NoteStoreClient::new(notes),
            tokens: TokenServiceClient::new(tokens),
            credentials,
            audience,
            clock,
            cache: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// A client for the notes store and the request metadata to call it with,
    /// acting for `caller` with `scope` only.
    pub async fn for_caller<T>(
        &self,
        caller: &AuthContext,
        subject: &SubjectToken,
        scope: &str,
        message: T,
    ) -> Result<(NoteStoreClient<TracedChannel>, Request<T>), Status> {
        let token = self
            .token(caller.token_id.clone(), scope, || {
                Grant::TokenExchange(TokenExchangeGrant {
                    subject_token: subject.expose().to_owned(),
                    subject_token_type: ACCESS_TOKEN_TYPE.into(),
                    audience: Some(self.audience.clone()),
                    resource: None,
                    scope: Some(scope.to_owned()),
                    requested_token_type: None,
                })
            })
            .await?;
        Ok((self.notes.clone(), bearer(message, token.expose())?))
    }

    /// A client for the notes store with this server's own token (client
    /// credentials; aggregate calls that act for nobody).
    pub async fn as_service<T>(
        &self,
        scope: &str,
        message: T,
    ) -> Result<(NoteStoreClient<TracedChannel>, Request<T>), Status> {
        let token = self
            .token(String::new(), scope, || {
                Grant::ClientCredentials(ClientCredentialsGrant {
                    scope: Some(scope.to_owned()),
                    resource: None,
                })
            })
            .await?;
        Ok((self.notes.clone(), bearer(message, token.expose())?))
    }

    async fn token(
        &self,
        subject_jti: String,
        scope: &str,
        grant: impl FnOnce() -> Grant,
    ) -> Result<Secret, Status> {
        let now = self.clock.now();
        let key = (subject_jti, scope.to_owned());
        if let Some((token, expires_at)) = self.lock().get(&key)
            && now + REUSE_MARGIN_SECS < *expires_at
        {
            return Ok(token.clone());
        }
        let Some((client_id, secret)) = &self.credentials else {
            return Err(Status::unavailable("the notes store is not configured here"));
        };
        let request = TokenRequest {
            client: Some(ClientAuthentication {
                client_id: client_id.clone(),
                client_secret: Some(secret.expose().clone()),
                client_assertion: None,
            }),
            grant: Some(grant()),
        };
        let issued = self.tokens.clone().token(request).await.map_err(|status| {
            tracing::warn!(code = ?status.code(), message = status.message(), "token for the notes store refused");
            if status.code() == tonic::Code::Unavailable {
                Status::unavailable("the authorization server is unavailable")
            } else {
                Status::permission_denied("the notes store cannot be reached for this caller")
            }
        })?;
        let issued = issued.into_inner();
        let mut cache = self.lock();
        cache.retain(|_, (_, expires_at)| *expires_at > now);
        let token = Secret::new(issued.access_token);
        cache.insert(key, (token.clone(), now + issued.expires_in));
        Ok(token)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TokenCache> {
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn bearer<T>(message: T, token: &str) -> Result<Request<T>, Status> {
    let mut request = Request::new(message);
    let value = format!("Bearer {token}")
        .parse()
        .map_err(|_| Status::internal("an exchanged token is not a header value"))?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}
