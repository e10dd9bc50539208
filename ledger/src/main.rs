//! `ledger`: the shared `main` of a protected service
//! ([`tollgate_service_kit::scaffold::run_main`]) around this one's [`Api`].

use tollgate_ledger::api::Api;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let about = "The Tollgate ledger (internal gRPC service, reached with Txn-Tokens)";
    tollgate_service_kit::scaffold::run_main::<Api>(env!("CARGO_PKG_VERSION"), about).await
}
