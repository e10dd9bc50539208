//! The redirect endpoint of a native app (RFC 8252 §7.3): a listener on the
//! loopback interface, on a port the OS picks, that takes exactly one
//! authorization response and closes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::response::Html;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::ClientError;

pub const CALLBACK_PATH: &str = "/callback";

/// A bound loopback listener, not yet serving.
#[derive(Debug)]
pub struct LoopbackRedirect {
    listener: TcpListener,
    addr: SocketAddr,
}

type Sender = Arc<Mutex<Option<oneshot::Sender<HashMap<String, String>>>>>;

impl LoopbackRedirect {
    /// Binds `127.0.0.1:0`. RFC 8252 §8.3: the loopback IP literal, not
    /// `localhost`, so no resolver or firewall can send the code elsewhere.
    pub async fn bind() -> Result<Self, ClientError> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| ClientError::Protocol(format!("binding the loopback listener: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| ClientError::Protocol(format!("loopback listener: {e}")))?;
        Ok(Self { listener, addr })
    }

    pub fn redirect_uri(&self) -> String {
        format!("http://{}{CALLBACK_PATH}", self.addr)
    }

    /// Serves until the first request to the callback path, answers it, and
    /// returns its query parameters.
    pub async fn wait(self) -> Result<HashMap<String, String>, ClientError> {
        let (tx, rx) = oneshot::channel();
        let sender: Sender = Arc::new(Mutex::new(Some(tx)));
        let app = axum::Router::new()
            .route(CALLBACK_PATH, axum::routing::get(callback))
            .with_state(sender);
        let (params_tx, params_rx) = oneshot::channel();
        // Graceful shutdown once the response is in: the browser still gets its page.
        axum::serve(self.listener, app)
            .with_graceful_shutdown(async move {
                if let Ok(params) = rx.await {
                    let _ = params_tx.send(params);
                }
            })
            .await
            .map_err(|e| ClientError::Protocol(format!("loopback listener: {e}")))?;
        params_rx.await.map_err(|_| ClientError::Protocol("no authorization response".into()))
    }
}

async fn callback(
    State(sender): State<Sender>,
    Query(params): Query<HashMap<String, String>>,
) -> Html<&'static str> {
    let failed = params.contains_key("error");
    if let Some(tx) = sender.lock().ok().and_then(|mut s| s.take()) {
        let _ = tx.send(params);
    }
    Html(if failed {
        "<!doctype html><title>Tollgate</title><p>Authorization was not granted. You can close this window.</p>"
    } else {
        "<!doctype html><title>Tollgate</title><p>Signed in. You can close this window and return to the terminal.</p>"
    })
}
