//! Transaction Tokens (draft-ietf-oauth-transaction-tokens): one token for a
//! user's whole call chain, client-app → resource server → notes store →
//! ledger, with the authorization server as the trust domain's Txn-Token
//! Service. Each refusal test performs the attack and asserts the exact error.

use tokio::sync::broadcast;
use tollgate_client_app::claims::decode_unverified;
use tollgate_client_app::resource::bearer;
use tollgate_e2e::{NOTES_STORE_CLIENT, RESOURCE_SERVER_CLIENT, TRUST_DOMAIN, TestStack, forge};
use tollgate_proto::ledger::v1::ListEntriesRequest;
use tollgate_proto::ledger::v1::ledger_client::LedgerClient;
use tollgate_proto::notes::v1::ListNotesRequest;
use tollgate_proto::notes::v1::note_store_client::NoteStoreClient;
use tollgate_resource_server::config::Delegation;
use tollgate_service_kit::auth::AuthContext;
use tollgate_service_kit::status::oauth_error_code;
use tonic::Code;

use crate::support::{TokenReply, post_token, register};

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
const TXN_TOKEN: &str = "urn:ietf:params:oauth:token-type:txn_token";
const ALL: [&str; 4] = ["profile:read", "profile:write", "notes:read", "notes:write"];

/// A stack whose resource server carries users' calls with Txn-Tokens.
async fn txn_stack() -> TestStack {
    TestStack::builder()
        .tweak(|config| config.resource.settings.delegation = Delegation::TxnToken)
        .start()
        .await
        .unwrap()
}

/// The next context `log` saw.
async fn seen(log: &mut broadcast::Receiver<AuthContext>) -> AuthContext {
    tollgate_e2e::within("an admitted call", log.recv()).await.unwrap().unwrap()
}

/// `POST /token` as the workload `client_id` (the resource server or the
/// notes store) with `form`.
async fn as_workload(stack: &TestStack, client_id: &str, form: &[(&str, &str)]) -> TokenReply {
    let secret = match client_id {
        RESOURCE_SERVER_CLIENT => stack.secrets.resource_server.clone(),
        _ => stack.secrets.notes_store.clone(),
    };
    post_token(stack, Some((client_id, secret.expose())), form).await
}

/// A Txn-Token for `subject` (of `subject_type`), as `client_id` asks for it.
async fn txn_token(
    stack: &TestStack,
    client_id: &str,
    subject: &str,
    subject_type: &str,
    scope: &str,
) -> TokenReply {
    as_workload(
        stack,
        client_id,
        &[
            ("grant_type", EXCHANGE),
            ("requested_token_type", TXN_TOKEN),
            ("audience", TRUST_DOMAIN),
            ("scope", scope),
            ("subject_token", subject),
            ("subject_token_type", subject_type),
        ],
    )
    .await
}

/// The workload's own access token (client credentials), for its registered
/// audience: the notes store for the resource server, the ledger for the
/// notes store.
async fn own_token(stack: &TestStack, client_id: &str) -> String {
    let reply = as_workload(stack, client_id, &[("grant_type", "client_credentials")]).await;
    reply.body["access_token"].as_str().unwrap().to_owned()
}

/// `ListNotes` at the notes store, authenticated by `workload_token`, with
/// `txn_tokens` in `txn-token` (each its own entry).
async fn list_notes(
    stack: &TestStack,
    workload_token: &str,
    txn_tokens: &[&str],
) -> Result<usize, tonic::Status> {
    let channel = tollgate_e2e::channel(stack.notes_url()).await.unwrap();
    let mut request = bearer(ListNotesRequest {}, workload_token).unwrap();
    for txn in txn_tokens {
        request.metadata_mut().append("txn-token", txn.parse().unwrap());
    }
    Ok(NoteStoreClient::new(channel).list_notes(request).await?.into_inner().notes.len())
}

fn assert_refused(result: Result<usize, tonic::Status>, code: Code, error: &str, message: &str) {
    let status = result.expect_err("refused");
    assert_eq!(
        (status.code(), oauth_error_code(&status), status.message()),
        (code, Some(error), message),
    );
}

#[tokio::test]
async fn a_users_call_crosses_two_internal_hops_with_one_txn_token() {
    let stack = txn_stack().await;
    let (mut at_notes, mut at_ledger) = (stack.notes_access(), stack.ledger_access());
    let tokens = stack.sign_in(&stack.cli_client(), "alice", &ALL).await.unwrap();
    let api = stack.resource().await.unwrap();

    let note = api.create_note(tokens.access_token.expose(), "me", "Chained", "two hops").await;
    let note = note.unwrap();
    assert_eq!((note.owner.as_str(), note.written_by.as_str()), ("alice", RESOURCE_SERVER_CLIENT));

    // Hop 1, the notes store: the resource server authenticated by its own
    // token, acting for alice within one transaction whose scope is this
    // call's.
    let first = seen(&mut at_notes).await;
    assert_eq!(
        (first.subject.as_str(), first.client_id.as_str(), first.actor.as_deref()),
        ("alice", RESOURCE_SERVER_CLIENT, Some(RESOURCE_SERVER_CLIENT))
    );
    assert_eq!(first.scopes, ["notes:write"]);
    let transaction = first.transaction.clone().expect("a transaction");
    assert_eq!(transaction.requesters, [RESOURCE_SERVER_CLIENT]);
    assert_eq!(transaction.details.as_deref(), Some(r#"{"rpc":"CreateNote"}"#));

    // Hop 2, the ledger: called by the notes store with the same Txn-Token,
    // unchanged: same transaction, same subject and scope, and nobody asked
    // the authorization server for anything on the way.
    let second = seen(&mut at_ledger).await;
    assert_eq!((second.subject.as_str(), second.client_id.as_str()), ("alice", NOTES_STORE_CLIENT));
    assert_eq!(second.scopes, ["notes:write"]);
    assert_eq!(second.transaction, Some(transaction.clone()));

    // The next user call is another transaction.
    api.delete_note(tokens.access_token.expose(), "me", &note.id).await.unwrap();
    let next = seen(&mut at_notes).await.transaction.expect("a transaction");
    assert_ne!(next.txn, transaction.txn);
    assert_eq!(seen(&mut at_ledger).await.transaction.expect("the same").txn, next.txn);

    // The ledger kept both, for alice, each with its transaction: asked with
    // a Txn-Token of alice's as the notes store would.
    let read = txn_token(
        &stack,
        RESOURCE_SERVER_CLIENT,
        tokens.access_token.expose(),
        ACCESS_TOKEN,
        "notes:read",
    )
    .await;
    let channel = tollgate_e2e::channel(stack.ledger_url()).await.unwrap();
    let mut request =
        bearer(ListEntriesRequest {}, &own_token(&stack, NOTES_STORE_CLIENT).await).unwrap();
    request
        .metadata_mut()
        .insert("txn-token", read.body["access_token"].as_str().unwrap().parse().unwrap());
    let entries = LedgerClient::new(channel).list_entries(request).await.unwrap().into_inner();
    let seen: Vec<_> = entries
        .entries
        .iter()
        .map(|e| (e.action.as_str(), e.note_id.as_str(), e.txn.as_str(), e.subject.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("create", note.id.as_str(), transaction.txn.as_str(), "alice"),
            ("delete", note.id.as_str(), next.txn.as_str(), "alice")
        ]
    );
}

#[tokio::test]
async fn the_txn_token_service_issues_and_replaces_without_widening() {
    let stack = TestStack::start().await.unwrap();
    let tokens = stack.sign_in(&stack.cli_client(), "alice", &ALL).await.unwrap();
    let user = tokens.access_token.expose();

    let issued =
        txn_token(&stack, RESOURCE_SERVER_CLIENT, user, ACCESS_TOKEN, "notes:read notes:write")
            .await;
    assert_eq!(issued.status, 200, "{:?}", issued.body);
    assert_eq!(
        (issued.body["token_type"].as_str(), issued.body["issued_token_type"].as_str()),
        (Some("N_A"), Some(TXN_TOKEN))
    );
    assert!(issued.body.get("refresh_token").is_none());
    assert_eq!(issued.headers["cache-control"], "no-store");
    let first = issued.body["access_token"].as_str().unwrap();
    let (header, original) = decode_unverified(first).unwrap();
    assert_eq!(header["typ"], "txntoken+jwt");
    assert_eq!(
        (original["sub"].as_str(), original["aud"].as_str(), original["req_wl"].as_str()),
        (Some("alice"), Some(TRUST_DOMAIN), Some(RESOURCE_SERVER_CLIENT))
    );

    // The notes store replaces it with a narrower one for its own call.
    let replaced = txn_token(&stack, NOTES_STORE_CLIENT, first, TXN_TOKEN, "notes:read").await;
    assert_eq!(replaced.status, 200, "{:?}", replaced.body);
    let (_, replacement) =
        decode_unverified(replaced.body["access_token"].as_str().unwrap()).unwrap();
    for claim in ["txn", "sub", "aud"] {
        assert_eq!(replacement[claim], original[claim], "{claim} is kept");
    }
    assert_eq!(replacement["scope"], "notes:read");
    assert_eq!(replacement["req_wl"], NOTES_STORE_CLIENT);
    assert_eq!(
        replacement["rctx"]["req_wl_chain"],
        serde_json::json!([RESOURCE_SERVER_CLIENT, NOTES_STORE_CLIENT])
    );
    assert!(replacement["exp"].as_i64() <= original["exp"].as_i64());

    // Never wider than what it replaces.
    let replacement_token = replaced.body["access_token"].as_str().unwrap();
    txn_token(&stack, NOTES_STORE_CLIENT, replacement_token, TXN_TOKEN, "notes:write")
        .await
        .assert_error(400, "invalid_scope");
    // A client registered for token exchange, but not to the trust domain,
    // gets none.
    let gateway = register(
        &stack,
        r#"
client_id = "gateway"
name = "A gateway outside the trust domain"
secret = "gateway-secret-4b9f2c7e1d8a6f3b5c0e9a7d2f1b8c4e"
grant_types = ["urn:ietf:params:oauth:grant-type:token-exchange"]
scopes = ["notes:read"]
token_exchange_audiences = ["tollgate-notes-store"]
"#,
    )
    .await;
    let refused = post_token(
        &stack,
        Some(("gateway", gateway.client_secret.as_ref().unwrap().expose())),
        &[
            ("grant_type", EXCHANGE),
            ("requested_token_type", TXN_TOKEN),
            ("audience", TRUST_DOMAIN),
            ("scope", "notes:read"),
            ("subject_token", user),
            ("subject_token_type", ACCESS_TOKEN),
        ],
    )
    .await;
    refused.assert_error(400, "unauthorized_client");
    assert_eq!(refused.body["error_description"], "this client may not obtain Txn-Tokens");
    // An expired one is never replaced.
    stack.advance(61);
    let expired = txn_token(&stack, NOTES_STORE_CLIENT, first, TXN_TOKEN, "notes:read").await;
    expired.assert_error(400, "invalid_request");
    assert_eq!(expired.body["error_description"], "subject_token is invalid or expired");
}

#[tokio::test]
async fn txn_tokens_that_must_not_pass_are_refused_with_the_exact_error() {
    let stack = TestStack::start().await.unwrap();
    let tokens = stack.sign_in(&stack.cli_client(), "alice", &ALL).await.unwrap();
    let user = tokens.access_token.expose();
    let workload = own_token(&stack, RESOURCE_SERVER_CLIENT).await;
    let reply = txn_token(&stack, RESOURCE_SERVER_CLIENT, user, ACCESS_TOKEN, "notes:read").await;
    let txn = reply.body["access_token"].as_str().unwrap().to_owned();

    // The rightful call passes: the refusals below are about what changed.
    assert_eq!(list_notes(&stack, &workload, &[&txn]).await.unwrap(), 0);

    // Outside its trust domain (validly signed, another `aud`).
    let elsewhere = forge::reissued_txn(&stack.auth_core, &txn, |claims| {
        claims.aud = "other-domain.example".into();
    })
    .unwrap();
    assert_refused(
        list_notes(&stack, &workload, &[&elsewhere]).await,
        Code::Unauthenticated,
        "invalid_token",
        "Txn-Token is for another trust domain",
    );
    // Forged: the server's kid, an attacker's signature.
    assert_refused(
        list_notes(&stack, &workload, &[&forge::with_forged_signature(&txn)]).await,
        Code::Unauthenticated,
        "invalid_token",
        "Txn-Token signature is invalid",
    );
    // The wrong type: the user's access token where a Txn-Token belongs.
    assert_refused(
        list_notes(&stack, &workload, &[user]).await,
        Code::Unauthenticated,
        "invalid_token",
        "Txn-Token type is not txntoken+jwt",
    );
    // Two of them.
    assert_refused(
        list_notes(&stack, &workload, &[&txn, &txn]).await,
        Code::Unauthenticated,
        "invalid_token",
        "more than one Txn-Token",
    );
    // The scope is the transaction's: a read transaction cannot write.
    let channel = tollgate_e2e::channel(stack.notes_url()).await.unwrap();
    let mut write = bearer(
        tollgate_proto::notes::v1::CreateNoteRequest { title: "t".into(), body: "b".into() },
        &workload,
    )
    .unwrap();
    write.metadata_mut().insert("txn-token", txn.parse().unwrap());
    let status = NoteStoreClient::new(channel).create_note(write).await.expect_err("refused");
    assert_eq!(
        (status.code(), oauth_error_code(&status), status.message()),
        (
            Code::PermissionDenied,
            Some("insufficient_scope"),
            "the transaction does not include notes:write"
        )
    );
    // Requested (as a replacement) by a workload the notes store does not
    // take Txn-Tokens from.
    let replaced = txn_token(&stack, NOTES_STORE_CLIENT, &txn, TXN_TOKEN, "notes:read").await;
    let replaced = replaced.body["access_token"].as_str().unwrap().to_owned();
    assert_refused(
        list_notes(&stack, &workload, &[&replaced]).await,
        Code::PermissionDenied,
        "access_denied",
        "the Txn-Token was requested by a workload this service does not accept",
    );

    // A user's access token presented directly to the internal service: not
    // for it, with or without a Txn-Token.
    for txn_tokens in [&[][..], &[txn.as_str()][..]] {
        assert_refused(
            list_notes(&stack, user, txn_tokens).await,
            Code::Unauthenticated,
            "invalid_token",
            "token is not meant for this resource",
        );
    }
    // A token acting for a user (exchanged for the notes store) is no
    // workload's own token: a Txn-Token does not ride on it.
    let exchanged = as_workload(
        &stack,
        RESOURCE_SERVER_CLIENT,
        &[
            ("grant_type", EXCHANGE),
            ("subject_token", user),
            ("subject_token_type", ACCESS_TOKEN),
            ("audience", NOTES_STORE_CLIENT),
        ],
    )
    .await;
    let exchanged = exchanged.body["access_token"].as_str().unwrap().to_owned();
    // A user's token for the notes store (no `act`, `sub` not its client), and
    // the resource server's own token with an `act`: validly signed, each
    // fails one half of "a workload's own token".
    let users_for_notes = forge::reissued(&stack.auth_core, user, |claims| {
        claims.aud = tollgate_token::Audience::One(NOTES_STORE_CLIENT.into());
    })
    .unwrap();
    let acting = forge::reissued(&stack.auth_core, &workload, |claims| {
        claims.act = Some(tollgate_token::Actor { sub: "someone".into(), act: None });
    })
    .unwrap();
    for not_a_workloads in [&exchanged, &users_for_notes, &acting] {
        assert_refused(
            list_notes(&stack, not_a_workloads, &[&txn]).await,
            Code::Unauthenticated,
            "invalid_token",
            "a Txn-Token comes with the calling workload's own access token, not a user's",
        );
    }
    // A workload's own token, but not one the notes store takes Txn-Tokens
    // from.
    let other_workload = forge::reissued(&stack.auth_core, &workload, |claims| {
        claims.sub = "tollgate-backup".into();
        claims.client_id = "tollgate-backup".into();
    })
    .unwrap();
    assert_refused(
        list_notes(&stack, &other_workload, &[&txn]).await,
        Code::PermissionDenied,
        "access_denied",
        "this service does not take Txn-Tokens from the calling workload",
    );
    // The ledger is reached only within a transaction.
    let channel = tollgate_e2e::channel(stack.ledger_url()).await.unwrap();
    let alone = bearer(ListEntriesRequest {}, &own_token(&stack, NOTES_STORE_CLIENT).await);
    let status =
        LedgerClient::new(channel).list_entries(alone.unwrap()).await.expect_err("refused");
    assert_eq!(
        (status.code(), status.message()),
        (Code::PermissionDenied, "the ledger is reached only within a transaction (a Txn-Token)")
    );

    // Expired: a minute, then the leeway.
    stack.advance(60 + 30);
    let workload = own_token(&stack, RESOURCE_SERVER_CLIENT).await;
    assert_refused(
        list_notes(&stack, &workload, &[&txn]).await,
        Code::Unauthenticated,
        "invalid_token",
        "Txn-Token has expired",
    );
}

#[tokio::test]
async fn a_call_that_arrives_within_a_transaction_goes_on_with_the_same_txn_token() {
    // The resource server configured to accept Txn-Tokens too, presented by
    // the backup job (a workload with its own token for the resource server:
    // any workload would do).
    let stack = TestStack::builder()
        .tweak(|config| {
            config.resource.settings.delegation = Delegation::TxnToken;
            config.resource.tokens.txn_trust_domain = Some(TRUST_DOMAIN.into());
            config.resource.tokens.txn_requesters = vec![RESOURCE_SERVER_CLIENT.into()];
            config.resource.tokens.txn_callers = vec!["backup-job".into()];
        })
        .start()
        .await
        .unwrap();
    let mut at_notes = stack.notes_access();
    let tokens = stack.sign_in(&stack.cli_client(), "alice", &ALL).await.unwrap();
    let reply = txn_token(
        &stack,
        RESOURCE_SERVER_CLIENT,
        tokens.access_token.expose(),
        ACCESS_TOKEN,
        "notes:read",
    )
    .await;
    let txn = reply.body["access_token"].as_str().unwrap().to_owned();
    let (_, claims) = decode_unverified(&txn).unwrap();
    let backup = stack.secrets.backup.clone();
    let own = post_token(
        &stack,
        Some(("backup-job", backup.expose())),
        &[("grant_type", "client_credentials")],
    )
    .await;
    let own = own.body["access_token"].as_str().unwrap().to_owned();

    let channel = tollgate_e2e::channel(stack.resource_url()).await.unwrap();
    let mut request =
        bearer(tollgate_proto::resource::v1::ListNotesRequest { owner: "me".into() }, &own)
            .unwrap();
    request.metadata_mut().insert("txn-token", txn.parse().unwrap());
    let listed =
        tollgate_proto::resource::v1::notes_service_client::NotesServiceClient::new(channel)
            .list_notes(request)
            .await
            .unwrap();
    assert!(listed.into_inner().notes.is_empty());
    // The notes store saw alice in the same transaction: the resource server
    // passed the token on rather than starting another.
    let seen = seen(&mut at_notes).await;
    assert_eq!(seen.subject, "alice");
    assert_eq!(seen.transaction.expect("a transaction").txn, claims["txn"].as_str().unwrap());
}
