//! The shared TLS settings on a real gRPC listener: mutual TLS refuses what it
//! must at the handshake, and replaced certificate files are picked up by new
//! connections while the calls already open go on.

// In tests a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::StreamExt as _;
use tollgate_service_kit::dev_ca::{DevCa, ServiceFiles};
use tollgate_service_kit::limits::limited_incoming;
use tollgate_service_kit::testing::{health_of, tls_refusal};
use tollgate_service_kit::tls::{
    ClientTls, GrpcTarget, Listener, ServerTls, TlsConfig, tls_incoming,
};
use tollgate_token::{Clock, SystemClock};
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus as Status;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::server::HealthReporter;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A health service on a TLS listener, its reporter, and its address.
async fn serve(tls: ServerTls) -> (SocketAddr, HealthReporter) {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_service_status("", ServingStatus::Serving).await;
    let listener = TcpListener::bind((LOOPBACK, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tls_incoming(limited_incoming(listener, 1024), tls);
    tokio::spawn(
        tonic::transport::Server::builder().add_service(health).serve_with_incoming(incoming),
    );
    (addr, reporter)
}

/// A fresh CA in `dir` and the notes store's certificate from it (its name,
/// and `ips`).
fn notes_store_certificate(
    dir: &Path,
    ips: &[IpAddr],
) -> (DevCa, std::path::PathBuf, ServiceFiles) {
    let ca = DevCa::new("test CA", Clock::now(&SystemClock)).unwrap();
    let ca_file = ca.write_ca(dir).unwrap();
    let server = ca.write_service(dir, "notes-store", &["notes-store"], ips).unwrap();
    (ca, ca_file, server)
}

fn client(dir: &Path, ca: &DevCa, identity: Option<&str>) -> ClientTls {
    let ca_file = ca.write_ca(dir).unwrap();
    let config = match identity {
        Some(name) => {
            let files = ca.write_service(dir, name, &[name], &[]).unwrap();
            TlsConfig::for_service(files.cert, files.key, ca_file, false)
        }
        None => TlsConfig { ca: Some(ca_file), ..TlsConfig::default() },
    };
    ClientTls::from_config(&config).unwrap()
}

async fn check(url: &str, tls: &ClientTls) -> Result<Status, String> {
    health_of(GrpcTarget::new(url, tls).unwrap()).await
}

#[tokio::test]
async fn mutual_tls_refuses_a_client_without_a_certificate_from_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, ca_file, server) = notes_store_certificate(dir.path(), &[LOOPBACK]);
    let config = TlsConfig::for_service(server.cert, server.key, ca_file, true);
    let (addr, _health) =
        serve(ServerTls::from_config(&config, Listener::Grpc).unwrap().unwrap()).await;
    let url = format!("https://{addr}");

    let member = client(dir.path(), &ca, Some("resource-server"));
    assert_eq!(check(&url, &member).await.unwrap(), Status::Serving);

    // No certificate: refused at the handshake.
    let anonymous = client(dir.path(), &ca, None);
    assert!(check(&url, &anonymous).await.is_err());
    assert_eq!(
        tls_refusal(addr, "notes-store", &anonymous).await.as_deref(),
        Some("received fatal alert: CertificateRequired")
    );
    assert_eq!(tls_refusal(addr, "notes-store", &member).await, None);

    // A certificate from another CA: refused too.
    let other_dir = tempfile::tempdir().unwrap();
    let other_ca = DevCa::new("someone else's CA", Clock::now(&SystemClock)).unwrap();
    let outsider = {
        let files =
            other_ca.write_service(other_dir.path(), "intruder", &["intruder"], &[]).unwrap();
        // It trusts our CA (it can see the server) but holds another's certificate.
        TlsConfig::for_service(files.cert, files.key, ca.write_ca(other_dir.path()).unwrap(), false)
    };
    let outsider = ClientTls::from_config(&outsider).unwrap();
    assert!(check(&url, &outsider).await.is_err());
    assert_eq!(
        tls_refusal(addr, "notes-store", &outsider).await.as_deref(),
        Some("received fatal alert: UnknownCA")
    );

    // Plaintext to a TLS listener: no answer, never a plaintext fallback.
    let plain = check(&format!("http://{addr}"), &member).await.unwrap_err();
    assert!(!plain.is_empty());
}

#[tokio::test]
async fn an_https_url_is_verified_against_the_ca_and_the_name() {
    let dir = tempfile::tempdir().unwrap();
    // A certificate for another name than the one the client dials.
    let (ca, ca_file, server) = notes_store_certificate(dir.path(), &[]);
    let config = TlsConfig::for_service(server.cert, server.key, ca_file, false);
    let (addr, _health) =
        serve(ServerTls::from_config(&config, Listener::Grpc).unwrap().unwrap()).await;

    let trusting = client(dir.path(), &ca, None);
    let refused = check(&format!("https://{addr}"), &trusting).await.unwrap_err();
    assert!(refused.contains("NotValidForName"), "{refused}");
    // The public roots do not know the development CA.
    let refused = check(&format!("https://{addr}"), &ClientTls::public_roots()).await.unwrap_err();
    assert!(refused.contains("UnknownIssuer"), "{refused}");
}

/// The certificate a server presents to a new connection.
async fn presented(addr: SocketAddr, ca: &Path) -> CertificateDer<'static> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config =
        rustls::ClientConfig::builder_with_provider(tollgate_service_kit::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::IpAddress(LOOPBACK.into()), tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned()
}

#[tokio::test]
async fn replaced_certificate_files_serve_new_connections_and_open_calls_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, ca_file, first) = notes_store_certificate(dir.path(), &[LOOPBACK]);
    let mut config =
        TlsConfig::for_service(first.cert.clone(), first.key.clone(), ca_file.clone(), true);
    config.reload_interval_secs = 1;
    let tls = ServerTls::from_config(&config, Listener::Grpc).unwrap().unwrap();
    let (addr, health) = serve(tls.clone()).await;
    let url = format!("https://{addr}");
    let old_cert = presented(addr, &ca_file).await;

    // A call that stays open across the rotation: a health watch.
    let member = client(dir.path(), &ca, Some("resource-server"));
    let channel = GrpcTarget::new(&url, &member).unwrap().connect().await.unwrap();
    let mut watch = HealthClient::new(channel)
        .watch(HealthCheckRequest { service: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(watch.next().await.unwrap().unwrap().status(), Status::Serving);

    // The files are replaced (each written whole), as a certificate manager does.
    let renewed = ca.issue("notes-store", &["notes-store"], &[LOOPBACK]).unwrap();
    tollgate_service_kit::dev_ca::write_private(&first.key, renewed.key_pem.as_bytes()).unwrap();
    tollgate_service_kit::dev_ca::write_private(&first.cert, renewed.cert_pem.as_bytes()).unwrap();
    let new_cert = CertificateDer::from_pem_slice(renewed.cert_pem.as_bytes()).unwrap();

    // Within the reload interval (1 s here) new connections get the new one.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if presented(addr, &ca_file).await == new_cert {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the new certificate was never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_ne!(old_cert, new_cert);
    assert_eq!(check(&url, &member).await.unwrap(), Status::Serving);

    // The call opened before the rotation is still served on its connection.
    health.set_service_status("", ServingStatus::NotServing).await;
    assert_eq!(watch.next().await.unwrap().unwrap().status(), Status::NotServing);

    // A replacement that does not load (a key for another certificate) is
    // not taken: the listener keeps serving the last good pair.
    let mismatched = ca.issue("notes-store", &["notes-store"], &[LOOPBACK]).unwrap();
    std::fs::write(&first.cert, mismatched.cert_pem.as_bytes()).unwrap();
    assert!(!tls.reload_now().await, "a certificate without its key was loaded");
    assert_eq!(presented(addr, &ca_file).await, new_cert);
}

#[tokio::test]
async fn clients_that_connect_and_never_shake_hands_do_not_hold_up_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, ca_file, server) = notes_store_certificate(dir.path(), &[LOOPBACK]);
    let config = TlsConfig::for_service(server.cert, server.key, ca_file, true);
    let (addr, _health) =
        serve(ServerTls::from_config(&config, Listener::Grpc).unwrap().unwrap()).await;
    // More idle connections than any fixed number of handshakes in hand.
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    // A member is served at once, not after the idle ones' handshake timeout.
    let member = client(dir.path(), &ca, Some("resource-server"));
    let served = tokio::time::timeout(
        tollgate_service_kit::tls::HANDSHAKE_TIMEOUT / 2,
        check(&format!("https://{addr}"), &member),
    )
    .await;
    assert_eq!(served, Ok(Ok(Status::Serving)));
    drop(idle);
}
