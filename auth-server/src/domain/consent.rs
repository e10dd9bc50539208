//! Remembered consent: a resource owner who approved a confidential client's
//! scopes is not asked again for those scopes; they can list their approvals
//! (from the pages and from the device flow) and withdraw one, which also
//! revokes every token the client holds for them.

use tollgate_telemetry::audit::{self, Event, Subject};
use tollgate_token::{OAuthError, Scope};

use super::{AuthorizationRequest, OAuthCore, storage_failure};
use crate::storage::ConsentStore;

/// One approval, as the owner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub client_id: String,
    pub client_name: String,
    pub scope: Scope,
    pub granted_at: i64,
}

/// The audit event of an approval, from the consent page or the device page.
pub(in crate::domain) fn consent_granted(subject: &str, client_id: &str, scope: &Scope) {
    audit::record(
        Event::ConsentGranted,
        Subject {
            subject: Some(subject),
            client_id: Some(client_id),
            scope: Some(&scope.to_string()),
            ..Subject::default()
        },
    );
}

impl<S: ConsentStore> OAuthCore<S> {
    /// Whether the consent page may be skipped: `subject` already approved
    /// everything `request` asks for, the client is confidential, and the
    /// redirect URI is one it registered, byte for byte.
    ///
    /// A public client is never answered without the page (RFC 6749 §10.2: the
    /// server cannot tell the real client from anyone using its id; RFC 8252
    /// §8.6): its loopback redirect accepts any port, so without the page any
    /// local process could open the authorization URL in the owner's browser
    /// and receive a code on a port of its own. The same holds for a
    /// confidential client's port-less loopback URI: its secret keeps such a
    /// code useless to the process, but the owner still sees the page.
    pub async fn may_skip_consent(
        &self,
        subject: &str,
        request: &AuthorizationRequest,
    ) -> Result<bool, OAuthError> {
        let registered = request.client.redirect_uris.contains(&request.redirect_uri);
        if request.client.is_public() || !registered {
            return Ok(false);
        }
        let approved = self
            .store
            .consent(subject, &request.client.client_id)
            .await
            .map_err(storage_failure)?;
        Ok(approved.is_some_and(|approved| request.scope.is_subset(&approved)))
    }

    /// Adds what `subject` just approved to what they approved before.
    pub async fn remember_consent(
        &self,
        subject: &str,
        request: &AuthorizationRequest,
    ) -> Result<(), OAuthError> {
        let client_id = &request.client.client_id;
        self.store
            .add_consent(subject, client_id, &request.scope, self.clock.now())
            .await
            .map_err(storage_failure)?;
        consent_granted(subject, client_id, &request.scope);
        Ok(())
    }

    /// The owner refused: nothing is stored (RFC 6749 §4.1.2.1 `access_denied`
    /// goes back to the client), the refusal is in the audit trail.
    pub fn consent_denied(&self, subject: &str, request: &AuthorizationRequest) {
        audit::record(
            Event::ConsentDenied,
            Subject {
                subject: Some(subject),
                client_id: Some(&request.client.client_id),
                scope: Some(&request.scope.to_string()),
                ..Subject::default()
            },
        );
    }

    pub async fn approvals(&self, subject: &str) -> Result<Vec<Approval>, OAuthError> {
        let rows = self.store.consents_of(subject).await.map_err(storage_failure)?;
        Ok(rows
            .into_iter()
            .map(|(client_id, client_name, scope, granted_at)| Approval {
                client_id,
                client_name,
                scope,
                granted_at,
            })
            .collect())
    }

    /// Withdraws an approval and revokes the client's grants for `subject`.
    pub async fn withdraw_consent(
        &self,
        subject: &str,
        client_id: &str,
    ) -> Result<bool, OAuthError> {
        let withdrawn = self
            .store
            .withdraw_consent(subject, client_id, self.clock.now())
            .await
            .map_err(storage_failure)?;
        if withdrawn {
            audit::record(
                Event::ConsentWithdrawn,
                Subject {
                    subject: Some(subject),
                    client_id: Some(client_id),
                    reason: Some(
                        "the owner withdrew the approval; the client's grants are revoked",
                    ),
                    ..Subject::default()
                },
            );
        }
        Ok(withdrawn)
    }
}
