//! The handlers. The auth layer has checked the calling workload's token and
//! the Txn-Token (trust domain, lifetime, requesters) and the method's scope
//! against the transaction's; here the rule is that every call is part of a
//! transaction, made by a workload this ledger trusts.

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

/// The workload trusted by default to record here.
pub const DEFAULT_TRUSTED_CALLER: &str = "tollgate-notes-store";

/// The ledger's own settings.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// A workload (client id) allowed to call the ledger within a transaction.
    #[arg(long = "trusted-caller", env = "LEDGER_TRUSTED_CALLERS", value_delimiter = ',', default_value = DEFAULT_TRUSTED_CALLER)]
    pub trusted_callers: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self { trusted_callers: vec![DEFAULT_TRUSTED_CALLER.into()] }
    }
}

#[derive(Debug, Clone)]
pub struct Api {
    entries: Arc<Mutex<VecDeque<Entry>>>,
    clock: Arc<dyn Clock>,
    trusted_callers: Arc<Vec<String>>,
}

impl ProtectedService for Api {
    const SPEC: ServiceSpec = SPEC;
    type Settings = Settings;

    async fn build(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        anyhow::ensure!(
            config.tokens.txn_trust_domain.is_some(),
            "the ledger is reached only with Txn-Tokens: set OAUTH_TXN_TRUST_DOMAIN and \
             OAUTH_TXN_REQUESTERS"
        );
        let trusted_callers = config.settings.trusted_callers.clone();
        tracing::info!(?trusted_callers, "workloads trusted to record");
        Ok(Self {
            entries: Arc::new(Mutex::new(VecDeque::new())),
            clock,
            trusted_callers: Arc::new(trusted_callers),
        })
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
    /// The caller and its transaction: only a call carrying a Txn-Token, from
    /// a workload this ledger trusts.
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
        if !self.trusted_callers.iter().any(|trusted| *trusted == caller.client_id) {
            tracing::warn!(client_id = %caller.client_id, txn = %transaction.txn, "untrusted workload refused");
            return Err(to_status(&OAuthError::AccessDenied(
                "the ledger does not trust the calling workload".into(),
            )));
        }
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
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.pop_front();
        }
        entries.push_back(entry.clone());
        Ok(Response::new(entry))
    }

    async fn list_entries(
        &self,
        request: Request<ListEntriesRequest>,
    ) -> Result<Response<ListEntriesResponse>, Status> {
        let (caller, _) = self.in_transaction(&request)?;
        let entries = self.lock();
        let mut mine: Vec<Entry> = entries
            .iter()
            .rev()
            .filter(|e| e.subject == caller.subject)
            .take(MAX_LISTED)
            .cloned()
            .collect();
        mine.reverse();
        Ok(Response::new(ListEntriesResponse { entries: mine }))
    }
}

#[cfg(test)]
mod tests {
    /// The table matches the proto: every RPC has a line, none is stale.
    #[test]
    fn the_scope_table_matches_the_contract() {
        tollgate_service_kit::testing::assert_scope_table(
            "tollgate.ledger.v1",
            super::METHOD_SCOPES,
        );
    }
}
