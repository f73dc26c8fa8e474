//! The REST/JSON edge: every RPC with a `google.api.http` rule, served from the descriptors.
//!
//! A request is matched against the route table, decoded into the RPC's request message
//! (canonical proto3 JSON body, path variables, query parameters), and sent to the same
//! tonic router that serves gRPC, in process: authentication, validation and errors are
//! the same on every protocol. Unary replies are JSON; server streams are Server-Sent Events
//! (or NDJSON when asked). `GET /api/openapi.json` describes it all.

pub mod admit;
pub mod bind;
pub mod codec;
pub mod connect;
pub mod openapi;
pub mod routes;
pub mod status;
pub mod stream;
pub mod template;
pub mod ui_chat;

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
    answers: ui_chat::answers::Answers,
    pool: DescriptorPool,
    routes: Arc<Routes>,
    openapi: Arc<serde_json::Value>,
    grpc: Router,
    /// Shared: the edge is cloned for every request (its handlers' state).
    cors: Arc<tower_http::cors::CorsLayer>,
    origins: Arc<Vec<HeaderValue>>,
}

impl Rest {
    /// Builds the edge from the descriptor set, calling `grpc` for every RPC, answering
    /// browsers on `cors_origins` (preflights included), recording AI SDK answers in
    /// `answers`.
    pub fn new(
        descriptors: &[u8],
        grpc: Router,
        cors_origins: &[String],
        admission: Admission,
        answers: ui_chat::answers::Answers,
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
            pool: pool.clone(),
            admission: Arc::new(admission),
            answers,
            routes: Arc::new(routes),
            openapi: Arc::new(openapi),
            grpc,
            cors: Arc::new(cors),
            origins: Arc::new(origins),
        })
    }

    /// The axum routes: `/api/openapi.json` and every annotated RPC under `/api/`.
    pub fn router(self) -> Router {
        let (cors, origins) = ((*self.cors).clone(), self.origins.clone());
        let router = Router::new()
            .route(
                "/api/openapi.json",
                axum::routing::get(|State(rest): State<Rest>| async move {
                    Json(rest.openapi.as_ref().clone())
                }),
            )
            .route(ui_chat::PATH, axum::routing::post(ui_chat::handle))
            .route(ui_chat::REJOIN_PATH, axum::routing::get(ui_chat::rejoin))
            .fallback(handle)
            .with_state(self);
        behind_cors(router, cors, origins)
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
    let protocol = if route.rpc.is_server_streaming() {
        crate::metrics::Protocol::Sse
    } else {
        crate::metrics::Protocol::Rest
    };
    let grpc_path = route.grpc_path();
    let taken = admit::take(
        &rest.admission,
        &parts,
        body,
        &grpc_path,
        MAX_BODY,
        protocol,
        refusal_response,
    )
    .await;
    // The budget is held until the call is answered (or its stream started).
    let (mut message, metadata, extensions, _held) = match taken {
        Ok(t) => match bind::request(&route, &vars, parts.uri.query(), &t.bytes) {
            Ok(m) => (m, t.metadata, t.extensions, t.held),
            Err(e) => return status::error_response(&tonic::Status::from(e)),
        },
        Err(answer) => return answer,
    };
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

/// The REST answer to a request not taken: the status's JSON; a body over the limit is 413,
/// one not received in time 408, one that found the budget full 503 with `Retry-After`.
pub(crate) fn refusal_response(refusal: admit::Refusal) -> Response {
    use crate::intake::Refused;
    let (http, code, message) = match refusal {
        admit::Refusal::Caller(s) => return status::error_response(&s),
        admit::Refusal::Body(Refused::TooLarge, limit) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            Code::ResourceExhausted,
            format!("the body exceeds {limit} bytes"),
        ),
        admit::Refusal::Body(Refused::NotReceived, _) => (
            StatusCode::REQUEST_TIMEOUT,
            Code::DeadlineExceeded,
            String::from("the request body was not received in time"),
        ),
        admit::Refusal::Body(Refused::Busy, _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Code::Unavailable,
            String::from("the server is busy receiving other requests; retry"),
        ),
    };
    let mut r = status::plain_error(http, code, message);
    if code == Code::Unavailable {
        r.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
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

async fn prepare(
    grpc: &Router,
    rpc: &prost_reflect::MethodDescriptor,
) -> Result<Call, tonic::Status> {
    let mut client = tonic::client::Grpc::new(grpc.clone());
    client
        .ready()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("service not ready: {e}")))?;
    let path = format!("/{}/{}", rpc.parent_service().full_name(), rpc.name());
    let path = http::uri::PathAndQuery::try_from(path)
        .map_err(|_| tonic::Status::internal("bad gRPC path"))?;
    Ok((client, DynamicCodec::new(rpc.output()), path))
}

/// The edge's routes for browsers: CORS with `cors`, and requests from origins other than
/// `origins` (and the server's own) refused.
fn behind_cors(
    router: Router,
    cors: tower_http::cors::CorsLayer,
    origins: Arc<Vec<HeaderValue>>,
) -> Router {
    // Around the router as a whole: `Router::layer` would box both layers per route, and
    // every call would clone those boxes.
    let stack = tower::ServiceBuilder::new()
        .layer(axum::middleware::from_fn_with_state(
            origins,
            crate::cors::only_listed,
        ))
        .layer(cors)
        .service(router);
    Router::new().fallback_service(stack)
}

async fn unary(
    grpc: &Router,
    route: &Route,
    message: DynamicMessage,
    metadata: MetadataMap,
    extensions: http::Extensions,
) -> Response {
    let (mut client, codec, path) = match prepare(grpc, &route.rpc).await {
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
