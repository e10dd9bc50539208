//! The authorization request (RFC 6749 §4.1.1, RFC 7636 §4.3), validated in the
//! order that decides where an error may be sent.
//!
//! Until the client and its redirect URI are verified, an error is shown on a
//! page and never redirected (RFC 6749 §4.1.2.1, RFC 9700 §4.11: no open
//! redirector). After that, errors go back to the client at its redirect URI.

use std::collections::HashMap;

use tollgate_token::{OAuthError, Scope};
use url::Url;

use super::grants::requested_scope;
use super::model::{Client, GrantType};
use super::{OAuthCore, pkce, storage_failure};
use crate::storage::ClientStore;

/// A validated authorization request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationRequest {
    pub client: Client,
    /// As sent (a loopback URI keeps its port), so the code can be bound to it.
    pub redirect_uri: String,
    pub scope: Scope,
    pub state: Option<String>,
    pub code_challenge: String,
    /// The `aud` of the tokens: the requested resource (RFC 8707) or the
    /// client's default.
    pub audience: String,
}

/// Why an authorization request was refused, and so where the answer goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeError {
    /// The client or redirect URI is not verified: show an error page.
    Page(OAuthError),
    /// Verified: redirect back with `error`, `state` and `iss`.
    Redirect { redirect_uri: String, state: Option<String>, error: OAuthError },
}

impl<S: ClientStore> OAuthCore<S> {
    /// Validates the query of an authorization request.
    pub async fn validate_authorization(
        &self,
        pairs: &[(String, String)],
    ) -> Result<AuthorizationRequest, AuthorizeError> {
        // RFC 6749 §3.1: parameters must not be included more than once.
        let mut params: HashMap<&str, &str> = HashMap::new();
        let mut repeated: Vec<&str> = Vec::new();
        for (key, value) in pairs {
            if params.insert(key, value).is_some() {
                repeated.push(key);
            }
        }
        let page = |msg: &'static str| AuthorizeError::Page(OAuthError::invalid_request(msg));
        // Which client and where to answer must be unambiguous before anything
        // is sent anywhere.
        if repeated.iter().any(|k| matches!(*k, "client_id" | "redirect_uri")) {
            return Err(page("client_id and redirect_uri may be sent only once"));
        }
        let client_id = params.get("client_id").ok_or_else(|| page("client_id is missing"))?;
        let client = self
            .store
            .client(client_id)
            .await
            .map_err(|e| AuthorizeError::Page(storage_failure(e)))?
            .ok_or_else(|| page("unknown client"))?;
        let redirect_uri = match params.get("redirect_uri") {
            Some(uri) if client.redirect_uris.iter().any(|r| redirect_uri_matches(r, uri)) => {
                (*uri).to_owned()
            }
            Some(_) => return Err(page("redirect_uri is not registered for this client")),
            // Always required, so the token request always repeats it and the two
            // are compared (RFC 6749 §4.1.3); RFC 6749 §3.1.2.3 would allow
            // omitting it with one registered URI, which buys nothing but ambiguity.
            None => return Err(page("redirect_uri is required")),
        };

        // From here on the redirect URI is trusted.
        let state = params.get("state").map(|s| (*s).to_owned());
        let redirect = |error: OAuthError| AuthorizeError::Redirect {
            redirect_uri: redirect_uri.clone(),
            state: state.clone(),
            error,
        };
        if let Some(key) = repeated.first() {
            return Err(redirect(super::repeated_parameter(key)));
        }
        match params.get("response_type") {
            Some(&"code") => {}
            Some(_) => {
                return Err(redirect(OAuthError::UnsupportedResponseType(
                    "only response_type=code is supported".into(),
                )));
            }
            None => return Err(redirect(OAuthError::invalid_request("response_type is missing"))),
        }
        if !client.may_use(GrantType::AuthorizationCode) {
            return Err(redirect(OAuthError::unauthorized_client(
                "client may not use the authorization code grant",
            )));
        }
        // PKCE is mandatory for every client, S256 only (RFC 9700 §2.1.1).
        let challenge = params.get("code_challenge").ok_or_else(|| {
            redirect(OAuthError::invalid_request("code_challenge is required (PKCE)"))
        })?;
        match params.get("code_challenge_method") {
            Some(&"S256") => {}
            _ => {
                return Err(redirect(OAuthError::invalid_request(
                    "code_challenge_method must be S256",
                )));
            }
        }
        if !pkce::is_valid_challenge(challenge) {
            return Err(redirect(OAuthError::invalid_request("code_challenge is malformed")));
        }
        let scope =
            requested_scope(params.get("scope").copied(), &client.scope).map_err(&redirect)?;
        let audience = super::resource::audience_for(&client, params.get("resource").copied())
            .map_err(&redirect)?;
        Ok(AuthorizationRequest {
            client,
            redirect_uri,
            scope,
            state,
            code_challenge: (*challenge).to_owned(),
            audience,
        })
    }
}

/// Exact string match (RFC 9700 §2.1), except that a loopback IP redirect URI
/// registered *without a port* matches any port (RFC 8252 §7.3: a native app
/// listens on an ephemeral port, so it registers none). A loopback URI
/// registered with a port (a web client on this machine, say) is matched
/// exactly like any other: the any-port rule would let every local process
/// receive that client's codes.
pub fn redirect_uri_matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    let (Ok(reg), Ok(req)) = (Url::parse(registered), Url::parse(requested)) else {
        return false;
    };
    // Only a registered URI written in `Url`'s own canonical form, and with no
    // port: `:80` written out, or any spelling the parser reads differently
    // from the text (`http:127.0.0.1:8080/cb`, a tab, a backslash), keeps the
    // exact comparison above.
    if reg.port().is_some() || reg.as_str() != registered {
        return false;
    }
    // RFC 8252 §7.3: `http` to a loopback IP literal only (never a name).
    let loopback = |u: &Url| {
        u.scheme() == "http"
            && match u.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                _ => false,
            }
    };
    loopback(&reg)
        && reg.scheme() == req.scheme()
        && reg.host() == req.host()
        && reg.path() == req.path()
        && reg.query() == req.query()
        && reg.fragment().is_none()
        && req.fragment().is_none()
        && reg.username() == req.username()
        && req.username().is_empty()
        && req.password().is_none()
}

/// Builds the redirect back to the client (RFC 6749 §4.1.2, RFC 9207 §2): the
/// registered URI's own query is kept, the response parameters appended.
pub fn redirect_with(redirect_uri: &str, params: &[(&str, &str)]) -> Option<String> {
    let mut url = Url::parse(redirect_uri).ok()?;
    {
        let mut query = url.query_pairs_mut();
        for (key, value) in params {
            query.append_pair(key, value);
        }
    }
    Some(url.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_match_exactly() {
        let reg = "https://app.example/cb";
        assert!(redirect_uri_matches(reg, reg));
        assert!(!redirect_uri_matches(reg, "https://app.example/cb/"));
        assert!(!redirect_uri_matches(reg, "https://app.example/cb?x=1"));
        assert!(!redirect_uri_matches(reg, "https://APP.example/cb"));
        assert!(!redirect_uri_matches(reg, "https://app.example:443/cb"));
        assert!(!redirect_uri_matches(
            "https://app.example:8443/cb",
            "https://app.example:9443/cb"
        ));
    }

    #[test]
    fn loopback_redirect_uris_match_any_port_and_nothing_else() {
        let reg = "http://127.0.0.1/callback";
        assert!(redirect_uri_matches(reg, "http://127.0.0.1:49152/callback"));
        assert!(redirect_uri_matches("http://[::1]/cb", "http://[::1]:8080/cb"));
        assert!(!redirect_uri_matches(reg, "http://127.0.0.1:49152/other"));
        assert!(!redirect_uri_matches(reg, "http://localhost:49152/callback"));
        assert!(!redirect_uri_matches(reg, "http://evil@127.0.0.1:1/callback"));
        assert!(!redirect_uri_matches(reg, "http://127.0.0.2:1/callback"));
        // The port exception is for plain-http loopback only.
        assert!(!redirect_uri_matches("https://[::1]/cb", "https://[::1]:8443/cb"));
        assert!(!redirect_uri_matches("https://127.0.0.1/cb", "https://127.0.0.1:8443/cb"));
    }

    #[test]
    fn a_loopback_uri_registered_with_a_port_matches_only_that_port() {
        let reg = "http://127.0.0.1:8080/cb";
        assert!(redirect_uri_matches(reg, reg));
        assert!(!redirect_uri_matches(reg, "http://127.0.0.1:9090/cb"));
        assert!(!redirect_uri_matches(reg, "http://127.0.0.1/cb"));
        assert!(!redirect_uri_matches("http://[::1]:8080/cb", "http://[::1]:9090/cb"));
        // The default port written out is still a registered port, and so is a
        // port in a spelling the parser reads differently from the text.
        for odd in [
            "http://127.0.0.1:80/cb",
            "http://[::1]:80/cb",
            "http:127.0.0.1:8080/cb",
            "http:/\t/127.0.0.1:8080/cb",
            "http://127.0.0.1:8080\\@x/cb",
            "HTTP://127.0.0.1:8080/cb",
        ] {
            assert!(!redirect_uri_matches(odd, "http://127.0.0.1:9090/cb"), "{odd}");
        }
        // A query with a colon is not a port.
        assert!(redirect_uri_matches(
            "http://127.0.0.1/cb?next=a:b",
            "http://127.0.0.1:9/cb?next=a:b"
        ));
    }

    #[test]
    fn redirect_keeps_the_registered_query() {
        let url = redirect_with("https://app.example/cb?tenant=a", &[("code", "x y")]).unwrap();
        assert_eq!(url, "https://app.example/cb?tenant=a&code=x+y");
    }
}
