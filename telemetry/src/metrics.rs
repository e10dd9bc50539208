//! The platform's metrics, as OpenTelemetry instruments on the global meter
//! provider (exported over OTLP when configured; no-ops otherwise). One
//! function per measurement, so every call site uses the same names and
//! attribute keys, and attribute values come from small fixed sets (grant
//! types, error codes, refusal reasons) and never from user input.

use std::sync::OnceLock;
use std::time::Instant;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter};

use crate::propagation::Protocol;

struct Instruments {
    tokens_issued: Counter<u64>,
    token_refusals: Counter<u64>,
    validations: Counter<u64>,
    jwks_refreshes: Counter<u64>,
    login_failures: Counter<u64>,
    throttled: Counter<u64>,
    rpc_duration: Histogram<f64>,
    http_duration: Histogram<f64>,
}

fn meter() -> Meter {
    opentelemetry::global::meter("tollgate")
}

fn instruments() -> &'static Instruments {
    static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
    INSTRUMENTS.get_or_init(|| {
        let meter = meter();
        Instruments {
            tokens_issued: meter
                .u64_counter("tollgate.tokens.issued")
                .with_description("Access tokens issued, by grant type")
                .build(),
            token_refusals: meter
                .u64_counter("tollgate.tokens.refused")
                .with_description("Token requests refused, by grant type and RFC 6749 error code")
                .build(),
            validations: meter
                .u64_counter("tollgate.token.validations")
                .with_description(
                    "Access-token validations at protected services, by outcome and refusal reason",
                )
                .build(),
            jwks_refreshes: meter
                .u64_counter("tollgate.jwks.refreshes")
                .with_description("JWKS fetches by protected services, by outcome")
                .build(),
            login_failures: meter
                .u64_counter("tollgate.login.failures")
                .with_description("Failed resource-owner sign-ins")
                .build(),
            throttled: meter
                .u64_counter("tollgate.throttled")
                .with_description("Requests refused by a throttle, by throttle")
                .build(),
            rpc_duration: meter
                .f64_histogram("rpc.server.duration")
                .with_unit("ms")
                .with_description("gRPC server latency per method")
                .build(),
            http_duration: meter
                .f64_histogram("http.server.request.duration")
                .with_unit("s")
                .with_description("HTTP server latency per route")
                .build(),
        }
    })
}

/// An access token issued at the token endpoint.
pub fn token_issued(grant_type: &str) {
    instruments().tokens_issued.add(1, &[KeyValue::new("grant_type", grant_type.to_owned())]);
}

/// A token request refused with `error` (an RFC 6749 §5.2 code).
pub fn token_refused(grant_type: &str, error: &'static str) {
    instruments().token_refusals.add(
        1,
        &[KeyValue::new("grant_type", grant_type.to_owned()), KeyValue::new("error", error)],
    );
}

/// A token validated at a protected service: `reason` is `None` when admitted.
pub fn token_validated(service: &'static str, reason: Option<&'static str>) {
    instruments().validations.add(
        1,
        &[
            KeyValue::new("tollgate.service", service),
            KeyValue::new("outcome", if reason.is_some() { "refused" } else { "admitted" }),
            KeyValue::new("reason", reason.unwrap_or("none")),
        ],
    );
}

/// A JWKS fetch, successful or not.
pub fn jwks_refreshed(ok: bool) {
    instruments()
        .jwks_refreshes
        .add(1, &[KeyValue::new("outcome", if ok { "success" } else { "failure" })]);
}

/// A failed sign-in at the login form.
pub fn login_failed() {
    instruments().login_failures.add(1, &[]);
}

/// A request refused by the throttle named `throttle` (a fixed name).
pub fn throttled(throttle: &'static str) {
    instruments().throttled.add(1, &[KeyValue::new("throttle", throttle)]);
}

/// Latency of one served request (recorded by [`crate::propagation::TraceLayer`]).
pub(crate) fn request_duration(
    service: &'static str,
    protocol: Protocol,
    path: &str,
    status: &str,
    unmatched: bool,
    started: Instant,
) {
    // The path comes from the caller: a scanner's guesses must not each create
    // a time series of their own (unbounded label cardinality is a denial of
    // service on the metrics pipeline). A path nobody serves is "unmatched":
    // tonic's router answers it UNIMPLEMENTED (12), axum's 404, and the token
    // layer marks its default-deny with `UnmatchedRoute`. No handler here
    // answers UNIMPLEMENTED itself, so a real method is never folded in.
    let unmatched = unmatched
        || match protocol {
            Protocol::Grpc => status == "12",
            Protocol::Http => status == "404",
        };
    let route = if unmatched { "unmatched".to_owned() } else { path.to_owned() };
    let elapsed = started.elapsed();
    match protocol {
        Protocol::Grpc => instruments().rpc_duration.record(
            elapsed.as_secs_f64() * 1000.0,
            &[
                KeyValue::new("tollgate.service", service),
                KeyValue::new("rpc.method", route.trim_start_matches('/').to_owned()),
                KeyValue::new("rpc.grpc.status_code", status.to_owned()),
            ],
        ),
        Protocol::Http => instruments().http_duration.record(
            elapsed.as_secs_f64(),
            &[
                KeyValue::new("tollgate.service", service),
                KeyValue::new("http.route", route),
                KeyValue::new("http.response.status_code", status.to_owned()),
            ],
        ),
    }
}
