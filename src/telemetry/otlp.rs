//! Optional trace export over OTLP/gRPC (`EPOP_OTLP_ENDPOINT`): every request's span (named for
//! its RPC, with its gRPC status code and user id) goes to an OpenTelemetry collector, joined
//! to the caller's trace when the request carries a W3C `traceparent` header. Off by default.

use opentelemetry::{
    propagation::TextMapPropagator,
    trace::{TraceContextExt, TracerProvider as _},
};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use std::sync::atomic::{AtomicBool, Ordering};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Whether spans are exported (then incoming trace contexts are read).
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// The exporter's provider; [`Exporter::shutdown`] sends what is still buffered.
#[derive(Debug)]
pub struct Exporter(SdkTracerProvider);

impl Exporter {
    /// An exporter to the collector at `endpoint` (e.g. `http://127.0.0.1:4317`). Must run
    /// inside the Tokio runtime. The standard `OTEL_*` variables tune it (e.g.
    /// `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_EXPORTER_OTLP_HEADERS`).
    pub fn new(endpoint: &str) -> anyhow::Result<Self> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(|e| anyhow::anyhow!("EPOP_OTLP_ENDPOINT {endpoint}: {e}"))?;
        let resource = Resource::builder().with_service_name("epop").build();
        let provider = SdkTracerProvider::builder()
            .with_resource(resource)
            .with_batch_exporter(exporter)
            .build();
        EXPORTING.store(true, Ordering::Relaxed);
        Ok(Self(provider))
    }

    /// The `tracing` layer that turns spans into exported OpenTelemetry spans.
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S> + use<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        tracing_opentelemetry::layer().with_tracer(self.0.tracer("epop"))
    }

    /// Exports the spans still buffered, then stops.
    pub fn shutdown(self) {
        if let Err(e) = self.0.shutdown() {
            tracing::warn!(error = %e, "the trace exporter did not shut down cleanly");
        }
    }
}

/// Makes `span` a child of the trace named by `headers` (`traceparent`), when exporting.
pub fn join_callers_trace(span: &tracing::Span, headers: &http::HeaderMap) {
    if !EXPORTING.load(Ordering::Relaxed) {
        return;
    }
    let parent =
        TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers));
    let _ = span.set_parent(parent);
}

/// Names `span` for the RPC it turned out to be (`otel.name` is read only at its start).
pub fn name_span(span: &tracing::Span, name: &'static str) {
    if EXPORTING.load(Ordering::Relaxed) {
        span.context().span().update_name(name);
    }
}
