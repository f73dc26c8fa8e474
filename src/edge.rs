//! The one router in front of everything on the public port: gRPC and gRPC-Web go to the
//! gRPC router, Connect requests to the Connect edge, the rest to the plain HTTP routes
//! (probes, local file URLs) and the REST edge; every answer gets the security headers and a request id, and the cookie routes
//! refuse other sites' requests (`csrf`).

use crate::{db, service};
use axum::{Router, extract::Request, response::Response};
use std::sync::{Arc, atomic::AtomicBool};
use tower::ServiceExt;
use tower_http::{
    request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    trace::TraceLayer,
};

/// What the router is made of besides the gRPC router and the REST edge.
pub struct Options<'a> {
    /// Whether this server takes calls (`/readyz`).
    pub ready: Arc<AtomicBool>,
    /// The file storage (its local URLs, when it serves them).
    pub files: &'a service::files::Files,
    /// `EPOP_CORS_ORIGINS`.
    pub cors_origins: &'a [String],
    /// The origins whose pages may use the cookie routes.
    pub cookie_origins: crate::csrf::Origins,
    /// Sampled for `/metrics`.
    pub pool: db::Pool,
    /// Send Strict-Transport-Security.
    pub hsts: bool,
    /// Serve `/metrics` here (not on a listener of its own).
    pub public_metrics: bool,
}

/// Routes gRPC and gRPC-Web (and their CORS preflights) to the gRPC router; everything else
/// to the plain HTTP routes (with the local file URLs) and the REST edge.
pub fn router(grpc: Router, rest: crate::rest::Rest, o: Options) -> anyhow::Result<Router> {
    let Options {
        ready,
        files,
        cors_origins,
        cookie_origins,
        pool,
        hsts,
        public_metrics,
    } = o;
    let mut http = Router::new();
    if let Some(routes) = files.storage.routes() {
        // Browsers on the allowed origins upload and download with fetch.
        http = http.merge(routes.layer(crate::cors::layer(
            crate::cors::origins(cors_origins)?,
            vec![http::Method::GET, http::Method::PUT],
            &["content-type"],
            &["content-disposition", "content-length"],
        )));
    }
    let connect = rest.clone().connect_router();
    let http = http
        .merge(crate::probes::routes(ready, pool, public_metrics))
        // REST under /api/, and JSON 404s for everything else.
        .merge(rest.router());
    let dispatch = move |req: Request| {
        let target = if is_grpc(&req) {
            grpc.clone()
        } else if crate::rest::connect::is_connect(&req) {
            connect.clone()
        } else {
            http.clone()
        };
        async move {
            match target.oneshot(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            }
        }
    };
    let security = [
        // Every answer is private to its caller (tokens, messages): no cache keeps one.
        ("cache-control", "no-store"),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        (
            "content-security-policy",
            "default-src 'none'; frame-ancestors 'none'",
        ),
    ];
    // HSTS only where browsers reach this server over TLS (here, or through a proxy that
    // ends it): on plain HTTP it is ignored at best.
    let hsts = hsts.then_some((
        "strict-transport-security",
        "max-age=63072000; includeSubDomains",
    ));
    let headers: Arc<[(http::HeaderName, http::HeaderValue)]> = security
        .into_iter()
        .chain(hsts)
        .map(|(name, value)| {
            (
                http::HeaderName::from_static(name),
                http::HeaderValue::from_static(value),
            )
        })
        .collect();
    // One stack around the dispatch (outermost first), not a boxed service per layer as
    // `Router::layer` makes: a call clones it once.
    let stack = tower::ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(RandomRequestId))
        .layer(TraceLayer::new_for_http().make_span_with(crate::telemetry::request_span))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(axum::middleware::from_fn_with_state(
            cookie_origins,
            crate::csrf::guard,
        ))
        // The security headers, unless the answer set its own.
        .map_response(move |mut response: Response| {
            let set = response.headers_mut();
            for (name, value) in headers.iter() {
                if !set.contains_key(name) {
                    set.insert(name.clone(), value.clone());
                }
            }
            response
        })
        .service(tower::service_fn(move |req: Request| {
            let answer = dispatch(req);
            async move { Ok::<_, std::convert::Infallible>(answer.await) }
        }));
    Ok(Router::new().fallback_service(stack))
}

/// Request ids: random (version 4) UUIDs from the thread's generator, which tower-http's
/// `MakeRequestUuid` takes from the operating system, one system call per request.
#[derive(Debug, Clone, Copy)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &http::Request<B>) -> Option<RequestId> {
        let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
        http::HeaderValue::from_str(&id.to_string())
            .ok()
            .map(RequestId::new)
    }
}

fn is_grpc(req: &Request) -> bool {
    let content_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // Preflights of gRPC-Web and Connect calls (one CORS policy for both); those of the REST
    // edge and of the local file URLs (a browser's PUT of an upload) get the CORS rules of
    // their own routes.
    let path = req.uri().path();
    let preflight = req.method() == http::Method::OPTIONS
        && req
            .headers()
            .contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
        && !crate::rest::is_rest_path(path)
        && !path.starts_with(crate::storage::LOCAL_FILES_PREFIX);
    content_type.starts_with("application/grpc") || preflight
}
