//! The storage contract the protocol core relies on, checked against the real
//! database. Written over the `Store` traits so every backend runs the same suite.

// In tests a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use tollgate_auth_server::bootstrap::{BootstrapFile, apply};
use tollgate_auth_server::domain::keys::{KeyRing, RotationPolicy};
use tollgate_auth_server::domain::model::{
    AuthorizationCode, DeviceCode, GrantRecord, IssuedAccessToken, NextRefreshToken,
};
use tollgate_auth_server::storage::{
    ClientStore, CodeStore, ConsentStore, DevicePoll, DeviceStore, ExchangeOutcome, GrantSource,
    GrantStore, Housekeeping, NewGrant, Purged, RevocationStore, RotateOutcome, SqlStore,
    UserStore,
};
use tollgate_token::{KeyAlgorithm, Scope};

const NOW: i64 = 1_800_000_000;

/// The clients and user the records below refer to (the schema's foreign keys
/// insist on them).
async fn with_fixtures(store: SqlStore) -> SqlStore {
    let file: BootstrapFile = toml::from_str(BOOTSTRAP).unwrap();
    apply(&file, &store, "tollgate-resource", NOW).await.unwrap();
    store
}

/// A fresh SQLite store in a temporary directory.
async fn sqlite() -> (SqlStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = tollgate_service_kit::db::sqlite_url(dir.path(), "auth.db");
    (with_fixtures(SqlStore::connect(&url).await.unwrap()).await, dir)
}

/// A fresh PostgreSQL database, if the test run has a server (see
/// [`tollgate_service_kit::db::fresh_postgres_database`]).
async fn postgres() -> Option<SqlStore> {
    let url = tollgate_service_kit::db::fresh_postgres_database().await?;
    Some(with_fixtures(SqlStore::connect(&url).await.unwrap()).await)
}

/// Runs each storage case on SQLite and on PostgreSQL: the same contract, both
/// backends.
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let (store, _dir) = super::sqlite().await;
                    super::$case(store).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    if let Some(store) = super::postgres().await {
                        super::$case(store).await;
                    }
                }
            )*
        }
    };
}

fn scope(s: &str) -> Scope {
    Scope::parse(s).unwrap()
}

fn code(hash: &str, expires_at: i64) -> AuthorizationCode {
    AuthorizationCode {
        code_hash: hash.into(),
        client_id: "cli".into(),
        subject: "alice".into(),
        redirect_uri: "http://127.0.0.1/callback".into(),
        scope: scope("notes:read"),
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
        issued_at: NOW,
        expires_at,
        audience: "tollgate-resource".into(),
    }
}

fn grant(id: &str) -> GrantRecord {
    GrantRecord {
        grant_id: id.into(),
        client_id: "cli".into(),
        subject: "alice".into(),
        scope: scope("notes:read notes:write"),
        audience: "tollgate-resource".into(),
        created_at: NOW,
        dpop_jkt: None,
    }
}

fn access(jti: &str) -> IssuedAccessToken {
    IssuedAccessToken { jti: jti.into(), issued_at: NOW, expires_at: NOW + 300 }
}

fn refresh(hash: &str, expires_at: i64) -> NextRefreshToken {
    NextRefreshToken { token_hash: hash.into(), expires_at }
}

/// Exchanges a code as the token endpoint does once its checks pass: for
/// grant `grant_id`, with refresh token `r-<grant_id>` and access token
/// `a-<grant_id>`. Answers with the spent code.
async fn exchange(
    store: &SqlStore,
    code_hash: &str,
    now: i64,
    grant_id: &str,
) -> ExchangeOutcome<AuthorizationCode, ()> {
    let new = NewGrant {
        grant: grant(grant_id),
        refresh: Some(refresh(&format!("r-{grant_id}"), NOW + 3600)),
        access: access(&format!("a-{grant_id}")),
    };
    store.exchange_code(code_hash, now, |code| Ok((new, code.clone()))).await.unwrap()
}

/// Exchanges a code whose checks fail (a wrong verifier, say).
async fn refuse(store: &SqlStore, code_hash: &str, now: i64) -> ExchangeOutcome<(), &'static str> {
    store.exchange_code(code_hash, now, |_| Err("a check failed")).await.unwrap()
}

async fn a_code_is_exchanged_once_and_not_after_expiry(store: SqlStore) {
    store.insert_code(&code("c1", NOW + 60)).await.unwrap();
    store.insert_code(&code("c2", NOW + 60)).await.unwrap();
    let ExchangeOutcome::Exchanged(spent) = exchange(&store, "c1", NOW + 10, "g1").await else {
        panic!("the first exchange succeeds")
    };
    assert_eq!((spent.subject.as_str(), spent.scope.to_string()), ("alice", "notes:read".into()));
    // The grant and its first tokens were written with the spending.
    let first = store.refresh_token("r-g1").await.unwrap().expect("the first refresh token");
    assert_eq!(first.grant.grant_id, "g1");
    assert!(first.is_active(NOW + 10));
    // A replay names that grant, for revocation (RFC 6749 §4.1.2).
    assert_eq!(
        exchange(&store, "c1", NOW + 11, "g2").await,
        ExchangeOutcome::Replayed { grant_id: Some("g1".into()) },
        "second exchange"
    );
    assert!(store.refresh_token("r-g2").await.unwrap().is_none(), "nothing written for it");
    assert_eq!(exchange(&store, "c2", NOW + 60, "g3").await, ExchangeOutcome::Invalid);
    assert_eq!(exchange(&store, "unknown", NOW, "g4").await, ExchangeOutcome::Invalid);
}

async fn a_refused_exchange_spends_the_code_and_writes_no_grant(store: SqlStore) {
    store.insert_code(&code("c1", NOW + 60)).await.unwrap();
    assert_eq!(refuse(&store, "c1", NOW).await, ExchangeOutcome::Refused("a check failed"));
    // Spent all the same: a second try, even a right one, is a replay of a
    // code that produced no grant.
    assert_eq!(
        exchange(&store, "c1", NOW + 1, "g1").await,
        ExchangeOutcome::Replayed { grant_id: None }
    );
    assert!(store.refresh_token("r-g1").await.unwrap().is_none());
    assert!(!store.revoke_grant("g1", NOW + 2).await.unwrap(), "no grant g1 exists");
}

async fn concurrent_exchanges_of_one_code_yield_exactly_one_grant(store: SqlStore) {
    store.insert_code(&code("race", NOW + 60)).await.unwrap();
    let store = Arc::new(store);
    let attempts: Vec<_> = (0..16)
        .map(|attempt| {
            let store = store.clone();
            tokio::spawn(
                async move { exchange(&store, "race", NOW + 1, &format!("g{attempt}")).await },
            )
        })
        .collect();
    let mut grants = Vec::new();
    for (attempt, outcome) in attempts.into_iter().enumerate() {
        match outcome.await.unwrap() {
            ExchangeOutcome::Exchanged(_) => grants.push(format!("g{attempt}")),
            ExchangeOutcome::Replayed { grant_id } => {
                assert!(grant_id.is_some(), "a loser sees the winner's grant, committed")
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(grants.len(), 1);
    assert!(store.refresh_token(&format!("r-{}", grants[0])).await.unwrap().is_some());
}

async fn a_refresh_token_rotates_once_and_only_for_its_client(store: SqlStore) {
    store
        .create_grant(&grant("g1"), Some(&refresh("r1", NOW + 3600)), &access("a1"), None)
        .await
        .unwrap();

    // Another client presenting it: refused, and it is not spent.
    let outcome = store
        .rotate_refresh_token(
            "r1",
            "web",
            NOW,
            None,
            &refresh("x", NOW + 3600),
            &access("rot1"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(outcome, RotateOutcome::Invalid);
    // Asking for more than it carries: refused, not spent.
    let wider = scope("notes:read notes:write profile:read");
    let outcome = store
        .rotate_refresh_token(
            "r1",
            "cli",
            NOW,
            Some(&wider),
            &refresh("x", NOW + 3600),
            &access("rot2"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(outcome, RotateOutcome::ScopeExceeded);

    let outcome = store
        .rotate_refresh_token(
            "r1",
            "cli",
            NOW,
            None,
            &refresh("r2", NOW + 3600),
            &access("rot3"),
            None,
        )
        .await
        .unwrap();
    let RotateOutcome::Rotated(rotated) = outcome else {
        panic!("expected rotation, got {outcome:?}")
    };
    assert_eq!(rotated.grant, grant("g1"));
    // The store gives the successor the spent token's grant, client and scope.
    let next = store.refresh_token("r2").await.unwrap().expect("the rotated token is stored");
    assert_eq!(
        (next.grant.grant_id.as_str(), next.client_id.as_str(), &next.scope, next.issued_at),
        ("g1", "cli", &scope("notes:read notes:write"), NOW)
    );
    assert!(next.is_active(NOW));
    // Spent: presenting it again is a reuse, reported with when it was spent.
    let outcome = store
        .rotate_refresh_token(
            "r1",
            "cli",
            NOW,
            None,
            &refresh("r3", NOW + 3600),
            &access("rot4"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(outcome, RotateOutcome::Reused { grant_id: "g1".into(), used_at: NOW });
    // Its successor works, and expires.
    let outcome = store
        .rotate_refresh_token(
            "r2",
            "cli",
            NOW + 3600,
            None,
            &refresh("r4", NOW + 7200),
            &access("rot5"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(outcome, RotateOutcome::Invalid, "expired at expires_at");
}

async fn concurrent_rotations_of_one_refresh_token_yield_exactly_one_success(store: SqlStore) {
    store
        .create_grant(&grant("g1"), Some(&refresh("r1", NOW + 3600)), &access("a2"), None)
        .await
        .unwrap();
    let store = Arc::new(store);
    let attempts: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let next = refresh(&format!("next-{i}"), NOW + 3600);
                let access = access(&format!("access-{i}"));
                store.rotate_refresh_token("r1", "cli", NOW, None, &next, &access, None).await
            })
        })
        .collect();
    let mut rotated = 0;
    for attempt in attempts {
        if matches!(attempt.await.unwrap().unwrap(), RotateOutcome::Rotated(_)) {
            rotated += 1;
        }
    }
    assert_eq!(rotated, 1);
}

async fn a_failed_grant_write_leaves_nothing_behind(store: SqlStore) {
    store
        .create_grant(&grant("g1"), Some(&refresh("r1", NOW + 3600)), &access("a3"), None)
        .await
        .unwrap();
    // A second grant whose refresh token collides: the whole write must fail...
    assert!(
        store
            .create_grant(&grant("g2"), Some(&refresh("r1", NOW + 3600)), &access("a4"), None)
            .await
            .is_err()
    );
    // ...so grant g2 does not exist, and its access token was not recorded.
    assert!(!store.revoke_grant("g2", NOW).await.unwrap(), "grant g2 must not exist");

    // A code exchange whose grant write fails leaves the code as it was: the
    // spending is part of the same transaction.
    store.insert_code(&code("c1", NOW + 60)).await.unwrap();
    let collides = NewGrant {
        grant: grant("g3"),
        refresh: Some(refresh("r1", NOW + 3600)),
        access: access("a5"),
    };
    assert!(store.exchange_code("c1", NOW, |_| Ok::<_, ()>((collides, ()))).await.is_err());
    assert!(!store.revoke_grant("g3", NOW).await.unwrap(), "grant g3 must not exist");
    assert!(matches!(exchange(&store, "c1", NOW + 1, "g4").await, ExchangeOutcome::Exchanged(_)));
}

async fn revoking_a_grant_denies_its_unexpired_access_tokens_and_stops_its_refresh_tokens(
    store: SqlStore,
) {
    store
        .create_grant(&grant("g1"), Some(&refresh("r1", NOW + 3600)), &access("a1"), None)
        .await
        .unwrap();
    let short = IssuedAccessToken { jti: "a2".into(), issued_at: NOW, expires_at: NOW + 5 };
    let outcome = store
        .rotate_refresh_token("r1", "cli", NOW, None, &refresh("r2", NOW + 3600), &short, None)
        .await
        .unwrap();
    assert!(matches!(outcome, RotateOutcome::Rotated(_)));
    store.create_grant(&grant("other"), None, &access("b1"), None).await.unwrap();

    assert!(store.revoke_grant("g1", NOW + 10).await.unwrap());
    assert!(!store.revoke_grant("g1", NOW + 11).await.unwrap(), "already revoked");
    // a2 had expired by then: nothing to deny. b1 belongs to another grant.
    assert_eq!(
        store.revoked_access_tokens(NOW + 10, None, 100).await.unwrap(),
        vec![("a1".to_owned(), NOW + 300)]
    );
    assert!(store.is_access_token_revoked("a1").await.unwrap());
    assert!(!store.is_access_token_revoked("b1").await.unwrap());
    let outcome = store
        .rotate_refresh_token(
            "r2",
            "cli",
            NOW + 12,
            None,
            &refresh("r3", NOW + 3600),
            &access("a3"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(outcome, RotateOutcome::Invalid, "a revoked grant's refresh token is dead");
    let record = store.refresh_token("r2").await.unwrap().unwrap();
    assert!(record.grant_revoked && !record.is_active(NOW + 12));
    // The denylist forgets tokens once they have expired (at `exp` itself a
    // verifier's leeway may still accept one, so it is listed until then).
    assert_eq!(store.revoked_access_tokens(NOW + 300, None, 100).await.unwrap().len(), 1);
    assert!(store.revoked_access_tokens(NOW + 301, None, 100).await.unwrap().is_empty());
}

async fn a_device_approval_withdrawn_while_its_grant_is_written_gives_a_grant_born_revoked(
    store: SqlStore,
) {
    // A device code: approved (consent recorded with it), handed out, then
    // withdrawn before its grant is written.
    let device = DeviceCode {
        device_code_hash: "d1".into(),
        user_code: "BCDFGHJK".into(),
        client_id: "cli".into(),
        scope: scope("notes:read"),
        created_at: NOW,
        expires_at: NOW + 600,
        poll_interval: 5,
        subject: None,
    };
    assert!(store.insert_device_code(&device).await.unwrap());
    let decided = store.decide_device_code("BCDFGHJK", "alice", true, NOW).await.unwrap();
    assert_eq!(decided, Some(("cli".to_owned(), scope("notes:read"))));
    assert_eq!(store.consent("alice", "cli").await.unwrap(), Some(scope("notes:read")));
    assert!(matches!(
        store.poll_device_code("d1", "cli", NOW).await.unwrap(),
        DevicePoll::Approved(_)
    ));
    assert!(store.withdraw_consent("alice", "cli", NOW + 1).await.unwrap());
    let live = store
        .create_grant(
            &grant("g1"),
            Some(&refresh("r1", NOW + 3600)),
            &access("a1"),
            Some(GrantSource::DeviceCode("d1")),
        )
        .await
        .unwrap();
    assert!(!live, "the grant of a withdrawn approval is born revoked");
    assert!(store.refresh_token("r1").await.unwrap().unwrap().grant_revoked);
}

/// The `jti`s of one denylist page at `NOW`.
async fn denylist_page(store: &SqlStore, after: Option<(&str, i64)>, limit: u32) -> Vec<String> {
    let rows = store.revoked_access_tokens(NOW, after, limit).await.unwrap();
    rows.into_iter().map(|(jti, _)| jti).collect()
}

async fn the_denylist_reads_in_keyset_pages_that_meet_without_gap_or_overlap(store: SqlStore) {
    // Revoked out of order; c and f expired before NOW.
    let rows = [
        ("d", NOW + 20),
        ("a", NOW + 30),
        ("f", NOW - 1),
        ("c", NOW - 5),
        ("e", NOW + 10),
        ("b", NOW + 20),
        ("g", NOW + 10),
    ];
    for (jti, exp) in rows {
        store.revoke_access_token(jti, exp, NOW - 10).await.unwrap();
    }
    // The live ones in (exp, jti) order, each page after the last row of the
    // one before.
    assert_eq!(denylist_page(&store, None, 2).await, ["e", "g"]);
    assert_eq!(denylist_page(&store, Some(("g", NOW + 10)), 2).await, ["b", "d"]);
    assert_eq!(denylist_page(&store, Some(("d", NOW + 20)), 2).await, ["a"]);
    assert!(denylist_page(&store, Some(("a", NOW + 30)), 2).await.is_empty());
    // A cursor need not name a row still there; one from before NOW starts at
    // the live rows.
    assert_eq!(denylist_page(&store, Some(("zz", NOW + 10)), 9).await, ["b", "d", "a"]);
    assert_eq!(denylist_page(&store, Some(("c", NOW - 5)), 9).await, ["e", "g", "b", "d", "a"]);
    // Deleting rows between two pages moves no live row past the reader.
    store.purge_expired(NOW).await.unwrap();
    assert_eq!(denylist_page(&store, Some(("g", NOW + 10)), 9).await, ["b", "d", "a"]);
    // A token expiring at NOW itself is listed, first, with its expiry.
    store.revoke_access_token("h", NOW, NOW).await.unwrap();
    assert_eq!(
        store.revoked_access_tokens(NOW, None, 1).await.unwrap(),
        vec![("h".to_owned(), NOW)]
    );
}

const BOOTSTRAP: &str = r#"
[[clients]]
client_id = "cli"
public = true
redirect_uris = ["http://127.0.0.1/callback"]
grant_types = ["authorization_code", "refresh_token"]
scopes = ["notes:read"]

[[clients]]
client_id = "reporter"
secret = "0123456789abcdef0123456789abcdef-reporter"
grant_types = ["client_credentials"]
scopes = ["reports:read"]

[[clients]]
client_id = "web"
secret = "0123456789abcdef0123456789abcdef-web"
redirect_uris = ["https://web.example/callback"]
grant_types = ["authorization_code", "refresh_token"]
scopes = ["notes:read"]

[[users]]
username = "alice"
password = "alice-password"
"#;

async fn the_bootstrap_file_is_idempotent(store: SqlStore) {
    let file: BootstrapFile = toml::from_str(BOOTSTRAP).unwrap();
    let first_hash = store.user_by_username("alice").await.unwrap().unwrap().password_hash;
    let reporter = store.client("reporter").await.unwrap().unwrap();
    assert_ne!(reporter.secret_hash.as_deref(), Some("0123456789abcdef0123456789abcdef-reporter"));

    apply(&file, &store, "tollgate-resource", NOW + 10).await.unwrap();
    let user = store.user_by_username("alice").await.unwrap().unwrap();
    // Unchanged password: not re-hashed (a restart costs no argon2 work).
    assert_eq!(user.password_hash, first_hash);

    // The same password under an earlier release's argon2 settings (19 MiB,
    // 2 passes): the next start renews it.
    let salt =
        argon2::password_hash::SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    let params = argon2::Params::new(19 * 1024, 2, 1, None).unwrap();
    let old = argon2::PasswordHasher::hash_password(
        &argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params),
        b"alice-password",
        &salt,
    )
    .unwrap()
    .to_string();
    assert!(store.replace_password_hash(&user.subject, first_hash.expose(), &old).await.unwrap());
    apply(&file, &store, "tollgate-resource", NOW + 20).await.unwrap();
    let renewed = store.user_by_username("alice").await.unwrap().unwrap().password_hash;
    assert!(renewed.expose().starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{renewed:?}");
    assert_ne!(renewed.expose(), &old);
    assert_eq!(store.client("reporter").await.unwrap().unwrap(), reporter);
    assert!(store.client("cli").await.unwrap().unwrap().secret_hash.is_none());
}

async fn a_renewed_password_hash_replaces_only_the_hash_it_renews(store: SqlStore) {
    let alice = store.user_by_username("alice").await.unwrap().unwrap();
    let old = alice.password_hash.expose().clone();
    assert!(store.replace_password_hash(&alice.subject, &old, "renewed").await.unwrap());
    let now = store.user_by_username("alice").await.unwrap().unwrap();
    assert_eq!(now.password_hash.expose(), "renewed");
    // A renewal computed from the old hash, arriving after the password changed
    // (here: after the first renewal), changes nothing.
    assert!(!store.replace_password_hash(&alice.subject, &old, "stale").await.unwrap());
    let now = store.user_by_username("alice").await.unwrap().unwrap();
    assert_eq!(now.password_hash.expose(), "renewed");
    assert!(!store.replace_password_hash("nobody", "renewed", "x").await.unwrap());
}

async fn a_client_id_and_a_user_subject_never_coincide(store: SqlStore) {
    // "alice" is a user: a client of that id would mint tokens with sub=alice.
    let clash: BootstrapFile = toml::from_str(
        r#"
        [[clients]]
        client_id = "alice"
        secret = "0123456789abcdef0123456789abcdef-alice"
        grant_types = ["client_credentials"]
        scopes = ["notes:read"]
        "#,
    )
    .unwrap();
    let err = apply(&clash, &store, "tollgate-resource", NOW).await.unwrap_err();
    assert!(err.to_string().contains("already a user's subject"), "{err}");
    assert!(store.client("alice").await.unwrap().is_none());
    // And the other way round: a user whose subject is a client's id.
    let clash: BootstrapFile = toml::from_str(
        r#"
        [[users]]
        username = "mallory"
        subject = "reporter"
        password = "mallory-password"
        "#,
    )
    .unwrap();
    let err = apply(&clash, &store, "tollgate-resource", NOW).await.unwrap_err();
    assert!(err.to_string().contains("already a client's id"), "{err}");
    assert!(store.user_by_username("mallory").await.unwrap().is_none());
}

async fn a_bootstrap_file_with_a_mistake_anywhere_writes_nothing(store: SqlStore) {
    let valid_start = r#"
        [[clients]]
        client_id = "fresh"
        secret = "0123456789abcdef0123456789abcdef-fresh"
        grant_types = ["client_credentials"]
        scopes = ["notes:read"]

        [[users]]
        username = "dora"
        password = "dora-password"
    "#;
    for (mistake, expected) in [
        (
            r#"
            [[clients]]
            client_id = "broken"
            secret = "0123456789abcdef0123456789abcdef-broken"
            grant_types = ["implicit"]
            scopes = ["notes:read"]
            "#,
            "unknown grant type implicit",
        ),
        (
            r#"
            [[users]]
            username = "erin"
            password = "erin-password"
            password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
            "#,
            "give exactly one of password, password_env, password_hash",
        ),
        (
            // A client and a user of one name, both new: caught within the file.
            r#"
            [[clients]]
            client_id = "frank"
            secret = "0123456789abcdef0123456789abcdef-frank"
            grant_types = ["client_credentials"]
            scopes = ["notes:read"]

            [[users]]
            username = "frank"
            password = "frank-password"
            "#,
            "also a client_id in this file",
        ),
        (
            // alice exists with subject "alice".
            r#"
            [[users]]
            username = "alice"
            subject = "alice-2"
            password = "alice-password"
            "#,
            "registered with subject alice; a subject cannot change",
        ),
    ] {
        let file: BootstrapFile = toml::from_str(&format!("{valid_start}\n{mistake}")).unwrap();
        let err = apply(&file, &store, "tollgate-resource", NOW).await.unwrap_err();
        assert!(err.to_string().contains(expected), "{err}");
        assert!(store.client("fresh").await.unwrap().is_none(), "half the file was written");
        assert!(
            store.user_by_username("dora").await.unwrap().is_none(),
            "half the file was written"
        );
        assert!(store.client("frank").await.unwrap().is_none());
    }
}

const POLICY: RotationPolicy =
    RotationPolicy { propagation_secs: 100, retire_after_secs: 600, rotate_every_secs: 1000 };

async fn a_rotated_key_is_published_before_it_signs_and_retired_after_its_tokens_expire(
    store: SqlStore,
) {
    let ring = KeyRing::load_or_create(&store, KeyAlgorithm::EdDSA, POLICY, NOW).await.unwrap();
    let old = ring.active_kid(NOW).unwrap();
    let kids = |now| ring.jwks(now).keys.into_iter().map(|k| k.kid).collect::<Vec<_>>();

    let new = ring.rotate(&store, NOW + 10).await.unwrap();
    // Published at once, signing only after the propagation delay.
    assert_eq!(kids(NOW + 10), [old.clone(), new.clone()]);
    assert_eq!(ring.active_kid(NOW + 109).as_deref(), Some(old.as_str()));
    assert_eq!(ring.active_kid(NOW + 110).as_deref(), Some(new.as_str()));
    // The old key stays published while its tokens may be unexpired.
    assert_eq!(kids(NOW + 110 + 599), [old.clone(), new.clone()]);
    assert_eq!(kids(NOW + 110 + 600), std::slice::from_ref(&new));
    // Another replica (a fresh load) agrees.
    let replica = KeyRing::load_or_create(&store, KeyAlgorithm::EdDSA, POLICY, NOW).await.unwrap();
    assert_eq!(replica.active_kid(NOW + 110), Some(new));
}

async fn scheduled_rotation_happens_when_the_key_is_old_and_only_once(store: SqlStore) {
    let ring = KeyRing::load_or_create(&store, KeyAlgorithm::EdDSA, POLICY, NOW).await.unwrap();
    assert_eq!(ring.rotate_if_due(&store, NOW + 999).await.unwrap(), None);
    let new = ring.rotate_if_due(&store, NOW + 1000).await.unwrap().expect("due");
    // A successor is waiting: no second rotation.
    assert_eq!(ring.rotate_if_due(&store, NOW + 1050).await.unwrap(), None);
    assert_eq!(ring.active_kid(NOW + 1100), Some(new));
    assert_eq!(ring.rotate_if_due(&store, NOW + 1101).await.unwrap(), None);
}

async fn the_signing_key_survives_a_restart(store: SqlStore) {
    let first = KeyRing::load_or_create(&store, KeyAlgorithm::EdDSA, POLICY, NOW).await.unwrap();
    let again =
        KeyRing::load_or_create(&store, KeyAlgorithm::EdDSA, POLICY, NOW + 100).await.unwrap();
    assert_eq!(first.jwks(NOW), again.jwks(NOW + 100));
    assert_eq!(first.jwks(NOW).keys.len(), 1);
}

async fn an_assertion_jti_is_a_replay_until_it_expires(store: SqlStore) {
    assert!(store.use_assertion_jti("cli", "j1", NOW + 60, NOW).await.unwrap());
    assert!(!store.use_assertion_jti("cli", "j1", NOW + 120, NOW + 59).await.unwrap(), "replay");
    // Another client's jti is its own.
    assert!(store.use_assertion_jti("web", "j1", NOW + 60, NOW).await.unwrap());
    // Once expired, the jti may be used again (RFC 7523 §3 item 7 asks only
    // that it not be reused while the assertion is valid), and is then
    // guarded until its new expiry.
    assert!(store.use_assertion_jti("cli", "j1", NOW + 200, NOW + 60).await.unwrap());
    assert!(!store.use_assertion_jti("cli", "j1", NOW + 300, NOW + 199).await.unwrap());
}

async fn the_purge_deletes_only_what_expired_before_the_cutoff(store: SqlStore) {
    let cutoff = NOW + 1000;
    // A code redeemed and then replayed: evidence until the purge, after
    // which a replay is merely unknown.
    store.insert_code(&code("c-old", NOW + 60)).await.unwrap();
    store.insert_code(&code("c-live", NOW + 5000)).await.unwrap();
    assert_eq!(refuse(&store, "c-old", NOW + 1).await, ExchangeOutcome::Refused("a check failed"));
    // A grant whose tokens have all expired, and one with a live refresh token
    // (its access token expired: the grant stays for the refresh token).
    store
        .create_grant(
            &grant("g-dead"),
            Some(&refresh("r-dead", NOW + 100)),
            &access("a-dead"),
            None,
        )
        .await
        .unwrap();
    store
        .create_grant(
            &grant("g-live"),
            Some(&refresh("r-live", NOW + 10_000)),
            &access("a-live"),
            None,
        )
        .await
        .unwrap();
    store.revoke_access_token("den-old", NOW + 300, NOW).await.unwrap();
    store.revoke_access_token("den-live", NOW + 5000, NOW).await.unwrap();
    assert!(store.use_assertion_jti("cli", "j-old", NOW + 60, NOW).await.unwrap());
    assert!(store.use_assertion_jti("cli", "j-live", NOW + 5000, NOW).await.unwrap());

    let purged = store.purge_expired(cutoff).await.unwrap();
    assert_eq!(
        purged,
        Purged {
            codes: 1,
            device_codes: 0,
            assertions: 1,
            refresh_tokens: 1,
            access_tokens: 2,
            denylist: 1,
            grants: 1,
        }
    );
    assert_eq!(store.purge_expired(cutoff).await.unwrap(), Purged::default(), "idempotent");

    // What was live is untouched and still works.
    assert!(matches!(
        exchange(&store, "c-live", NOW + 10, "g-new").await,
        ExchangeOutcome::Exchanged(_)
    ));
    assert!(store.refresh_token("r-live").await.unwrap().is_some());
    assert_eq!(
        store.revoked_access_tokens(NOW, None, 100).await.unwrap(),
        vec![("den-live".to_owned(), NOW + 5000)]
    );
    assert!(
        !store.use_assertion_jti("cli", "j-live", NOW + 5000, NOW + 1).await.unwrap(),
        "still a replay"
    );
    assert!(store.revoke_grant("g-live", NOW + 2).await.unwrap(), "the live grant remains");
    // What expired is gone.
    assert_eq!(refuse(&store, "c-old", NOW + 2).await, ExchangeOutcome::Invalid);
    assert!(store.refresh_token("r-dead").await.unwrap().is_none());
    assert!(!store.revoke_grant("g-dead", NOW + 2).await.unwrap(), "the dead grant is gone");
}

on_both_backends!(
    an_assertion_jti_is_a_replay_until_it_expires,
    the_purge_deletes_only_what_expired_before_the_cutoff,
    a_code_is_exchanged_once_and_not_after_expiry,
    a_refused_exchange_spends_the_code_and_writes_no_grant,
    concurrent_exchanges_of_one_code_yield_exactly_one_grant,
    a_refresh_token_rotates_once_and_only_for_its_client,
    concurrent_rotations_of_one_refresh_token_yield_exactly_one_success,
    a_failed_grant_write_leaves_nothing_behind,
    revoking_a_grant_denies_its_unexpired_access_tokens_and_stops_its_refresh_tokens,
    the_denylist_reads_in_keyset_pages_that_meet_without_gap_or_overlap,
    a_device_approval_withdrawn_while_its_grant_is_written_gives_a_grant_born_revoked,
    the_bootstrap_file_is_idempotent,
    a_client_id_and_a_user_subject_never_coincide,
    a_renewed_password_hash_replaces_only_the_hash_it_renews,
    a_bootstrap_file_with_a_mistake_anywhere_writes_nothing,
    a_rotated_key_is_published_before_it_signs_and_retired_after_its_tokens_expire,
    scheduled_rotation_happens_when_the_key_is_old_and_only_once,
    the_signing_key_survives_a_restart,
);
