//! `cargo run --bin quickstart`: the whole platform on one machine, with nothing
//! but the Rust toolchain. Starts the authorization server, the resource server,
//! the notes store behind it and the ledger behind that (reached with
//! Transaction Tokens) on SQLite with the demo clients and users, runs
//! the client's full flow (narrated), and exits 0 if every step went as the
//! protocol says.
//!
//! `--serve` keeps the services up afterwards, on fixed ports, so you can sign in
//! with a real browser and use `client-app` against them.
//!
//! `--tls` runs every listener on TLS with certificates from a development CA
//! made for this run, and every service-to-service connection on mutual TLS.

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser;
use tollgate_client_app::demo::{self, DemoOptions, HopOptions};
use tollgate_e2e::{Mutual, PASSWORDS, TestStack, password_of};
use tollgate_token::SystemClock;

#[derive(Parser)]
#[command(name = "quickstart", about = "Run the Tollgate platform and its full OAuth flow")]
struct Args {
    /// Keep the services running after the demo (Ctrl-C stops them).
    #[arg(long)]
    serve: bool,
    /// HTTP address of the authorization server with --serve.
    #[arg(long, default_value = "127.0.0.1:8080")]
    auth_http: SocketAddr,
    /// gRPC address of the authorization server with --serve.
    #[arg(long, default_value = "127.0.0.1:50051")]
    auth_grpc: SocketAddr,
    /// gRPC address of the resource server with --serve.
    #[arg(long, default_value = "127.0.0.1:50052")]
    resource_grpc: SocketAddr,
    /// gRPC address of the notes store with --serve.
    #[arg(long, default_value = "127.0.0.1:50053")]
    notes_grpc: SocketAddr,
    /// Show the services' logs.
    #[arg(long)]
    verbose: bool,
    /// TLS on every listener (a development CA made for this run), mutual TLS
    /// between the services.
    #[arg(long)]
    tls: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _telemetry = tollgate_service_kit::telemetry::init(
        "quickstart",
        tollgate_service_kit::telemetry::LogFormat::Text,
        &Default::default(),
        if args.verbose { "info,sqlx=warn" } else { "error" },
    );
    let (serve, auth_http, auth_grpc, resource_grpc, notes_grpc) =
        (args.serve, args.auth_http, args.auth_grpc, args.resource_grpc, args.notes_grpc);
    let tls = args.tls;
    let mut builder = TestStack::builder().system_clock().tweak(move |config| {
        if serve {
            config.auth.http_addr = auth_http;
            config.auth.grpc_addr = auth_grpc;
            config.resource.service.grpc_addr = resource_grpc;
            config.notes.service.grpc_addr = notes_grpc;
            // DPoP proofs name the URL the client app calls (its default,
            // or the CLIENT_RESOURCE_URL printed below with TLS).
            config.resource.tokens.dpop_origin = Some(if tls {
                format!("https://localhost:{}", resource_grpc.port())
            } else {
                format!("http://{resource_grpc}")
            });
            if tls {
                // The name a browser checks the certificate against, and the
                // one a `__Host-` cookie needs (a secure origin).
                config.auth.issuer = Some(format!("https://localhost:{}", auth_http.port()));
            }
        }
    });
    if tls {
        builder = builder.tls(Mutual::Internal);
    }
    let stack = builder.start().await?;
    println!("Tollgate quickstart: SQLite in a temporary directory, demo clients and users.");
    println!("  authorization server  {} (gRPC {})", stack.issuer, stack.auth_grpc);
    println!("  resource server       {} (gRPC)", stack.resource_url());
    println!("  notes store           {} (gRPC, internal)", stack.notes_url());
    println!("  ledger                {} (gRPC, internal, Txn-Tokens only)", stack.ledger_url());
    if let Some(tls) = &stack.tls {
        println!(
            "  TLS on every listener; mutual TLS to the internal ones. CA: {}",
            tls.ca_file.display()
        );
    }

    let options = DemoOptions {
        issuer: stack.issuer.clone(),
        resource_url: stack.resource_url(),
        resource_dpop_origin: Some(stack.resource_dpop_origin.clone()),
        client: stack.cli_client(),
        scopes: ["profile:read", "profile:write", "notes:read", "notes:write"]
            .map(String::from)
            .to_vec(),
        username: "alice".into(),
        password: password_of("alice")?.into(),
        machine_client: Some(stack.reporter_client()),
        machine_scopes: vec!["reports:read".into()],
        hop: Some(HopOptions {
            service: stack.resource_server_client(),
            auth_grpc_url: stack.auth_grpc_url(),
            notes_store_url: stack.notes_url(),
            notes_store_audience: tollgate_resource_server::config::DEFAULT_NOTES_STORE_AUDIENCE
                .into(),
            tls: match &stack.tls {
                Some(tls) => tls.client_of("resource-server")?,
                None => stack.client_tls(),
            },
        }),
        tls: stack.client_tls(),
    };
    demo::run(&options, Arc::new(SystemClock), &mut std::io::stdout()).await?;

    if serve {
        let users: Vec<String> = PASSWORDS.iter().map(|(u, p)| format!("{u} / {p}")).collect();
        println!("\nThe services stay up (Ctrl-C to stop). Demo users: {}.", users.join(", "));
        let env = match &stack.tls {
            None => String::new(),
            Some(tls) => {
                println!("Every listener is on TLS with this run's development CA. To trust it:");
                println!("  the client app: TLS_CA={} (set below)", tls.ca_file.display());
                println!(
                    "  a browser: import {} as an authority (Chrome: Settings > Privacy and \
                     security > Security > Manage certificates; Firefox: Settings > \
                     Certificates > Authorities), or `sudo cp {} \
                     /usr/local/share/ca-certificates/tollgate-dev.crt && sudo update-ca-certificates`",
                    tls.ca_file.display(),
                    tls.ca_file.display()
                );
                format!(
                    "TLS_CA={} CLIENT_ISSUER={} CLIENT_RESOURCE_URL={} ",
                    tls.ca_file.display(),
                    stack.issuer,
                    stack.resource_url().replace("127.0.0.1", "localhost")
                )
            }
        };
        println!("Sign in with a browser through the client app:");
        println!("  {env}cargo run --bin client-app -- login --open");
        println!("  {env}cargo run --bin client-app -- call notes");
        println!("Machine client (secret generated for this run only):");
        println!(
            "  {env}CLIENT_ID=tollgate-reporter CLIENT_SECRET={} cargo run --bin client-app -- client-credentials",
            stack.secrets.reporter.expose()
        );
        tollgate_service_kit::shutdown::signal().await;
    }
    stack.shutdown().await
}
