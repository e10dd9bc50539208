//! DPoP (RFC 9449) at a protected service, over gRPC (docs/dpop-grpc.md): a
//! DPoP-bound token is admitted only with a fresh proof of its key for this
//! call at this service, and every other way of presenting it is refused with
//! the RFC 9449 error the client can act on.

// In tests a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use support::{ISSUER, JwksServer, TestKey};
use tollgate_service_kit::auth::{AuthLayer, DPOP_METADATA, Requirement, ScopePolicy};
use tollgate_service_kit::jwks::{JwksCache, JwksConfig};
use tollgate_token::dpop::access_token_hash;
use tollgate_token::{Clock as _, ManualClock, Verifier, VerifierConfig, jwk_thumbprint};
use tower::{Layer as _, ServiceExt as _};

/// Where the clients call the service, and the method they call.
const ORIGIN: &str = "https://notes.internal:50051";
const LIST: &str = "/x.v1.Notes/List";
const DELETE: &str = "/x.v1.Notes/Delete";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A client's DPoP key.
struct ProofKey(Ed25519KeyPair);

impl ProofKey {
    fn new() -> Self {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        Self(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap())
    }

    fn x(&self) -> String {
        b64(self.0.public_key().as_ref())
    }

    fn jkt(&self) -> String {
        jwk_thumbprint("OKP", "Ed25519", &self.x(), None)
    }

    /// A proof for a call to `htu` presenting `token`, made at `iat`.
    fn proof(&self, htu: &str, token: &str, iat: i64, jti: &str) -> String {
        let header = serde_json::json!({
            "typ": "dpop+jwt", "alg": "EdDSA",
            "jwk": { "kty": "OKP", "crv": "Ed25519", "x": self.x() },
        });
        let claims = serde_json::json!({
            "jti": jti, "htm": "POST", "htu": htu, "iat": iat, "ath": access_token_hash(token),
        });
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = self.0.sign(input.as_bytes());
        format!("{input}.{}", b64(signature.as_ref()))
    }
}

struct Service {
    layer: AuthLayer,
    clock: Arc<ManualClock>,
    signer: TestKey,
    _jwks: JwksServer,
}

impl Service {
    /// A service reached at [`ORIGIN`], with or without DPoP configured.
    async fn start(dpop: bool) -> Self {
        let signer = TestKey::new("k1");
        let jwks = JwksServer::start(vec![signer.jwk()]).await;
        let clock = Arc::new(ManualClock::new(1_000_000));
        let (cache, _task) = JwksCache::spawn(JwksConfig::new(&jwks.uri), clock.clone());
        cache.ready().await;
        let policy = ScopePolicy::new()
            .method(LIST, Requirement::Scope("notes:read"))
            .method(DELETE, Requirement::Scope("notes:read"));
        let layer = AuthLayer::new(
            Verifier::new(VerifierConfig::new(ISSUER, "api")),
            cache,
            policy,
            clock.clone(),
        );
        let layer = if dpop { layer.with_dpop(ORIGIN) } else { layer };
        Self { layer, clock, signer, _jwks: jwks }
    }

    fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Calls `path` with `authorization` and these `dpop` entries: `Ok` if
    /// the call reached the method, else the status the layer answered.
    async fn call(
        &self,
        path: &str,
        authorization: &str,
        proofs: &[&str],
    ) -> Result<(), tonic::Status> {
        let inner =
            tower::service_fn(|_req: http::Request<http_body_util::Empty<bytes::Bytes>>| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(String::from("reached")))
            });
        let mut request = http::Request::builder()
            .uri(format!("{ORIGIN}{path}"))
            .header("authorization", authorization);
        for proof in proofs {
            request = request.header(DPOP_METADATA, *proof);
        }
        let request = request.body(http_body_util::Empty::new()).unwrap();
        let response = self.layer.layer(inner).oneshot(request).await.unwrap();
        match tonic::Status::from_header_map(response.headers()) {
            Some(status) => Err(status),
            None => {
                assert_eq!(response.into_body(), "reached");
                Ok(())
            }
        }
    }
}

/// A DPoP-configured service and a token bound to a client's key.
struct Bound {
    service: Service,
    key: ProofKey,
    now: i64,
    token: String,
    /// The `authorization` value presenting the token as DPoP.
    dpop: String,
}

impl Bound {
    async fn new() -> Self {
        let service = Service::start(true).await;
        let key = ProofKey::new();
        let now = service.now();
        let token = service.signer.token_bound_to(now, &key.jkt());
        let dpop = format!("DPoP {token}");
        Self { service, key, now, token, dpop }
    }
}

/// The refusal as the client reads it: gRPC code, RFC error code, message.
fn refusal(result: Result<(), tonic::Status>) -> (tonic::Code, String, String) {
    let status = result.expect_err("refused");
    let code = tollgate_service_kit::status::oauth_error_code(&status).unwrap_or("").to_owned();
    (status.code(), code, status.message().to_owned())
}

fn invalid_proof(message: &str) -> (tonic::Code, String, String) {
    (tonic::Code::Unauthenticated, "invalid_dpop_proof".into(), message.into())
}

#[tokio::test]
async fn a_bound_token_is_admitted_once_per_proof_and_only_with_its_key() {
    let Bound { service, key, now, token, dpop } = Bound::new().await;
    let proof = key.proof(&format!("{ORIGIN}{LIST}"), &token, now, "p1");

    // The holder of the key, with a fresh proof for this call: admitted.
    service.call(LIST, &dpop, &[&proof]).await.expect("admitted");
    // The same proof again (a captured call replayed): refused.
    assert_eq!(
        refusal(service.call(LIST, &dpop, &[&proof]).await),
        invalid_proof("proof jti already used")
    );
    // A new proof by the same key works; so does the scheme in any case.
    let next = key.proof(&format!("{ORIGIN}{LIST}"), &token, now, "p2");
    service.call(LIST, &format!("dpop {token}"), &[&next]).await.expect("admitted");

    // Stolen without the key: as a bearer token it is refused outright...
    assert_eq!(
        refusal(service.call(LIST, &format!("Bearer {token}"), &[]).await),
        (
            tonic::Code::Unauthenticated,
            "invalid_token".into(),
            "token is bound to a DPoP key: present it with the DPoP scheme and a proof".into()
        )
    );
    // ...with the DPoP scheme and no proof, or two...
    assert_eq!(refusal(service.call(LIST, &dpop, &[]).await), invalid_proof("missing DPoP proof"));
    let (a, b) = (
        key.proof(&format!("{ORIGIN}{LIST}"), &token, now, "p3"),
        key.proof(&format!("{ORIGIN}{LIST}"), &token, now, "p4"),
    );
    assert_eq!(
        refusal(service.call(LIST, &dpop, &[&a, &b]).await),
        invalid_proof("more than one DPoP proof")
    );
    // ...and with a proof by the thief's own key.
    let thief = ProofKey::new();
    let forged = thief.proof(&format!("{ORIGIN}{LIST}"), &token, now, "p5");
    let status = service.call(LIST, &dpop, &[&forged]).await.expect_err("refused");
    assert_eq!(
        refusal(Err(status.clone())),
        (
            tonic::Code::Unauthenticated,
            "invalid_token".into(),
            "token is bound to another DPoP key".into()
        )
    );
    // Its challenge is a DPoP one, as the call was (RFC 9449 §7.1).
    assert_eq!(
        status.metadata().get("www-authenticate").unwrap().to_str().unwrap(),
        "DPoP error=\"invalid_token\", error_description=\"token is bound to another DPoP key\", \
         algs=\"EdDSA ES256\""
    );
}

#[tokio::test]
async fn a_proof_is_good_for_its_call_its_service_its_token_and_a_few_seconds() {
    let Bound { service, key, now, token, dpop } = Bound::new().await;

    // Made for another method of the same service.
    let other_method = key.proof(&format!("{ORIGIN}{DELETE}"), &token, now, "m");
    assert_eq!(
        refusal(service.call(LIST, &dpop, &[&other_method]).await),
        invalid_proof("proof htu does not match the request URI")
    );
    // Made for another server: the same path at another authority. The
    // service compares with its configured origin, not the `:authority` the
    // request claims (which here is its own).
    let other_server =
        key.proof(&format!("https://billing.internal:50051{LIST}"), &token, now, "s");
    assert_eq!(
        refusal(service.call(LIST, &dpop, &[&other_server]).await),
        invalid_proof("proof htu does not match the request URI")
    );
    // Made for another token of the same key (ath).
    let other_token = service.signer.token_bound_to(now - 1, &key.jkt());
    let for_other_token = key.proof(&format!("{ORIGIN}{LIST}"), &other_token, now, "t");
    assert_eq!(
        refusal(service.call(LIST, &dpop, &[&for_other_token]).await),
        invalid_proof("proof ath does not match the access token")
    );
    // Made too long ago: 10 s plus 5 s of leeway is the window.
    let old = key.proof(&format!("{ORIGIN}{LIST}"), &token, now - 16, "o");
    assert_eq!(
        refusal(service.call(LIST, &dpop, &[&old]).await),
        invalid_proof("proof iat outside the accepted window")
    );
    let oldest = key.proof(&format!("{ORIGIN}{LIST}"), &token, now - 15, "o2");
    service.call(LIST, &dpop, &[&oldest]).await.expect("admitted");
}

#[tokio::test]
async fn an_unbound_token_stays_a_bearer_token() {
    let service = Service::start(true).await;
    let key = ProofKey::new();
    let now = service.now();
    let token = service.signer.token(now);
    service.call(LIST, &format!("Bearer {token}"), &[]).await.expect("admitted");
    // Presented as DPoP it is refused: the scheme says it is bound, the
    // token says it is not.
    let proof = key.proof(&format!("{ORIGIN}{LIST}"), &token, now, "u");
    assert_eq!(
        refusal(service.call(LIST, &format!("DPoP {token}"), &[&proof]).await),
        (
            tonic::Code::Unauthenticated,
            "invalid_token".into(),
            "token is not DPoP-bound: present it as Bearer".into()
        )
    );
}

#[tokio::test]
async fn a_service_without_dpop_refuses_bound_tokens_and_says_so_in_its_challenge() {
    let service = Service::start(false).await;
    let key = ProofKey::new();
    let now = service.now();
    let token = service.signer.token_bound_to(now, &key.jkt());
    let proof = key.proof(&format!("{ORIGIN}{LIST}"), &token, now, "n");
    assert_eq!(
        refusal(service.call(LIST, &format!("DPoP {token}"), &[&proof]).await),
        (
            tonic::Code::Unauthenticated,
            "invalid_token".into(),
            "this service does not accept DPoP-bound tokens".into()
        )
    );

    // A DPoP failure's challenge is a DPoP one (RFC 9449 §7.1).
    let service = Service::start(true).await;
    let token = service.signer.token_bound_to(now, &key.jkt());
    let status = service.call(LIST, &format!("DPoP {token}"), &[]).await.expect_err("refused");
    assert_eq!(
        status.metadata().get("www-authenticate").unwrap().to_str().unwrap(),
        "DPoP error=\"invalid_dpop_proof\", error_description=\"missing DPoP proof\", \
         algs=\"EdDSA ES256\""
    );
}
