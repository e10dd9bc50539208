//! The gRPC handlers. By the time a handler runs, the auth layer has verified the
//! token and the method's scope; the handler's own job is the rule no scope can
//! express: an owner reaches only their own data.

use std::sync::Arc;

use crate::downstream::TracedChannel;
use tollgate_proto::notes::v1 as store;
use tollgate_proto::notes::v1::note_store_client::NoteStoreClient;
use tollgate_proto::resource::v1::notes_service_server::{NotesService, NotesServiceServer};
use tollgate_proto::resource::v1::profile_service_server::{ProfileService, ProfileServiceServer};
use tollgate_proto::resource::v1::report_service_server::{ReportService, ReportServiceServer};
use tollgate_proto::resource::v1::{
    CreateNoteRequest, DeleteNoteRequest, DeleteNoteResponse, GetProfileRequest,
    GetUsageReportRequest, ListNotesRequest, ListNotesResponse, Note, Profile,
    UpdateProfileRequest, UsageReport,
};
use tollgate_service_kit::auth;
use tollgate_service_kit::input::{check_len, required};
use tollgate_service_kit::limits::{GrpcLimits, MAX_RESPONSE_BYTES};
use tollgate_service_kit::scaffold::{ProtectedService, ServiceSpec};
use tollgate_service_kit::serve::ProtectedRouter;
use tollgate_service_kit::status::to_status;
use tollgate_service_kit::tls::ClientTls;
use tollgate_token::{Clock, OAuthError};
use tonic::{Request, Response, Status};

use crate::Config;
use crate::downstream::NotesBackend;
use crate::policy::{NOTES_READ, NOTES_WRITE};
use crate::storage::ResourceStore;
use tollgate_service_kit::status::storage_unavailable as storage_failure;

/// The notes store's scope for totals (a service's own token).
const NOTES_COUNT: &str = "notes:count";

/// The caller's own name for themselves in `owner` fields.
pub const ME: &str = "me";

const MAX_TITLE: usize = 200;
const MAX_BODY: usize = 10_000;
const MAX_NAME: usize = 100;
const MAX_EMAIL: usize = 254;

/// Shared by the three services.
#[derive(Debug, Clone)]
pub struct Api {
    store: ResourceStore,
    notes: NotesBackend,
    clock: Arc<dyn Clock>,
}

/// The resource server as the shared scaffolding builds and serves it.
impl ProtectedService for Api {
    const SPEC: ServiceSpec = crate::config::SPEC;
    type Settings = crate::config::Settings;

    async fn build(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let store = config.open_database(ResourceStore::connect).await?;
        let notes = NotesBackend::new(
            &config.settings.notes_store_url,
            &config.tokens.auth_grpc_url,
            config.tokens.credentials(),
            &config.settings,
            clock.clone(),
            &ClientTls::from_config(&config.service.tls)?,
        )?;
        Ok(Self { store, notes, clock })
    }

    fn routes(self, router: ProtectedRouter, limits: &GrpcLimits) -> ProtectedRouter {
        let (request, response) = (limits.max_message_bytes, MAX_RESPONSE_BYTES);
        router
            .add_service(
                ProfileServiceServer::new(self.clone())
                    .max_decoding_message_size(request)
                    .max_encoding_message_size(response),
            )
            .add_service(
                NotesServiceServer::new(self.clone())
                    .max_decoding_message_size(request)
                    .max_encoding_message_size(response),
            )
            .add_service(
                ReportServiceServer::new(self)
                    .max_decoding_message_size(request)
                    .max_encoding_message_size(response),
            )
    }
}

/// The owner a request may act on: the token's subject, named either as itself or
/// as "me". Anyone else's data is PERMISSION_DENIED, whatever the scopes say.
fn owner_of<T>(request: &Request<T>, owner: &str) -> Result<String, Status> {
    let caller = auth::caller(request)?;
    // RFC 9068 §2.2: with no resource owner (client credentials) `sub` is the
    // client itself. Such a token acts for nobody, so it reaches nobody's data,
    // whatever scopes a (mis)configured client was given.
    if caller.subject == caller.client_id {
        return Err(to_status(&OAuthError::AccessDenied(
            "a client's own token acts for no resource owner".into(),
        )));
    }
    if owner == ME || owner == caller.subject {
        Ok(caller.subject.clone())
    } else if owner.is_empty() {
        Err(Status::invalid_argument("owner is required (a subject, or \"me\")"))
    } else {
        tracing::warn!(
            subject = %caller.subject, client_id = %caller.client_id,
            "refused access to another owner's data"
        );
        Err(to_status(&OAuthError::AccessDenied("an owner can only reach their own data".into())))
    }
}

#[tonic::async_trait]
impl ProfileService for Api {
    async fn get_profile(
        &self,
        request: Request<GetProfileRequest>,
    ) -> Result<Response<Profile>, Status> {
        let owner = owner_of(&request, &request.get_ref().owner)?;
        Ok(Response::new(self.store.profile(&owner).await.map_err(storage_failure)?))
    }

    async fn update_profile(
        &self,
        request: Request<UpdateProfileRequest>,
    ) -> Result<Response<Profile>, Status> {
        let owner = owner_of(&request, &request.get_ref().owner)?;
        let UpdateProfileRequest { display_name, email, .. } = request.into_inner();
        check_len("display_name", &display_name, MAX_NAME)?;
        check_len("email", &email, MAX_EMAIL)?;
        if !email.is_empty() && !email.contains('@') {
            return Err(Status::invalid_argument("email must contain '@'"));
        }
        let profile = Profile { owner, display_name, email };
        self.store.put_profile(&profile, self.clock.now()).await.map_err(storage_failure)?;
        Ok(Response::new(profile))
    }
}

/// A refusal from the notes store, as this API's caller should see it: its own
/// verdicts on the request (not found, invalid) pass through by code and
/// message only; anything else is this server's problem, not the caller's, and
/// says nothing about the service behind it (no addresses, no auth metadata).
fn from_downstream(status: Status) -> Status {
    match status.code() {
        tonic::Code::NotFound | tonic::Code::InvalidArgument => {
            Status::new(status.code(), status.message())
        }
        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => {
            tracing::error!(code = ?status.code(), message = status.message(), "the notes store refused a delegated call");
            Status::internal("the notes store refused the delegated call")
        }
        _ => {
            tracing::warn!(code = ?status.code(), message = status.message(), "notes store call failed");
            Status::unavailable("the notes store is unavailable, try again")
        }
    }
}

/// The notes store's answer, as this API's note.
fn from_store(note: store::Note) -> Note {
    Note {
        id: note.id,
        owner: note.owner,
        title: note.title,
        body: note.body,
        created_at: note.created_at,
        written_by: note.written_by,
    }
}

impl Api {
    /// Where a call for `owner`'s notes goes: the notes store, with a token
    /// exchanged for it that carries only `scope`.
    async fn notes_store<T, M>(
        &self,
        request: &Request<T>,
        owner: &str,
        scope: &str,
        rpc: &str,
        message: M,
    ) -> Result<(NoteStoreClient<TracedChannel>, Request<M>), Status> {
        owner_of(request, owner)?;
        let caller = auth::caller(request)?;
        // The authorization server will not exchange a token past its `exp`
        // (the leeway here is for clock skew, not extra life): say so plainly.
        if caller.expires_at <= self.clock.now() {
            return Err(to_status(&OAuthError::invalid_token("token has expired")));
        }
        let subject = auth::subject_token(request)?;
        let incoming = auth::txn_token(request);
        self.notes.for_caller(caller, subject, incoming, scope, rpc, message).await
    }
}

#[tonic::async_trait]
impl NotesService for Api {
    async fn list_notes(
        &self,
        request: Request<ListNotesRequest>,
    ) -> Result<Response<ListNotesResponse>, Status> {
        let (mut store, call) = self
            .notes_store(
                &request,
                &request.get_ref().owner,
                NOTES_READ,
                "ListNotes",
                store::ListNotesRequest {},
            )
            .await?;
        let notes = store.list_notes(call).await.map_err(from_downstream)?.into_inner().notes;
        Ok(Response::new(ListNotesResponse { notes: notes.into_iter().map(from_store).collect() }))
    }

    async fn create_note(
        &self,
        request: Request<CreateNoteRequest>,
    ) -> Result<Response<Note>, Status> {
        let CreateNoteRequest { owner, title, body } = request.get_ref();
        required("title", title)?;
        check_len("title", title, MAX_TITLE)?;
        check_len("body", body, MAX_BODY)?;
        let message = store::CreateNoteRequest { title: title.clone(), body: body.clone() };
        let (mut store, call) =
            self.notes_store(&request, owner, NOTES_WRITE, "CreateNote", message).await?;
        Ok(Response::new(from_store(
            store.create_note(call).await.map_err(from_downstream)?.into_inner(),
        )))
    }

    async fn delete_note(
        &self,
        request: Request<DeleteNoteRequest>,
    ) -> Result<Response<DeleteNoteResponse>, Status> {
        let DeleteNoteRequest { owner, id } = request.get_ref();
        let message = store::DeleteNoteRequest { id: id.clone() };
        let (mut store, call) =
            self.notes_store(&request, owner, NOTES_WRITE, "DeleteNote", message).await?;
        store.delete_note(call).await.map_err(from_downstream)?;
        Ok(Response::new(DeleteNoteResponse {}))
    }
}

#[tonic::async_trait]
impl ReportService for Api {
    async fn get_usage_report(
        &self,
        _request: Request<GetUsageReportRequest>,
    ) -> Result<Response<UsageReport>, Status> {
        let owners = self.store.count_profile_owners().await.map_err(storage_failure)?;
        // Totals from the notes store, asked with this server's own token: the
        // report acts for no resource owner.
        let (mut store, call) =
            self.notes.as_service(NOTES_COUNT, store::CountNotesRequest {}).await?;
        let counts = store.count_notes(call).await.map_err(from_downstream)?.into_inner();
        Ok(Response::new(UsageReport { owners, notes: counts.notes }))
    }
}
