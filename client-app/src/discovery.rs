//! Finding the authorization server from its issuer identifier alone (RFC 8414).

use serde::Deserialize;

use crate::ClientError;

/// The part of the RFC 8414 metadata document this client uses.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct ServerMetadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    /// RFC 8628 §4.
    #[serde(default)]
    pub device_authorization_endpoint: Option<String>,
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    #[serde(default)]
    pub grant_types_supported: Vec<String>,
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
}

/// RFC 8414 §3: the well-known path goes between the host and any path of the
/// issuer.
pub fn metadata_url(issuer: &str) -> Result<url::Url, ClientError> {
    let mut url = url::Url::parse(issuer)
        .map_err(|e| ClientError::Discovery(format!("issuer {issuer:?} is not a URL: {e}")))?;
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
    Ok(url)
}

/// Fetches and checks the metadata. RFC 8414 §3.3: the document's `issuer` MUST
/// be the issuer it was fetched for, or it is not to be used.
pub async fn discover(http: &reqwest::Client, issuer: &str) -> Result<ServerMetadata, ClientError> {
    let url = metadata_url(issuer)?;
    let response = http
        .get(url.clone())
        .headers(tollgate_telemetry::propagation::current_headers())
        .send()
        .await?;
    if !response.status().is_success() {
        return Err(ClientError::Discovery(format!("{url} answered {}", response.status())));
    }
    let mut response = response;
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_METADATA_BYTES {
            return Err(ClientError::Discovery(format!(
                "{url} sent more than {MAX_METADATA_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    parse_metadata(issuer, &body)
}

/// The largest metadata document read, in bytes (ours is about 1.5 kB).
pub const MAX_METADATA_BYTES: usize = 64 * 1024;

/// Parses and checks a metadata document fetched for `issuer` (fuzz target
/// `client_responses`).
pub fn parse_metadata(issuer: &str, body: &[u8]) -> Result<ServerMetadata, ClientError> {
    let metadata: ServerMetadata = serde_json::from_slice(body)
        .map_err(|e| ClientError::Discovery(format!("the metadata is not valid: {e}")))?;
    if metadata.issuer != issuer {
        return Err(ClientError::Discovery(format!(
            "metadata names issuer {:?}, expected {issuer:?}",
            metadata.issuer
        )));
    }
    if !metadata.code_challenge_methods_supported.iter().any(|m| m == "S256") {
        return Err(ClientError::Discovery("the server does not support PKCE S256".into()));
    }
    Ok(metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_goes_before_the_issuer_path() {
        assert_eq!(
            metadata_url("http://127.0.0.1:8080").unwrap().as_str(),
            "http://127.0.0.1:8080/.well-known/oauth-authorization-server"
        );
        assert_eq!(
            metadata_url("https://as.example/tenant1").unwrap().as_str(),
            "https://as.example/.well-known/oauth-authorization-server/tenant1"
        );
    }
}
