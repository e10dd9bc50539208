//! Telemetry set-up, in one place for every binary: structured logs (human or
//! JSON) always, and OpenTelemetry traces and metrics exported over OTLP/gRPC
//! when an endpoint is configured.
//!
//! Secrets never reach any of it: handlers skip them in `#[instrument]`, span
//! fields are chosen (client id, grant type, scopes, subject, decision, reason),
//! and the types that hold secrets do not print their contents. The e2e test
//! `telemetry` runs a whole flow and searches every exported span and log line
//! for the secret values.
//!
//! - [`propagation`]: W3C trace context over HTTP and gRPC, and the server span
//!   layer.
//! - [`metrics`]: the counters and histograms.
//! - [`audit`]: security events for operators.
#![forbid(unsafe_code)]

pub mod audit;
pub mod metrics;
pub mod propagation;

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per event, for log shippers.
    Json,
}

/// Where traces and metrics go. Shared by every service's configuration.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TelemetryConfig {
    /// OTLP/gRPC endpoint for traces and metrics (an OpenTelemetry collector,
    /// e.g. http://otel-collector:4317). Without it nothing is exported and
    /// only logs are written.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// How often metrics are exported, in milliseconds.
    #[arg(long, env = "OTEL_METRIC_EXPORT_INTERVAL", default_value_t = 60_000)]
    pub metric_export_interval_ms: u64,
}

/// Keeps telemetry alive; dropping it flushes and shuts down the exporters.
///
/// Drop it on a multi-threaded tokio runtime (what `#[tokio::main]` gives):
/// the exporters run as tasks there and the flush waits for them.
#[derive(Debug)]
#[must_use = "telemetry is flushed when the guard is dropped"]
pub struct TelemetryGuard {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
    /// The log writer's thread: dropping it writes out what is queued.
    log_writer: Option<tracing_appender::non_blocking::WorkerGuard>,
}

impl TelemetryGuard {
    /// Exports everything recorded so far (tests read it at once).
    pub fn flush(&self) {
        if let Some(Err(err)) = self.tracer.as_ref().map(SdkTracerProvider::force_flush) {
            eprintln!("telemetry: flushing spans failed: {err}");
        }
        if let Some(Err(err)) = self.meter.as_ref().map(SdkMeterProvider::force_flush) {
            eprintln!("telemetry: flushing metrics failed: {err}");
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.flush();
        if let Some(tracer) = self.tracer.take() {
            let _ = tracer.shutdown();
        }
        if let Some(meter) = self.meter.take() {
            let _ = meter.shutdown();
        }
        // Last, so the exporters' own complaints are written too.
        drop(self.log_writer.take());
    }
}

/// Log lines queued for the writer thread at most. Past it a request thread
/// waits for room rather than dropping a line: audit events are log lines
/// too, and none may be lost to a flood.
///
/// The queue's slots are allocated, and touched, when it is made: 32 bytes a
/// line, so 128 KiB of every service's resident memory. (At 16,384 lines it
/// was 512 KiB, a fifth of an idle service's heap.) A burst longer than the
/// queue makes the threads that log wait for the writer, as a longer queue
/// would a little later; no line is dropped either way.
pub const LOG_QUEUE_LINES: usize = 4_096;

/// Installs the global subscriber, logging to stderr. `RUST_LOG` overrides
/// `default_filter`. A second call (several services in one test process)
/// keeps the first subscriber and exports nothing more.
///
/// Lines are formatted on the thread that logs and written by a thread of
/// their own ([`LOG_QUEUE_LINES`] queued at most): a slow terminal or log
/// shipper does not hold up a token request, and an idle one costs no
/// system call per request.
pub fn init(
    service: &'static str,
    format: LogFormat,
    telemetry: &TelemetryConfig,
    default_filter: &str,
) -> TelemetryGuard {
    let (writer, log_writer) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("log-writer")
        .finish(std::io::stderr());
    // Colours only for a person at a terminal: a log file or a container's
    // log stream gets plain text, and no escape codes are made per line.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    install(service, format, telemetry, default_filter, (writer, Some(log_writer)), ansi)
}

/// [`init`], writing log lines in plain text to `writer` (tests capture them).
pub fn init_with_writer<W>(
    service: &'static str,
    format: LogFormat,
    telemetry: &TelemetryConfig,
    default_filter: &str,
    writer: W,
) -> TelemetryGuard
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    install(service, format, telemetry, default_filter, (writer, None), false)
}

/// `writer` comes with the guard of the thread behind it, if any: it lives
/// in the [`TelemetryGuard`], or ends here if ours is not installed.
fn install<W>(
    service: &'static str,
    format: LogFormat,
    telemetry: &TelemetryConfig,
    default_filter: &str,
    (writer, log_writer): (W, Option<tracing_appender::non_blocking::WorkerGuard>),
    ansi: bool,
) -> TelemetryGuard
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let logs = match format {
        LogFormat::Text => {
            tracing_subscriber::fmt::layer().with_ansi(ansi).with_writer(writer).boxed()
        }
        LogFormat::Json => {
            tracing_subscriber::fmt::layer().json().flatten_event(true).with_writer(writer).boxed()
        }
    };

    let (tracer, meter) = match &telemetry.otlp_endpoint {
        Some(endpoint) => match exporters(service, endpoint, telemetry) {
            Ok((tracer, meter)) => (Some(tracer), Some(meter)),
            Err(err) => {
                eprintln!("telemetry: OTLP export to {endpoint} disabled: {err}");
                (None, None)
            }
        },
        None => (None, None),
    };
    // The exporter's own transport (tonic, h2, hyper) must not feed spans back
    // into the exporter.
    let otel = tracer.as_ref().map(|provider| {
        tracing_opentelemetry::layer().with_tracer(provider.tracer(service)).with_filter(
            EnvFilter::new("info,h2=off,hyper=off,tonic=off,tower=off,opentelemetry=off"),
        )
    });

    let installed = tracing_subscriber::registry().with(filter).with(logs).with(otel).try_init();
    if installed.is_err() {
        // Someone else's subscriber is in place: ours would export nothing,
        // and our log writer's thread ends here.
        return TelemetryGuard { tracer: None, meter: None, log_writer: None };
    }
    TRACES_EXPORTED.store(tracer.is_some(), std::sync::atomic::Ordering::Relaxed);
    // W3C trace context (traceparent, tracestate) on every hop, HTTP and gRPC.
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    if let Some(meter) = &meter {
        opentelemetry::global::set_meter_provider(meter.clone());
    }
    TelemetryGuard { tracer, meter, log_writer }
}

static TRACES_EXPORTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this process exports traces (an OTLP endpoint is configured and
/// our subscriber is the one installed). A span that exists only to be seen
/// in traces, with no log line of its own, is worth creating only then: the
/// log layer formats every span's fields as it is created and recorded,
/// whether or not a line is ever written inside it.
pub fn traces_exported() -> bool {
    TRACES_EXPORTED.load(std::sync::atomic::Ordering::Relaxed)
}

fn exporters(
    service: &'static str,
    endpoint: &str,
    telemetry: &TelemetryConfig,
) -> Result<(SdkTracerProvider, SdkMeterProvider), Box<dyn std::error::Error>> {
    let resource = Resource::builder()
        .with_service_name(service)
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let spans = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_secs(5))
        .build()?;
    let tracer = SdkTracerProvider::builder()
        .with_resource(resource.clone())
        .with_span_processor(
            opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
                spans,
                opentelemetry_sdk::runtime::Tokio,
            )
            .build(),
        )
        .build();
    let metrics = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_secs(5))
        .build()?;
    let reader =
        opentelemetry_sdk::metrics::periodic_reader_with_async_runtime::PeriodicReader::builder(
            metrics,
            opentelemetry_sdk::runtime::Tokio,
        )
        .with_interval(Duration::from_millis(telemetry.metric_export_interval_ms.max(100)))
        .build();
    let meter = SdkMeterProvider::builder().with_resource(resource).with_reader(reader).build();
    Ok((tracer, meter))
}
