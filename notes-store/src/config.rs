//! The notes store's configuration: the shared settings
//! ([`tollgate_service_kit::scaffold::ServiceConfig`], token validation) and its
//! own, which services it trusts to act for users.

use tollgate_service_kit::scaffold::ServiceSpec;

/// Its names, defaults and scope table. The audience is this service's identifier: the `aud`
/// of the (exchanged) tokens it accepts.
pub const SPEC: ServiceSpec = ServiceSpec {
    name: "notes-store",
    audience: "tollgate-notes-store",
    grpc_addr: "127.0.0.1:50053",
    data_dir: "data/notes-store",
    database_file: "notes.db",
    method_scopes: crate::policy::METHOD_SCOPES,
};

/// The whole configuration: read once at start-up, typed, passed down.
pub type Config = tollgate_service_kit::scaffold::Config<crate::api::Api>;

/// The service allowed by default to act for users here.
pub const DEFAULT_TRUSTED_ACTOR: &str = "tollgate-resource";

/// The notes store's own settings.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// A service (client id) allowed to act for users here (RFC 8693 `act.sub`).
    #[arg(long = "trusted-actor", env = "TRUSTED_ACTORS", value_delimiter = ',', default_value = DEFAULT_TRUSTED_ACTOR)]
    pub trusted_actors: Vec<String>,
    /// The ledger (an internal service): with it, each change made within a
    /// transaction (a call carrying a Txn-Token) is recorded there, the
    /// Txn-Token passed on unmodified. Needs OAUTH_CLIENT_ID (and its secret).
    #[arg(long, env = "LEDGER_URL")]
    pub ledger_url: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self { trusted_actors: vec![DEFAULT_TRUSTED_ACTOR.into()], ledger_url: None }
    }
}

#[cfg(test)]
mod tests {
    /// Every argument has its own name and the defaults parse.
    #[test]
    fn the_command_line_is_well_formed_and_parses() {
        tollgate_service_kit::testing::parse_command_line::<crate::api::Api>(&["notes-store"]);
    }
}
