//! `client-app demo`: the whole protocol, start to finish, narrated.
//!
//! It plays both people in the story: the client (this app) and, through
//! [`ScriptedOwner`], the resource owner at the authorization server's real
//! login and consent pages. Every request and response that matters is printed,
//! secrets shortened so that the output itself leaks nothing usable.

use std::io::Write;
use std::sync::Arc;

use tollgate_service_kit::tls::ClientTls;
use tollgate_token::{Clock, Secret};

use crate::discovery::discover;
use crate::dpop::DpopKey;
use crate::loopback::LoopbackRedirect;
use crate::oauth::{ClientIdentity, OAuthClient};
use crate::owner::ScriptedOwner;
use crate::resource::ResourceClient;
use crate::tokens::{TokenSet, redact};
use crate::{ClientError, claims};

/// What the demo runs against, and as whom.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub issuer: String,
    pub resource_url: String,
    /// With it, the client binds its tokens to a DPoP key (RFC 9449) and the
    /// resource server takes proofs for this origin (its `OAUTH_DPOP_ORIGIN`).
    pub resource_dpop_origin: Option<String>,
    /// The client that acts for the resource owner (authorization code + PKCE).
    pub client: ClientIdentity,
    pub scopes: Vec<String>,
    pub username: String,
    pub password: Secret,
    /// A machine client for the client-credentials part, if any.
    pub machine_client: Option<ClientIdentity>,
    pub machine_scopes: Vec<String>,
    /// The hop behind the resource server, shown with the resource server's own
    /// credentials (only where the demo runs them, as the quickstart does).
    pub hop: Option<HopOptions>,
    /// Trust for `https://` URLs, and the client certificate if any.
    pub tls: ClientTls,
}

/// What the resource server uses to reach the notes store: its own identity at
/// the authorization server, and where the notes store is.
#[derive(Debug, Clone)]
pub struct HopOptions {
    /// The resource server as a client (its client id and secret).
    pub service: ClientIdentity,
    /// The authorization server's gRPC endpoint (RFC 8693 exchange).
    pub auth_grpc_url: String,
    pub notes_store_url: String,
    /// The notes store's audience, `tollgate-notes-store`.
    pub notes_store_audience: String,
    /// The resource server's TLS: its CA bundle and its client certificate
    /// (the internal listeners require one under mutual TLS).
    pub tls: ClientTls,
}

struct Narrator<'a> {
    out: &'a mut (dyn Write + Send),
    step: usize,
}

impl Narrator<'_> {
    fn step(&mut self, title: &str) -> std::io::Result<()> {
        self.step += 1;
        writeln!(self.out, "\n── {}. {title}", self.step)
    }

    fn say(&mut self, text: impl std::fmt::Display) -> std::io::Result<()> {
        writeln!(self.out, "   {text}")
    }

    fn tokens(&mut self, tokens: &TokenSet, clock: &dyn Clock) -> Result<(), ClientError> {
        self.say(format!("token_type    = {}", tokens.token_type))?;
        self.say(format!("access_token  = {}", redact(tokens.access_token.expose())))?;
        if let Some(refresh) = &tokens.refresh_token {
            self.say(format!("refresh_token = {}", redact(refresh.expose())))?;
        }
        self.say(format!("expires_in    = {}s", tokens.expires_at - clock.now()))?;
        self.say(format!("scope         = {}", tokens.scope))?;
        let (header, claims) = claims::decode_unverified(tokens.access_token.expose())?;
        self.say(format!("JWT header    = {header}"))?;
        let pretty = serde_json::to_string_pretty(&claims).unwrap_or_default();
        self.say("JWT claims    =")?;
        for line in pretty.lines() {
            self.say(format!("  {line}"))?;
        }
        Ok(())
    }
}

fn status_line(status: &tonic::Status) -> String {
    let code = oauth_error(status);
    format!("{:?} ({code}): {}", status.code(), status.message())
}

fn oauth_error(status: &tonic::Status) -> &str {
    status.metadata().get("oauth-error").and_then(|v| v.to_str().ok()).unwrap_or("-")
}

/// Runs the whole story. Any step that does not go as the protocol says is an error.
pub async fn run(
    options: &DemoOptions,
    clock: Arc<dyn Clock>,
    out: &mut (dyn Write + Send),
) -> Result<(), ClientError> {
    let mut n = Narrator { out, step: 0 };
    let http = options.tls.reqwest().build()?;

    n.step("Client discovers the authorization server (RFC 8414)")?;
    let metadata = discover(&http, &options.issuer).await?;
    n.say(format!("GET {}", crate::discovery::metadata_url(&options.issuer)?))?;
    n.say(format!("issuer                 = {}", metadata.issuer))?;
    n.say(format!("authorization_endpoint = {}", metadata.authorization_endpoint))?;
    n.say(format!("token_endpoint         = {}", metadata.token_endpoint))?;
    n.say(format!("jwks_uri               = {}", metadata.jwks_uri))?;
    let client = OAuthClient::with_http(
        metadata,
        options.client.clone(),
        clock.clone(),
        options.tls.reqwest(),
    )?;
    let client = match &options.resource_dpop_origin {
        None => client,
        Some(_) => {
            n.step("Client makes a DPoP key: its tokens will be bound to it (RFC 9449)")?;
            let key = DpopKey::generate()?;
            n.say(format!("Ed25519 key, thumbprint (RFC 7638) jkt = {}", key.jkt()))?;
            n.say("every token request and every API call carries a fresh proof, e.g.:")?;
            let token_endpoint = client.metadata().token_endpoint.clone();
            let proof = key.proof(&token_endpoint, None, clock.now(), None);
            let (header, claims) = claims::decode_unverified(&proof)?;
            n.say(format!("  DPoP proof header = {header}"))?;
            n.say(format!("  DPoP proof claims = {claims}"))?;
            n.say("  signed with the private key, which never leaves the client")?;
            client.with_dpop(key)
        }
    };

    n.step("Client starts an authorization request with PKCE (RFC 6749 §4.1.1, RFC 7636)")?;
    let loopback = LoopbackRedirect::bind().await?;
    let redirect_uri = loopback.redirect_uri();
    let pending = client.authorization_url(&options.scopes, &redirect_uri)?;
    n.say(format!("redirect_uri = {redirect_uri}  (loopback listener, RFC 8252 §7.3)"))?;
    for (key, value) in pending.url.query_pairs() {
        let shown = if key == "state" { redact(&value) } else { value.into_owned() };
        n.say(format!("  {key} = {shown}"))?;
    }
    let waiting = tokio::spawn(loopback.wait());

    n.step(format!("Resource owner {:?} opens the URL in a browser", options.username).as_str())?;
    let mut browser = ScriptedOwner::with_http(options.tls.reqwest())?;
    let login = browser.get(&pending.url).await?;
    n.say(format!("GET /authorize → {} sign-in page", login.status))?;
    n.say(format!(
        "  cookies set: {:?} (encrypted, HttpOnly, SameSite=Lax)",
        browser.cookie_names()
    ))?;
    n.say(format!("  X-Frame-Options: {}", login.header("x-frame-options").unwrap_or("-")))?;
    if login.field("csrf_token").is_none() {
        return Err(ClientError::Protocol(format!("no sign-in form at {}", login.url)));
    }

    n.step("Resource owner signs in")?;
    let signed_in = browser
        .submit(
            &login,
            "/authorize/login",
            &[("username", &options.username), ("password", options.password.expose())],
        )
        .await?;
    n.say(format!(
        "POST /authorize/login (username, password, csrf_token) → {}",
        signed_in.status
    ))?;
    if !signed_in.status.is_redirection() {
        return Err(ClientError::Protocol(format!("sign-in failed: {}", signed_in.status)));
    }
    let consent = browser.follow(&signed_in).await?;
    n.say(format!("GET /authorize → {} consent page", consent.status))?;
    n.say("  the page lists the requested scopes; the owner clicks Allow")?;

    n.step("Authorization server redirects back with code, state and iss (RFC 9207)")?;
    let approved =
        browser.submit(&consent, "/authorize/consent", &[("decision", "approve")]).await?;
    let back = approved
        .location()
        .ok_or_else(|| ClientError::Protocol(format!("consent answered {}", approved.status)))?;
    n.say(format!("POST /authorize/consent → {} Location: {}", approved.status, back.path()))?;
    for (key, value) in back.query_pairs() {
        let shown =
            if key == "code" || key == "state" { redact(&value) } else { value.into_owned() };
        n.say(format!("  {key} = {shown}"))?;
    }
    // The browser follows the redirect to the client's loopback listener.
    browser.get(&back).await?;
    let callback =
        waiting.await.map_err(|e| ClientError::Protocol(format!("loopback listener: {e}")))??;

    n.step("Client checks state and iss, then redeems the code with its PKCE verifier")?;
    let tokens = client.finish_authorization(pending, &callback).await?;
    n.say("POST /token grant_type=authorization_code, code, redirect_uri, code_verifier → 200")?;
    n.tokens(&tokens, clock.as_ref())?;

    n.step("Client calls the resource server with the access token")?;
    let plain = ResourceClient::connect(&options.resource_url, &options.tls).await?;
    let api = match (tokens.dpop_key()?, &options.resource_dpop_origin) {
        (Some(key), Some(origin)) => {
            n.say(format!(
                "each call: authorization: DPoP <token>, dpop: <proof for {origin}/<method>, \
                 ath = SHA-256 of the token>"
            ))?;
            plain.clone().with_dpop(key, origin, clock.clone())
        }
        _ => plain.clone(),
    };
    let display = format!("{} (via Tollgate demo)", options.username);
    let email = format!("{}@example.com", options.username);
    let profile = api.update_profile(tokens.access_token.expose(), "me", &display, &email).await?;
    n.say(format!("UpdateProfile(owner=me) [profile:write] → {profile:?}"))?;
    let note = api
        .create_note(
            tokens.access_token.expose(),
            "me",
            "First note",
            "Written with an access token.",
        )
        .await?;
    n.say(format!("CreateNote(owner=me) [notes:write] → id {}", note.id))?;
    let notes = api.list_notes(tokens.access_token.expose(), "me").await?;
    n.say(format!("ListNotes(owner=me) [notes:read] → {} note(s)", notes.len()))?;
    match api.list_notes(tokens.access_token.expose(), "someone-else").await {
        Err(status) => {
            n.say(format!("ListNotes(owner=someone-else) → refused: {}", status_line(&status)))?
        }
        Ok(_) => return Err(ClientError::Protocol("another owner's notes were readable".into())),
    }

    if let Some(hop) = &options.hop {
        exchange_hop(&mut n, hop, &tokens).await?;
    }

    n.step("Client refreshes; the server rotates the refresh token (RFC 9700 §4.14)")?;
    let refreshed = client.refresh(&tokens).await?;
    n.say("POST /token grant_type=refresh_token → 200, new access and refresh tokens")?;
    n.tokens(&refreshed, clock.as_ref())?;
    match client.refresh(&tokens).await {
        Err(ClientError::Refused { error, description }) => {
            n.say(format!("the old refresh token again → refused: {error} ({description})"))?
        }
        Err(other) => return Err(other),
        Ok(_) => return Err(ClientError::Protocol("a spent refresh token was accepted".into())),
    }

    if let Some(machine) = &options.machine_client {
        n.step(
            format!(
                "Machine client {:?} gets its own token (client_credentials, RFC 6749 §4.4)",
                machine.client_id
            )
            .as_str(),
        )?;
        let machine_metadata = client.metadata().clone();
        let machine = OAuthClient::with_http(
            machine_metadata,
            machine.clone(),
            clock.clone(),
            options.tls.reqwest(),
        )?;
        let token = machine.client_credentials(&options.machine_scopes).await?;
        n.say(
            "POST /token grant_type=client_credentials (HTTP Basic client authentication) → 200",
        )?;
        n.tokens(&token, clock.as_ref())?;
        let report = plain.usage_report(token.access_token.expose()).await?;
        n.say(format!(
            "GetUsageReport [reports:read] → owners={} notes={}",
            report.owners, report.notes
        ))?;
        match plain.list_notes(token.access_token.expose(), "me").await {
            Err(status) => n.say(format!(
                "ListNotes with the machine token → refused: {}",
                status_line(&status)
            ))?,
            Ok(_) => return Err(ClientError::Protocol("a machine token read notes".into())),
        }
    }

    n.step("Done: every step followed the protocol")?;
    Ok(())
}

/// The microservice hop: on every notes call the resource server trades the
/// user's token (whose `aud` is the resource server) for one the notes store
/// accepts (RFC 8693): same `sub`, `aud` the notes store, `act` the resource
/// server, only the scope the call needs, never outliving the user's token.
/// Shown by making the same exchange with the resource server's credentials.
async fn exchange_hop(
    n: &mut Narrator<'_>,
    hop: &HopOptions,
    tokens: &TokenSet,
) -> Result<(), ClientError> {
    use tollgate_proto::auth::v1::token_request::Grant;
    use tollgate_proto::auth::v1::token_service_client::TokenServiceClient;
    use tollgate_proto::auth::v1::{ClientAuthentication, TokenExchangeGrant, TokenRequest};
    use tollgate_proto::notes::v1::ListNotesRequest;
    use tollgate_proto::notes::v1::note_store_client::NoteStoreClient;

    const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
    n.step("Behind the resource server: each notes call is a token exchange (RFC 8693)")?;
    n.say(format!(
        "The notes store accepts only tokens for itself (aud = {}); the user's token names the \
         resource server. So the resource server, authenticated as {:?}, exchanges it:",
        hop.notes_store_audience, hop.service.client_id
    ))?;
    let secret = hop.service.client_secret.as_ref().map(|s| s.expose().clone());
    let request = TokenRequest {
        client: Some(ClientAuthentication {
            client_id: hop.service.client_id.clone(),
            client_secret: secret,
            client_assertion: None,
        }),
        grant: Some(Grant::TokenExchange(TokenExchangeGrant {
            subject_token: tokens.access_token.expose().clone(),
            subject_token_type: ACCESS_TOKEN.into(),
            audience: Some(hop.notes_store_audience.clone()),
            resource: None,
            scope: Some("notes:read".into()),
            requested_token_type: None,
            request_context: None,
            request_details: None,
        })),
    };
    let mut auth = TokenServiceClient::new(
        crate::resource::traced_channel(&hop.auth_grpc_url, &hop.tls).await?,
    );
    let exchanged = auth.token(request).await?.into_inner();
    n.say(format!(
        "TokenService.Token grant=token-exchange subject_token=<the user's> audience={} \
         scope=notes:read → issued_token_type {}",
        hop.notes_store_audience,
        exchanged.issued_token_type.as_deref().unwrap_or("-")
    ))?;
    let (_, user) = claims::decode_unverified(tokens.access_token.expose())?;
    let (_, delegated) = claims::decode_unverified(&exchanged.access_token)?;
    let rows: Vec<(&str, String, String)> =
        ["iss", "sub", "aud", "client_id", "act", "scope", "exp"]
            .into_iter()
            .map(|claim| {
                let show = |v: &serde_json::Value| match v.get(claim) {
                    None => "-".to_owned(),
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                };
                (claim, show(&user), show(&delegated))
            })
            .collect();
    let width = rows.iter().map(|(_, mine, _)| mine.len()).max().unwrap_or(0);
    n.say(format!("{:<10} {:<width$}  {}", "claim", "the user's token", "the exchanged token"))?;
    for (claim, mine, theirs) in rows {
        n.say(format!("{claim:<10} {mine:<width$}  {theirs}"))?;
    }

    let mut store = NoteStoreClient::new(
        crate::resource::traced_channel(&hop.notes_store_url, &hop.tls).await?,
    );
    let listed = store
        .list_notes(crate::resource::bearer(ListNotesRequest {}, &exchanged.access_token)?)
        .await?
        .into_inner();
    n.say(format!(
        "NoteStore.ListNotes with the exchanged token → {} note(s) of sub={}",
        listed.notes.len(),
        user.get("sub").and_then(|s| s.as_str()).unwrap_or("-")
    ))?;
    match store
        .list_notes(crate::resource::bearer(ListNotesRequest {}, tokens.access_token.expose())?)
        .await
    {
        Err(status) => n.say(format!(
            "NoteStore.ListNotes with the user's own token → refused: {}",
            status_line(&status)
        ))?,
        Ok(_) => {
            return Err(ClientError::Protocol(
                "the notes store accepted a token not meant for it".into(),
            ));
        }
    }
    Ok(())
}
