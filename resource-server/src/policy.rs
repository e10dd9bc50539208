//! What each method requires: the one table that says which scope opens which
//! door. A method missing here is refused (deny by default, see
//! [`tollgate_service_kit::auth`]).

use tollgate_service_kit::auth::ScopePolicy;

pub const PROFILE_READ: &str = "profile:read";
pub const PROFILE_WRITE: &str = "profile:write";
pub const NOTES_READ: &str = "notes:read";
pub const NOTES_WRITE: &str = "notes:write";
/// Meant for machine clients (client_credentials): aggregate figures only.
pub const REPORTS_READ: &str = "reports:read";

/// `(gRPC path, scope)`, one line per method of the API.
pub const METHOD_SCOPES: &[(&str, &str)] = &[
    ("/tollgate.resource.v1.ProfileService/GetProfile", PROFILE_READ),
    ("/tollgate.resource.v1.ProfileService/UpdateProfile", PROFILE_WRITE),
    ("/tollgate.resource.v1.NotesService/ListNotes", NOTES_READ),
    ("/tollgate.resource.v1.NotesService/CreateNote", NOTES_WRITE),
    ("/tollgate.resource.v1.NotesService/DeleteNote", NOTES_WRITE),
    ("/tollgate.resource.v1.ReportService/GetUsageReport", REPORTS_READ),
];

/// The policy the auth layer enforces: the table above, plus health checks and
/// reflection open to all (orchestrators probe without tokens).
pub fn scope_policy() -> ScopePolicy {
    ScopePolicy::for_api(METHOD_SCOPES)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every method in the proto has a line in the table: a new RPC cannot ship
    /// without someone deciding its scope (it would be unreachable, not open).
    #[test]
    fn every_rpc_in_the_contract_has_a_scope() {
        let mut declared: Vec<_> = METHOD_SCOPES.iter().map(|(p, _)| p.to_string()).collect();
        declared.sort();
        assert_eq!(tollgate_proto::rpc_paths("tollgate.resource.v1"), declared);
    }
}
