//! Test helpers every protected service's tests share (the `test-support`
//! feature: a service enables it in its `[dev-dependencies]`, so none of this
//! is in a release build).

use std::collections::HashMap;

/// Checks `S`'s command line: every argument has a name of its own (clap's
/// debug assertions: two flattened settings under one name would make the
/// binary refuse to start) and `args` parse with the environment left out.
/// Returns what they parse to.
#[allow(
    clippy::unwrap_used,
    reason = "test support: a command line that does not parse fails the test here"
)]
pub fn parse_command_line<S: crate::scaffold::ProtectedService>(
    args: &[&str],
) -> crate::scaffold::Config<S> {
    use clap::FromArgMatches as _;
    crate::scaffold::Config::<S>::command().debug_assert();
    let matches = crate::scaffold::Config::<S>::command()
        .mut_args(|arg| arg.env(None))
        .try_get_matches_from(args)
        .unwrap();
    crate::scaffold::Config::<S>::from_arg_matches(&matches).unwrap()
}

/// Checks a service's scope table against its gRPC contract, and panics with
/// every problem found:
///
/// - every method of `package` (as compiled into `tollgate_proto`) has a line,
///   so a new RPC cannot ship without someone deciding its scope (it would be
///   unreachable, not open: deny by default);
/// - every line names a method of `package`, so a renamed or removed RPC does
///   not leave a stale line that opens nothing;
/// - no method has two lines (the table is read into a map: one would win
///   silently);
/// - every scope is a scope-token (RFC 6749 §3.3: printable ASCII without space,
///   `"` or `\`).
#[track_caller]
pub fn assert_scope_table(package: &str, method_scopes: &[(&str, &str)]) {
    let problems = scope_table_problems(package, method_scopes);
    assert!(problems.is_empty(), "the scope table of {package}:\n  {}", problems.join("\n  "));
}

/// What [`assert_scope_table`] reports, one line a problem.
pub fn scope_table_problems(package: &str, method_scopes: &[(&str, &str)]) -> Vec<String> {
    let contract = tollgate_proto::rpc_paths(package);
    let mut problems = Vec::new();
    if contract.is_empty() {
        problems.push(format!("{package} has no RPC in tollgate_proto (is the package right?)"));
    }
    let mut lines: HashMap<&str, usize> = HashMap::new();
    for (path, scope) in method_scopes {
        *lines.entry(path).or_default() += 1;
        if !contract.iter().any(|rpc| rpc == path) {
            problems.push(format!("{path} is not a method of {package}"));
        }
        let scope_token =
            |c: char| c == '!' || ('#'..='[').contains(&c) || (']'..='~').contains(&c);
        if scope.is_empty() || !scope.chars().all(scope_token) {
            problems.push(format!("{path}: {scope:?} is not a scope-token (RFC 6749 §3.3)"));
        }
    }
    for rpc in &contract {
        if !lines.contains_key(rpc.as_str()) {
            problems.push(format!("{rpc} has no line: it would be refused to everyone"));
        }
    }
    let mut repeated: Vec<_> = lines.into_iter().filter(|(_, n)| *n > 1).collect();
    repeated.sort();
    problems.extend(repeated.into_iter().map(|(path, n)| format!("{path} has {n} lines")));
    problems
}

/// Runs `test` on a fresh SQLite database in a temporary directory, then on a
/// fresh PostgreSQL database when the environment names a server (see
/// [`crate::db::fresh_postgres_database`]): a store's tests pass on both
/// backends or fail.
pub async fn on_each_backend(test: impl AsyncFn(&str)) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("a temporary directory: {e}"));
    test(&crate::db::sqlite_url(dir.path(), "test.db")).await;
    if let Some(url) = crate::db::fresh_postgres_database().await {
        test(&url).await;
    }
}

/// A service's overall health (`""`) over a new connection to `target`, or
/// why there is none: the connection's or the call's error, with its cause.
pub async fn health_of(
    target: crate::tls::GrpcTarget,
) -> Result<tonic_health::pb::health_check_response::ServingStatus, String> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let channel = target.connect().await.map_err(|e| format!("{e:?}"))?;
    let reply = HealthClient::new(channel)
        .check(HealthCheckRequest { service: String::new() })
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(reply.into_inner().status())
}

/// Why a TLS listener at `addr` (certificate checked for `server_name`)
/// turns away a client with `tls`, as the client sees it: the handshake's
/// error, or the alert the server sends after it (TLS 1.3 finishes the
/// client's side of the handshake before the server has judged its
/// certificate). `None` if the connection is kept open.
///
/// Nothing is written after the handshake, so the server's alert is read
/// rather than lost to a broken pipe: what a test of mutual TLS can assert
/// exactly, e.g. `received fatal alert: CertificateRequired`.
pub async fn tls_refusal(
    addr: std::net::SocketAddr,
    server_name: &str,
    tls: &crate::tls::ClientTls,
) -> Option<String> {
    use tokio::io::AsyncReadExt as _;
    let name = rustls::pki_types::ServerName::try_from(server_name.to_owned()).ok()?;
    let tcp = match tokio::net::TcpStream::connect(addr).await {
        Ok(tcp) => tcp,
        Err(err) => return Some(err.to_string()),
    };
    let connector = tokio_rustls::TlsConnector::from(tls.grpc_config());
    let mut stream = match connector.connect(name, tcp).await {
        Ok(stream) => stream,
        Err(err) => return Some(err.to_string()),
    };
    let mut byte = [0u8; 1];
    match tokio::time::timeout(std::time::Duration::from_secs(2), stream.read(&mut byte)).await {
        Ok(Err(err)) => Some(err.to_string()),
        Ok(Ok(0)) => Some("closed without an alert".into()),
        // It answered (an HTTP/2 SETTINGS frame) or kept waiting: accepted.
        Ok(Ok(_)) | Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOTES: &[(&str, &str)] = &[
        ("/tollgate.notes.v1.NoteStore/ListNotes", "notes:read"),
        ("/tollgate.notes.v1.NoteStore/CreateNote", "notes:write"),
        ("/tollgate.notes.v1.NoteStore/DeleteNote", "notes:write"),
        ("/tollgate.notes.v1.NoteStore/CountNotes", "notes:count"),
    ];

    #[test]
    fn a_table_that_matches_its_contract_passes() {
        assert_scope_table("tollgate.notes.v1", NOTES);
    }

    #[test]
    fn missing_stale_repeated_and_malformed_lines_are_each_reported() {
        let mut table = NOTES[1..].to_vec();
        table.push(("/tollgate.notes.v1.NoteStore/ListNote", "notes:read"));
        table.push(("/tollgate.notes.v1.NoteStore/CountNotes", "notes count"));
        assert_eq!(
            scope_table_problems("tollgate.notes.v1", &table),
            [
                "/tollgate.notes.v1.NoteStore/ListNote is not a method of tollgate.notes.v1",
                "/tollgate.notes.v1.NoteStore/CountNotes: \"notes count\" is not a scope-token \
                 (RFC 6749 §3.3)",
                "/tollgate.notes.v1.NoteStore/ListNotes has no line: it would be refused to \
                 everyone",
                "/tollgate.notes.v1.NoteStore/CountNotes has 2 lines",
            ]
        );
        assert_eq!(
            scope_table_problems("tollgate.nope.v1", &[]),
            ["tollgate.nope.v1 has no RPC in tollgate_proto (is the package right?)"]
        );
    }
}
