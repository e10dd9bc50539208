//! The token service over gRPC: a thin adapter over the same protocol core as
//! `POST /token`, `/introspect` and `/revoke`, so both transports follow
//! identical rules and give the same errors.

use std::sync::Arc;

use tollgate_proto::auth::v1::revocation_list_service_server::RevocationListService;
use tollgate_proto::auth::v1::token_request::Grant as ProtoGrant;
use tollgate_proto::auth::v1::token_service_server::TokenService;
use tollgate_proto::auth::v1::{
    ClientAuthentication, IntrospectRequest, IntrospectResponse, ListRevokedAccessTokensRequest,
    ListRevokedAccessTokensResponse, RevokeRequest, RevokeResponse, RevokedAccessToken,
    TokenRequest, TokenResponse,
};
use tollgate_service_kit::status::to_status;
use tollgate_token::{OAuthError, Secret};
use tonic::{Request, Response, Status};

use crate::domain::lifecycle::TokenTypeHint;
use crate::domain::{ClientAuth, ExchangeRequest, Grant, OAuthCore};
use crate::storage::SqlStore;

#[derive(Debug, Clone)]
pub struct TokenGrpc {
    core: Arc<OAuthCore<SqlStore>>,
}

impl TokenGrpc {
    pub fn new(core: Arc<OAuthCore<SqlStore>>) -> Self {
        Self { core }
    }
}

/// The client's credentials from the message (the gRPC form of RFC 6749 §2.3).
fn client_auth(client: Option<ClientAuthentication>) -> Result<ClientAuth, Status> {
    let client = client
        .ok_or_else(|| to_status(&OAuthError::invalid_client("client authentication required")))?;
    Ok(match (client.client_secret, client.client_assertion) {
        (Some(_), Some(_)) => {
            return Err(to_status(&OAuthError::invalid_request(
                "use one client authentication method, not two",
            )));
        }
        (Some(secret), None) => {
            ClientAuth::SecretPost { client_id: client.client_id, secret: Secret::new(secret) }
        }
        (None, Some(assertion)) => ClientAuth::PrivateKeyJwt {
            client_id: client.client_id,
            assertion: Secret::new(assertion),
        },
        (None, None) => ClientAuth::None { client_id: client.client_id },
    })
}

fn required_token(token: String) -> Result<String, Status> {
    if token.is_empty() {
        return Err(to_status(&OAuthError::invalid_request("token is missing")));
    }
    Ok(token)
}

#[tonic::async_trait]
impl TokenService for TokenGrpc {
    async fn token(
        &self,
        request: Request<TokenRequest>,
    ) -> Result<Response<TokenResponse>, Status> {
        let request = request.into_inner();
        let auth = client_auth(request.client)?;
        let grant = match request.grant {
            Some(ProtoGrant::AuthorizationCode(g)) => Grant::AuthorizationCode {
                code: Secret::new(g.code),
                redirect_uri: Some(g.redirect_uri),
                code_verifier: Some(Secret::new(g.code_verifier)),
                resource: g.resource,
            },
            Some(ProtoGrant::ClientCredentials(g)) => {
                Grant::ClientCredentials { scope: g.scope, resource: g.resource }
            }
            Some(ProtoGrant::RefreshToken(g)) => Grant::RefreshToken {
                refresh_token: Secret::new(g.refresh_token),
                scope: g.scope,
                resource: g.resource,
            },
            Some(ProtoGrant::DeviceCode(g)) => {
                Grant::DeviceCode { device_code: Secret::new(g.device_code) }
            }
            Some(ProtoGrant::TokenExchange(g)) => Grant::TokenExchange(ExchangeRequest {
                subject_token: Secret::new(g.subject_token),
                subject_token_type: g.subject_token_type,
                audience: g.audience,
                resource: g.resource,
                scope: g.scope,
                requested_token_type: g.requested_token_type,
                actor_token: None,
            }),
            None => return Err(to_status(&OAuthError::invalid_request("grant is missing"))),
        };
        let issued = self.core.token(&auth, grant).await.map_err(|e| to_status(&e))?;
        Ok(Response::new(TokenResponse {
            access_token: issued.access_token.into_exposed(),
            token_type: "Bearer".into(),
            expires_in: issued.expires_in,
            refresh_token: issued.refresh_token.map(Secret::into_exposed),
            scope: issued.scope.to_string(),
            issued_token_type: issued.issued_token_type.map(str::to_owned),
        }))
    }

    async fn introspect(
        &self,
        request: Request<IntrospectRequest>,
    ) -> Result<Response<IntrospectResponse>, Status> {
        let request = request.into_inner();
        let auth = client_auth(request.client)?;
        let token = required_token(request.token)?;
        let hint = TokenTypeHint::parse(request.token_type_hint.as_deref());
        let active = self.core.introspect(&auth, &token, hint).await.map_err(|e| to_status(&e))?;
        Ok(Response::new(match active {
            None => IntrospectResponse { active: false, ..Default::default() },
            Some(t) => IntrospectResponse {
                active: true,
                scope: Some(t.scope),
                client_id: Some(t.client_id),
                sub: Some(t.sub),
                exp: Some(t.exp),
                iat: Some(t.iat),
                nbf: t.nbf,
                aud: t.aud,
                iss: Some(t.iss),
                token_type: t.token_type.map(str::to_owned),
                jti: t.jti,
            },
        }))
    }

    async fn revoke(
        &self,
        request: Request<RevokeRequest>,
    ) -> Result<Response<RevokeResponse>, Status> {
        let request = request.into_inner();
        let auth = client_auth(request.client)?;
        let token = required_token(request.token)?;
        let hint = TokenTypeHint::parse(request.token_type_hint.as_deref());
        self.core.revoke(&auth, &token, hint).await.map_err(|e| to_status(&e))?;
        Ok(Response::new(RevokeResponse {}))
    }
}

#[tonic::async_trait]
impl RevocationListService for TokenGrpc {
    async fn list_revoked_access_tokens(
        &self,
        request: Request<ListRevokedAccessTokensRequest>,
    ) -> Result<Response<ListRevokedAccessTokensResponse>, Status> {
        let auth = client_auth(request.into_inner().client)?;
        let revoked = self.core.revoked_access_tokens(&auth).await.map_err(|e| to_status(&e))?;
        Ok(Response::new(ListRevokedAccessTokensResponse {
            tokens: revoked
                .into_iter()
                .map(|(jti, expires_at)| RevokedAccessToken { jti, expires_at })
                .collect(),
        }))
    }
}
