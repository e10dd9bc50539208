//! The handlers. The auth layer has checked the calling workload's token and
//! the Txn-Token (trust domain, lifetime, requesters, the calling workload)
//! and the method's scope against the transaction's; here the rule is that
//! every call is part of a transaction.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tollgate_proto::ledger::v1::ledger_server::{Ledger, LedgerServer};
use tollgate_proto::ledger::v1::{Entry, ListEntriesRequest, ListEntriesResponse, RecordRequest};
use tollgate_service_kit::auth::{self, AuthContext, Transaction};
use tollgate_service_kit::input::{check_len, required};
use tollgate_service_kit::limits::{GrpcLimits, MAX_RESPONSE_BYTES};
use tollgate_service_kit::scaffold::{ProtectedService, ServiceSpec};
use tollgate_service_kit::serve::ProtectedRouter;
use tollgate_service_kit::status::to_status;
use tollgate_token::{Clock, OAuthError};
use tonic::{Request, Response, Status};

use crate::Config;

/// Which scope of the transaction each method needs: `(gRPC path, scope)`.
pub const METHOD_SCOPES: &[(&str, &str)] = &[
    ("/tollgate.ledger.v1.Ledger/Record", "notes:write"),
    ("/tollgate.ledger.v1.Ledger/ListEntries", "notes:read"),
];

/// The most entries kept: past it the oldest goes. The record lives in memory
/// (a demonstration of the call chain, not a system of record), and this
/// bound is all it can grow to, whoever calls.
pub const MAX_ENTRIES: usize = 10_000;
/// The most entries one `ListEntries` answer carries (the newest).
pub const MAX_LISTED: usize = 100;
const MAX_ACTION: usize = 16;
const MAX_NOTE_ID: usize = 64;

pub const SPEC: ServiceSpec = ServiceSpec {
    name: "ledger",
    audience: "tollgate-ledger",
    grpc_addr: "127.0.0.1:50054",
    data_dir: "data/ledger",
    // Unused: the record is in memory.
    database_file: "ledger.db",
    method_scopes: METHOD_SCOPES,
};

/// The ledger has no settings of its own: who may call it with which
/// Txn-Tokens is the auth layer's (`OAUTH_TXN_CALLERS`, `OAUTH_TXN_REQUESTERS`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Settings {}

#[derive(Debug, Clone)]
pub struct Api {
    entries: Arc<Mutex<VecDeque<Entry>>>,
    clock: Arc<dyn Clock>,
}

impl ProtectedService for Api {
    const SPEC: ServiceSpec = SPEC;
    type Settings = Settings;

    async fn build(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        anyhow::ensure!(
            config.tokens.txn_trust_domain.is_some(),
            "the ledger is reached only with Txn-Tokens: set OAUTH_TXN_TRUST_DOMAIN, \
             OAUTH_TXN_REQUESTERS and OAUTH_TXN_CALLERS"
        );
        // Its callers authenticate with access tokens: it must learn which
        // are revoked (the denylist needs its own credentials).
        anyhow::ensure!(
            config.tokens.credentials().is_some(),
            "the ledger needs OAUTH_CLIENT_ID (and its secret or certificate) for the \
             revocation denylist"
        );
        tracing::info!(callers = ?config.tokens.txn_callers, "workloads that may record");
        Ok(Self { entries: Arc::new(Mutex::new(VecDeque::new())), clock })
    }

    fn routes(self, router: ProtectedRouter, limits: &GrpcLimits) -> ProtectedRouter {
        router.add_service(
            LedgerServer::new(self)
                .max_decoding_message_size(limits.max_message_bytes)
                .max_encoding_message_size(MAX_RESPONSE_BYTES),
        )
    }
}

impl Api {
    /// The caller and its transaction: only a call carrying a Txn-Token (the
    /// auth layer admitted it from one of `OAUTH_TXN_CALLERS`).
    fn in_transaction<'a, T>(
        &self,
        request: &'a Request<T>,
    ) -> Result<(&'a AuthContext, &'a Transaction), Status> {
        let caller = auth::caller(request)?;
        let Some(transaction) = &caller.transaction else {
            return Err(to_status(&OAuthError::AccessDenied(
                "the ledger is reached only within a transaction (a Txn-Token)".into(),
            )));
        };
        Ok((caller, transaction))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Entry>> {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[tonic::async_trait]
impl Ledger for Api {
    async fn record(&self, request: Request<RecordRequest>) -> Result<Response<Entry>, Status> {
        let (caller, transaction) = self.in_transaction(&request)?;
        let RecordRequest { action, note_id } = request.get_ref();
        required("action", action)?;
        check_len("action", action, MAX_ACTION)?;
        check_len("note_id", note_id, MAX_NOTE_ID)?;
        let entry = Entry {
            subject: caller.subject.clone(),
            action: action.clone(),
            note_id: note_id.clone(),
            txn: transaction.txn.clone(),
            scope: caller.scopes.join(" "),
            requesters: transaction.requesters.clone(),
            recorded_by: caller.client_id.clone(),
            recorded_at: self.clock.now(),
        };
        tracing::info!(txn = %entry.txn, subject = %entry.subject, action = %entry.action, "recorded");
        keep(&mut self.lock(), entry.clone(), MAX_ENTRIES);
        Ok(Response::new(entry))
    }

    async fn list_entries(
        &self,
        request: Request<ListEntriesRequest>,
    ) -> Result<Response<ListEntriesResponse>, Status> {
        let (caller, _) = self.in_transaction(&request)?;
        let entries = newest_of(&self.lock(), &caller.subject, MAX_LISTED);
        Ok(Response::new(ListEntriesResponse { entries }))
    }
}

/// Adds `entry`, dropping the oldest first if `entries` holds `max` already.
fn keep(entries: &mut VecDeque<Entry>, entry: Entry, max: usize) {
    while entries.len() >= max.max(1) {
        entries.pop_front();
    }
    entries.push_back(entry);
}

/// `subject`'s newest `max` entries, oldest first.
fn newest_of(entries: &VecDeque<Entry>, subject: &str, max: usize) -> Vec<Entry> {
    let mut mine: Vec<Entry> =
        entries.iter().rev().filter(|e| e.subject == subject).take(max).cloned().collect();
    mine.reverse();
    mine
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(subject: &str, n: usize) -> Entry {
        Entry { subject: subject.into(), note_id: n.to_string(), ..Entry::default() }
    }

    /// The record never holds more than its bound, whoever writes; the
    /// oldest goes first.
    #[test]
    fn the_record_is_bounded_and_drops_the_oldest() {
        let mut entries = VecDeque::new();
        for n in 0..MAX_ENTRIES + 5 {
            keep(&mut entries, entry("alice", n), MAX_ENTRIES);
        }
        assert_eq!(entries.len(), MAX_ENTRIES);
        assert_eq!(entries.front().map(|e| e.note_id.as_str()), Some("5"));
        let listed = newest_of(&entries, "alice", MAX_LISTED);
        assert_eq!(listed.len(), MAX_LISTED);
        assert_eq!(listed.last().map(|e| e.note_id.clone()), Some((MAX_ENTRIES + 4).to_string()));
        assert_eq!(
            listed.first().map(|e| e.note_id.clone()),
            Some((MAX_ENTRIES + 5 - MAX_LISTED).to_string())
        );
        keep(&mut entries, entry("bob", 0), MAX_ENTRIES);
        assert_eq!(newest_of(&entries, "bob", MAX_LISTED).len(), 1, "only the subject's own");
    }

    /// Every argument has its own name and the defaults parse.
    #[test]
    fn the_command_line_is_well_formed_and_parses() {
        tollgate_service_kit::testing::parse_command_line::<super::Api>(&["ledger"]);
    }

    /// The table matches the proto: every RPC has a line, none is stale.
    #[test]
    fn the_scope_table_matches_the_contract() {
        tollgate_service_kit::testing::assert_scope_table(
            "tollgate.ledger.v1",
            super::METHOD_SCOPES,
        );
    }
}
