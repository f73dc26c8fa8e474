//! The REST/JSON edge: every RPC with a `google.api.http` rule, served from the descriptors.
//!
//! A request is matched against the route table, decoded into the RPC's request message
//! (canonical proto3 JSON body, path variables, query parameters), and sent to the same
//! tonic router that serves gRPC, in process: authentication, validation and errors are
//! the same on every protocol. Unary replies are JSON; server streams are Server-Sent Events
//! (or NDJSON when asked). `GET /api/openapi.json` describes it all.

pub mod bind;
pub mod codec;
pub mod openapi;
pub mod routes;
pub mod status;
pub mod stream;
pub mod template;

use crate::rest::{
    codec::DynamicCodec,
    routes::{Found, Route, Routes},
};
use axum::{
    Json, Router,
    extract::{Request, State},
    response::{IntoResponse, Response},
};
use http::{HeaderMap, HeaderValue, StatusCode};
use prost_reflect::{DescriptorPool, DynamicMessage};
use std::sync::Arc;
use tonic::{Code, metadata::MetadataMap};

/// The largest accepted request body.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// Request headers passed to the RPC as metadata.
pub const FORWARDED_HEADERS: [&str; 6] = [
    "authorization",
    "cookie",
    "x-request-id",
    "accept-language",
    "user-agent",
    "x-forwarded-for",
];

/// How the edge takes a request before calling the RPC: its caller is authenticated from the
/// headers, then its body is read within the deadline and the budget of `bodies`.
#[derive(Debug, Clone)]
pub struct Admission {
    /// Checks the caller (the same as the gRPC authentication layer); `None` for a router
    /// that authenticates nothing (test doubles), whose callers are all taken as strangers.
    pub gate: Option<crate::auth::layer::Gate>,
    /// The budget and deadline of request bodies.
    pub bodies: crate::intake::Intake,
}

/// The REST edge: routes, the OpenAPI document and the gRPC router to call.
#[derive(Clone)]
pub struct Rest {
    admission: Arc<Admission>,
    routes: Arc<Routes>,
    openapi: Arc<serde_json::Value>,
    grpc: Router,
    cors: tower_http::cors::CorsLayer,
    origins: Arc<Vec<HeaderValue>>,
}

impl Rest {
    /// Builds the edge from the descriptor set, calling `grpc` for every RPC, answering
    /// browsers on `cors_origins` (preflights included).
    pub fn new(
        descriptors: &[u8],
        grpc: Router,
        cors_origins: &[String],
        admission: Admission,
    ) -> anyhow::Result<Self> {
        let pool = DescriptorPool::decode(descriptors)?;
        let routes = Routes::from_pool(&pool)?;
        let openapi = openapi::document(&routes);
        // The methods of the route table, and what browsers send (EventSource: Last-Event-ID).
        let mut methods: Vec<http::Method> = routes.iter().map(|r| r.method.clone()).collect();
        methods.push(http::Method::OPTIONS);
        methods.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        methods.dedup();
        let origins = crate::cors::origins(cors_origins)?;
        let cors = crate::cors::layer(
            origins.clone(),
            methods,
            &[
                "authorization",
                "content-type",
                "last-event-id",
                "x-request-id",
                "accept",
            ],
            &["x-request-id", "www-authenticate", "retry-after"],
        );
        Ok(Self {
            admission: Arc::new(admission),
            routes: Arc::new(routes),
            openapi: Arc::new(openapi),
            grpc,
            cors,
            origins: Arc::new(origins),
        })
    }

    /// The axum routes: `/api/openapi.json` and every annotated RPC under `/api/`.
    pub fn router(self) -> Router {
        let (cors, origins) = (self.cors.clone(), self.origins.clone());
        Router::new()
            .route(
                "/api/openapi.json",
                axum::routing::get(|State(rest): State<Rest>| async move {
                    Json(rest.openapi.as_ref().clone())
                }),
            )
            .fallback(handle)
            .with_state(self)
            .layer(cors)
            .layer(axum::middleware::from_fn_with_state(
                origins,
                crate::cors::only_listed,
            ))
    }
}

async fn handle(State(rest): State<Rest>, req: Request) -> Response {
    // A credential was offered: the header, or the event stream's cookie.
    let offered = req.headers().contains_key(http::header::AUTHORIZATION)
        || crate::auth::cookie::read_named(req.headers(), crate::auth::cookie::EVENTS_NAME)
            .is_some();
    let mut response = call(rest, req).await;
    if response.status() == StatusCode::UNAUTHORIZED {
        // RFC 9110 §15.5.2 and RFC 6750 §3.
        let challenge = if offered {
            "Bearer realm=\"epop\", error=\"invalid_token\""
        } else {
            "Bearer realm=\"epop\""
        };
        response.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
    }
    response
}

async fn call(rest: Rest, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    let (route, vars) = match rest.routes.find(&parts.method, path) {
        Found::Route(r, vars) => (r.clone(), vars),
        Found::WrongMethod(allowed) => {
            let mut allow: Vec<&str> = allowed.iter().map(http::Method::as_str).collect();
            allow.sort_unstable();
            allow.dedup();
            let mut r = status::plain_error(
                StatusCode::METHOD_NOT_ALLOWED,
                Code::Unimplemented,
                format!("{} is not allowed on {path}", parts.method),
            );
            if let Ok(v) = HeaderValue::from_str(&allow.join(", ")) {
                r.headers_mut().insert(http::header::ALLOW, v);
            }
            return r;
        }
        Found::NotFound => {
            return status::plain_error(
                StatusCode::NOT_FOUND,
                Code::NotFound,
                format!("no route for {} {path}", parts.method),
            );
        }
    };
    // The caller first, from the headers: a stranger's body is not read (beyond a little).
    let grpc_path = route.grpc_path();
    let gate = rest.admission.gate.as_ref();
    let caller = match gate.filter(|_| !crate::auth::layer::is_public(&grpc_path)) {
        None => None,
        Some(gate) => match gate.admit(&parts.headers, &grpc_path).await {
            Ok(caller) => Some(caller),
            Err(s) => {
                let protocol = if route.rpc.is_server_streaming() {
                    crate::metrics::Protocol::Sse
                } else {
                    crate::metrics::Protocol::Rest
                };
                crate::metrics::refused(&grpc_path, protocol, s.code());
                let req = Request::from_parts(parts, body);
                return crate::auth::layer::refuse(req, status::error_response(&s)).await;
            }
        },
    };
    let limit = if caller.is_some() {
        MAX_BODY
    } else {
        crate::intake::STRANGER_LIMIT
    };
    let mut body = body;
    let taken = rest
        .admission
        .bodies
        .collect(&parts.headers, &mut body, limit, caller.is_none())
        .await;
    // Held until the call is answered (or its stream started).
    let (bytes, _held) = match taken {
        Ok(got) => (got.bytes, got.held),
        Err(refused) => return body_refused(refused, limit),
    };
    let mut message = match bind::request(&route, &vars, parts.uri.query(), &bytes) {
        Ok(m) => m,
        Err(e) => return status::error_response(&tonic::Status::from(e)),
    };
    let mut metadata = forwarded_metadata(&parts.headers);
    // The rate limits of the in-process call need the client's connection.
    if let Some(peer) = parts.extensions.get::<crate::ratelimit::ClientAddr>()
        && let Ok(v) = peer.0.ip().to_string().parse()
    {
        metadata.insert(crate::ratelimit::PEER_METADATA, v);
    }
    let mut extensions = http::Extensions::new();
    if let Some(caller) = caller {
        extensions.insert(caller);
    }
    if route.rpc.is_server_streaming() {
        stream::resume_from_last_event_id(&mut message, &parts.headers);
        stream::respond(
            &rest.grpc,
            &route,
            message,
            metadata,
            &parts.headers,
            extensions,
        )
        .await
    } else {
        unary(&rest.grpc, &route, message, metadata, extensions).await
    }
}

/// The answer to a body that was not taken. Its connection is closed (HTTP/1): the rest of
/// the body is not read.
fn body_refused(refused: crate::intake::Refused, limit: usize) -> Response {
    use crate::intake::Refused;
    let mut r = match refused {
        Refused::TooLarge => status::plain_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            Code::ResourceExhausted,
            format!("the body exceeds {limit} bytes"),
        ),
        Refused::NotReceived => status::plain_error(
            StatusCode::REQUEST_TIMEOUT,
            Code::DeadlineExceeded,
            String::from("the request body was not received in time"),
        ),
        Refused::Busy => {
            let mut r = status::plain_error(
                StatusCode::SERVICE_UNAVAILABLE,
                Code::Unavailable,
                String::from("the server is busy receiving other requests; retry"),
            );
            r.headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
            return r;
        }
    };
    r.headers_mut()
        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// The request headers that travel to the RPC as metadata.
fn forwarded_metadata(headers: &HeaderMap) -> MetadataMap {
    let mut forwarded = HeaderMap::new();
    for name in FORWARDED_HEADERS {
        for v in headers.get_all(name) {
            forwarded.append(name, v.clone());
        }
    }
    MetadataMap::from_headers(forwarded)
}

/// A tonic request for `route` carrying `message`, `metadata` and `extensions` (the caller
/// the edge authenticated).
fn grpc_request(
    message: DynamicMessage,
    metadata: MetadataMap,
    mut extensions: http::Extensions,
    protocol: crate::metrics::Protocol,
) -> tonic::Request<DynamicMessage> {
    extensions.insert(protocol);
    tonic::Request::from_parts(metadata, extensions, message)
}

/// What one call of `route` needs: a gRPC client over the in-process router (ready), the
/// codec of its reply type, and its gRPC path.
type Call = (
    tonic::client::Grpc<Router>,
    DynamicCodec,
    http::uri::PathAndQuery,
);

async fn prepare(grpc: &Router, route: &Route) -> Result<Call, tonic::Status> {
    let mut client = tonic::client::Grpc::new(grpc.clone());
    client
        .ready()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("service not ready: {e}")))?;
    let path = http::uri::PathAndQuery::try_from(route.grpc_path())
        .map_err(|_| tonic::Status::internal("bad gRPC path"))?;
    Ok((client, DynamicCodec::new(route.rpc.output()), path))
}

async fn unary(
    grpc: &Router,
    route: &Route,
    message: DynamicMessage,
    metadata: MetadataMap,
    extensions: http::Extensions,
) -> Response {
    let (mut client, codec, path) = match prepare(grpc, route).await {
        Ok(call) => call,
        Err(s) => return status::error_response(&s),
    };
    let result = client
        .unary(
            grpc_request(
                message,
                metadata,
                extensions,
                crate::metrics::Protocol::Rest,
            ),
            path,
            codec,
        )
        .await;
    match result {
        Ok(reply) => {
            let (meta, msg, _) = reply.into_parts();
            let body = if route.response_body.is_empty() {
                bind::to_json_bytes(&msg)
            } else {
                let key = route
                    .rpc
                    .output()
                    .get_field_by_name(&route.response_body)
                    .map(|f| f.json_name().to_owned())
                    .unwrap_or_default();
                let json = bind::to_json(&msg);
                json.get(&key)
                    .unwrap_or(&serde_json::Value::Null)
                    .to_string()
                    .into_bytes()
            };
            let content_type = HeaderValue::from_static("application/json");
            let mut response = ([(http::header::CONTENT_TYPE, content_type)], body).into_response();
            copy_response_headers(&meta, response.headers_mut());
            response
        }
        Err(status) => {
            let mut response = status::error_response(&status);
            copy_response_headers(status.metadata(), response.headers_mut());
            response
        }
    }
}

/// Passes response metadata that HTTP clients need back as headers: `set-cookie` first of all.
fn copy_response_headers(meta: &MetadataMap, headers: &mut HeaderMap) {
    let meta = meta.as_ref();
    for name in ["set-cookie", "x-request-id", "retry-after"] {
        for v in meta.get_all(name) {
            headers.append(name, v.clone());
        }
    }
}

/// Used by the top-level router: is this path served by the REST edge?
pub fn is_rest_path(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/")
}
