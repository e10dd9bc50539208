//! Waiting for the signal to stop.

/// Resolves on Ctrl-C or, on Unix, SIGTERM (what `docker stop` and Kubernetes send).
pub async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received");
}

/// A server's stop, in the order a load balancer needs it (see [`stop_sequence`]).
#[derive(Debug, Clone)]
pub struct Stopping(tokio::sync::watch::Receiver<bool>);

impl Stopping {
    /// Resolves when the listeners should stop accepting: after the drain window.
    pub async fn listeners_close(mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// Once `signal` resolves: health reports NOT_SERVING for the whole server and
/// each of `services` at once, the listeners keep serving for `drain` (so load
/// balancers and health-checking clients move away before connections are
/// refused), then [`Stopping::listeners_close`] resolves and the servers stop
/// accepting, finishing the calls in flight (tonic and axum's graceful shutdown).
pub fn stop_sequence(
    signal: impl std::future::Future<Output = ()> + Send + 'static,
    health: tonic_health::server::HealthReporter,
    services: Vec<&'static str>,
    drain: std::time::Duration,
) -> Stopping {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        signal.await;
        health.set_service_status("", tonic_health::ServingStatus::NotServing).await;
        for service in services {
            health.set_service_status(service, tonic_health::ServingStatus::NotServing).await;
        }
        if !drain.is_zero() {
            tracing::info!(?drain, "health is NOT_SERVING; draining before the listeners close");
            tokio::time::sleep(drain).await;
        }
        tracing::info!("listeners closing; finishing calls in flight");
        let _ = tx.send(true);
    });
    Stopping(rx)
}
