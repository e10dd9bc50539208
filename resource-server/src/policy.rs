//! What each method requires: the one table that says which scope opens which
//! door. A method missing here is refused (deny by default, see
//! [`tollgate_service_kit::auth`]).

pub const PROFILE_READ: &str = "profile:read";
pub const PROFILE_WRITE: &str = "profile:write";
pub const NOTES_READ: &str = "notes:read";
pub const NOTES_WRITE: &str = "notes:write";
/// Meant for machine clients (client_credentials): aggregate figures only.
pub const REPORTS_READ: &str = "reports:read";

/// `(gRPC path, scope)`, one line per method of the API. The auth layer
/// enforces it, with health checks and reflection open to all (orchestrators
/// probe without tokens): [`tollgate_service_kit::auth::ScopePolicy::for_api`].
pub const METHOD_SCOPES: &[(&str, &str)] = &[
    ("/tollgate.resource.v1.ProfileService/GetProfile", PROFILE_READ),
    ("/tollgate.resource.v1.ProfileService/UpdateProfile", PROFILE_WRITE),
    ("/tollgate.resource.v1.NotesService/ListNotes", NOTES_READ),
    ("/tollgate.resource.v1.NotesService/CreateNote", NOTES_WRITE),
    ("/tollgate.resource.v1.NotesService/DeleteNote", NOTES_WRITE),
    ("/tollgate.resource.v1.ReportService/GetUsageReport", REPORTS_READ),
];

#[cfg(test)]
mod tests {
    /// The table matches the proto: every RPC has a line (a new one cannot ship
    /// without someone deciding its scope), no line is stale or repeated.
    #[test]
    fn the_scope_table_matches_the_contract() {
        tollgate_service_kit::testing::assert_scope_table(
            "tollgate.resource.v1",
            super::METHOD_SCOPES,
        );
    }
}
