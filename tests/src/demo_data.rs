//! The demo clients and users: what the quickstart and the tests register.
//!
//! Passwords are fixed so a person can sign in with a real browser; client
//! secrets are generated per run, as a real deployment's would be.

use tollgate_auth_server::domain::secrets::generate_secret as random_secret;
use tollgate_client_app::oauth::{ClientAuthMethod, ClientIdentity};
use tollgate_token::Secret;

/// Demo resource owners and their passwords. Demo only: never reuse these.
pub const PASSWORDS: &[(&str, &str)] =
    &[("alice", "alice-demo-password"), ("bob", "bob-demo-password")];

pub const CLI_CLIENT: &str = "tollgate-cli";
pub const WEB_CLIENT: &str = "tollgate-web";
pub const REPORTER_CLIENT: &str = "tollgate-reporter";
pub const OTHER_API_CLIENT: &str = "other-api-client";
pub const BACKUP_CLIENT: &str = "backup-job";
/// The resource server's own identity at the authorization server (it fetches
/// the revocation denylist and introspects tokens meant for it).
pub const RESOURCE_SERVER_CLIENT: &str = "tollgate-resource";
/// The notes store's identity at the authorization server (for the denylist).
pub const NOTES_STORE_CLIENT: &str = "tollgate-notes-store";
/// The ledger's identity at the authorization server (for the denylist).
pub const LEDGER_CLIENT: &str = "tollgate-ledger";
/// The DNS names of the services' certificates in a TLS stack.
pub const AUTH_SERVER_DNS: &str = "auth-server";
pub const RESOURCE_SERVER_DNS: &str = "resource-server";
pub const NOTES_STORE_DNS: &str = "notes-store";
pub const LEDGER_DNS: &str = "ledger";
/// The trust domain of the stack's Transaction Tokens (the authorization
/// server's default).
pub const TRUST_DOMAIN: &str = "tollgate.internal";
/// The ledger's audience (the notes store's tokens for it).
pub const LEDGER_AUDIENCE: &str = "tollgate-ledger";

/// The confidential clients' secrets for one run.
#[derive(Debug, Clone)]
pub struct DemoSecrets {
    pub web: Secret,
    pub reporter: Secret,
    pub other_api: Secret,
    pub backup: Secret,
    pub resource_server: Secret,
    pub notes_store: Secret,
    pub ledger: Secret,
}

impl DemoSecrets {
    pub fn generate() -> Self {
        Self {
            web: Secret::new(random_secret()),
            reporter: Secret::new(random_secret()),
            other_api: Secret::new(random_secret()),
            backup: Secret::new(random_secret()),
            resource_server: Secret::new(random_secret()),
            notes_store: Secret::new(random_secret()),
            ledger: Secret::new(random_secret()),
        }
    }
}

/// The bootstrap file (docs/bootstrap.md) registering the demo clients and users.
pub fn bootstrap_toml(secrets: &DemoSecrets) -> String {
    bootstrap_toml_for(secrets, false)
}

/// The bootstrap file; with `mutual_tls` the resource server and the notes
/// store are registered for `tls_client_auth` (RFC 8705 §2.1.2) with their
/// certificates' DNS names instead of secrets.
pub fn bootstrap_toml_for(secrets: &DemoSecrets, mutual_tls: bool) -> String {
    let credential = |secret: &Secret, dns_name: &str| match mutual_tls {
        false => format!("secret = \"{}\"", secret.expose()),
        true => format!("tls_client_auth_san_dns = \"{dns_name}\""),
    };
    let users: String = PASSWORDS
        .iter()
        .map(|(name, password)| {
            format!("[[users]]\nusername = \"{name}\"\npassword = \"{password}\"\n\n")
        })
        .collect();
    format!(
        r#"# Demo clients and users, generated for this run.

# A native app (RFC 8252): public, proves itself with PKCE, redirects to a
# loopback listener on any port.
[[clients]]
client_id = "{CLI_CLIENT}"
name = "Tollgate CLI"
public = true
redirect_uris = ["http://127.0.0.1/callback"]
grant_types = ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"]
scopes = ["profile:read", "profile:write", "notes:read", "notes:write"]

# A confidential web app: a secret and PKCE.
[[clients]]
client_id = "{WEB_CLIENT}"
name = "Tollgate Web"
secret = "{web}"
redirect_uris = ["http://127.0.0.1/callback", "https://web.example/callback"]
grant_types = ["authorization_code", "refresh_token"]
scopes = ["profile:read", "notes:read"]

# A machine client: acts for itself, reads aggregate reports.
[[clients]]
client_id = "{REPORTER_CLIENT}"
name = "Usage reporter"
secret = "{reporter}"
grant_types = ["client_credentials"]
scopes = ["reports:read"]

# A machine client of another API: its tokens are not for the resource server.
[[clients]]
client_id = "{OTHER_API_CLIENT}"
name = "Other API client"
secret = "{other_api}"
grant_types = ["client_credentials"]
scopes = ["notes:read", "reports:read"]
audience = "other-api"

# A machine client given an owner's scope (a misconfiguration): its own
# tokens still reach no owner's data.
[[clients]]
client_id = "{BACKUP_CLIENT}"
name = "Backup job"
secret = "{backup}"
grant_types = ["client_credentials"]
scopes = ["notes:read"]

# The resource server itself: a confidential client whose id is the audience
# of the tokens it accepts. It exchanges those tokens for tokens to the notes
# store (RFC 8693) or for Transaction Tokens of the trust domain, and counts
# notes with its own token.
[[clients]]
client_id = "{RESOURCE_SERVER_CLIENT}"
name = "Tollgate resource server"
{resource_server}
grant_types = ["client_credentials", "urn:ietf:params:oauth:grant-type:token-exchange"]
scopes = ["notes:count", "notes:read", "notes:write"]
audience = "{NOTES_STORE_CLIENT}"
token_exchange_audiences = ["{NOTES_STORE_CLIENT}", "{TRUST_DOMAIN}"]

# The notes store: fetches the revocation denylist, calls the ledger with its
# own token, and may replace a Txn-Token (never widening it).
[[clients]]
client_id = "{NOTES_STORE_CLIENT}"
name = "Tollgate notes store"
{notes_store}
grant_types = ["client_credentials", "urn:ietf:params:oauth:grant-type:token-exchange"]
scopes = ["notes:read", "notes:write"]
audience = "{LEDGER_AUDIENCE}"
token_exchange_audiences = ["{TRUST_DOMAIN}"]

# The ledger: identified only to fetch the revocation denylist.
[[clients]]
client_id = "{LEDGER_CLIENT}"
name = "Tollgate ledger"
{ledger}
grant_types = []
scopes = []

{users}"#,
        web = secrets.web.expose(),
        reporter = secrets.reporter.expose(),
        other_api = secrets.other_api.expose(),
        backup = secrets.backup.expose(),
        resource_server = credential(&secrets.resource_server, RESOURCE_SERVER_DNS),
        notes_store = credential(&secrets.notes_store, NOTES_STORE_DNS),
        ledger = credential(&secrets.ledger, LEDGER_DNS),
    )
}

pub fn cli_client() -> ClientIdentity {
    ClientIdentity {
        client_id: CLI_CLIENT.into(),
        client_secret: None,
        auth_method: ClientAuthMethod::ClientSecretBasic,
    }
}

pub fn web_client(secrets: &DemoSecrets) -> ClientIdentity {
    ClientIdentity {
        client_id: WEB_CLIENT.into(),
        client_secret: Some(secrets.web.clone()),
        auth_method: ClientAuthMethod::ClientSecretBasic,
    }
}

pub fn reporter_client(secrets: &DemoSecrets) -> ClientIdentity {
    ClientIdentity {
        client_id: REPORTER_CLIENT.into(),
        client_secret: Some(secrets.reporter.clone()),
        auth_method: ClientAuthMethod::ClientSecretBasic,
    }
}

pub fn other_api_client(secrets: &DemoSecrets) -> ClientIdentity {
    ClientIdentity {
        client_id: OTHER_API_CLIENT.into(),
        client_secret: Some(secrets.other_api.clone()),
        auth_method: ClientAuthMethod::ClientSecretBasic,
    }
}

pub fn backup_client(secrets: &DemoSecrets) -> ClientIdentity {
    ClientIdentity {
        client_id: BACKUP_CLIENT.into(),
        client_secret: Some(secrets.backup.clone()),
        auth_method: ClientAuthMethod::ClientSecretBasic,
    }
}

pub fn resource_server_client(secrets: &DemoSecrets) -> ClientIdentity {
    ClientIdentity {
        client_id: RESOURCE_SERVER_CLIENT.into(),
        client_secret: Some(secrets.resource_server.clone()),
        auth_method: ClientAuthMethod::ClientSecretBasic,
    }
}
