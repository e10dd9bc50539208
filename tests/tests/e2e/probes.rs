//! The probe listener (`PROBE_ADDR`, service-kit's `probe` module): what a
//! Kubernetes kubelet's native gRPC probe reaches. It must answer in
//! plaintext while every API listener stays TLS, serve health and nothing
//! else, and keep liveness SERVING while readiness drains on shutdown (so the
//! kubelet takes the pod out of rotation instead of restarting it).

use std::net::SocketAddr;

use tollgate_e2e::{Mutual, TestStack, channel};
use tollgate_proto::auth::v1::TokenRequest;
use tollgate_proto::auth::v1::token_service_client::TokenServiceClient;
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

    // Only health: the authorization server's token service is not on its probe port.
    let (_, auth_probe) = stack.probes[0];
    let channel = channel(format!("http://{auth_probe}")).await.unwrap();
    let refused =
        TokenServiceClient::new(channel).token(TokenRequest::default()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unimplemented);
}

#[tokio::test]
async fn on_shutdown_readiness_turns_not_serving_while_liveness_stays_serving() {
    let stack = with_probes(2).start().await.unwrap();
    let probes = stack.probes.clone();
    let mut readiness = Vec::new();
    for &(name, probe) in &probes {
        let channel = channel(format!("http://{probe}")).await.unwrap();
        let stream = HealthClient::new(channel)
            .watch(HealthCheckRequest { service: String::new() })
            .await
            .unwrap()
            .into_inner();
        readiness.push((name, probe, stream));
    }

    let stopping = tokio::spawn(stack.shutdown());
    for (name, probe, mut stream) in readiness {
        // The drain: readiness is NOT_SERVING, the listener still answers,
        // and liveness has not moved.
        loop {
            let status = stream.message().await.unwrap().expect("the watch ended").status();
            if status == ServingStatus::NotServing {
                break;
            }
        }
        assert_eq!(
            check(probe, "liveness").await.unwrap(),
            ServingStatus::Serving,
            "{name} liveness during the drain"
        );
    }
    stopping.await.unwrap().unwrap();
}
