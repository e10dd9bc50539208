//! The Txn-Token Service (draft-ietf-oauth-transaction-tokens-10): the
//! authorization server issues the trust domain's Transaction Tokens, as a
//! profile of token exchange (RFC 8693).
//!
//! A workload at the edge of the trust domain (the resource server) presents
//! the user's access token and asks for a Txn-Token for the trust domain; the
//! workloads behind it pass that one token along, unchanged, however many hops
//! the call takes. A workload may also present a Txn-Token to get a
//! *replacement*: same `txn`, `sub` and `aud`, never a wider scope, never a
//! longer life, and the chain of requesters kept.

use serde_json::{Map, Value};
use tollgate_telemetry::audit::{self, Event, Subject};
use tollgate_token::txn::{
    MAX_CONTEXT_BYTES, REQUESTER_CHAIN, TxnTokenClaims, TxnTokenPolicy, verify_txn_token,
};
use tollgate_token::{OAuthError, Scope, TXN_TOKEN_TYPE};

use super::exchange::ExchangeRequest;
use crate::domain::client_auth::Authenticated;
use crate::domain::mint::TokenType;
use crate::domain::model::ACCESS_TOKEN_TYPE;
use crate::domain::{OAuthCore, TokenResponse};
use crate::storage::RevocationStore;

const REFRESH_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:refresh_token";

/// What the subject token establishes: who the transaction is for, what it
/// may be for, until when, and (for a replacement) what it carries on.
struct TxnSubject {
    sub: String,
    granted: Scope,
    expires_at: i64,
    /// A replacement's transaction, details and requesters so far.
    carried: Option<TxnTokenClaims>,
}

impl<S: RevocationStore> OAuthCore<S> {
    /// Policy:
    /// - only a confidential client registered for token exchange with the
    ///   trust domain among its audiences: the trust domain's workloads, not
    ///   any client ("A TTS should be selective");
    /// - `audience` is the trust domain and `scope` is given and within what
    ///   the subject token grants (the draft's MUST) and what the workload is
    ///   registered for;
    /// - the subject token is a user's own access token presented to this
    ///   workload (its `aud` names it; no `act`; not a client's own), valid
    ///   and not revoked; or a Txn-Token of this trust
    ///   domain, not expired, for a replacement. Never a refresh token.
    /// - the Txn-Token lives [`crate::config::DEFAULT_TXN_TOKEN_TTL`] (or
    ///   `AUTH_TXN_TOKEN_TTL`), never past its subject token.
    pub(in crate::domain) async fn txn_token_grant(
        &self,
        client: &Authenticated,
        request: ExchangeRequest,
    ) -> Result<TokenResponse, OAuthError> {
        if client.is_public() {
            return Err(OAuthError::unauthorized_client(
                "a public client cannot obtain Txn-Tokens",
            ));
        }
        if request.actor_token.is_some() {
            return Err(OAuthError::invalid_request("actor_token is not supported"));
        }
        let domain = &self.settings.txn_trust_domain;
        if request.resource.is_some() {
            return Err(OAuthError::invalid_request(
                "a Txn-Token names its trust domain in audience, not resource",
            ));
        }
        match request.audience.as_deref() {
            None => return Err(OAuthError::invalid_request("audience is required")),
            Some(audience) if audience != domain => {
                return Err(OAuthError::invalid_target(
                    "audience must be this server's trust domain",
                ));
            }
            Some(_) => {}
        }
        if !client.exchange_audiences.contains(domain) {
            return Err(OAuthError::unauthorized_client("this client may not obtain Txn-Tokens"));
        }
        let asked = match request.scope.as_deref() {
            None => return Err(OAuthError::invalid_request("scope is required")),
            Some(raw) => Scope::parse(raw).map_err(|e| OAuthError::invalid_scope(e.to_string()))?,
        };
        if asked.is_empty() {
            return Err(OAuthError::invalid_request("scope is required"));
        }

        let now = self.clock.now();
        let subject = match request.subject_token_type.as_str() {
            ACCESS_TOKEN_TYPE => self.access_token_subject(client, &request, now).await?,
            TXN_TOKEN_TYPE => self.txn_token_subject(&request, now)?,
            REFRESH_TOKEN_TYPE => {
                return Err(OAuthError::invalid_request(
                    "a refresh token cannot be exchanged for a Txn-Token",
                ));
            }
            _ => {
                return Err(OAuthError::invalid_request(format!(
                    "subject_token_type must be {ACCESS_TOKEN_TYPE} or {TXN_TOKEN_TYPE}"
                )));
            }
        };
        // The draft: "equal or less than the scope(s) associated with the
        // original subject_token"; and, as for any exchange here, no more than
        // the workload is registered for.
        if !asked.is_subset(&subject.granted) {
            return Err(OAuthError::invalid_scope("scope exceeds what the subject_token grants"));
        }
        if !asked.is_subset(&client.scope) {
            return Err(OAuthError::invalid_scope(
                "scope exceeds what this client is registered for",
            ));
        }

        let (txn, tctx, mut rctx, mut requesters) = match subject.carried {
            // A replacement keeps the transaction and what was asserted about
            // it; it adds only this requester to the chain.
            Some(carried) => {
                if request.request_context.is_some() || request.request_details.is_some() {
                    return Err(OAuthError::invalid_request(
                        "a replacement Txn-Token keeps the transaction's context and details",
                    ));
                }
                let requesters = carried.requesters();
                (carried.txn, carried.tctx, carried.rctx.unwrap_or_default(), requesters)
            }
            None => (
                new_transaction_id(),
                json_object("request_details", request.request_details.as_deref())?,
                json_object("request_context", request.request_context.as_deref())?
                    .unwrap_or_default(),
                Vec::new(),
            ),
        };
        requesters.push(client.client_id.clone());
        // This server is authoritative for `rctx`: whatever the request said,
        // the chain of requesters is its own.
        rctx.insert(REQUESTER_CHAIN.into(), Value::from(requesters));

        let expires_at =
            now.saturating_add(self.settings.txn_token_ttl_secs).min(subject.expires_at);
        let claims = TxnTokenClaims {
            iss: Some(self.settings.issuer.clone()),
            iat: now,
            aud: domain.clone(),
            exp: expires_at,
            txn,
            sub: subject.sub,
            scope: asked.to_string(),
            tctx,
            rctx: Some(rctx),
            req_wl: client.client_id.clone(),
        };
        let token = self.signer.sign_txn_token(&claims, now).map_err(|err| {
            tracing::error!(error = %err, "signing failed");
            OAuthError::ServerError
        })?;
        audit::record(
            Event::TxnTokenIssued,
            Subject {
                subject: Some(&claims.sub),
                client_id: Some(&client.client_id),
                scope: Some(&claims.scope),
                txn: Some(&claims.txn),
                ..Subject::default()
            },
        );
        Ok(TokenResponse {
            access_token: tollgate_token::Secret::new(token),
            expires_in: expires_at - now,
            // The draft: "MUST NOT include the refresh_token value".
            refresh_token: None,
            scope: asked,
            issued_token_type: Some(TXN_TOKEN_TYPE),
            token_type: TokenType::NotApplicable,
            subject: claims.sub,
            grant_id: None,
        })
    }

    /// An access token this server issued to `client` (its `aud` names the
    /// client: it was presented to that workload), still valid, not revoked.
    async fn access_token_subject(
        &self,
        client: &Authenticated,
        request: &ExchangeRequest,
        now: i64,
    ) -> Result<TxnSubject, OAuthError> {
        let token = self.presented_subject_token(client, &request.subject_token, now).await?;
        // A transaction starts from a user's own token at the edge. Not from
        // one a service obtained for the user (it would drop that service
        // from the chain), and not from a client's own (RFC 9068 §2.2: it
        // acts for nobody, and a workload receives its callers' on every call).
        if token.act.is_some() {
            return Err(OAuthError::invalid_request(
                "subject_token was obtained by token exchange: a transaction starts from the \
                 user's own token",
            ));
        }
        if token.sub == token.client_id {
            return Err(OAuthError::invalid_request(
                "subject_token is a client's own token: it acts for no user",
            ));
        }
        // The draft: a scope that cannot be determined is refused, never
        // taken as unconstrained. An access token without one grants nothing.
        let granted = Scope::parse(token.scope.as_deref().unwrap_or(""))
            .map_err(|_| OAuthError::invalid_request("subject_token has a malformed scope"))?;
        Ok(TxnSubject { sub: token.sub, granted, expires_at: token.exp, carried: None })
    }

    /// A Txn-Token of this trust domain, signed by this server, not expired
    /// (no leeway: "MUST NOT issue a new Txn-Token when the Txn-Token being
    /// replaced has expired").
    fn txn_token_subject(
        &self,
        request: &ExchangeRequest,
        now: i64,
    ) -> Result<TxnSubject, OAuthError> {
        let keys = self.signer.verification_keys(now);
        let mut policy = TxnTokenPolicy::new(
            self.settings.txn_trust_domain.clone(),
            self.settings.issuer.clone(),
        );
        policy.leeway_secs = 0;
        let carried = verify_txn_token(&keys, request.subject_token.expose(), &policy, now)
            .map_err(|_| OAuthError::invalid_request("subject_token is invalid or expired"))?;
        let granted = Scope::parse(&carried.scope)
            .map_err(|_| OAuthError::invalid_request("subject_token has a malformed scope"))?;
        Ok(TxnSubject {
            sub: carried.sub.clone(),
            granted,
            expires_at: carried.exp,
            carried: Some(carried),
        })
    }
}

/// `raw`, if given, as a JSON object of at most [`MAX_CONTEXT_BYTES`].
fn json_object(name: &str, raw: Option<&str>) -> Result<Option<Map<String, Value>>, OAuthError> {
    let Some(raw) = raw else { return Ok(None) };
    if raw.len() > MAX_CONTEXT_BYTES {
        return Err(OAuthError::invalid_request(format!(
            "{name} is larger than {MAX_CONTEXT_BYTES} bytes"
        )));
    }
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(object)) => Ok(Some(object)),
        _ => Err(OAuthError::invalid_request(format!("{name} must be a JSON object"))),
    }
}

/// A new transaction identifier: a random (version 4) UUID, the form RFC 8417
/// §2.2's `txn` examples take; 122 random bits make it unique in the trust
/// domain.
fn new_transaction_id() -> String {
    let mut bytes = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

#[cfg(test)]
mod tests {
    use tollgate_token::txn::{TXN_TOKEN_JWT_TYPE, TxnTokenPolicy, verify_txn_token};
    use tollgate_token::{Clock as _, Secret};

    use super::*;
    use crate::domain::Grant;
    use crate::domain::grants::testing::{Fixture, SUBJECT, auth};
    use crate::domain::model::GrantType::TokenExchange;
    use crate::storage::ClientStore as _;

    const RS: &str = "tollgate-resource";
    const NOTES: &str = "tollgate-notes-store";
    const DOMAIN: &str = "tollgate.internal";

    /// A user's token for the resource server; the resource server and the
    /// notes store registered as the trust domain's workloads.
    async fn users_token(fx: &Fixture) -> Secret {
        for workload in [RS, NOTES] {
            let mut client = fx.client(workload, Some("s3cret"), &[TokenExchange]).await;
            client.exchange_audiences.push(DOMAIN.into());
            fx.core.store().upsert_client(&client, fx.clock.now()).await.expect("registered");
        }
        fx.users_token_for(RS).await
    }

    fn request(subject: &Secret, subject_type: &str, scope: Option<&str>) -> ExchangeRequest {
        ExchangeRequest {
            subject_token: subject.clone(),
            subject_token_type: subject_type.into(),
            audience: Some(DOMAIN.into()),
            resource: None,
            scope: scope.map(str::to_owned),
            requested_token_type: Some(TXN_TOKEN_TYPE.into()),
            actor_token: None,
            request_context: None,
            request_details: None,
        }
    }

    async fn issue(
        fx: &Fixture,
        workload: &str,
        request: ExchangeRequest,
    ) -> Result<TokenResponse, (&'static str, String)> {
        fx.core
            .token(&auth(workload, Some("s3cret")), Grant::TokenExchange(request))
            .await
            .map_err(|e| (e.code(), e.description().to_owned()))
    }

    fn verified(fx: &Fixture, token: &Secret) -> TxnTokenClaims {
        let keys = fx.core.signer().verification_keys(fx.clock.now());
        let policy = TxnTokenPolicy::new(DOMAIN, fx.core.settings().issuer.clone());
        verify_txn_token(&keys, token.expose(), &policy, fx.clock.now()).expect("a Txn-Token")
    }

    #[tokio::test]
    async fn a_workload_gets_a_short_lived_txn_token_for_the_users_transaction() {
        let fx = Fixture::new().await;
        let user = users_token(&fx).await;
        let mut asked = request(&user, ACCESS_TOKEN_TYPE, Some("notes:write"));
        asked.request_context = Some(r#"{"req_ip":"192.0.2.7","req_wl_chain":["forged"]}"#.into());
        asked.request_details = Some(r#"{"method":"CreateNote"}"#.into());
        let issued = issue(&fx, RS, asked).await.expect("issued");
        assert_eq!(issued.token_type, TokenType::NotApplicable);
        assert_eq!(issued.issued_token_type, Some(TXN_TOKEN_TYPE));
        assert_eq!(issued.refresh_token, None);
        assert_eq!(issued.expires_in, 60);
        let header = jsonwebtoken::decode_header(issued.access_token.expose()).expect("header");
        assert_eq!(header.typ.as_deref(), Some(TXN_TOKEN_JWT_TYPE));
        let claims = verified(&fx, &issued.access_token);
        assert_eq!((claims.sub.as_str(), claims.aud.as_str()), (SUBJECT, DOMAIN));
        assert_eq!((claims.scope.as_str(), claims.req_wl.as_str()), ("notes:write", RS));
        assert_eq!(claims.exp - claims.iat, 60);
        assert_eq!(claims.txn.len(), 36, "a UUID: {}", claims.txn);
        assert_eq!(
            claims.tctx,
            Some(serde_json::json!({"method": "CreateNote"}).as_object().unwrap().clone())
        );
        // The request's context is kept, but the chain of requesters is the
        // server's own.
        let rctx = claims.rctx.clone().expect("rctx");
        assert_eq!(rctx["req_ip"], "192.0.2.7");
        assert_eq!(claims.requesters(), vec![RS.to_owned()]);
        // Each transaction is its own.
        let again = issue(&fx, RS, request(&user, ACCESS_TOKEN_TYPE, Some("notes:read"))).await;
        assert_ne!(verified(&fx, &again.expect("issued").access_token).txn, claims.txn);
    }

    #[tokio::test]
    async fn a_replacement_keeps_txn_sub_and_aud_and_never_widens_or_extends() {
        let fx = Fixture::new().await;
        let user = users_token(&fx).await;
        let first =
            issue(&fx, RS, request(&user, ACCESS_TOKEN_TYPE, Some("notes:read notes:write")))
                .await
                .expect("issued")
                .access_token;
        let original = verified(&fx, &first);
        fx.advance(20);
        let replaced = issue(&fx, NOTES, request(&first, TXN_TOKEN_TYPE, Some("notes:write")))
            .await
            .expect("replaced")
            .access_token;
        let replacement = verified(&fx, &replaced);
        assert_eq!(
            (&replacement.txn, &replacement.sub, &replacement.aud),
            (&original.txn, &original.sub, &original.aud)
        );
        assert_eq!(replacement.scope, "notes:write");
        assert_eq!(replacement.exp, original.exp, "no longer than the token it replaces");
        assert_eq!(replacement.req_wl, NOTES);
        assert_eq!(replacement.requesters(), vec![RS.to_owned(), NOTES.to_owned()]);
        assert_eq!(
            issue(&fx, NOTES, request(&replaced, TXN_TOKEN_TYPE, Some("notes:read"))).await.err(),
            Some(("invalid_scope", "scope exceeds what the subject_token grants".into()))
        );
        let mut with_details = request(&first, TXN_TOKEN_TYPE, Some("notes:read"));
        with_details.request_details = Some(r#"{"amount":"1000000"}"#.into());
        assert_eq!(
            issue(&fx, NOTES, with_details).await.err(),
            Some((
                "invalid_request",
                "a replacement Txn-Token keeps the transaction's context and details".into()
            ))
        );
        fx.advance(40);
        assert_eq!(
            issue(&fx, NOTES, request(&first, TXN_TOKEN_TYPE, Some("notes:read"))).await.err(),
            Some(("invalid_request", "subject_token is invalid or expired".into())),
            "an expired Txn-Token is never replaced"
        );
    }

    #[tokio::test]
    async fn only_the_trust_domains_workloads_for_its_domain_within_the_subjects_scope() {
        let fx = Fixture::new().await;
        let user = users_token(&fx).await;
        let mut elsewhere = request(&user, ACCESS_TOKEN_TYPE, Some("notes:read"));
        elsewhere.audience = Some("other.example".into());
        assert_eq!(
            issue(&fx, RS, elsewhere).await.err(),
            Some(("invalid_target", "audience must be this server's trust domain".into()))
        );
        assert_eq!(
            issue(&fx, RS, request(&user, ACCESS_TOKEN_TYPE, None)).await.err(),
            Some(("invalid_request", "scope is required".into()))
        );
        assert_eq!(
            issue(&fx, RS, request(&user, ACCESS_TOKEN_TYPE, Some("notes:read admin"))).await.err(),
            Some(("invalid_scope", "scope exceeds what the subject_token grants".into()))
        );
        // Registered for exchange, but not with the trust domain.
        fx.client("plain-exchanger", Some("s3cret"), &[TokenExchange]).await;
        assert_eq!(
            issue(&fx, "plain-exchanger", request(&user, ACCESS_TOKEN_TYPE, Some("notes:read")))
                .await
                .err(),
            Some(("unauthorized_client", "this client may not obtain Txn-Tokens".into()))
        );
        // The user's token was presented to the resource server, not the
        // notes store: only the workload it was issued to turns it into a
        // transaction.
        assert_eq!(
            issue(&fx, NOTES, request(&user, ACCESS_TOKEN_TYPE, Some("notes:read"))).await.err(),
            Some(("invalid_request", "subject_token was not issued for this client".into()))
        );
        assert_eq!(
            issue(&fx, RS, request(&Secret::new("opaque"), REFRESH_TOKEN_TYPE, Some("notes:read")))
                .await
                .err(),
            Some(("invalid_request", "a refresh token cannot be exchanged for a Txn-Token".into()))
        );
        // A token a service obtained for the user, or a client's own.
        let exchanged = fx
            .core
            .token(
                &auth(RS, Some("s3cret")),
                Grant::TokenExchange(ExchangeRequest {
                    requested_token_type: None,
                    audience: Some(NOTES.into()),
                    ..request(&user, ACCESS_TOKEN_TYPE, Some("notes:read"))
                }),
            )
            .await
            .expect("exchanged")
            .access_token;
        assert_eq!(
            issue(&fx, NOTES, request(&exchanged, ACCESS_TOKEN_TYPE, Some("notes:read"))).await.err(),
            Some((
                "invalid_request",
                "subject_token was obtained by token exchange: a transaction starts from the user's own token"
                    .into()
            ))
        );
        let mut rs = fx
            .client(
                RS,
                Some("s3cret"),
                &[TokenExchange, crate::domain::model::GrantType::ClientCredentials],
            )
            .await;
        rs.exchange_audiences.push(DOMAIN.into());
        fx.core.store().upsert_client(&rs, fx.clock.now()).await.expect("registered");
        // Its own token: `aud` tollgate-resource (its registered audience), so
        // presented to itself.
        let own = fx
            .core
            .token(
                &auth(RS, Some("s3cret")),
                Grant::ClientCredentials { scope: None, resource: None },
            )
            .await
            .expect("its own token")
            .access_token;
        assert_eq!(
            issue(&fx, RS, request(&own, ACCESS_TOKEN_TYPE, Some("notes:read"))).await.err(),
            Some((
                "invalid_request",
                "subject_token is a client's own token: it acts for no user".into()
            ))
        );
        let mut bad_context = request(&user, ACCESS_TOKEN_TYPE, Some("notes:read"));
        bad_context.request_context = Some("[1,2]".into());
        assert_eq!(
            issue(&fx, RS, bad_context).await.err(),
            Some(("invalid_request", "request_context must be a JSON object".into()))
        );
        let mut huge = request(&user, ACCESS_TOKEN_TYPE, Some("notes:read"));
        huge.request_details = Some(format!(r#"{{"x":"{}"}}"#, "a".repeat(MAX_CONTEXT_BYTES)));
        assert_eq!(
            issue(&fx, RS, huge).await.err(),
            Some(("invalid_request", "request_details is larger than 1024 bytes".into()))
        );
    }

    #[tokio::test]
    async fn a_txn_token_never_outlives_the_access_token_it_came_from() {
        let fx = Fixture::new().await;
        let user = users_token(&fx).await; // lives 300 s
        fx.advance(280);
        let issued = issue(&fx, RS, request(&user, ACCESS_TOKEN_TYPE, Some("notes:read")))
            .await
            .expect("issued");
        assert_eq!(issued.expires_in, 20);
        let jti = {
            let keys = fx.core.signer().verification_keys(fx.clock.now());
            fx.core
                .own_tokens
                .verify_any_audience(&keys, user.expose(), fx.clock.now())
                .expect("ours")
                .jti
        };
        fx.core
            .store()
            .revoke_access_token(&jti, fx.clock.now() + 300, fx.clock.now())
            .await
            .expect("revoked");
        assert_eq!(
            issue(&fx, RS, request(&user, ACCESS_TOKEN_TYPE, Some("notes:read"))).await.err(),
            Some(("invalid_request", "subject_token is revoked".into()))
        );
    }

    #[test]
    fn transaction_ids_are_version_4_uuids() {
        let id = new_transaction_id();
        assert_eq!(id.len(), 36);
        assert_eq!(id.as_bytes()[14], b'4');
        assert!(matches!(id.as_bytes()[19], b'8' | b'9' | b'a' | b'b'));
        assert_ne!(id, new_transaction_id());
    }
}
