//! What each method of the notes store requires, in one table: `(gRPC path,
//! scope)`, one line per method (deny by default otherwise). `notes:count` is
//! for services' own tokens: totals only.

pub const METHOD_SCOPES: &[(&str, &str)] = &[
    ("/tollgate.notes.v1.NoteStore/ListNotes", "notes:read"),
    ("/tollgate.notes.v1.NoteStore/CreateNote", "notes:write"),
    ("/tollgate.notes.v1.NoteStore/DeleteNote", "notes:write"),
    ("/tollgate.notes.v1.NoteStore/CountNotes", "notes:count"),
];

#[cfg(test)]
mod tests {
    /// The table matches the proto: every RPC has a line, none is stale.
    #[test]
    fn the_scope_table_matches_the_contract() {
        tollgate_service_kit::testing::assert_scope_table(
            "tollgate.notes.v1",
            super::METHOD_SCOPES,
        );
    }
}
