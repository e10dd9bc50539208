//! `notes-store`: the shared `main` of a protected service
//! ([`tollgate_service_kit::scaffold::run_main`]) around this one's [`Api`].

use tollgate_notes_store::api::Api;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let about = "The Tollgate notes store (internal gRPC service)";
    tollgate_service_kit::scaffold::run_main::<Api>(env!("CARGO_PKG_VERSION"), about).await
}
