//! Resource indicators (RFC 8707): a client names the resource server a token is
//! for, and the token's `aud` is set to it, so a token for one API is useless at
//! another.

use tollgate_token::OAuthError;

use super::model::Client;

/// RFC 8707 §2: an absolute URI without a fragment.
pub fn is_valid_resource(resource: &str) -> bool {
    url::Url::parse(resource).is_ok_and(|u| u.fragment().is_none() && !u.cannot_be_a_base())
}

/// The audience for a request: the client's default without `resource`, else
/// the named resource if the client is registered for it (`invalid_target`
/// otherwise, RFC 8707 §2).
pub fn audience_for(client: &Client, resource: Option<&str>) -> Result<String, OAuthError> {
    let Some(resource) = resource else { return Ok(client.audience.clone()) };
    if !is_valid_resource(resource) {
        return Err(OAuthError::invalid_target(
            "resource must be an absolute URI without a fragment",
        ));
    }
    if !client.resources.iter().any(|r| r == resource) {
        return Err(OAuthError::invalid_target(
            "this client may not obtain tokens for this resource",
        ));
    }
    Ok(resource.to_owned())
}

/// At the token endpoint after an authorization (RFC 8707 §2.2): the resource,
/// if given again, must be the one authorised.
pub fn check_same_resource(resource: Option<&str>, authorised: &str) -> Result<(), OAuthError> {
    match resource {
        Some(asked) if asked != authorised => {
            Err(OAuthError::invalid_target("resource differs from the one the grant is for"))
        }
        _ => Ok(()),
    }
}
