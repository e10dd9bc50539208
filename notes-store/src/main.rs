//! `notes-store`: reads its configuration, starts telemetry, runs the [`Application`].

use std::sync::Arc;

use clap::Parser;
use tollgate_notes_store::{Application, Config};
use tollgate_service_kit::{shutdown, telemetry};
use tollgate_token::SystemClock;

#[derive(Parser)]
#[command(
    name = "notes-store",
    version,
    about = "The Tollgate notes store (internal gRPC service)"
)]
struct Cli {
    #[command(flatten)]
    config: Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _telemetry = telemetry::init(
        "notes-store",
        cli.config.log_format,
        &cli.config.telemetry,
        "info,sqlx=warn",
    );
    let app = Application::build(cli.config, Arc::new(SystemClock)).await?;
    app.run_until_stopped(shutdown::signal()).await
}
