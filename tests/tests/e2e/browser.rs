//! The login and consent pages in a real browser (headless Chromium through
//! WebDriver): cookies, CSRF tokens and security headers as a person's browser
//! applies them, not as our own HTTP client assumes.
//!
//! Needs Debian's `chromium` and `chromium-driver` (installed by `.ci/run`). The
//! test fails, loudly, when they are missing: a skipped browser test proves nothing.

use std::process::Stdio;

use fantoccini::{ClientBuilder, Locator};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tollgate_client_app::loopback::LoopbackRedirect;
use tollgate_e2e::TestStack;

/// A chromedriver on a free port, killed on drop.
struct ChromeDriver {
    child: tokio::process::Child,
    port: u16,
}

impl ChromeDriver {
    /// Starts chromedriver on a port it binds itself (`--port=0`, so no port is
    /// picked here and released for someone else to take) and waits for its
    /// start-up line, which names the port: no sleep, and no hang if it never
    /// comes.
    ///
    /// chromedriver binds the port it got for 127.0.0.1 on ::1 too, and exits
    /// ("IPv6 port not available") when another process holds that port there:
    /// a collision of its own choice that several test binaries at once do hit.
    /// So an exit before start-up is retried with a new port, a few times.
    async fn start() -> Self {
        const ATTEMPTS: usize = 5;
        let mut exits = Vec::new();
        for _ in 0..ATTEMPTS {
            match Self::try_start().await {
                Ok(driver) => return driver,
                Err(output) if output.contains("port not available") => exits.push(output),
                Err(output) => panic!("chromedriver exited without starting: {output}"),
            }
        }
        panic!("chromedriver found no free port, {ATTEMPTS} times: {exits:?}")
    }

    /// The driver, or what it printed before it exited.
    async fn try_start() -> Result<Self, String> {
        let binary = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let mut child = tokio::process::Command::new(&binary)
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary} ({e}): install Debian's chromium and chromium-driver (see .ci/run)"));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut errors = BufReader::new(child.stderr.take().unwrap()).lines();
        let started = tollgate_e2e::within("chromedriver to start", async {
            let mut printed = Vec::new();
            // "ChromeDriver was started successfully on port 41735."
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some((_, port)) = line.split_once("started successfully on port ") {
                    return Ok(port.trim_end_matches('.').parse::<u16>().unwrap());
                }
                printed.push(line);
            }
            while let Ok(Some(line)) = errors.next_line().await {
                printed.push(line);
            }
            Err(printed.join(" | "))
        })
        .await
        .unwrap();
        let port = started?;
        // Keep draining its output so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        tokio::spawn(async move { while let Ok(Some(_)) = errors.next_line().await {} });
        Ok(Self { child, port })
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Types the credentials into the sign-in form and submits it, as a person would.
async fn fill_in_sign_in(
    browser: &fantoccini::Client,
    username: &str,
    password: &str,
) -> Result<(), fantoccini::error::CmdError> {
    browser.find(Locator::Css("input[name=username]")).await?.send_keys(username).await?;
    browser.find(Locator::Css("input[name=password]")).await?.send_keys(password).await?;
    browser.find(Locator::Id("sign-in")).await?.click().await
}

async fn browser(driver: &ChromeDriver) -> fantoccini::Client {
    let mut caps = serde_json::Map::new();
    let binary = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": binary,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"],
        }),
    );
    // chromedriver is local and plain HTTP: no TLS stack needed.
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a WebDriver session with headless Chromium")
}

#[tokio::test]
async fn a_person_signs_in_and_approves_in_a_real_browser() {
    let stack = TestStack::start().await.unwrap();
    let driver = ChromeDriver::start().await;
    let browser = browser(&driver).await;

    let client = stack.client(&stack.cli_client()).await.unwrap();
    let loopback = LoopbackRedirect::bind().await.unwrap();
    let pending = client
        .authorization_url(&["notes:read".into(), "notes:write".into()], &loopback.redirect_uri())
        .unwrap();
    let waiting = tokio::spawn(loopback.wait());

    let result = async {
        browser.goto(pending.url.as_str()).await?;
        // The session cookie is HttpOnly: page scripts cannot read it.
        let visible = browser.execute("return document.cookie", vec![]).await?;
        assert_eq!(visible, serde_json::json!(""), "the session cookie must be HttpOnly");

        // A tampered CSRF token is refused as the browser submits it.
        browser
            .execute("document.querySelector('input[name=csrf_token]').value = 'forged'", vec![])
            .await?;
        fill_in_sign_in(&browser, "alice", "alice-demo-password").await?;
        // Wait for the refusal page itself: the click starts a navigation, and
        // querying before it lands races the old page's teardown.
        let refused = browser.wait().for_element(Locator::Id("error")).await?.text().await?;
        assert!(refused.contains("not sent from this site"), "{refused}");

        // Start again, honestly: the browser's cookie and the form's token agree.
        browser.goto(pending.url.as_str()).await?;
        fill_in_sign_in(&browser, "alice", "alice-demo-password").await?;

        // The consent page lists what is asked, and the owner approves.
        let scopes = browser.wait().for_element(Locator::Id("scopes")).await?.text().await?;
        assert!(scopes.contains("notes:read") && scopes.contains("notes:write"), "{scopes}");
        browser.find(Locator::Id("approve")).await?.click().await?;
        // The browser follows the redirect to the client's loopback listener,
        // which is what `waiting` below resolves on.
        Ok::<_, fantoccini::error::CmdError>(())
    }
    .await;
    result.unwrap();

    let callback = waiting.await.unwrap().unwrap();
    let tokens = client.finish_authorization(pending, &callback).await.unwrap();
    let notes = stack
        .resource()
        .await
        .unwrap()
        .create_note(tokens.access_token.expose(), "me", "From Chromium", "")
        .await;
    assert_eq!(notes.unwrap().owner, "alice");
    browser.close().await.unwrap();
}

/// Serves `html` at `/` on a free loopback port: the attacker's site.
async fn serve_page(html: String) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/", axum::routing::get(move || async move { axum::response::Html(html) }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// Loads an attacker page that frames `target`, waits for the frame's load event
/// (fired for blocked frames too), and returns what rendered inside the frame.
async fn framed_content(browser: &fantoccini::Client, target: &str) -> String {
    let html = format!(
        "<!doctype html><body><iframe id=f src=\"{target}\" \
         onload=\"document.body.setAttribute('data-loaded','1')\"></iframe></body>"
    );
    let attacker = serve_page(html).await;
    browser.goto(&format!("http://{attacker}/")).await.unwrap();
    browser.wait().for_element(Locator::Css("body[data-loaded]")).await.unwrap();
    browser.enter_frame(0).await.unwrap();
    let inside = browser.source().await.unwrap_or_default();
    browser.enter_parent_frame().await.unwrap();
    inside
}

#[tokio::test]
async fn the_login_page_refuses_to_render_inside_a_frame() {
    let stack = TestStack::start().await.unwrap();
    let driver = ChromeDriver::start().await;
    let browser = browser(&driver).await;

    // Control: a page without frame protection does render in the frame, so the
    // check below can tell "blocked" from "not looked at properly".
    let frameable = serve_page("<!doctype html><p id=hello>frameable page</p>".into()).await;
    let inside = framed_content(&browser, &format!("http://{frameable}/")).await;
    assert!(inside.contains("frameable page"), "control frame did not render: {inside}");

    let target = crate::support::authorization_url(
        &stack,
        "tollgate-cli",
        crate::support::LOOPBACK_REDIRECT,
        "notes:read",
        Some((crate::support::CHALLENGE, "S256")),
    );
    let inside = framed_content(&browser, target.as_str()).await;
    assert!(!inside.contains("csrf_token"), "the login form rendered inside a frame: {inside}");
    browser.close().await.unwrap();
}
