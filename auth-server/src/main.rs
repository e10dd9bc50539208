//! `auth-server`: reads its configuration, starts telemetry, and runs the
//! [`Application`] (or an admin command).

use std::sync::Arc;

use clap::Parser;
use tollgate_auth_server::admin::{self, AdminCommand};
use tollgate_auth_server::{Application, Config};
use tollgate_service_kit::{shutdown, telemetry};
use tollgate_token::SystemClock;

#[derive(Parser)]
#[command(name = "auth-server", version, about = "The Tollgate OAuth 2.0 authorization server")]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Administrative commands against the server's database.
    #[command(subcommand)]
    Admin(AdminCommand),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _telemetry = telemetry::init(
        "auth-server",
        cli.config.log_format,
        &cli.config.telemetry,
        "info,sqlx=warn",
    );
    match cli.command {
        Some(Command::Admin(command)) => admin::run(command, &cli.config, &SystemClock).await,
        Some(Command::Serve) | None => {
            let app = Application::build(cli.config, Arc::new(SystemClock)).await?;
            app.run_until_stopped(shutdown::signal()).await
        }
    }
}
