//! `grpc-health`: asks a service's gRPC health endpoint (grpc.health.v1) whether
//! it is SERVING, for container health checks. Exit status 0 when it is, 1 when
//! it answers anything else, 2 when it cannot be reached in time.
//!
//! The services' images carry no shell tools for gRPC, and an HTTP probe would
//! test a different listener than the one clients use. It reads the same
//! `TLS_*` settings as the service it probes: an `https://` URL is checked over
//! TLS against `TLS_CA`, presenting the service's own certificate where the
//! listener requires one (mutual TLS).

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tollgate_service_kit::tls::{ClientTls, GrpcTarget, TlsConfig};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[derive(Parser)]
#[command(name = "grpc-health", about = "Exit 0 if a gRPC service reports SERVING")]
struct Cli {
    /// The service's gRPC URL, e.g. http://127.0.0.1:50051 or
    /// https://resource-server:50052 (the name its certificate carries).
    url: String,
    /// The service name to ask about; empty means the whole server.
    #[arg(long, default_value = "")]
    service: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 3)]
    timeout: u64,
    #[command(flatten)]
    tls: TlsConfig,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let timeout = Duration::from_secs(cli.timeout);
    let check = async {
        let tls = ClientTls::from_config(&cli.tls)?;
        let channel = GrpcTarget::new(&cli.url, &tls)?
            .configure(|endpoint| endpoint.connect_timeout(timeout))
            .connect()
            .await?;
        let response = HealthClient::new(channel)
            .check(HealthCheckRequest { service: cli.service.clone() })
            .await?;
        Ok::<_, Box<dyn std::error::Error>>(response.into_inner().status())
    };
    match tokio::time::timeout(timeout, check).await {
        Ok(Ok(ServingStatus::Serving)) => ExitCode::SUCCESS,
        Ok(Ok(status)) => {
            eprintln!("{}: {}", cli.url, status.as_str_name());
            ExitCode::from(1)
        }
        Ok(Err(e)) => {
            eprintln!("{}: {e}", cli.url);
            ExitCode::from(2)
        }
        Err(_) => {
            eprintln!("{}: no answer within {timeout:?}", cli.url);
            ExitCode::from(2)
        }
    }
}
