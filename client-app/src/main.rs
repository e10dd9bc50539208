//! `client-app`: the OAuth client as a command line, one command per flow.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use tollgate_client_app::claims;
use tollgate_client_app::demo::{self, DemoOptions};
use tollgate_client_app::discovery::discover;
use tollgate_client_app::dpop::DpopKey;
use tollgate_client_app::loopback::LoopbackRedirect;
use tollgate_client_app::oauth::{ClientAuthMethod, ClientIdentity, OAuthClient};
use tollgate_client_app::resource::ResourceClient;
use tollgate_client_app::tokens::{TokenFile, TokenSet, redact};
use tollgate_service_kit::tls::{ClientTls, TlsConfig};
use tollgate_telemetry::{self as telemetry, LogFormat, TelemetryConfig};
use tollgate_token::{Clock, Secret, SystemClock};
use tracing::Instrument as _;

#[derive(Parser)]
#[command(name = "client-app", version, about = "The Tollgate OAuth 2.0 client")]
struct Cli {
    /// The authorization server's issuer identifier; everything else is discovered.
    #[arg(long, env = "CLIENT_ISSUER", default_value = "http://127.0.0.1:8080", global = true)]
    issuer: String,
    /// The resource server's gRPC endpoint.
    #[arg(
        long,
        env = "CLIENT_RESOURCE_URL",
        default_value = "http://127.0.0.1:50052",
        global = true
    )]
    resource_url: String,
    #[arg(long, env = "CLIENT_ID", default_value = "tollgate-cli", global = true)]
    client_id: String,
    /// The client secret of a confidential client (omit for a public client).
    /// Prefer the environment variable: arguments are visible to other users.
    #[arg(long, env = "CLIENT_SECRET", hide_env_values = true, global = true)]
    client_secret: Option<Secret>,
    #[arg(long, value_enum, default_value = "client-secret-basic", global = true)]
    auth_method: ClientAuthMethod,
    /// Where tokens are kept (created with mode 0600).
    #[arg(
        long,
        env = "CLIENT_TOKEN_FILE",
        default_value = "data/client-app/tokens.json",
        global = true
    )]
    token_file: PathBuf,
    /// Bind new tokens to a DPoP key (RFC 9449), made for them and kept with
    /// them in the token file: a copy of the tokens alone is useless.
    /// `--dpop false` asks for bearer tokens.
    #[arg(long, env = "CLIENT_DPOP", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    dpop: bool,
    /// The origin the resource server takes DPoP proofs for (its
    /// OAUTH_DPOP_ORIGIN). Default: the scheme and authority of --resource-url.
    #[arg(long, env = "CLIENT_RESOURCE_DPOP_ORIGIN", global = true)]
    resource_dpop_origin: Option<String>,
    #[command(flatten)]
    tls: TlsConfig,
    #[command(flatten)]
    telemetry: TelemetryConfig,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sign in as a resource owner: authorization code + PKCE in your browser,
    /// answered on a loopback listener (RFC 8252).
    Login {
        #[arg(
            long,
            value_delimiter = ' ',
            default_value = "profile:read profile:write notes:read notes:write"
        )]
        scope: Vec<String>,
        /// Try to open the URL with xdg-open/open instead of only printing it.
        #[arg(long)]
        open: bool,
        /// Sign in on another device instead (RFC 8628): for machines without a
        /// browser. Prints a code to enter at the verification page.
        #[arg(long, conflicts_with = "open")]
        device: bool,
    },
    /// Get a token for the client itself (confidential clients).
    ClientCredentials {
        #[arg(long, value_delimiter = ' ', default_value = "reports:read")]
        scope: Vec<String>,
    },
    /// Renew the stored tokens now.
    Refresh,
    /// Show the stored access token's header and claims (decoded, not verified).
    Claims,
    /// Call the resource server with the stored token, refreshing it if expired.
    #[command(subcommand)]
    Call(Call),
    /// Run the whole flow with a scripted resource owner, printing every step.
    Demo {
        #[arg(long, default_value = "alice")]
        username: String,
        #[arg(long, env = "DEMO_PASSWORD", hide_env_values = true)]
        password: Secret,
        #[arg(
            long,
            value_delimiter = ' ',
            default_value = "profile:read profile:write notes:read notes:write"
        )]
        scope: Vec<String>,
        /// A machine client for the client-credentials part.
        #[arg(long, env = "DEMO_MACHINE_CLIENT_ID")]
        machine_client_id: Option<String>,
        #[arg(long, env = "DEMO_MACHINE_CLIENT_SECRET", hide_env_values = true)]
        machine_client_secret: Option<Secret>,
    },
}

#[derive(Subcommand)]
enum Call {
    /// GetProfile (profile:read).
    Profile {
        #[arg(default_value = "me")]
        owner: String,
    },
    /// UpdateProfile (profile:write).
    SetProfile {
        #[arg(long)]
        display_name: String,
        #[arg(long, default_value = "")]
        email: String,
    },
    /// ListNotes (notes:read).
    Notes {
        #[arg(default_value = "me")]
        owner: String,
    },
    /// CreateNote (notes:write).
    AddNote {
        title: String,
        #[arg(default_value = "")]
        body: String,
    },
    /// DeleteNote (notes:write).
    DeleteNote { id: String },
    /// GetUsageReport (reports:read; a client-credentials token).
    Report,
}

impl Cli {
    fn identity(&self) -> ClientIdentity {
        ClientIdentity {
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            auth_method: self.auth_method,
        }
    }

    /// A client for new tokens: bound to a new DPoP key unless `--dpop false`.
    async fn client(&self, clock: Arc<dyn Clock>) -> anyhow::Result<OAuthClient> {
        let key = if self.dpop { Some(DpopKey::generate()?) } else { None };
        self.client_with(clock, key).await
    }

    /// A client to renew `tokens`: with the key they are bound to, if any.
    async fn client_for(
        &self,
        tokens: &TokenSet,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<OAuthClient> {
        self.client_with(clock, tokens.dpop_key()?).await
    }

    async fn client_with(
        &self,
        clock: Arc<dyn Clock>,
        key: Option<DpopKey>,
    ) -> anyhow::Result<OAuthClient> {
        let tls = self.tls()?;
        let metadata = discover(&tls.reqwest().build()?, &self.issuer).await?;
        let client = OAuthClient::with_http(metadata, self.identity(), clock, tls.reqwest())?;
        Ok(match key {
            Some(key) => client.with_dpop(key),
            None => client,
        })
    }

    /// The origin the resource server's DPoP proofs name.
    fn resource_dpop_origin(&self) -> anyhow::Result<String> {
        match &self.resource_dpop_origin {
            Some(origin) => Ok(origin.clone()),
            None => Ok(url::Url::parse(&self.resource_url)
                .context("--resource-url")?
                .origin()
                .ascii_serialization()),
        }
    }

    /// Trust for https:// URLs (TLS_CA, else the public roots) and the client
    /// certificate (TLS_CERT, TLS_KEY) if any.
    fn tls(&self) -> anyhow::Result<ClientTls> {
        ClientTls::from_config(&self.tls).context("loading TLS_*")
    }
}

fn print_tokens(tokens: &TokenSet, file: &TokenFile, clock: &dyn Clock) {
    println!(
        "{} access token {} (scope: {}), expires in {}s",
        tokens.token_type,
        redact(tokens.access_token.expose()),
        tokens.scope,
        tokens.expires_at - clock.now()
    );
    println!("saved to {}", file.path().display());
}

/// The stored tokens, renewed first if they expire within 30 s.
async fn fresh_tokens(
    cli: &Cli,
    file: &TokenFile,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<TokenSet> {
    let Some(tokens) = file.load()? else {
        bail!(
            "no tokens in {}: run `client-app login` or `client-app client-credentials` first",
            file.path().display()
        );
    };
    if tokens.client_id != cli.client_id {
        bail!(
            "{} holds tokens of client {:?}, not {:?}",
            file.path().display(),
            tokens.client_id,
            cli.client_id
        );
    }
    if !tokens.expires_within(clock.now(), 30) {
        return Ok(tokens);
    }
    let (tokens, renewed) = cli.client_for(&tokens, clock).await?.ensure_fresh(tokens, 30).await?;
    if renewed {
        file.save(&tokens)?;
        eprintln!("(access token renewed)");
    }
    Ok(tokens)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Output is for the person at the terminal; logs (stderr) only for trouble.
    let _telemetry = telemetry::init("client-app", LogFormat::Text, &cli.telemetry, "warn");
    // One root span per command: its trace continues at every server it calls.
    let span = tracing::info_span!("client-app", otel.kind = "client");
    run(cli).instrument(span).await
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let file = TokenFile::new(&cli.token_file);
    match &cli.command {
        Command::Login { scope, device: true, .. } => {
            let client = cli.client(clock.clone()).await?;
            let login = client.start_device_login(scope).await?;
            println!("On another device, open\n\n  {}\n", login.verification_uri());
            println!("and enter the code  {}", login.user_code());
            if let Some(complete) = login.verification_uri_complete() {
                println!("\n(or open {complete})");
            }
            println!("\nWaiting for approval …");
            let tokens = client.finish_device_login(&login, tokio::time::sleep).await?;
            file.save(&tokens)?;
            print_tokens(&tokens, &file, clock.as_ref());
        }
        Command::Login { scope, open, .. } => {
            let client = cli.client(clock.clone()).await?;
            let loopback = LoopbackRedirect::bind().await?;
            let pending = client.authorization_url(scope, &loopback.redirect_uri())?;
            println!("Open this URL in your browser to sign in:\n\n  {}\n", pending.url);
            if *open {
                let opener = if cfg!(target_os = "macos") { "open" } else { "xdg-open" };
                if std::process::Command::new(opener).arg(pending.url.as_str()).spawn().is_err() {
                    eprintln!("(could not start {opener}; open the URL yourself)");
                }
            }
            println!("Waiting for the redirect on {} …", loopback.redirect_uri());
            let callback = loopback.wait().await?;
            let tokens = client.finish_authorization(pending, &callback).await?;
            file.save(&tokens)?;
            print_tokens(&tokens, &file, clock.as_ref());
        }
        Command::ClientCredentials { scope } => {
            let tokens = cli.client(clock.clone()).await?.client_credentials(scope).await?;
            file.save(&tokens)?;
            print_tokens(&tokens, &file, clock.as_ref());
        }
        Command::Refresh => {
            let tokens = file.load()?.context("no tokens stored")?;
            let client = cli.client_for(&tokens, clock.clone()).await?;
            let tokens = client.ensure_fresh(tokens, i64::MAX / 2).await?.0;
            file.save(&tokens)?;
            print_tokens(&tokens, &file, clock.as_ref());
        }
        Command::Claims => {
            let tokens = file.load()?.context("no tokens stored")?;
            let (header, claims) = claims::decode_unverified(tokens.access_token.expose())?;
            println!("(decoded for display only: a client treats access tokens as opaque)");
            println!("header: {}", serde_json::to_string_pretty(&header)?);
            println!("claims: {}", serde_json::to_string_pretty(&claims)?);
        }
        Command::Call(call) => {
            let tokens = fresh_tokens(&cli, &file, clock.clone()).await?;
            let token = tokens.access_token.expose().as_str();
            let api = ResourceClient::connect(&cli.resource_url, &cli.tls()?).await?;
            let api = match tokens.dpop_key()? {
                Some(key) => api.with_dpop(key, &cli.resource_dpop_origin()?, clock.clone()),
                None => api,
            };
            let shown = match call {
                Call::Profile { owner } => format!("{:#?}", api.get_profile(token, owner).await?),
                Call::SetProfile { display_name, email } => {
                    format!("{:#?}", api.update_profile(token, "me", display_name, email).await?)
                }
                Call::Notes { owner } => format!("{:#?}", api.list_notes(token, owner).await?),
                Call::AddNote { title, body } => {
                    format!("{:#?}", api.create_note(token, "me", title, body).await?)
                }
                Call::DeleteNote { id } => {
                    api.delete_note(token, "me", id).await?;
                    "deleted".to_owned()
                }
                Call::Report => format!("{:#?}", api.usage_report(token).await?),
            };
            println!("{shown}");
        }
        Command::Demo { username, password, scope, machine_client_id, machine_client_secret } => {
            let machine_client = match (machine_client_id, machine_client_secret) {
                (Some(id), secret) => Some(ClientIdentity {
                    client_id: id.clone(),
                    client_secret: secret.clone(),
                    auth_method: ClientAuthMethod::ClientSecretBasic,
                }),
                (None, _) => None,
            };
            let options = DemoOptions {
                issuer: cli.issuer.clone(),
                resource_url: cli.resource_url.clone(),
                resource_dpop_origin: if cli.dpop {
                    Some(cli.resource_dpop_origin()?)
                } else {
                    None
                },
                client: cli.identity(),
                scopes: scope.clone(),
                username: username.clone(),
                password: password.clone(),
                machine_client,
                machine_scopes: vec!["reports:read".into()],
                // The client app does not hold the resource server's credentials.
                hop: None,
                tls: cli.tls()?,
            };
            demo::run(&options, clock, &mut std::io::stdout()).await?;
        }
    }
    Ok(())
}
