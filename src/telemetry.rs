//! Logging setup: `RUST_LOG` filters (default `info`), text or JSON lines on stderr, and
//! optionally spans exported over OTLP.

pub mod otlp;

use crate::config::LogFormat;
use std::io::IsTerminal;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Installs the global subscriber; later calls do nothing.
pub fn init(format: LogFormat) {
    init_exporting(format, None);
}

/// Installs the global subscriber, exporting spans through `exporter` when given.
pub fn init_exporting(format: LogFormat, exporter: Option<&otlp::Exporter>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(exporter.map(otlp::Exporter::layer));
    let _ = match format {
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal()),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .try_init(),
    };
}

/// The span of one HTTP request: its method, path (never the query, which may carry a
/// signature), request id, and, once known, the user's id and the call's gRPC status. No
/// header is recorded: authorization and cookies never reach the logs. When spans are
/// exported it is a server span, renamed for its RPC, in the caller's trace if named.
pub fn request_span<B>(req: &http::Request<B>) -> tracing::Span {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        request_id,
        user_id = tracing::field::Empty,
        rpc.grpc.status_code = tracing::field::Empty,
        otel.name = %req.method(),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
    );
    otlp::join_callers_trace(&span, req.headers());
    span
}

/// Names the authenticated user in the current request's span.
pub fn record_user(user: uuid::Uuid) {
    tracing::Span::current().record("user_id", tracing::field::display(user));
}
