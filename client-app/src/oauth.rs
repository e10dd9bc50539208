//! The client's side of the grants, over the `oauth2` crate: a widely used,
//! standards-following client, so what works here works for anyone's client.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use oauth2::basic::{BasicClient, BasicErrorResponse, BasicTokenResponse};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    DeviceAuthorizationUrl, EndpointNotSet, EndpointSet, ErrorResponseType, HttpClientError,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope,
    StandardDeviceAuthorizationResponse, StandardErrorResponse, TokenResponse as _, TokenUrl,
};
use subtle::ConstantTimeEq as _;
use tollgate_token::{Clock, Secret};

use crate::ClientError;
use crate::discovery::ServerMetadata;
use crate::dpop::DpopKey;
use crate::tokens::{Obtained, TokenSet};

type Oauth2Client =
    BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;
type DeviceClient =
    BasicClient<EndpointNotSet, EndpointSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// A device login in progress (RFC 8628): what to show the person, and what the
/// client polls with.
#[derive(Debug)]
pub struct DeviceLogin {
    details: StandardDeviceAuthorizationResponse,
}

impl DeviceLogin {
    /// The code the person types at the verification page.
    pub fn user_code(&self) -> &str {
        self.details.user_code().secret()
    }

    pub fn verification_uri(&self) -> &str {
        self.details.verification_uri().as_str()
    }

    /// The page with the code filled in (for a QR code or a link).
    pub fn verification_uri_complete(&self) -> Option<&str> {
        self.details.verification_uri_complete().map(|u| u.secret().as_str())
    }
}

/// How the client authenticates at the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ClientAuthMethod {
    /// HTTP Basic with the id and secret (the RFC's recommended method).
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

/// Who this client is.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    pub client_id: String,
    /// `None` for a public client (RFC 6749 §2.1), which proves itself with PKCE.
    pub client_secret: Option<Secret>,
    pub auth_method: ClientAuthMethod,
}

/// An authorization request sent to the browser, waiting for its answer.
/// Holds the PKCE verifier and `state`, which never leave this process.
#[derive(Debug)]
pub struct PendingAuthorization {
    pub url: url::Url,
    state: CsrfToken,
    verifier: PkceCodeVerifier,
    redirect_uri: RedirectUrl,
}

/// The HTTP client the oauth2 crate sends through: reqwest, with the caller's
/// trace context added to every request (W3C `traceparent`), so a whole flow is
/// one trace at the authorization server too; and, with DPoP, a proof on
/// every token request.
#[derive(Debug, Clone)]
struct TracedHttp {
    http: reqwest::Client,
    dpop: Option<Arc<DpopState>>,
}

/// DPoP at the token endpoint (RFC 9449 §5): the key, where to prove it, and
/// the last nonce the server named (§8).
#[derive(Debug)]
struct DpopState {
    key: DpopKey,
    token_endpoint: String,
    clock: Arc<dyn Clock>,
    nonce: std::sync::Mutex<Option<String>>,
}

impl DpopState {
    /// Adds a fresh proof to a POST to the token endpoint.
    fn prove(&self, request: &mut oauth2::HttpRequest) {
        if request.method() != oauth2::http::Method::POST
            || request.uri().to_string() != self.token_endpoint
        {
            return;
        }
        let nonce = self.nonce.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        let proof = self.key.proof(&self.token_endpoint, None, self.clock.now(), nonce.as_deref());
        if let Ok(value) = oauth2::http::HeaderValue::from_str(&proof) {
            request.headers_mut().insert("dpop", value);
        }
    }

    /// Keeps the nonce an answer names; whether it refused for want of one
    /// (`use_dpop_nonce`), so the request is worth sending once more.
    fn learn(&self, response: &oauth2::HttpResponse) -> bool {
        let Some(nonce) = response.headers().get("dpop-nonce").and_then(|v| v.to_str().ok()) else {
            return false;
        };
        *self.nonce.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) =
            Some(nonce.to_owned());
        response.status() == oauth2::http::StatusCode::BAD_REQUEST
            && serde_json::from_slice::<serde_json::Value>(response.body())
                .is_ok_and(|body| body["error"] == "use_dpop_nonce")
    }
}

/// A copy of `request` (method, URI, headers, body), to send again.
fn copy(request: &oauth2::HttpRequest) -> oauth2::HttpRequest {
    let mut again = oauth2::http::Request::new(request.body().clone());
    *again.method_mut() = request.method().clone();
    *again.uri_mut() = request.uri().clone();
    *again.headers_mut() = request.headers().clone();
    again
}

impl<'c> oauth2::AsyncHttpClient<'c> for TracedHttp {
    type Error = <reqwest::Client as oauth2::AsyncHttpClient<'c>>::Error;
    type Future = std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<oauth2::HttpResponse, Self::Error>>
                + Send
                + Sync
                + 'c,
        >,
    >;

    fn call(&'c self, mut request: oauth2::HttpRequest) -> Self::Future {
        tollgate_telemetry::propagation::inject(request.headers_mut());
        Box::pin(async move {
            let Some(dpop) = &self.dpop else { return self.http.call(request).await };
            let unproven = copy(&request);
            dpop.prove(&mut request);
            let response = self.http.call(request).await?;
            if !dpop.learn(&response) {
                return Ok(response);
            }
            // RFC 9449 §8: once more, with the nonce the server named.
            let mut again = unproven;
            dpop.prove(&mut again);
            let response = self.http.call(again).await?;
            dpop.learn(&response);
            Ok(response)
        })
    }
}

/// The client, bound to one authorization server.
#[derive(Debug, Clone)]
pub struct OAuthClient {
    inner: Oauth2Client,
    http: TracedHttp,
    metadata: ServerMetadata,
    identity: ClientIdentity,
    clock: Arc<dyn Clock>,
}

/// A failed request to one of the server's endpoints: an RFC 6749 §5.2 (or
/// RFC 8628 §3.5) error the server sent, or a failure to talk to it at all.
fn request_error<T>(
    err: RequestTokenError<HttpClientError<reqwest::Error>, StandardErrorResponse<T>>,
    what: &str,
) -> ClientError
where
    T: ErrorResponseType + AsRef<str> + std::fmt::Display + Send + Sync + 'static,
{
    match err {
        RequestTokenError::ServerResponse(response) => ClientError::Refused {
            error: response.error().as_ref().to_owned(),
            description: response.error_description().cloned().unwrap_or_default(),
        },
        other => ClientError::Protocol(format!("{what} failed: {other}")),
    }
}

fn token_error(
    err: RequestTokenError<HttpClientError<reqwest::Error>, BasicErrorResponse>,
) -> ClientError {
    request_error(err, "token request")
}

/// This client as the `oauth2` crate knows it (id, secret, how to send them),
/// before any endpoint is set.
fn base_client(identity: &ClientIdentity) -> BasicClient {
    let mut client = BasicClient::new(ClientId::new(identity.client_id.clone())).set_auth_type(
        match identity.auth_method {
            ClientAuthMethod::ClientSecretBasic => AuthType::BasicAuth,
            ClientAuthMethod::ClientSecretPost => AuthType::RequestBody,
        },
    );
    if let Some(secret) = &identity.client_secret {
        client = client.set_client_secret(ClientSecret::new(secret.expose().clone()));
    }
    client
}

impl OAuthClient {
    pub fn new(
        metadata: ServerMetadata,
        identity: ClientIdentity,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ClientError> {
        Self::with_http(metadata, identity, clock, reqwest::Client::builder())
    }

    /// Like [`OAuthClient::new`], with HTTP settings of the caller's (a proxy, a
    /// CA, a name resolved to one replica in a test). Redirects are switched off
    /// whatever the builder says.
    pub fn with_http(
        metadata: ServerMetadata,
        identity: ClientIdentity,
        clock: Arc<dyn Clock>,
        http: reqwest::ClientBuilder,
    ) -> Result<Self, ClientError> {
        let bad = |what: &str, e: url::ParseError| {
            ClientError::Discovery(format!("{what} in the metadata is not a URL: {e}"))
        };
        let inner = base_client(&identity)
            .set_auth_uri(
                AuthUrl::new(metadata.authorization_endpoint.clone())
                    .map_err(|e| bad("authorization_endpoint", e))?,
            )
            .set_token_uri(
                TokenUrl::new(metadata.token_endpoint.clone())
                    .map_err(|e| bad("token_endpoint", e))?,
            );
        // Never follow redirects from the token endpoint (RFC 9700 §4.11).
        let http = http
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(Self { inner, http: TracedHttp { http, dpop: None }, metadata, identity, clock })
    }

    /// Binds the tokens this client obtains to `key` (RFC 9449): every token
    /// request carries a proof of it, answering the server's nonce if it
    /// asks for one, and the tokens it gets come back as DPoP tokens that
    /// keep the key with them ([`TokenSet::dpop_key`]).
    pub fn with_dpop(mut self, key: DpopKey) -> Self {
        self.http.dpop = Some(Arc::new(DpopState {
            key,
            token_endpoint: self.metadata.token_endpoint.clone(),
            clock: self.clock.clone(),
            nonce: std::sync::Mutex::new(None),
        }));
        self
    }

    pub fn metadata(&self) -> &ServerMetadata {
        &self.metadata
    }

    pub fn client_id(&self) -> &str {
        &self.identity.client_id
    }

    /// Step 1 of the authorization-code grant (RFC 6749 §4.1.1) with PKCE S256
    /// (RFC 7636 §4.1–4.3): a fresh verifier and `state` for every request.
    pub fn authorization_url(
        &self,
        scopes: &[String],
        redirect_uri: &str,
    ) -> Result<PendingAuthorization, ClientError> {
        let redirect_uri = RedirectUrl::new(redirect_uri.to_owned())
            .map_err(|e| ClientError::Protocol(format!("redirect URI: {e}")))?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state) = self
            .inner
            .authorize_url(CsrfToken::new_random)
            .add_scopes(scopes.iter().cloned().map(Scope::new))
            .set_pkce_challenge(challenge)
            .set_redirect_uri(Cow::Owned(redirect_uri.clone()))
            .url();
        Ok(PendingAuthorization { url, state, verifier, redirect_uri })
    }

    /// Steps 2–3: checks the redirect the browser came back with, then redeems
    /// the code. The checks come first: a response for another request (wrong
    /// `state`, RFC 6749 §10.12) or from another server (wrong `iss`, RFC 9207
    /// §2.4) is refused without touching the token endpoint.
    pub async fn finish_authorization(
        &self,
        pending: PendingAuthorization,
        callback: &HashMap<String, String>,
    ) -> Result<TokenSet, ClientError> {
        let state = callback.get("state").map(String::as_str).unwrap_or("");
        if !bool::from(state.as_bytes().ct_eq(pending.state.secret().as_bytes())) {
            return Err(ClientError::Protocol("the state in the redirect is not ours".into()));
        }
        if self.metadata.authorization_response_iss_parameter_supported
            && callback.get("iss") != Some(&self.metadata.issuer)
        {
            return Err(ClientError::Protocol(
                "the iss in the redirect is not our authorization server (RFC 9207)".into(),
            ));
        }
        if let Some(error) = callback.get("error") {
            return Err(ClientError::Refused {
                error: error.clone(),
                description: callback.get("error_description").cloned().unwrap_or_default(),
            });
        }
        let code = callback
            .get("code")
            .ok_or_else(|| ClientError::Protocol("the redirect carries no code".into()))?;
        let response = self
            .inner
            .exchange_code(AuthorizationCode::new(code.clone()))
            .set_pkce_verifier(pending.verifier)
            .set_redirect_uri(Cow::Owned(pending.redirect_uri))
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        Ok(self.token_set(&response, Obtained::AuthorizationCode, None))
    }

    fn device_client(&self) -> Result<DeviceClient, ClientError> {
        let url = self.metadata.device_authorization_endpoint.clone().ok_or_else(|| {
            ClientError::Discovery("the server has no device_authorization_endpoint".into())
        })?;
        let url = DeviceAuthorizationUrl::new(url)
            .map_err(|e| ClientError::Discovery(format!("device_authorization_endpoint: {e}")))?;
        let token_url = TokenUrl::new(self.metadata.token_endpoint.clone())
            .map_err(|e| ClientError::Discovery(format!("token_endpoint: {e}")))?;
        Ok(base_client(&self.identity).set_device_authorization_url(url).set_token_uri(token_url))
    }

    /// RFC 8628 §3.1: starts a device login.
    pub async fn start_device_login(&self, scopes: &[String]) -> Result<DeviceLogin, ClientError> {
        let details = self
            .device_client()?
            .exchange_device_code()
            .add_scopes(scopes.iter().cloned().map(Scope::new))
            .request_async(&self.http)
            .await
            .map_err(|e| request_error(e, "device authorization"))?;
        Ok(DeviceLogin { details })
    }

    /// RFC 8628 §3.4–3.5: polls until the person approves or denies, honouring
    /// `interval` and `slow_down`; `sleep` waits between polls.
    pub async fn finish_device_login<S, SF>(
        &self,
        login: &DeviceLogin,
        sleep: S,
    ) -> Result<TokenSet, ClientError>
    where
        S: Fn(std::time::Duration) -> SF,
        SF: std::future::Future<Output = ()>,
    {
        let client = self.device_client()?;
        let response = client
            .exchange_device_access_token(&login.details)
            .request_async(&self.http, sleep, None)
            .await
            .map_err(|e| request_error(e, "device token request"))?;
        Ok(self.token_set(&response, Obtained::AuthorizationCode, None))
    }

    /// RFC 6749 §4.4: a token for the client itself.
    pub async fn client_credentials(&self, scopes: &[String]) -> Result<TokenSet, ClientError> {
        let response = self
            .inner
            .exchange_client_credentials()
            .add_scopes(scopes.iter().cloned().map(Scope::new))
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        Ok(self.token_set(&response, Obtained::ClientCredentials, None))
    }

    /// RFC 6749 §6: new tokens for old. The server rotates the refresh token; the
    /// old one is spent and must be replaced by the one returned.
    pub async fn refresh(&self, tokens: &TokenSet) -> Result<TokenSet, ClientError> {
        let refresh = tokens
            .refresh_token
            .clone()
            .ok_or_else(|| ClientError::Protocol("these tokens have no refresh token".into()))?;
        let response = self
            .inner
            .exchange_refresh_token(&RefreshToken::new(refresh.into_exposed()))
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        Ok(self.token_set(&response, tokens.obtained, Some(&tokens.scope)))
    }

    /// Renews `tokens` if they expire within `margin` seconds: by refresh for a
    /// resource owner's tokens, by asking again for the client's own.
    pub async fn ensure_fresh(
        &self,
        tokens: TokenSet,
        margin: i64,
    ) -> Result<(TokenSet, bool), ClientError> {
        if !tokens.expires_within(self.clock.now(), margin) {
            return Ok((tokens, false));
        }
        let renewed = match tokens.obtained {
            Obtained::AuthorizationCode => self.refresh(&tokens).await?,
            Obtained::ClientCredentials => {
                let scopes: Vec<String> = tokens.scope.split(' ').map(str::to_owned).collect();
                self.client_credentials(&scopes).await?
            }
        };
        Ok((renewed, true))
    }

    /// What the client keeps of a token response (RFC 6749 §5.1). Whatever the
    /// server sent (fuzz target `client_responses`): an `expires_in` past the
    /// end of time saturates rather than overflowing.
    pub fn token_set(
        &self,
        response: &BasicTokenResponse,
        obtained: Obtained,
        previous_scope: Option<&str>,
    ) -> TokenSet {
        // RFC 6749 §5.1: `scope` may be omitted when it is what was asked for.
        let scope = match response.scopes() {
            Some(scopes) => scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "),
            None => previous_scope.unwrap_or_default().to_owned(),
        };
        // RFC 9449 §5: `DPoP` when the server bound the tokens to our key.
        let dpop = matches!(
            response.token_type(),
            oauth2::basic::BasicTokenType::Extension(kind) if kind.eq_ignore_ascii_case("dpop")
        );
        TokenSet {
            access_token: Secret::new(response.access_token().secret().clone()),
            refresh_token: response.refresh_token().map(|t| Secret::new(t.secret().clone())),
            expires_at: self.clock.now().saturating_add(
                response.expires_in().map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
            ),
            scope,
            obtained,
            client_id: self.identity.client_id.clone(),
            token_type: if dpop { "DPoP" } else { "Bearer" }.into(),
            dpop_key: self.http.dpop.as_ref().filter(|_| dpop).map(|d| d.key.stored().clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_token::ManualClock;

    fn client() -> OAuthClient {
        let metadata = ServerMetadata {
            issuer: "https://as.example".into(),
            authorization_endpoint: "https://as.example/authorize".into(),
            // Nothing listens here: a refusal must come before any request.
            token_endpoint: "http://127.0.0.1:9/token".into(),
            jwks_uri: "https://as.example/jwks.json".into(),
            device_authorization_endpoint: None,
            scopes_supported: vec![],
            grant_types_supported: vec![],
            code_challenge_methods_supported: vec!["S256".into()],
            token_endpoint_auth_methods_supported: vec![],
            authorization_response_iss_parameter_supported: true,
        };
        let identity = ClientIdentity {
            client_id: "cli".into(),
            client_secret: None,
            auth_method: ClientAuthMethod::ClientSecretBasic,
        };
        OAuthClient::new(metadata, identity, Arc::new(ManualClock::new(0))).unwrap()
    }

    fn callback(pending: &PendingAuthorization, state: &str, iss: &str) -> HashMap<String, String> {
        let _ = pending;
        [("code", "abc"), ("state", state), ("iss", iss)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[tokio::test]
    async fn a_redirect_with_a_foreign_state_or_issuer_is_refused_before_redeeming() {
        let client = client();
        // RFC 6749 §10.12: a response to someone else's request (CSRF/injection).
        let pending = client.authorization_url(&[], "http://127.0.0.1:1/cb").unwrap();
        let wrong_state = callback(&pending, "not-ours", "https://as.example");
        let err = client.finish_authorization(pending, &wrong_state).await.unwrap_err();
        assert!(err.to_string().contains("state"), "{err}");

        // RFC 9207 §2.4: a response from another server (mix-up attack).
        let pending = client.authorization_url(&[], "http://127.0.0.1:1/cb").unwrap();
        let state = pending.state.secret().clone();
        let wrong_iss = callback(&pending, &state, "https://evil.example");
        let err = client.finish_authorization(pending, &wrong_iss).await.unwrap_err();
        assert!(err.to_string().contains("iss"), "{err}");
    }

    #[test]
    fn an_expires_in_past_the_end_of_time_saturates() {
        let client = client();
        let body =
            br#"{"access_token":"a","token_type":"Bearer","expires_in":18446744073709551615}"#;
        let response: BasicTokenResponse = serde_json::from_slice(body).unwrap();
        let set = client.token_set(&response, Obtained::ClientCredentials, None);
        assert_eq!(set.expires_at, i64::MAX);
        let body =
            br#"{"access_token":"a","token_type":"Bearer","expires_in":9223372036854775807}"#;
        let response: BasicTokenResponse = serde_json::from_slice(body).unwrap();
        assert_eq!(
            client.token_set(&response, Obtained::ClientCredentials, None).expires_at,
            i64::MAX
        );
    }

    #[test]
    fn every_authorization_request_has_fresh_pkce_and_state() {
        let client = client();
        let a = client.authorization_url(&[], "http://127.0.0.1:1/cb").unwrap();
        let b = client.authorization_url(&[], "http://127.0.0.1:1/cb").unwrap();
        let param = |p: &PendingAuthorization, k: &str| {
            p.url.query_pairs().find(|(n, _)| n == k).map(|(_, v)| v.into_owned())
        };
        assert_eq!(param(&a, "code_challenge_method").as_deref(), Some("S256"));
        assert_ne!(param(&a, "code_challenge"), param(&b, "code_challenge"));
        assert_ne!(param(&a, "state"), param(&b, "state"));
    }
}
