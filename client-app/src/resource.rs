//! Calling the resource server: every call carries the access token as
//! `authorization: Bearer …` metadata (RFC 6750 §2.1, carried over gRPC).

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

use crate::ClientError;

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
}

impl ResourceClient {
    pub async fn connect(url: &str, tls: &ClientTls) -> Result<Self, ClientError> {
        Ok(Self { channel: traced_channel(url, tls).await? })
    }

    /// Over a channel of the caller's.
    pub fn new(channel: Channel) -> Self {
        Self { channel: traced(channel) }
    }

    pub async fn get_profile(&self, token: &str, owner: &str) -> Result<Profile, Status> {
        let request = bearer(GetProfileRequest { owner: owner.into() }, token)?;
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
            .update_profile(bearer(message, token)?)
            .await?
            .into_inner())
    }

    pub async fn list_notes(&self, token: &str, owner: &str) -> Result<Vec<Note>, Status> {
        let request = bearer(ListNotesRequest { owner: owner.into() }, token)?;
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
            .create_note(bearer(message, token)?)
            .await?
            .into_inner())
    }

    pub async fn delete_note(&self, token: &str, owner: &str, id: &str) -> Result<(), Status> {
        let request = bearer(DeleteNoteRequest { owner: owner.into(), id: id.into() }, token)?;
        NotesServiceClient::new(self.channel.clone()).delete_note(request).await?;
        Ok(())
    }

    pub async fn usage_report(&self, token: &str) -> Result<UsageReport, Status> {
        let request = bearer(GetUsageReportRequest {}, token)?;
        Ok(ReportServiceClient::new(self.channel.clone())
            .get_usage_report(request)
            .await?
            .into_inner())
    }
}
