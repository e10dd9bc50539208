//! The compose deployment under the faults a deployment meets: an authorization
//! server that goes away, a PostgreSQL restart mid-traffic, replicas sharing one
//! database, and SIGTERM. The services are the real images on Docker's network,
//! two replicas each of the authorization and resource servers.
//!
//! `scripts/compose-e2e.sh` brings the stack up (COMPOSE_FILE and
//! COMPOSE_PROJECT_NAME name it) and runs these one at a time; a plain
//! `cargo test` skips them, since they need that stack. Each test leaves the
//! stack as it found it: every replica up and healthy.

// In tests a panic is the failure report; helpers unwrap like the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod stack;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stack::{auth_replicas, rs_replicas};
use tollgate_token::Secret;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

#[tokio::test]
#[ignore = "needs the compose stack: scripts/compose-e2e.sh"]
async fn a_code_from_one_auth_replica_is_redeemed_at_the_other_and_rotation_holds_across_them() {
    let [a, b] = auth_replicas().await;
    // Sign-in and consent at replica A; the code is redeemed at replica B.
    let tokens = stack::sign_in(&a, &b, &["profile:read", "notes:read"]).await;
    let rs = rs_replicas().await;
    rs[0].resource().await.get_profile(tokens.access_token.expose(), "me").await.unwrap();

    // Refresh at A, then the new refresh token at B: one chain across replicas.
    let client_a = stack::cli_client(&a).await;
    let client_b = stack::cli_client(&b).await;
    let second = client_a.refresh(&tokens).await.unwrap();
    let third = client_b.refresh(&second).await.unwrap();
    assert_ne!(second.refresh_token, third.refresh_token);
    // The spent first token is refused at either replica: the rotation was
    // recorded in the shared database, not in one replica's memory.
    let reused = stack::post_refresh(
        &b,
        tokens.refresh_token.as_ref().map(|t| t.expose().as_str()).unwrap(),
    )
    .await;
    reused.assert_error(400, "invalid_grant");
    rs[1].resource().await.get_profile(third.access_token.expose(), "me").await.unwrap();
}

#[tokio::test]
#[ignore = "needs the compose stack: scripts/compose-e2e.sh"]
async fn both_resource_server_replicas_validate_and_refuse_alike() {
    let [a, b] = auth_replicas().await;
    let tokens = stack::sign_in(&a, &b, &["profile:read"]).await;
    let forged = tollgate_e2e::forge::with_unknown_key(tokens.access_token.expose());
    for replica in rs_replicas().await {
        let api = replica.resource().await;
        let profile = api.get_profile(tokens.access_token.expose(), "me").await.unwrap();
        assert_eq!(profile.owner, "alice", "at {replica:?}");
        let refused = api.get_profile(&forged, "me").await.unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "at {replica:?}: {refused:?}");
        let unscoped = api.list_notes(tokens.access_token.expose(), "me").await.unwrap_err();
        assert_eq!(unscoped.code(), Code::PermissionDenied, "at {replica:?}: {unscoped:?}");
    }
}

#[tokio::test]
#[ignore = "needs the compose stack: scripts/compose-e2e.sh"]
async fn with_the_auth_server_down_known_keys_work_and_unknown_keys_become_unavailable() {
    let [a, b] = auth_replicas().await;
    let tokens = stack::sign_in(&a, &b, &["profile:read"]).await;
    let forged = tollgate_e2e::forge::with_unknown_key(tokens.access_token.expose());
    let rs = rs_replicas().await;
    let rs_started = stack::started_at(&rs).await;
    let api = rs[0].resource().await;

    stack::compose(&["stop", "auth-server"]).await;
    // Tokens signed with a key the resource server already holds keep working.
    api.get_profile(tokens.access_token.expose(), "me").await.unwrap();
    // A token it cannot verify: once its keys are older than the configured
    // staleness (OAUTH_JWKS_MAX_STALENESS, 6 s here) it cannot tell forged from
    // newly rotated, so it says UNAVAILABLE, not UNAUTHENTICATED.
    let status = stack::eventually("an unknown key to be UNAVAILABLE", || async {
        let status = api.get_profile(&forged, "me").await.unwrap_err();
        (status.code() == Code::Unavailable).then_some(status)
    })
    .await;
    assert!(status.message().contains("signing keys"), "{status:?}");
    api.get_profile(tokens.access_token.expose(), "me").await.unwrap();

    stack::compose(&["start", "auth-server"]).await;
    stack::wait_healthy("auth-server").await;
    // Recovered without a restart: fresh keys again, so the forgery is plainly
    // invalid, and tokens from the returned auth server verify.
    stack::eventually("the unknown key to be UNAUTHENTICATED again", || async {
        let status = api.get_profile(&forged, "me").await.unwrap_err();
        (status.code() == Code::Unauthenticated).then_some(())
    })
    .await;
    let [a, b] = auth_replicas().await;
    let fresh = stack::sign_in(&a, &b, &["profile:read"]).await;
    api.get_profile(fresh.access_token.expose(), "me").await.unwrap();
    let after = stack::started_at(&rs_replicas().await).await;
    assert_eq!(rs_started, after, "the resource servers must not have restarted");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the compose stack: scripts/compose-e2e.sh"]
async fn a_postgres_restart_mid_traffic_gives_errors_then_recovers_and_loses_no_grant() {
    let [a, b] = auth_replicas().await;
    let auth_started = stack::started_at(&[a.clone(), b.clone()]).await;
    let tokens = stack::sign_in(&a, &b, &["profile:read"]).await;
    let (reporter, reporter_secret) = ("tollgate-reporter", stack::secret("reporter-secret").await);

    // Traffic through the outage: machine tokens, and one grant's refresh chain
    // (each answer either rotates it or leaves it as it was).
    let seen: Arc<Mutex<Vec<(u16, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = tokio::spawn({
        let (a, seen, stop) = (a.clone(), seen.clone(), stop.clone());
        let mut refresh = tokens.refresh_token.clone().unwrap();
        async move {
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let reply = if i % 2 == 0 {
                    stack::post_client_credentials(&a, reporter, &reporter_secret).await
                } else {
                    stack::post_refresh(&a, refresh.expose()).await
                };
                if reply.status == 200 && i % 2 == 1 {
                    refresh = Secret::new(reply.body["refresh_token"].as_str().unwrap());
                }
                seen.lock().unwrap().push((reply.status, reply.error().to_owned()));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            refresh
        }
    });
    // PostgreSQL goes away under the traffic, long enough to be seen, and comes
    // back: the auth servers are not touched.
    stack::compose(&["stop", "postgres"]).await;
    stack::eventually("the outage to reach the clients", || async {
        seen.lock().unwrap().iter().any(|(s, _)| *s == 503).then_some(())
    })
    .await;
    stack::compose(&["start", "postgres"]).await;
    stack::wait_healthy("postgres").await;
    stack::eventually("the auth server to recover by itself", || async {
        let seen = seen.lock().unwrap();
        (seen.len() >= 4 && seen.iter().rev().take(4).all(|(s, _)| *s == 200)).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let refresh = traffic.await.unwrap();
    let seen = seen.lock().unwrap().clone();

    // During the outage: 503 temporarily_unavailable, never a 500 or a refusal
    // that would make a client throw its grant away.
    let outage = seen.iter().filter(|(s, _)| *s == 503).count();
    assert!(outage > 0, "the outage was never observed: {seen:?}");
    for (status, error) in &seen {
        assert!(
            *status == 200 || (*status == 503 && error == "temporarily_unavailable"),
            "{status} {error} in {seen:?}"
        );
    }
    // Nothing lost: the grant's latest refresh token still works, the access
    // token issued before the restart still verifies, and the auth servers
    // recovered by themselves.
    let renewed = stack::post_refresh(&b, refresh.expose()).await;
    assert_eq!(renewed.status, 200, "{:?}", renewed.body);
    rs_replicas().await[0]
        .resource()
        .await
        .get_profile(tokens.access_token.expose(), "me")
        .await
        .unwrap();
    let [a, b] = auth_replicas().await;
    assert_eq!(auth_started, stack::started_at(&[a, b]).await, "auth servers restarted");
}

#[tokio::test]
#[ignore = "needs the compose stack: scripts/compose-e2e.sh"]
async fn sigterm_turns_health_not_serving_first_then_drains_and_exits_cleanly() {
    let [a, b] = auth_replicas().await;
    let tokens = stack::sign_in(&a, &b, &["profile:read"]).await;
    let rs = rs_replicas().await;
    let victim = &rs[0];
    let api = victim.resource().await;
    let health = victim.health().await;

    stack::docker(&["kill", "--signal", "TERM", &victim.id]).await;
    // Health says NOT_SERVING at once, while calls are still served: the drain
    // window (SHUTDOWN_DRAIN_SECS) in which load balancers move away.
    stack::eventually("health to report NOT_SERVING", || async {
        let reply = health
            .clone()
            .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
            .await
            .ok()?;
        (reply.into_inner().status() == ServingStatus::NotServing).then_some(())
    })
    .await;
    api.get_profile(tokens.access_token.expose(), "me").await.unwrap();
    // Then it stops by itself, cleanly, well before Docker's 10 s SIGKILL.
    let code = stack::docker(&["wait", &victim.id]).await;
    assert_eq!(code.trim(), "0", "the resource server's exit status");
    // The other replica served throughout.
    rs[1].resource().await.get_profile(tokens.access_token.expose(), "me").await.unwrap();

    // The authorization server stops the same way.
    let auth_health = a.health().await;
    stack::docker(&["kill", "--signal", "TERM", &a.id]).await;
    stack::eventually("the auth server's health to report NOT_SERVING", || async {
        let reply = auth_health
            .clone()
            .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
            .await
            .ok()?;
        (reply.into_inner().status() == ServingStatus::NotServing).then_some(())
    })
    .await;
    let metadata = stack::http_via(&a)
        .build()
        .unwrap()
        .get(format!("{}/.well-known/oauth-authorization-server", stack::ISSUER))
        .send()
        .await
        .unwrap();
    assert_eq!(metadata.status(), 200, "still serving while draining");
    assert_eq!(stack::docker(&["wait", &a.id]).await.trim(), "0", "the auth server's exit status");

    stack::docker(&["start", &victim.id, &a.id]).await;
    stack::wait_healthy("resource-server").await;
    stack::wait_healthy("auth-server").await;
}

#[tokio::test]
#[ignore = "needs the compose stack: scripts/compose-e2e.sh"]
async fn every_port_speaks_only_tls_and_the_internal_ones_want_a_deployment_certificate() {
    use tollgate_service_kit::testing::health_of;
    use tollgate_service_kit::tls::GrpcTarget;
    let [a, b] = auth_replicas().await;
    let rs = rs_replicas().await;
    let internal = [&a, &b, &stack::notes_store().await];
    for replica in internal.iter().copied().chain(&rs) {
        let addr = std::net::SocketAddr::new(replica.ip, replica.grpc_port);
        // Plaintext: no gRPC answer from any port.
        let plain = GrpcTarget::new(&format!("http://{addr}"), &stack::trust()).unwrap();
        assert!(health_of(plain).await.is_err(), "{} answered plaintext", replica.service);
        // A member of the deployment (a service certificate): served.
        let member = health_of(replica.target(&stack::service_identity())).await;
        assert_eq!(member, Ok(ServingStatus::Serving), "{}", replica.service);
    }
    // TLS without a client certificate: refused at the handshake by the
    // internal listeners, served by the public API.
    for replica in internal {
        let addr = std::net::SocketAddr::new(replica.ip, replica.grpc_port);
        assert!(health_of(replica.target(&stack::trust())).await.is_err());
        let refusal =
            tollgate_service_kit::testing::tls_refusal(addr, &replica.service, &stack::trust())
                .await;
        assert_eq!(
            refusal.as_deref(),
            Some("received fatal alert: CertificateRequired"),
            "{}",
            replica.service
        );
    }
    for replica in &rs {
        let anonymous = health_of(replica.target(&stack::trust())).await;
        assert_eq!(anonymous, Ok(ServingStatus::Serving), "{}", replica.service);
    }
    // The HTTP listener: no plaintext answer either.
    let plain = reqwest::get(format!("http://{}:{}/jwks.json", a.ip, stack::AUTH_HTTP_PORT)).await;
    assert!(plain.is_err(), "the auth server answered plaintext HTTP: {plain:?}");
}

#[tokio::test]
#[ignore = "needs the compose stack: scripts/compose-e2e.sh"]
async fn a_browser_on_the_host_signs_in_at_the_published_issuer_over_tls() {
    use tollgate_client_app::owner::ScriptedOwner;
    // The pages at the issuer's own URL, through the port published on the
    // host's loopback, the certificate valid for the issuer's name.
    let http = stack::http_from_the_host().build().unwrap();
    let metadata: serde_json::Value = http
        .get(format!("{}/.well-known/oauth-authorization-server", stack::ISSUER))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["issuer"], stack::ISSUER);
    // A sign-in through the pages keeps its `__Host-` session cookie (a
    // secure origin) and ends with a code at the client's loopback listener.
    let [a, _] = auth_replicas().await;
    let password = stack::secret("alice-password").await;
    let loopback = tollgate_client_app::loopback::LoopbackRedirect::bind().await.unwrap();
    let scopes = ["notes:read".to_owned()];
    let client = stack::cli_client(&a).await;
    let pending = client.authorization_url(&scopes, &loopback.redirect_uri()).unwrap();
    let waiting = tokio::spawn(loopback.wait());
    let mut browser = ScriptedOwner::with_http(stack::http_from_the_host()).unwrap();
    let back = tollgate_e2e::approve(&mut browser, &pending.url, "alice", &password).await.unwrap();
    assert!(browser.cookie_names().iter().any(|name| name.starts_with("__Host-")));
    browser.get(&back.location().expect("a redirect with the code")).await.unwrap();
    let callback = waiting.await.unwrap().unwrap();
    let tokens = client.finish_authorization(pending, &callback).await.unwrap();
    // And the public API, published on the host's loopback too.
    let api = tollgate_client_app::resource::ResourceClient::connect(
        "https://localhost:50052",
        &stack::trust(),
    )
    .await
    .unwrap();
    api.list_notes(tokens.access_token.expose(), "me").await.unwrap();
}
