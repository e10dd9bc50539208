//! The probe listener (`PROBE_ADDR`, service-kit's `probe` module): what a
//! Kubernetes kubelet's native gRPC probe reaches. It must answer in
//! plaintext while every API listener stays TLS, serve health and nothing
//! else, and keep liveness SERVING while readiness drains on shutdown (so the
//! kubelet takes the pod out of rotation instead of restarting it).

use std::net::SocketAddr;

use tollgate_e2e::{Mutual, TestStack, channel};
use tollgate_proto::auth::v1::TokenRequest;
use tollgate_proto::auth::v1::token_service_client::TokenServiceClient;
use tollgate_proto::resource::v1::GetProfileRequest;
use tollgate_proto::resource::v1::profile_service_client::ProfileServiceClient;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

const ANY_PORT: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

async fn check(addr: SocketAddr, service: &str) -> Result<ServingStatus, tonic::Status> {
    let channel = channel(format!("http://{addr}")).await.unwrap();
    let reply =
        HealthClient::new(channel).check(HealthCheckRequest { service: service.into() }).await?;
    Ok(reply.into_inner().status())
}

fn with_probes(drain_secs: u64) -> tollgate_e2e::StackBuilder {
    TestStack::builder().tls(Mutual::Internal).tweak(move |config| {
        config.auth.probe.probe_addr = Some(ANY_PORT);
        config.auth.shutdown_drain_secs = drain_secs;
        for service in
            [&mut config.resource.service, &mut config.notes.service, &mut config.ledger.service]
        {
            service.probe.probe_addr = Some(ANY_PORT);
            service.shutdown_drain_secs = drain_secs;
        }
    })
}

#[tokio::test]
async fn every_service_answers_the_plaintext_probe_with_health_and_nothing_else() {
    let stack = with_probes(0).start().await.unwrap();
    let names: Vec<_> = stack.probes.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, ["auth-server", "ledger", "notes-store", "resource-server"]);
    for &(name, probe) in &stack.probes {
        assert_eq!(check(probe, "").await.unwrap(), ServingStatus::Serving, "{name} readiness");
        assert_eq!(
            check(probe, "liveness").await.unwrap(),
            ServingStatus::Serving,
            "{name} liveness"
        );
        // A name nobody registered is NOT_FOUND, as on the API listener.
        assert_eq!(check(probe, "nothing").await.unwrap_err().code(), Code::NotFound, "{name}");
    }

    // Only health's Check: no stream can be held open there, and no API is
    // served (the authorization server's token service, the resource
    // server's profiles).
    for &(name, probe) in &stack.probes {
        let channel = channel(format!("http://{probe}")).await.unwrap();
        let watch = HealthClient::new(channel)
            .watch(HealthCheckRequest { service: String::new() })
            .await
            .unwrap_err();
        assert_eq!(watch.code(), Code::Unimplemented, "{name}");
        assert_eq!(watch.message(), "the probe port answers Check only");
    }
    let probe_of = |service: &str| stack.probes.iter().find(|(n, _)| *n == service).unwrap().1;
    let token = TokenServiceClient::new(
        channel(format!("http://{}", probe_of("auth-server"))).await.unwrap(),
    )
    .token(TokenRequest::default())
    .await
    .unwrap_err();
    assert_eq!(token.code(), Code::Unimplemented);
    let profile = ProfileServiceClient::new(
        channel(format!("http://{}", probe_of("resource-server"))).await.unwrap(),
    )
    .get_profile(GetProfileRequest::default())
    .await
    .unwrap_err();
    assert_eq!(profile.code(), Code::Unimplemented);
}

#[tokio::test]
async fn on_shutdown_readiness_turns_not_serving_while_liveness_stays_serving() {
    let stack = with_probes(2).start().await.unwrap();
    let probes = stack.probes.clone();

    let stopping = tokio::spawn(stack.shutdown());
    for &(name, probe) in &probes {
        // The drain (2 s): readiness turns NOT_SERVING at once, as the
        // kubelet's next probe sees it; the listener still answers, and
        // liveness has not moved.
        let mut readiness = check(probe, "").await.unwrap();
        for _ in 0..100 {
            if readiness == ServingStatus::NotServing {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            readiness = check(probe, "").await.unwrap();
        }
        assert_eq!(readiness, ServingStatus::NotServing, "{name} readiness during the drain");
        assert_eq!(
            check(probe, "liveness").await.unwrap(),
            ServingStatus::Serving,
            "{name} liveness during the drain"
        );
    }
    stopping.await.unwrap().unwrap();
}
