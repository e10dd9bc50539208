//! What each method of the notes store requires, in one table.

use tollgate_service_kit::auth::ScopePolicy;

pub const NOTES_READ: &str = "notes:read";
pub const NOTES_WRITE: &str = "notes:write";
/// For services' own tokens: totals only.
pub const NOTES_COUNT: &str = "notes:count";

pub const METHOD_SCOPES: &[(&str, &str)] = &[
    ("/tollgate.notes.v1.NoteStore/ListNotes", NOTES_READ),
    ("/tollgate.notes.v1.NoteStore/CreateNote", NOTES_WRITE),
    ("/tollgate.notes.v1.NoteStore/DeleteNote", NOTES_WRITE),
    ("/tollgate.notes.v1.NoteStore/CountNotes", NOTES_COUNT),
];

pub fn scope_policy() -> ScopePolicy {
    ScopePolicy::for_api(METHOD_SCOPES)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every method in the contract has a scope here (deny by default otherwise).
    #[test]
    fn every_rpc_in_the_contract_has_a_scope() {
        let mut declared: Vec<_> = METHOD_SCOPES.iter().map(|(p, _)| p.to_string()).collect();
        declared.sort();
        assert_eq!(tollgate_proto::rpc_paths("tollgate.notes.v1"), declared);
    }
}
