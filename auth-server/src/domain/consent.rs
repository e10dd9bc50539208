//! Remembered consent: a resource owner who approved a client's scopes is not
//! asked again for those scopes; they can list their approvals and withdraw one,
//! which also revokes every token the client holds for them.

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

impl<S: ConsentStore> OAuthCore<S> {
    /// Whether `subject` already approved everything `request` asks for.
    pub async fn has_consented(
        &self,
        subject: &str,
        request: &AuthorizationRequest,
    ) -> Result<bool, OAuthError> {
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
        let before = self.store.consent(subject, client_id).await.map_err(storage_failure)?;
        let scope = match before {
            Some(before) => Scope::from_tokens(before.iter().chain(request.scope.iter())),
            None => request.scope.clone(),
        };
        self.store
            .save_consent(subject, client_id, &scope, self.clock.now())
            .await
            .map_err(storage_failure)?;
        audit::record(
            Event::ConsentGranted,
            Subject {
                subject: Some(subject),
                client_id: Some(client_id),
                scope: Some(&request.scope.to_string()),
                ..Subject::default()
            },
        );
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
