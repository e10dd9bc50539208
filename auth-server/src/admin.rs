//! Administrative commands: register clients and users without a bootstrap file.

use anyhow::Context as _;
use tollgate_token::{Clock, Secret};

use crate::bootstrap::{ClientSpec, client_from_spec, register_client, register_user};
use crate::config::Config;
use crate::domain::keys::KeyRing;
use crate::domain::model::User;
use crate::domain::secrets;
use crate::storage::{Housekeeping as _, KeyStore as _, SqlStore};

#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// Registers (or replaces) a client. A confidential client gets a newly
    /// generated secret, printed once: only its hash is stored.
    AddClient {
        #[arg(long)]
        client_id: String,
        #[arg(long)]
        name: Option<String>,
        /// A public client (native or browser app): no secret, PKCE only.
        #[arg(long)]
        public: bool,
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        #[arg(long = "grant-type", required = true)]
        grant_types: Vec<String>,
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        #[arg(long)]
        audience: Option<String>,
        /// An audience this client may exchange a subject's token for (RFC 8693);
        /// needs `--grant-type urn:ietf:params:oauth:grant-type:token-exchange`.
        #[arg(long = "exchange-audience")]
        exchange_audiences: Vec<String>,
    },
    /// Registers (or updates) a resource owner. The password is read from the
    /// first line of standard input, so it never appears in the process list.
    AddUser {
        #[arg(long)]
        username: String,
        /// The stable `sub`; defaults to the username.
        #[arg(long)]
        subject: Option<String>,
    },
    /// Starts a signing-key rotation now: the new key is published at once and
    /// signs after the propagation delay (--key-propagation-secs). Running
    /// servers pick it up at their next key check.
    RotateKeys,
    /// Prepares the database for servers started without a bootstrap file:
    /// applies the migrations, the bootstrap file (--bootstrap) if one is given,
    /// and creates the first signing key. A deployment runs this once, before
    /// its replicas start, so they never race to apply the same registrations
    /// or each create a first key (docker-compose.yml's `migrate` job).
    Init,
    /// Waits until `admin init` has prepared the database (the migrations
    /// applied and a signing key present), retrying while it cannot be reached:
    /// a Kubernetes init container, so the servers start only after the
    /// migration Job (docs/kubernetes.md). Fails after --timeout-secs.
    WaitInit {
        #[arg(long, default_value_t = 300)]
        timeout_secs: u64,
    },
    /// Makes a development CA and a certificate per service in --dir (the
    /// compose deployment's `certs` job): `ca.pem`, `ca.key` (for this command
    /// only), and `<service>.pem` / `<service>.key` for each --service. A CA
    /// already there is kept; service certificates already there are kept
    /// unless --renew, which issues new ones from the same CA (the services
    /// pick them up within TLS_RELOAD_INTERVAL). For development only: a
    /// production deployment's certificates come from its own CA.
    DevCerts {
        #[arg(long)]
        dir: std::path::PathBuf,
        /// `name` or `name=dns,dns…`: a service, and the DNS names its
        /// certificate carries besides its name.
        #[arg(long = "service", required = true)]
        services: Vec<String>,
        /// Issue the services' certificates again.
        #[arg(long)]
        renew: bool,
        /// Give the service files to this numeric user and group (the
        /// services' user in the image, 10001).
        #[arg(long)]
        owner: Option<u32>,
    },
    /// Deletes the codes, tokens and grants that expired more than
    /// --purge-retention-secs seconds ago, as running servers do every
    /// --purge-interval-secs seconds.
    Purge,
}

pub async fn run(command: AdminCommand, config: &Config, clock: &dyn Clock) -> anyhow::Result<()> {
    if let AdminCommand::DevCerts { dir, services, renew, owner } = &command {
        return dev_certs(dir, services, *renew, *owner, clock.now());
    }
    if let AdminCommand::WaitInit { timeout_secs } = command {
        return wait_init(config, std::time::Duration::from_secs(timeout_secs)).await;
    }
    let store = SqlStore::connect(&config.database_url()?).await.context("opening the database")?;
    match command {
        AdminCommand::AddClient {
            client_id,
            name,
            public,
            redirect_uris,
            grant_types,
            scopes,
            audience,
            exchange_audiences,
        } => {
            let secret = (!public).then(secrets::generate_secret);
            let spec = ClientSpec {
                client_id,
                name,
                secret: secret.clone().map(Secret::new),
                secret_env: None,
                public,
                redirect_uris,
                grant_types,
                scopes,
                audience,
                token_exchange_audiences: exchange_audiences,
                jwks: vec![],
                tls_client_auth_san_dns: None,
                resources: vec![],
                dpop_bound_access_tokens: false,
            };
            let client = client_from_spec(&spec, &config.default_audience)?;
            register_client(&store, &client, clock.now()).await?;
            println!("client_id: {}", client.client_id);
            if let Some(secret) = secret {
                println!("client_secret: {secret}");
                println!("(shown once: only its hash is stored)");
            }
        }
        AdminCommand::AddUser { username, subject } => {
            let mut password = String::new();
            std::io::stdin().read_line(&mut password).context("reading the password from stdin")?;
            let password = password.trim_end_matches(['\r', '\n']).to_owned();
            anyhow::ensure!(!password.is_empty(), "empty password");
            let subject = subject.unwrap_or_else(|| username.clone());
            let password_hash = Secret::new(secrets::hash_password(password).await?);
            register_user(
                &store,
                &User { subject: subject.clone(), username, password_hash },
                clock.now(),
            )
            .await?;
            println!("user {subject} registered");
        }
        AdminCommand::RotateKeys => rotate_keys(config, &store, clock.now()).await?,
        AdminCommand::DevCerts { .. } | AdminCommand::WaitInit { .. } => {
            unreachable!("handled before the database is opened")
        }
        AdminCommand::Purge => {
            let cutoff = clock.now() - config.purge_retention_secs.max(0);
            let purged = store.purge_expired(cutoff).await?;
            println!("purged {} expired records: {purged:?}", purged.total());
        }
        AdminCommand::Init => {
            // Opening the store above applied the migrations.
            if let Some(path) = &config.bootstrap {
                let file = crate::bootstrap::BootstrapFile::load(path)?;
                crate::bootstrap::apply(&file, &store, &config.default_audience, clock.now())
                    .await?;
                println!("applied {}", path.display());
            }
            let ring = KeyRing::load_or_create(
                &store,
                config.signing_alg.into(),
                config.rotation_policy(),
                clock.now(),
            )
            .await?;
            let kid = ring.active_kid(clock.now()).unwrap_or_default();
            println!("database ready; signing key {kid}");
        }
    }
    Ok(())
}

/// How often [`AdminCommand::WaitInit`] looks again.
const WAIT_INIT_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

async fn wait_init(config: &Config, timeout: std::time::Duration) -> anyhow::Result<()> {
    let url = config.database_url()?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        // Connecting applies the migrations this build has (under
        // PostgreSQL's advisory lock, so concurrently with the Job is safe);
        // the key is what only `admin init` (or a running server) creates.
        let why = match SqlStore::connect(&url).await {
            Ok(store) => match store.signing_keys().await {
                Ok(keys) if !keys.is_empty() => {
                    println!("database ready");
                    return Ok(());
                }
                Ok(_) => "no signing key yet".to_owned(),
                Err(err) => err.to_string(),
            },
            Err(err) => err.to_string(),
        };
        if tokio::time::Instant::now() + WAIT_INIT_RETRY > deadline {
            anyhow::bail!(
                "the database was not initialised within {timeout:?} ({why}): \
                 run `auth-server admin init` (the migration Job)"
            );
        }
        eprintln!("waiting for `admin init`: {why}");
        tokio::time::sleep(WAIT_INIT_RETRY).await;
    }
}

async fn rotate_keys(config: &Config, store: &SqlStore, now: i64) -> anyhow::Result<()> {
    let ring =
        KeyRing::load_or_create(store, config.signing_alg.into(), config.rotation_policy(), now)
            .await?;
    let kid = ring.rotate(store, now).await?;
    println!(
        "new signing key {kid}: published now, signs from {}",
        now + config.key_propagation_secs
    );
    Ok(())
}

/// The name of the development CA (its certificate's subject).
const DEV_CA_NAME: &str = "Tollgate development CA";

fn dev_certs(
    dir: &std::path::Path,
    services: &[String],
    renew: bool,
    owner: Option<u32>,
    now: i64,
) -> anyhow::Result<()> {
    use tollgate_service_kit::dev_ca::DevCa;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let key_file = dir.join("ca.key");
    let ca = match std::fs::read_to_string(&key_file) {
        Ok(key) => DevCa::from_key_pem(DEV_CA_NAME, &key, now)?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let ca = DevCa::new(DEV_CA_NAME, now)?;
            ca.write_ca_key(&key_file)?;
            println!("made a development CA");
            ca
        }
        Err(err) => return Err(err).with_context(|| format!("reading {}", key_file.display())),
    };
    let mut files = vec![ca.write_ca(dir)?];
    for service in services {
        let (name, extra) = service.split_once('=').unwrap_or((service, ""));
        let (cert, key) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
        if cert.exists() && key.exists() && !renew {
            println!("{name}: kept");
        } else {
            let mut dns_names = vec![name];
            dns_names.extend(extra.split(',').filter(|n| !n.is_empty()));
            ca.write_service(dir, name, &dns_names, &[])?;
            println!("{name}: issued for {}", dns_names.join(", "));
        }
        files.extend([cert, key]);
    }
    #[cfg(unix)]
    if let Some(uid) = owner {
        for file in &files {
            std::os::unix::fs::chown(file, Some(uid), Some(uid))
                .with_context(|| format!("giving {} to {uid}", file.display()))?;
        }
    }
    Ok(())
}
