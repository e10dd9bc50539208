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
use tollgate_proto::auth::v1::{REVOCATION_LIST_DEFAULT_PAGE_SIZE, REVOCATION_LIST_MAX_PAGE_SIZE};
use tollgate_service_kit::auth::DPOP_METADATA;
use tollgate_service_kit::input::check_len;
use tollgate_service_kit::status::to_status;
use tollgate_token::{OAuthError, Secret};
use tonic::{Request, Response, Status};

use crate::domain::dpop::PresentedProof;
use crate::domain::lifecycle::TokenTypeHint;
use crate::domain::{ClientAuth, ExchangeRequest, Grant, OAuthCore, PeerCertificate};
use crate::storage::SqlStore;

#[derive(Debug, Clone)]
pub struct TokenGrpc {
    core: Arc<OAuthCore<SqlStore>>,
    /// The URI a DPoP proof sent to `TokenService/Token` names (`htu`): the
    /// listener's origin and the method's path (docs/dpop-grpc.md).
    token_htu: Arc<str>,
}

impl TokenGrpc {
    /// `dpop_origin`: the origin clients call this listener at.
    pub fn new(core: Arc<OAuthCore<SqlStore>>, dpop_origin: &str) -> Self {
        let token_htu = format!("{dpop_origin}{TOKEN_PATH}").into();
        Self { core, token_htu }
    }

    /// RFC 9449 §4.3 step 1 over gRPC: at most one `dpop` metadata entry.
    fn dpop_proof<T>(&self, request: &Request<T>) -> Result<Option<PresentedProof>, Status> {
        let mut values = request.metadata().get_all(DPOP_METADATA).iter();
        match (values.next(), values.next()) {
            (None, _) => Ok(None),
            (Some(_), Some(_)) => {
                Err(to_status(&OAuthError::invalid_dpop_proof("more than one DPoP proof")))
            }
            (Some(value), None) => {
                let proof = value.to_str().map_err(|_| {
                    to_status(&OAuthError::invalid_dpop_proof("malformed proof: not ASCII"))
                })?;
                Ok(Some(PresentedProof {
                    proof: proof.to_owned(),
                    uri: self.token_htu.to_string(),
                }))
            }
        }
    }

    /// `TokenService/Token` (RFC 6749 §3.2 over gRPC): the same core as
    /// `POST /token`.
    async fn issue(
        &self,
        request: Request<TokenRequest>,
    ) -> Result<Response<TokenResponse>, Status> {
        let certificate = peer_certificate(&request);
        let proof = self.dpop_proof(&request)?;
        let request = request.into_inner();
        let auth = client_auth(request.client, certificate)?;
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
                request_context: g.request_context,
                request_details: g.request_details,
            }),
            None => return Err(to_status(&OAuthError::invalid_request("grant is missing"))),
        };
        let issued = self
            .core
            .token_with_proof(&auth, grant, proof.as_ref())
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(TokenResponse {
            access_token: issued.access_token.into_exposed(),
            token_type: issued.token_type.as_str().into(),
            expires_in: issued.expires_in,
            refresh_token: issued.refresh_token.map(Secret::into_exposed),
            scope: issued.scope.to_string(),
            issued_token_type: issued.issued_token_type.map(str::to_owned),
        }))
    }
}

/// The metadata entry carrying a server nonce (RFC 9449 §8.1's `DPoP-Nonce`).
const DPOP_NONCE_METADATA: &str = "dpop-nonce";

/// The token method's path, which a DPoP proof's `htu` ends with.
const TOKEN_PATH: &str = "/tollgate.auth.v1.TokenService/Token";

/// The client's credentials from the message (the gRPC form of RFC 6749 §2.3),
/// and the connection's client certificate (RFC 8705 §2) for a client that
/// sends no other credential.
fn client_auth(
    client: Option<ClientAuthentication>,
    certificate: Option<PeerCertificate>,
) -> Result<ClientAuth, Status> {
    Ok(message_auth(client)?.presented_with(certificate))
}

/// The client certificate of the call's connection (mutual TLS), if any.
fn peer_certificate<T>(request: &Request<T>) -> Option<PeerCertificate> {
    let chain = request.peer_certs()?;
    chain.first().map(|end_entity| PeerCertificate::from_der(end_entity))
}

fn message_auth(client: Option<ClientAuthentication>) -> Result<ClientAuth, Status> {
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
        // RFC 9449 §8 over gRPC: with nonces on, every answer's `dpop-nonce`
        // metadata carries the nonce to use next, refusals included.
        let nonce = self
            .core
            .dpop()
            .fresh_nonce(self.core.now())
            .and_then(|nonce| tonic::metadata::MetadataValue::try_from(nonce).ok());
        let mut answer = self.issue(request).await;
        if let Some(nonce) = nonce {
            match &mut answer {
                Ok(response) => response.metadata_mut().insert(DPOP_NONCE_METADATA, nonce),
                Err(status) => status.metadata_mut().insert(DPOP_NONCE_METADATA, nonce),
            };
        }
        answer
    }

    async fn introspect(
        &self,
        request: Request<IntrospectRequest>,
    ) -> Result<Response<IntrospectResponse>, Status> {
        let certificate = peer_certificate(&request);
        let request = request.into_inner();
        let auth = client_auth(request.client, certificate)?;
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
                cnf_x5t_s256: t.x5t_s256,
                cnf_jkt: t.jkt,
            },
        }))
    }

    async fn revoke(
        &self,
        request: Request<RevokeRequest>,
    ) -> Result<Response<RevokeResponse>, Status> {
        let certificate = peer_certificate(&request);
        let request = request.into_inner();
        let auth = client_auth(request.client, certificate)?;
        let token = required_token(request.token)?;
        let hint = TokenTypeHint::parse(request.token_type_hint.as_deref());
        self.core.revoke(&auth, &token, hint).await.map_err(|e| to_status(&e))?;
        Ok(Response::new(RevokeResponse {}))
    }
}

/// The longest `page_token` taken. A token is an `exp` and a `jti` this
/// server minted (at most 20 + 1 + 22 characters); the margin leaves room for
/// another format, and the cap keeps a megabyte of garbage from reaching the
/// database.
const MAX_PAGE_TOKEN_CHARS: usize = 256;

/// The page size a request gets: its own, the default for 0, never more than
/// the contract's cap (which keeps a page far under the 4 MiB message limit).
fn page_size(requested: u32) -> u32 {
    match requested {
        0 => REVOCATION_LIST_DEFAULT_PAGE_SIZE,
        n => n.min(REVOCATION_LIST_MAX_PAGE_SIZE),
    }
}

/// The page token after the row `(jti, exp)`: `<exp>.<jti>`, the keyset cursor
/// itself. Opaque to clients, so its form may change.
fn page_token((jti, exp): &(String, i64)) -> String {
    format!("{exp}.{jti}")
}

/// The row a page token names; `None` for the first page.
fn page_cursor(token: &str) -> Result<Option<(&str, i64)>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    check_len("page_token", token, MAX_PAGE_TOKEN_CHARS)?;
    let (exp, jti) = token
        .split_once('.')
        .and_then(|(exp, jti)| Some((exp.parse::<i64>().ok()?, jti)))
        .ok_or_else(|| Status::invalid_argument("page_token is not one this server gave"))?;
    Ok(Some((jti, exp)))
}

#[tonic::async_trait]
impl RevocationListService for TokenGrpc {
    async fn list_revoked_access_tokens(
        &self,
        request: Request<ListRevokedAccessTokensRequest>,
    ) -> Result<Response<ListRevokedAccessTokensResponse>, Status> {
        let certificate = peer_certificate(&request);
        let request = request.into_inner();
        let auth = client_auth(request.client, certificate)?;
        let after = page_cursor(&request.page_token)?;
        let page = self
            .core
            .revoked_access_tokens(&auth, after, page_size(request.page_size))
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(ListRevokedAccessTokensResponse {
            next_page_token: page.next_after.as_ref().map(page_token).unwrap_or_default(),
            tokens: page
                .tokens
                .into_iter()
                .map(|(jti, expires_at)| RevokedAccessToken { jti, expires_at })
                .collect(),
        }))
    }
}

#[cfg(test)]
mod revocation_list_tests {
    use super::*;

    #[test]
    fn page_sizes_default_and_cap_and_page_tokens_round_trip() {
        assert_eq!(page_size(0), REVOCATION_LIST_DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(7), 7);
        assert_eq!(page_size(u32::MAX), REVOCATION_LIST_MAX_PAGE_SIZE);
        let row = ("AbC-_9".to_owned(), -5);
        assert_eq!(page_cursor(&page_token(&row)).unwrap(), Some(("AbC-_9", -5)));
        assert_eq!(page_cursor("").unwrap(), None);
        for bad in ["nodot", "x.jti", &format!("1.{}", "j".repeat(300))] {
            let refused = page_cursor(bad).unwrap_err();
            assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{bad}");
        }
    }
}
