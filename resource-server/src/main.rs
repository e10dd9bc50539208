//! `resource-server`: reads its configuration, starts telemetry, runs the [`Application`].

use std::sync::Arc;

use clap::Parser;
use tollgate_resource_server::{Application, Config};
use tollgate_service_kit::{shutdown, telemetry};
use tollgate_token::SystemClock;

#[derive(Parser)]
#[command(name = "resource-server", version, about = "The Tollgate resource server (gRPC API)")]
struct Cli {
    #[command(flatten)]
    config: Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _telemetry = telemetry::init(
        "resource-server",
        cli.config.log_format,
        &cli.config.telemetry,
        "info,sqlx=warn",
    );
    let app = Application::build(cli.config, Arc::new(SystemClock)).await?;
    app.run_until_stopped(shutdown::signal()).await
}
