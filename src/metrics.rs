//! Prometheus metrics: the process's recorder (metrics-exporter-prometheus, installed once),
//! the `/metrics` page, and the layer that counts and times every RPC by method, protocol
//! and status code, whichever protocol carried it.
//!
//! Names: `epop_rpc_requests_total` and `epop_rpc_duration_seconds` {method, protocol, code};
//! `epop_event_streams_open`; `epop_broker_published_total`, `epop_broker_received_total`,
//! `epop_broker_publish_failures_total`, `epop_broker_lag_seconds`; `epop_db_pool_*`;
//! `epop_jobs_*`; `epop_rate_limited_total` {limit}; `epop_ai_tokens_total` {kind}.

use axum::{extract::Request, middleware::Next, response::Response};
use http_body::{Body, Frame, SizeHint};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::{
    collections::HashSet,
    pin::Pin,
    sync::OnceLock,
    task::{Context, Poll},
    time::{Duration, Instant},
};

/// Seconds: from 1 ms to 5 minutes (a stream's whole life lands in the top buckets).
const BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// The protocol that carried a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Native gRPC.
    Grpc,
    /// gRPC-Web.
    GrpcWeb,
    /// The REST edge's unary routes.
    Rest,
    /// The REST edge's event streams (SSE or NDJSON).
    Sse,
    /// The Connect protocol (unary and streaming, JSON or binary).
    Connect,
}

impl Protocol {
    fn label(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::GrpcWeb => "grpc-web",
            Self::Rest => "rest",
            Self::Sse => "sse",
            Self::Connect => "connect",
        }
    }
}

/// Buckets of the batch size histograms (sends or marks per transaction).
const BATCH_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// The process's metrics handle; the first call installs the recorder. (Every server of a
/// process, e.g. the tests' many, shares it.)
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)
                .expect("the buckets are not empty")
                .set_buckets_for_metric(Matcher::Suffix("_batch_size".into()), &BATCH_BUCKETS)
                .expect("the buckets are not empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed: /metrics stays empty");
            }
            // Histograms keep their samples until upkeep folds them into the buckets: fold
            // them even when nobody scrapes.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .expect("a thread can be spawned");
            handle
        })
        .clone()
}

/// The gRPC paths of every RPC served (EPOP's, health, reflection): the only method labels,
/// so that clients cannot grow the label set with made-up paths.
fn known_methods() -> &'static HashSet<&'static str> {
    // Leaked once: a fixed set, so that labels are borrowed, not allocated per call.
    static METHODS: OnceLock<HashSet<&'static str>> = OnceLock::new();
    METHODS.get_or_init(|| {
        let mut methods = HashSet::new();
        if let Ok(pool) = prost_reflect::DescriptorPool::decode(crate::pb::FILE_DESCRIPTOR_SET) {
            for service in pool.services() {
                for method in service.methods() {
                    let path = format!("/{}/{}", service.full_name(), method.name());
                    methods.insert(&*Box::leak(path.into_boxed_str()));
                }
            }
        }
        for path in [
            "/grpc.health.v1.Health/Check",
            "/grpc.health.v1.Health/Watch",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ] {
            methods.insert(path);
        }
        methods
    })
}

/// The outermost layer of the gRPC router: names the protocol of a call that the REST edge
/// did not already name (gRPC-Web is recognised before it is translated).
pub async fn tag_protocol(mut req: Request, next: Next) -> Response {
    if req.extensions().get::<Protocol>().is_none() {
        let web = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/grpc-web"));
        let protocol = if web {
            Protocol::GrpcWeb
        } else {
            Protocol::Grpc
        };
        req.extensions_mut().insert(protocol);
    }
    next.run(req).await
}

/// Inside gRPC-Web translation, outside authentication: counts and times each call until
/// its status (in the headers, or in the trailers at the end of its body).
pub async fn track(req: Request, next: Next) -> Response {
    let method = known_methods()
        .get(req.uri().path())
        .copied()
        .unwrap_or("unknown");
    let protocol = req
        .extensions()
        .get::<Protocol>()
        .copied()
        .unwrap_or(Protocol::Grpc);
    let span = tracing::Span::current();
    if method != "unknown" {
        crate::telemetry::otlp::name_span(&span, method.trim_start_matches('/'));
    }
    let call = Call {
        method,
        protocol,
        start: Instant::now(),
        span,
    };
    let response = next.run(req).await;
    if let Some(code) = grpc_code(response.headers()) {
        // Trailers-only: the status is already known.
        call.finish(code);
        return response;
    }
    response.map(|body| {
        axum::body::Body::new(Tracked {
            inner: body,
            call: Some(call),
        })
    })
}

/// Counts a call the REST edge refused before calling the RPC at `path` (its caller was not
/// authenticated), as [`track`] counts those the gRPC routes refuse.
pub fn refused(path: &str, protocol: Protocol, code: tonic::Code) {
    let method = known_methods().get(path).copied().unwrap_or("unknown");
    Call {
        method,
        protocol,
        start: Instant::now(),
        span: tracing::Span::current(),
    }
    .finish(code);
}

fn grpc_code(headers: &http::HeaderMap) -> Option<tonic::Code> {
    headers
        .get("grpc-status")
        .map(|v| tonic::Code::from_bytes(v.as_bytes()))
}

/// One call being timed, and its request's span.
struct Call {
    method: &'static str,
    protocol: Protocol,
    start: Instant,
    span: tracing::Span,
}

impl Call {
    fn finish(self, code: tonic::Code) {
        use tonic::Code as C;
        self.span.record("rpc.grpc.status_code", code as i32);
        // The server's failures, not the caller's mistakes (OpenTelemetry's rule for gRPC).
        if matches!(
            code,
            C::Unknown
                | C::DeadlineExceeded
                | C::Unimplemented
                | C::Internal
                | C::Unavailable
                | C::DataLoss
        ) {
            self.span.record("otel.status_code", "error");
        }
        let labels = [
            ("method", self.method),
            ("protocol", self.protocol.label()),
            ("code", code_label(code)),
        ];
        metrics::counter!("epop_rpc_requests_total", &labels).increment(1);
        metrics::histogram!("epop_rpc_duration_seconds", &labels)
            .record(self.start.elapsed().as_secs_f64());
    }
}

/// The upper-case name of a code, as gRPC writes it.
fn code_label(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "OK",
        C::Cancelled => "CANCELLED",
        C::Unknown => "UNKNOWN",
        C::InvalidArgument => "INVALID_ARGUMENT",
        C::DeadlineExceeded => "DEADLINE_EXCEEDED",
        C::NotFound => "NOT_FOUND",
        C::AlreadyExists => "ALREADY_EXISTS",
        C::PermissionDenied => "PERMISSION_DENIED",
        C::ResourceExhausted => "RESOURCE_EXHAUSTED",
        C::FailedPrecondition => "FAILED_PRECONDITION",
        C::Aborted => "ABORTED",
        C::OutOfRange => "OUT_OF_RANGE",
        C::Unimplemented => "UNIMPLEMENTED",
        C::Internal => "INTERNAL",
        C::Unavailable => "UNAVAILABLE",
        C::DataLoss => "DATA_LOSS",
        C::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// A reply body that records its call when its trailers pass, or as CANCELLED when it is
/// dropped before (the client went away).
struct Tracked<B> {
    inner: B,
    call: Option<Call>,
}

impl<B> Body for Tracked<B>
where
    B: Body<Data = bytes::Bytes> + Unpin,
{
    type Data = bytes::Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let code = match &polled {
            Poll::Ready(Some(Ok(frame))) => frame
                .trailers_ref()
                .map(|t| grpc_code(t).unwrap_or(tonic::Code::Unknown)),
            Poll::Ready(Some(Err(_))) => Some(tonic::Code::Internal),
            Poll::Ready(None) => Some(tonic::Code::Unknown),
            Poll::Pending => None,
        };
        if let Some(code) = code
            && let Some(call) = self.call.take()
        {
            call.finish(code);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for Tracked<B> {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            call.finish(tonic::Code::Cancelled);
        }
    }
}

/// Counts a call refused by a rate limit or a sign-in lockout.
pub fn rate_limited(limit: &'static str) {
    metrics::counter!("epop_rate_limited_total", "limit" => limit).increment(1);
}
