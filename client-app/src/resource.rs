//! Calling the resource server: every call carries the access token as
//! `authorization: Bearer …` metadata (RFC 6750 §2.1, carried over gRPC), or,
//! for DPoP-bound tokens, as `authorization: DPoP …` with a fresh proof in
//! `dpop` (RFC 9449, docs/dpop-grpc.md).

use tollgate_proto::resource::v1::notes_service_client::NotesServiceClient;
use tollgate_proto::resource::v1::profile_service_client::ProfileServiceClient;
use tollgate_proto::resource::v1::report_service_client::ReportServiceClient;
use tollgate_proto::resource::v1::{
    CreateNoteRequest, DeleteNoteRequest, GetProfileRequest, GetUsageReportRequest,
    ListNotesRequest, Note, Profile, UpdateProfileRequest, UsageReport,
};
use tollgate_service_kit::tls::{ClientTls, GrpcTarget};
use tollgate_telemetry::propagation::{Propagating, traced};
use tonic::transport::Channel;
use tonic::{Request, Status};

use std::sync::Arc;

use tollgate_token::Clock;

use crate::ClientError;
use crate::dpop::DpopKey;

/// Attaches the bearer token to a request.
pub fn bearer<T>(message: T, access_token: &str) -> Result<Request<T>, Status> {
    let mut request = Request::new(message);
    let value = format!("Bearer {access_token}")
        .parse()
        .map_err(|_| Status::invalid_argument("the access token is not a valid header value"))?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

/// A connection to a gRPC service whose calls carry the caller's trace
/// (W3C traceparent), over TLS verified with `tls` for an `https://` URL.
pub async fn traced_channel(
    url: &str,
    tls: &ClientTls,
) -> Result<Propagating<Channel>, ClientError> {
    let channel = GrpcTarget::new(url, tls)
        .map_err(|e| ClientError::Protocol(format!("gRPC URL: {e}")))?
        .connect()
        .await?;
    Ok(traced(channel))
}

/// A connection to the resource server's API.
#[derive(Debug, Clone)]
pub struct ResourceClient {
    /// Every call carries the client's trace on (W3C traceparent).
    channel: Propagating<Channel>,
    /// For DPoP-bound tokens: the key and the service's origin.
    dpop: Option<Arc<DpopCalls>>,
}

/// What a DPoP proof for a call needs beyond the call (docs/dpop-grpc.md).
#[derive(Debug)]
struct DpopCalls {
    key: DpopKey,
    /// `scheme://authority` as the service takes proofs (its
    /// `OAUTH_DPOP_ORIGIN`): the `htu` is this and the method's path.
    origin: String,
    clock: Arc<dyn Clock>,
}

/// The gRPC paths of the calls below, which a DPoP proof's `htu` ends with.
mod path {
    pub const GET_PROFILE: &str = "/tollgate.resource.v1.ProfileService/GetProfile";
    pub const UPDATE_PROFILE: &str = "/tollgate.resource.v1.ProfileService/UpdateProfile";
    pub const LIST_NOTES: &str = "/tollgate.resource.v1.NotesService/ListNotes";
    pub const CREATE_NOTE: &str = "/tollgate.resource.v1.NotesService/CreateNote";
    pub const DELETE_NOTE: &str = "/tollgate.resource.v1.NotesService/DeleteNote";
    pub const GET_USAGE_REPORT: &str = "/tollgate.resource.v1.ReportService/GetUsageReport";
}

impl ResourceClient {
    pub async fn connect(url: &str, tls: &ClientTls) -> Result<Self, ClientError> {
        Ok(Self { channel: traced_channel(url, tls).await?, dpop: None })
    }

    /// Over a channel of the caller's.
    pub fn new(channel: Channel) -> Self {
        Self { channel: traced(channel), dpop: None }
    }

    /// Presents the tokens as DPoP-bound to `key` (RFC 9449 §7): each call
    /// with a fresh proof for `origin` (the service's `OAUTH_DPOP_ORIGIN`, by
    /// default the URL this client calls) and the method's path.
    pub fn with_dpop(mut self, key: DpopKey, origin: &str, clock: Arc<dyn Clock>) -> Self {
        let origin = origin.trim_end_matches('/').to_owned();
        self.dpop = Some(Arc::new(DpopCalls { key, origin, clock }));
        self
    }

    /// `message` with the token, as a bearer token or with a DPoP proof for
    /// the call to `path`.
    fn authorized<T>(&self, message: T, token: &str, path: &str) -> Result<Request<T>, Status> {
        let Some(dpop) = &self.dpop else { return bearer(message, token) };
        let htu = format!("{}{path}", dpop.origin);
        let proof = dpop.key.proof(&htu, Some(token), dpop.clock.now(), None);
        let invalid = |_| Status::invalid_argument("the access token is not a valid header value");
        let mut request = Request::new(message);
        let authorization = format!("DPoP {token}").parse().map_err(invalid)?;
        request.metadata_mut().insert("authorization", authorization);
        request.metadata_mut().insert("dpop", proof.parse().map_err(invalid)?);
        Ok(request)
    }

    pub async fn get_profile(&self, token: &str, owner: &str) -> Result<Profile, Status> {
        let request =
            self.authorized(GetProfileRequest { owner: owner.into() }, token, path::GET_PROFILE)?;
        Ok(ProfileServiceClient::new(self.channel.clone()).get_profile(request).await?.into_inner())
    }

    pub async fn update_profile(
        &self,
        token: &str,
        owner: &str,
        display_name: &str,
        email: &str,
    ) -> Result<Profile, Status> {
        let message = UpdateProfileRequest {
            owner: owner.into(),
            display_name: display_name.into(),
            email: email.into(),
        };
        Ok(ProfileServiceClient::new(self.channel.clone())
            .update_profile(self.authorized(message, token, path::UPDATE_PROFILE)?)
            .await?
            .into_inner())
    }

    pub async fn list_notes(&self, token: &str, owner: &str) -> Result<Vec<Note>, Status> {
        let request =
            self.authorized(ListNotesRequest { owner: owner.into() }, token, path::LIST_NOTES)?;
        Ok(NotesServiceClient::new(self.channel.clone())
            .list_notes(request)
            .await?
            .into_inner()
            .notes)
    }

    pub async fn create_note(
        &self,
        token: &str,
        owner: &str,
        title: &str,
        body: &str,
    ) -> Result<Note, Status> {
        let message =
            CreateNoteRequest { owner: owner.into(), title: title.into(), body: body.into() };
        Ok(NotesServiceClient::new(self.channel.clone())
            .create_note(self.authorized(message, token, path::CREATE_NOTE)?)
            .await?
            .into_inner())
    }

    pub async fn delete_note(&self, token: &str, owner: &str, id: &str) -> Result<(), Status> {
        let request = self.authorized(
            DeleteNoteRequest { owner: owner.into(), id: id.into() },
            token,
            path::DELETE_NOTE,
        )?;
        NotesServiceClient::new(self.channel.clone()).delete_note(request).await?;
        Ok(())
    }

    pub async fn usage_report(&self, token: &str) -> Result<UsageReport, Status> {
        let request = self.authorized(GetUsageReportRequest {}, token, path::GET_USAGE_REPORT)?;
        Ok(ReportServiceClient::new(self.channel.clone())
            .get_usage_report(request)
            .await?
            .into_inner())
    }
}
