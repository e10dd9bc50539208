//! The audit trail: one structured event per security decision, under the
//! `audit` target, so an operator can filter them out of the logs (JSON:
//! `"target":"audit"`) and answer "what happened to this user's grant?" by
//! subject, client and grant id. They are also span events of the OAuth step
//! they happened in, so a trace shows them too.
//!
//! Identifiers only: subject, username, client id, grant id, scope, reason.
//! Never a token, code, secret, password or cookie.

/// What happened. The names are stable: dashboards and alerts key on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    LoginSucceeded,
    LoginFailed,
    ConsentGranted,
    ConsentDenied,
    ConsentWithdrawn,
    TokenIssued,
    TokenRevoked,
    GrantRevoked,
    RefreshReuseDetected,
    CodeReplayDetected,
    /// The authorization server issued a Transaction Token.
    TxnTokenIssued,
    /// A workload admitted a call on a Transaction Token.
    TxnTokenAccepted,
}

impl Event {
    pub fn name(self) -> &'static str {
        match self {
            Self::LoginSucceeded => "login.succeeded",
            Self::LoginFailed => "login.failed",
            Self::ConsentGranted => "consent.granted",
            Self::ConsentDenied => "consent.denied",
            Self::ConsentWithdrawn => "consent.withdrawn",
            Self::TokenIssued => "token.issued",
            Self::TokenRevoked => "token.revoked",
            Self::GrantRevoked => "grant.revoked",
            Self::RefreshReuseDetected => "refresh_token.reuse_detected",
            Self::CodeReplayDetected => "authorization_code.replay_detected",
            Self::TxnTokenIssued => "txn_token.issued",
            Self::TxnTokenAccepted => "txn_token.accepted",
        }
    }
}

/// Who and what an audit event is about; empty fields are left out.
#[derive(Debug, Clone, Copy, Default)]
pub struct Subject<'a> {
    /// The resource owner's `sub` (or a client's own id for its own tokens).
    pub subject: Option<&'a str>,
    /// The name typed at a failed sign-in (there is no subject yet).
    pub username: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub grant_id: Option<&'a str>,
    pub grant_type: Option<&'a str>,
    pub scope: Option<&'a str>,
    /// Why, for refusals and revocations.
    pub reason: Option<&'a str>,
    /// The transaction (a Txn-Token's `txn`): the same in every service the
    /// call chain crossed, so one search finds them all.
    pub txn: Option<&'a str>,
}

/// Emits one audit event. Security alarms (reuse, replay) are warnings; the
/// rest are information.
pub fn record(event: Event, about: Subject<'_>) {
    let Subject { subject, username, client_id, grant_id, grant_type, scope, reason, txn } = about;
    match event {
        Event::RefreshReuseDetected | Event::CodeReplayDetected => tracing::warn!(
            target: "audit",
            event = event.name(),
            subject, username, client_id, grant_id, grant_type, scope, reason, txn,
            "{}", event.name()
        ),
        _ => tracing::info!(
            target: "audit",
            event = event.name(),
            subject, username, client_id, grant_id, grant_type, scope, reason, txn,
            "{}", event.name()
        ),
    }
}
