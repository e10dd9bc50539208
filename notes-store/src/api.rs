//! The handlers. The auth layer has checked the token (audience: this service)
//! and the method's scope; here the rule is who may act for whom: a user's
//! notes are reached only by a trusted service acting for that user.

use std::sync::Arc;

use tollgate_proto::notes::v1::note_store_server::{NoteStore, NoteStoreServer};
use tollgate_proto::notes::v1::{
    CountNotesRequest, CountNotesResponse, CreateNoteRequest, DeleteNoteRequest,
    DeleteNoteResponse, ListNotesRequest, ListNotesResponse, Note,
};
use tollgate_service_kit::auth::{self, AuthContext};
use tollgate_service_kit::input::{check_len, required};
use tollgate_service_kit::limits::{GrpcLimits, MAX_RESPONSE_BYTES};
use tollgate_service_kit::scaffold::{ProtectedService, ServiceSpec};
use tollgate_service_kit::serve::ProtectedRouter;
use tollgate_service_kit::status::to_status;
use tollgate_token::{Clock, OAuthError};
use tonic::{Request, Response, Status};

use crate::Config;
use crate::ledger::Ledger;
use crate::storage::NoteStorage;
use tollgate_service_kit::status::storage_unavailable as storage_failure;
use tollgate_service_kit::tls::ClientTls;

/// How long a change waits for the ledger to record it, then goes on
/// without (the note is written either way).
pub const LEDGER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

const MAX_TITLE: usize = 200;
const MAX_BODY: usize = 10_000;

#[derive(Debug, Clone)]
pub struct Api {
    storage: NoteStorage,
    clock: Arc<dyn Clock>,
    trusted_actors: Arc<Vec<String>>,
    ledger: Option<Ledger>,
}

/// The notes store as the shared scaffolding builds and serves it.
impl ProtectedService for Api {
    const SPEC: ServiceSpec = crate::config::SPEC;
    type Settings = crate::config::Settings;

    async fn build(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let storage = config.open_database(NoteStorage::connect).await?;
        let trusted_actors = config.settings.trusted_actors.clone();
        tracing::info!(?trusted_actors, "services trusted to act for users");
        let ledger = match &config.settings.ledger_url {
            None => None,
            Some(url) => {
                let credentials = config.tokens.credentials().ok_or_else(|| {
                    anyhow::anyhow!("LEDGER_URL needs this service's OAUTH_CLIENT_ID")
                })?;
                let tls = ClientTls::from_config(&config.service.tls)?;
                Some(Ledger::new(
                    url,
                    &config.tokens.auth_grpc_url,
                    credentials,
                    clock.clone(),
                    &tls,
                )?)
            }
        };
        Ok(Self { storage, clock, trusted_actors: Arc::new(trusted_actors), ledger })
    }

    fn routes(self, router: ProtectedRouter, limits: &GrpcLimits) -> ProtectedRouter {
        router.add_service(
            NoteStoreServer::new(self)
                .max_decoding_message_size(limits.max_message_bytes)
                .max_encoding_message_size(MAX_RESPONSE_BYTES),
        )
    }
}

impl Api {
    /// The owner a call acts for, and the service acting: only a trusted service
    /// (RFC 8693 `act`) acting for a user. A token without `act` is someone
    /// calling in person, which this internal service does not serve.
    fn acting_for<'a, T>(
        &self,
        request: &'a Request<T>,
    ) -> Result<(&'a AuthContext, &'a str), Status> {
        let caller = auth::caller(request)?;
        match caller.actor.as_deref() {
            Some(actor) if self.trusted_actors.iter().any(|a| a == actor) => Ok((caller, actor)),
            Some(actor) => {
                tracing::warn!(actor, subject = %caller.subject, "untrusted actor refused");
                Err(to_status(&OAuthError::AccessDenied(
                    "this service does not trust the acting party".into(),
                )))
            }
            None => Err(to_status(&OAuthError::AccessDenied(
                "calls must come through a trusted service acting for the owner".into(),
            ))),
        }
    }
}

impl Api {
    /// Records a change in the ledger when the call is part of a transaction
    /// (the second hop, with the same Txn-Token). The note is written either
    /// way: a ledger that cannot be reached, or takes longer than
    /// [`LEDGER_TIMEOUT`], is logged, not the caller's failure.
    async fn record<T>(&self, request: &Request<T>, action: &str, note_id: &str) {
        let (Some(ledger), Some(txn_token)) = (&self.ledger, auth::txn_token(request)) else {
            return;
        };
        let recorded =
            tokio::time::timeout(LEDGER_TIMEOUT, ledger.record(txn_token, action, note_id))
                .await
                .unwrap_or_else(|_| Err(Status::deadline_exceeded("the ledger did not answer")));
        if let Err(status) = recorded {
            let txn = auth::caller(request)
                .ok()
                .and_then(|caller| caller.transaction.as_ref())
                .map(|t| t.txn.as_str());
            tracing::error!(
                code = ?status.code(), message = status.message(), txn,
                "the ledger did not record a change"
            );
        }
    }
}

#[tonic::async_trait]
impl NoteStore for Api {
    async fn list_notes(
        &self,
        request: Request<ListNotesRequest>,
    ) -> Result<Response<ListNotesResponse>, Status> {
        let (caller, _) = self.acting_for(&request)?;
        let notes = self.storage.notes(&caller.subject).await.map_err(storage_failure)?;
        Ok(Response::new(ListNotesResponse { notes }))
    }

    async fn create_note(
        &self,
        request: Request<CreateNoteRequest>,
    ) -> Result<Response<Note>, Status> {
        let (caller, actor) = self.acting_for(&request)?;
        let CreateNoteRequest { title, body } = request.get_ref();
        required("title", title)?;
        check_len("title", title, MAX_TITLE)?;
        check_len("body", body, MAX_BODY)?;
        let note = self
            .storage
            .create(&caller.subject, title, body, actor, self.clock.now())
            .await
            .map_err(storage_failure)?;
        self.record(&request, "create", &note.id).await;
        Ok(Response::new(note))
    }

    async fn delete_note(
        &self,
        request: Request<DeleteNoteRequest>,
    ) -> Result<Response<DeleteNoteResponse>, Status> {
        let (caller, _) = self.acting_for(&request)?;
        if self
            .storage
            .delete(&caller.subject, &request.get_ref().id)
            .await
            .map_err(storage_failure)?
        {
            self.record(&request, "delete", &request.get_ref().id).await;
            Ok(Response::new(DeleteNoteResponse {}))
        } else {
            Err(Status::not_found("no such note"))
        }
    }

    async fn count_notes(
        &self,
        _request: Request<CountNotesRequest>,
    ) -> Result<Response<CountNotesResponse>, Status> {
        let (notes, owners) = self.storage.counts().await.map_err(storage_failure)?;
        Ok(Response::new(CountNotesResponse { notes, owners }))
    }
}
