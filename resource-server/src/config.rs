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
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            notes_store_url: DEFAULT_NOTES_STORE_URL.into(),
            notes_store_audience: DEFAULT_NOTES_STORE_AUDIENCE.into(),
        }
    }
}
