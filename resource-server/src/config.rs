//! The resource server's configuration: the shared settings
//! ([`tollgate_service_kit::scaffold::ServiceConfig`], token validation) and its
//! own, the notes store it delegates to.

use tollgate_service_kit::scaffold::ServiceSpec;

/// Its names, defaults and scope table. The audience is this API's identifier: the `aud` of
/// the tokens it accepts, and its client id at the authorization server.
pub const SPEC: ServiceSpec = ServiceSpec {
    name: "resource-server",
    audience: "tollgate-resource",
    grpc_addr: "127.0.0.1:50052",
    data_dir: "data/resource-server",
    database_file: "resource.db",
    method_scopes: crate::policy::METHOD_SCOPES,
};
pub const DEFAULT_NOTES_STORE_URL: &str = "http://127.0.0.1:50053";
pub const DEFAULT_NOTES_STORE_AUDIENCE: &str = "tollgate-notes-store";

/// The whole configuration: read once at start-up, typed, passed down.
pub type Config = tollgate_service_kit::scaffold::Config<crate::api::Api>;

/// The resource server's own settings.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// The notes store (the internal service holding the notes).
    #[arg(long, env = "NOTES_STORE_URL", default_value = DEFAULT_NOTES_STORE_URL)]
    pub notes_store_url: String,
    /// The notes store's audience: what user tokens are exchanged for.
    #[arg(long, env = "NOTES_STORE_AUDIENCE", default_value = DEFAULT_NOTES_STORE_AUDIENCE)]
    pub notes_store_audience: String,
    /// How a user's call is carried to the notes store: `exchange` (a token
    /// per hop, RFC 8693) or `txn-token` (one Transaction Token for the whole
    /// call chain). docs/transaction-tokens.md says when to use which.
    #[arg(long, env = "NOTES_STORE_DELEGATION", value_enum, default_value = "exchange")]
    pub delegation: Delegation,
    /// The trust domain Txn-Tokens are asked for (the authorization server's
    /// AUTH_TXN_TRUST_DOMAIN). Used with `--delegation txn-token`.
    /// (Not `OAUTH_TXN_TRUST_DOMAIN`: that one makes a service accept
    /// Txn-Tokens from its callers; this server is the edge that asks.)
    #[arg(long, env = "DELEGATION_TRUST_DOMAIN", default_value = DEFAULT_TXN_TRUST_DOMAIN)]
    pub delegation_trust_domain: String,
}

/// The trust domain's default name, as the authorization server's.
pub const DEFAULT_TXN_TRUST_DOMAIN: &str = "tollgate.internal";

/// How the resource server acts for a user at the notes store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Delegation {
    /// Token exchange (RFC 8693): a token for the notes store, with `act`.
    Exchange,
    /// A Transaction Token (draft-ietf-oauth-transaction-tokens) beside this
    /// server's own token.
    TxnToken,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            notes_store_url: DEFAULT_NOTES_STORE_URL.into(),
            notes_store_audience: DEFAULT_NOTES_STORE_AUDIENCE.into(),
            delegation: Delegation::Exchange,
            delegation_trust_domain: DEFAULT_TXN_TRUST_DOMAIN.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every argument has its own name and the command line parses: two
    /// flattened settings under one name would make the binary fail at start.
    #[test]
    fn the_command_line_is_well_formed_and_parses() {
        let config = tollgate_service_kit::testing::parse_command_line::<crate::api::Api>(&[
            "resource-server",
            "--delegation",
            "txn-token",
        ]);
        assert_eq!(config.settings.delegation, super::Delegation::TxnToken);
        assert_eq!(config.settings.delegation_trust_domain, super::DEFAULT_TXN_TRUST_DOMAIN);
        assert_eq!(config.tokens.txn_trust_domain, None, "it accepts no Txn-Tokens itself");
    }
}
