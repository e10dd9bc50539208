//! What an operator sees: one trace per flow across the services, the OAuth
//! steps as spans with safe attributes, metrics that count what happened, audit
//! events, and no secret anywhere in spans or logs.
//!
//! The telemetry set-up is the services' own (`telemetry::init_with_writer`,
//! OTLP/gRPC), exporting to an OTLP receiver in this process; the services run
//! in-process (their own test binary, since the subscriber is global), so the
//! trace context crosses every hop over real HTTP and gRPC connections, never a
//! shared in-memory span.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use tokio_stream::wrappers::TcpListenerStream;
use tollgate_client_app::loopback::LoopbackRedirect;
use tollgate_client_app::owner::ScriptedOwner;
use tollgate_e2e::TestStack;
use tollgate_service_kit::telemetry::{self, LogFormat, TelemetryConfig};
use tracing::Instrument as _;

/// What the services exported: every span and metrics export request.
#[derive(Default)]
struct Received {
    spans: Mutex<Vec<ExportTraceServiceRequest>>,
    metrics: Mutex<Vec<ExportMetricsServiceRequest>>,
}

#[derive(Clone, Default)]
struct Receiver(Arc<Received>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.spans.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0.metrics.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse { partial_success: None }))
    }
}

/// An OTLP/gRPC receiver on a free port, as a collector would be.
async fn start_receiver() -> (Receiver, String) {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(receiver.clone()))
        .add_service(MetricsServiceServer::new(receiver.clone()))
        .serve_with_incoming(TcpListenerStream::new(listener));
    tokio::spawn(server);
    (receiver, endpoint)
}

/// Every log line the subscriber writes.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter().map(|kv| (kv.key.clone(), text(kv.value.as_ref()))).collect()
}

/// One exported span, flattened for assertions.
#[derive(Debug)]
struct SpanView {
    service_name: String,
    name: String,
    trace_id: Vec<u8>,
    attributes: BTreeMap<String, String>,
    /// Every string in the span: name, attributes, event names and attributes.
    all_text: String,
}

fn spans(receiver: &Receiver) -> Vec<SpanView> {
    let mut views = Vec::new();
    for request in receiver.0.spans.lock().unwrap().iter() {
        for resource_spans in &request.resource_spans {
            let resource = resource_spans
                .resource
                .as_ref()
                .map(|r| attributes(&r.attributes))
                .unwrap_or_default();
            for scope in &resource_spans.scope_spans {
                for span in &scope.spans {
                    let attributes = attributes(&span.attributes);
                    let mut all_text = format!("{} {:?}", span.name, attributes);
                    for event in &span.events {
                        all_text.push_str(&format!(
                            " {} {:?}",
                            event.name,
                            self::attributes(&event.attributes)
                        ));
                    }
                    views.push(SpanView {
                        service_name: resource.get("service.name").cloned().unwrap_or_default(),
                        name: span.name.clone(),
                        trace_id: span.trace_id.clone(),
                        attributes,
                        all_text,
                    });
                }
            }
        }
    }
    views
}

/// The latest cumulative value of counter `name` for the data point whose
/// attributes include all of `with`.
fn counter(receiver: &Receiver, name: &str, with: &[(&str, &str)]) -> i64 {
    let mut latest = 0;
    for request in receiver.0.metrics.lock().unwrap().iter() {
        for resource in &request.resource_metrics {
            for scope in &resource.scope_metrics {
                for metric in scope.metrics.iter().filter(|m| m.name == name) {
                    let Some(metric::Data::Sum(sum)) = &metric.data else { continue };
                    for point in &sum.data_points {
                        let attrs = attributes(&point.attributes);
                        let matches =
                            with.iter().all(|(k, v)| attrs.get(*k).map(String::as_str) == Some(*v));
                        if let (true, Some(number_data_point::Value::AsInt(v))) =
                            (matches, point.value)
                        {
                            latest = latest.max(v);
                        }
                    }
                }
            }
        }
    }
    latest
}

/// The number of recordings in histogram `name` with these attributes.
fn histogram_count(receiver: &Receiver, name: &str, with: &[(&str, &str)]) -> u64 {
    let mut latest = 0;
    for request in receiver.0.metrics.lock().unwrap().iter() {
        for resource in &request.resource_metrics {
            for scope in &resource.scope_metrics {
                for metric in scope.metrics.iter().filter(|m| m.name == name) {
                    let Some(metric::Data::Histogram(histogram)) = &metric.data else { continue };
                    for point in &histogram.data_points {
                        let attrs = attributes(&point.attributes);
                        if with.iter().all(|(k, v)| attrs.get(*k).map(String::as_str) == Some(*v)) {
                            latest = latest.max(point.count);
                        }
                    }
                }
            }
        }
    }
    latest
}

/// Every value attribute `key` takes across the data points of metric `name`.
fn attribute_values(
    receiver: &Receiver,
    name: &str,
    key: &str,
) -> std::collections::BTreeSet<String> {
    let mut values = std::collections::BTreeSet::new();
    for request in receiver.0.metrics.lock().unwrap().iter() {
        for resource in &request.resource_metrics {
            for scope in &resource.scope_metrics {
                for metric in scope.metrics.iter().filter(|m| m.name == name) {
                    let points: Vec<&[KeyValue]> = match &metric.data {
                        Some(metric::Data::Histogram(h)) => {
                            h.data_points.iter().map(|p| p.attributes.as_slice()).collect()
                        }
                        Some(metric::Data::Sum(s)) => {
                            s.data_points.iter().map(|p| p.attributes.as_slice()).collect()
                        }
                        _ => Vec::new(),
                    };
                    for attrs in points {
                        values.extend(attributes(attrs).remove(key));
                    }
                }
            }
        }
    }
    values
}

/// Whether `text` holds a JWT: two base64url segments that decode to JSON
/// objects (so start `eyJ`, `{"`) joined by a dot. Looking for `eyJ` alone would
/// match a random base64url value (a `kid`, a grant id) once in a few thousand
/// runs.
fn contains_jwt(text: &str) -> bool {
    let b64url = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    text.match_indices("eyJ").any(|(at, _)| {
        let rest = &text[at..];
        let header_len = rest.find(|c: char| !b64url(c)).unwrap_or(rest.len());
        rest[header_len..].starts_with(".eyJ")
    })
}

/// The value of a cookie set by `page`, if it set one.
fn set_cookie_value(page: &tollgate_client_app::owner::Page) -> Option<String> {
    let header = page.header("set-cookie")?;
    let pair = header.split(';').next()?;
    Some(pair.split_once('=')?.1.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flow_is_one_trace_across_the_services_counted_audited_and_free_of_secrets() {
    let (receiver, endpoint) = start_receiver().await;
    let logs = LogBuffer::default();
    let guard = telemetry::init_with_writer(
        "tollgate-e2e",
        LogFormat::Json,
        &TelemetryConfig { otlp_endpoint: Some(endpoint), metric_export_interval_ms: 3_600_000 },
        "info,sqlx=warn",
        logs.clone(),
    );
    let stack = TestStack::start().await.unwrap();
    let password = tollgate_e2e::password_of("alice").unwrap();

    // The client-app's flow, under one root span, as `client-app` runs it.
    let root = tracing::info_span!("client-app");
    let mut secrets_seen: Vec<String> = Vec::new();
    let tokens = async {
        let client = stack.client(&stack.cli_client()).await.unwrap();
        let loopback = LoopbackRedirect::bind().await.unwrap();
        let scopes = ["notes:read".to_owned(), "notes:write".to_owned()];
        let pending = client.authorization_url(&scopes, &loopback.redirect_uri()).unwrap();
        let waiting = tokio::spawn(loopback.wait());
        let mut owner = ScriptedOwner::new().unwrap();
        let login = owner.get(&pending.url).await.unwrap();
        secrets_seen.extend(set_cookie_value(&login));
        let signed_in = owner
            .submit(&login, "/authorize/login", &[("username", "alice"), ("password", password)])
            .await
            .unwrap();
        assert_eq!(signed_in.status, 303, "{}", signed_in.body);
        secrets_seen.extend(set_cookie_value(&signed_in));
        let consent = owner.follow(&signed_in).await.unwrap();
        let decided =
            owner.submit(&consent, "/authorize/consent", &[("decision", "approve")]).await.unwrap();
        let redirect = decided.location().unwrap();
        let code = redirect.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
        secrets_seen.push(code);
        owner.get(&redirect).await.unwrap();
        let callback = waiting.await.unwrap().unwrap();
        let tokens = client.finish_authorization(pending, &callback).await.unwrap();

        // An API call that crosses resource server -> notes store (with a token
        // exchanged at the authorization server).
        let api = stack.resource().await.unwrap();
        api.create_note(tokens.access_token.expose(), "me", "Traced", "a note").await.unwrap();
        api.list_notes(tokens.access_token.expose(), "me").await.unwrap();
        tokens
    }
    .instrument(root)
    .await;
    secrets_seen.push(tokens.access_token.expose().clone());
    secrets_seen.push(tokens.refresh_token.clone().unwrap().into_exposed());

    // A known sequence of successes and refusals, for the metrics.
    let reporter = stack.client(&stack.reporter_client()).await.unwrap();
    reporter.client_credentials(&["reports:read".to_owned()]).await.unwrap();
    let mut wrong = stack.reporter_client();
    wrong.client_secret = Some("not-the-secret-but-long-enough-to-look-real".into());
    let refused = stack.client(&wrong).await.unwrap();
    assert!(refused.client_credentials(&["reports:read".to_owned()]).await.is_err());
    let api = stack.resource().await.unwrap();
    let missing = api.list_notes("", "me").await.unwrap_err();
    assert_eq!(missing.code(), tonic::Code::Unauthenticated);
    let forged = tollgate_e2e::forge::with_unknown_key(tokens.access_token.expose());
    let unknown = api.list_notes(&forged, "me").await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::Unauthenticated);
    // A scanner's made-up methods: refused, and measured under one
    // `unmatched` label rather than a time series per guess.
    for (url, path, code) in [
        (
            stack.resource_url(),
            "/tollgate.resource.v1.NotesService/Scan7f3a",
            tonic::Code::PermissionDenied,
        ),
        (stack.auth_grpc_url(), "/tollgate.scan.v1.Probe/Scan9c1e", tonic::Code::Unimplemented),
    ] {
        let channel =
            tonic::transport::Endpoint::from_shared(url).unwrap().connect().await.unwrap();
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.unwrap();
        let mut request = tonic::Request::new(());
        let bearer = format!("Bearer {}", tokens.access_token.expose());
        request.metadata_mut().insert("authorization", bearer.parse().unwrap());
        let codec = tonic_prost::ProstCodec::<(), ()>::default();
        let path = http::uri::PathAndQuery::from_static(path);
        let refused = grpc.unary(request, path, codec).await.unwrap_err();
        assert_eq!(refused.code(), code, "{refused:?}");
    }
    let mut stranger = ScriptedOwner::new().unwrap();
    let url = stack
        .client(&stack.cli_client())
        .await
        .unwrap()
        .authorization_url(&["notes:read".to_owned()], "http://127.0.0.1:9/callback")
        .unwrap()
        .url;
    let bad = tollgate_e2e::sign_in(&mut stranger, &url, "alice", "wrong-password").await;
    assert!(bad.is_err(), "a wrong password must not sign in");
    for secret in [
        password.to_owned(),
        "wrong-password".to_owned(),
        stack.secrets.reporter.clone().into_exposed(),
        stack.secrets.resource_server.clone().into_exposed(),
        stack.secrets.notes_store.clone().into_exposed(),
        forged,
    ] {
        secrets_seen.push(secret);
    }

    stack.shutdown().await.unwrap();
    guard.flush();

    // --- One trace across the services -------------------------------------
    let all = spans(&receiver);
    let root = all.iter().find(|s| s.name == "client-app").expect("the root span was exported");
    let trace: Vec<&SpanView> = all.iter().filter(|s| s.trace_id == root.trace_id).collect();
    // Server spans are named as OpenTelemetry's conventions say ("POST /token",
    // "tollgate.resource.v1.NotesService/CreateNote"); which kind they are is in
    // their attributes.
    let kind = |s: &SpanView| {
        if s.attributes.contains_key("http.request.method") {
            "http.server".to_owned()
        } else if s.attributes.contains_key("rpc.system") {
            "grpc.server".to_owned()
        } else if s.name.starts_with("token ") {
            "oauth.token".to_owned()
        } else {
            s.name.clone()
        }
    };
    let in_trace = |name: &str, service: Option<&str>| {
        trace.iter().any(|s| {
            kind(s) == name
                && service.is_none_or(|svc| {
                    s.attributes.get("tollgate.service").map(String::as_str) == Some(svc)
                })
        })
    };
    for (name, service) in [
        ("http.server", Some("auth-server")),
        ("oauth.authorize", None),
        ("oauth.login", None),
        ("oauth.consent", None),
        ("oauth.token", None),
        ("grpc.server", Some("resource-server")),
        ("token.validate", Some("resource-server")),
        ("grpc.server", Some("auth-server")),
        ("grpc.server", Some("notes-store")),
        ("token.validate", Some("notes-store")),
    ] {
        assert!(
            in_trace(name, service),
            "no {name} span of {service:?} in the flow's trace; trace has {:?}",
            trace
                .iter()
                .map(|s| (&s.name, s.attributes.get("tollgate.service")))
                .collect::<Vec<_>>()
        );
    }
    // The OAuth steps carry who, what and the decision.
    let token_span = |grant_type: &str| {
        trace
            .iter()
            .find(|s| {
                kind(s) == "oauth.token"
                    && s.attributes.get("grant_type").map(String::as_str) == Some(grant_type)
            })
            .unwrap_or_else(|| panic!("no oauth.token span for {grant_type}"))
    };
    let code_grant = token_span("authorization_code");
    assert_eq!(code_grant.attributes["client_id"], "tollgate-cli");
    assert_eq!(code_grant.attributes["subject"], "alice");
    assert_eq!(code_grant.attributes["decision"], "issued");
    assert_eq!(code_grant.attributes["scope"], "notes:read notes:write");
    let exchange = token_span("urn:ietf:params:oauth:grant-type:token-exchange");
    assert_eq!(exchange.attributes["client_id"], "tollgate-resource");
    assert_eq!(exchange.attributes["subject"], "alice");
    let login = trace.iter().find(|s| s.name == "oauth.login").unwrap();
    assert_eq!(login.attributes["decision"], "allowed");
    assert_eq!(login.attributes["subject"], "alice");
    let validated = trace
        .iter()
        .find(|s| {
            s.name == "token.validate"
                && s.attributes.get("tollgate.service").map(String::as_str) == Some("notes-store")
        })
        .unwrap();
    assert_eq!(validated.attributes["decision"], "allowed");
    assert_eq!(validated.attributes["subject"], "alice");
    assert_eq!(validated.attributes["client_id"], "tollgate-resource");
    // Every span of the flow came from this process's one exporter, named once.
    assert!(trace.iter().all(|s| s.service_name == "tollgate-e2e"));

    // Refusals are spans too, with the reason and never the token.
    let refusal = all
        .iter()
        .find(|s| {
            s.name == "token.validate"
                && s.attributes.get("reason").map(String::as_str) == Some("missing_token")
        })
        .expect("a refused validation span");
    assert_eq!(refusal.attributes["decision"], "refused");
    // Health checks are not traced; key refreshes are, on their own.
    assert!(!all.iter().any(|s| s.all_text.contains("grpc.health.v1.Health")));
    assert!(all.iter().any(|s| s.name == "jwks.refresh"
        && s.attributes.get("outcome").map(String::as_str) == Some("success")));

    // --- Metrics count what happened ----------------------------------------
    let issued = |grant| counter(&receiver, "tollgate.tokens.issued", &[("grant_type", grant)]);
    assert_eq!(issued("authorization_code"), 1);
    assert_eq!(issued("client_credentials"), 1);
    assert!(issued("urn:ietf:params:oauth:grant-type:token-exchange") >= 1);
    assert_eq!(
        counter(
            &receiver,
            "tollgate.tokens.refused",
            &[("grant_type", "client_credentials"), ("error", "invalid_client")]
        ),
        1
    );
    let validations = |outcome, reason| {
        counter(
            &receiver,
            "tollgate.token.validations",
            &[("tollgate.service", "resource-server"), ("outcome", outcome), ("reason", reason)],
        )
    };
    assert_eq!(validations("admitted", "none"), 2);
    assert_eq!(validations("refused", "missing_token"), 1);
    assert_eq!(validations("refused", "unknown_key"), 1);
    assert_eq!(counter(&receiver, "tollgate.login.failures", &[]), 1);
    assert!(counter(&receiver, "tollgate.jwks.refreshes", &[("outcome", "success")]) >= 2);
    assert_eq!(
        histogram_count(
            &receiver,
            "rpc.server.duration",
            &[("rpc.method", "tollgate.resource.v1.NotesService/CreateNote")]
        ),
        1
    );

    for service in ["resource-server", "auth-server"] {
        assert_eq!(
            histogram_count(
                &receiver,
                "rpc.server.duration",
                &[("tollgate.service", service), ("rpc.method", "unmatched")]
            ),
            1,
            "{service}"
        );
    }
    let methods = attribute_values(&receiver, "rpc.server.duration", "rpc.method");
    assert!(!methods.iter().any(|m| m.contains("Scan")), "{methods:?}");
    assert!(methods.contains("tollgate.resource.v1.NotesService/ListNotes"), "{methods:?}");

    // --- Audit events, and no secret anywhere -------------------------------
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let audit: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["target"] == "audit")
        .collect();
    let audited = |event: &str| audit.iter().filter(|line| line["event"] == event).count();
    assert_eq!(audited("login.succeeded"), 1, "{audit:?}");
    assert_eq!(audited("login.failed"), 1, "{audit:?}");
    assert_eq!(audited("consent.granted"), 1, "{audit:?}");
    let issued_to_alice = audit
        .iter()
        .find(|line| line["event"] == "token.issued" && line["grant_type"] == "authorization_code")
        .expect("the code grant's token.issued event");
    assert_eq!(issued_to_alice["subject"], "alice");
    assert_eq!(issued_to_alice["client_id"], "tollgate-cli");
    assert!(issued_to_alice["grant_id"].is_string(), "{issued_to_alice}");

    let exported: String = all.iter().map(|s| s.all_text.as_str()).collect::<Vec<_>>().join("\n");
    for secret in &secrets_seen {
        assert!(secret.len() >= 8, "a secret this short would match by chance: {secret:?}");
        assert!(!exported.contains(secret.as_str()), "a secret value is in an exported span");
        assert!(!logs.contains(secret.as_str()), "a secret value is in a log line");
    }
    // No JWT of any kind, including the exchanged tokens this test never saw.
    assert!(
        contains_jwt(&format!("x {} y", tokens.access_token.expose())),
        "the check finds a real JWT"
    );
    assert!(!contains_jwt(&exported), "a JWT-shaped value is in an exported span");
    assert!(!contains_jwt(&logs), "a JWT-shaped value is in a log line");
    assert!(!all.is_empty() && !logs.is_empty());
}
