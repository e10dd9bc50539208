//! Logging set-up, in one place for every binary.
//!
//! Structured `tracing` output, human-readable or JSON. Secrets never reach it:
//! handlers skip them in `#[instrument]` and the types that hold them do not print
//! their contents.

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per event, for log shippers.
    Json,
}

/// Keeps telemetry alive; dropping it flushes what is buffered.
#[derive(Debug)]
#[must_use = "telemetry is flushed when the guard is dropped"]
pub struct TelemetryGuard(());

/// Installs the global subscriber. `RUST_LOG` overrides `default_filter`. A second
/// call (several services in one test process) keeps the first subscriber.
pub fn init(format: LogFormat, default_filter: &str) -> TelemetryGuard {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    TelemetryGuard(())
}
