//! The Connect protocol (connectrpc.com/docs/protocol) on the same port, for every RPC, from
//! the same descriptors and in-process calls as the REST edge: unary calls as JSON
//! (`application/json`) or binary (`application/proto`) POSTs, and as GETs for methods marked
//! `idempotency_level = NO_SIDE_EFFECTS`; server streams as `application/connect+json` or
//! `+proto` envelopes ending with an end-of-stream message that carries the error, if any.
//! Errors are Connect's JSON with their `google.rpc` details; `connect-timeout-ms` becomes the
//! call's deadline. Authentication, body limits, rate limits and metrics are those of every
//! other protocol (the caller is checked before the body is read).

use crate::rest::{Rest, admit, copy_response_headers, grpc_request};
use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use futures::{Stream, StreamExt, stream};
use http::{Method, StatusCode, header};
use prost_reflect::{DynamicMessage, MethodDescriptor};
use tonic::{Status, metadata::MetadataMap};

mod wire;

use wire::{
    END_STREAM, Encoding, decode, encode, end_of_stream, envelope, from_query, mime, unary_error,
    unenvelope,
};

/// A Connect request's shape, from its method and content type.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// A unary POST (or GET) with the message as the whole body.
    Unary(Encoding),
    /// A streaming request: enveloped messages.
    Stream(Encoding),
}

fn content_type(req: &Request) -> &str {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map_or("", str::trim)
}

fn shape_of(content_type: &str) -> Option<Shape> {
    Some(match content_type {
        "application/json" => Shape::Unary(Encoding::Json),
        "application/proto" => Shape::Unary(Encoding::Proto),
        "application/connect+json" => Shape::Stream(Encoding::Json),
        "application/connect+proto" => Shape::Stream(Encoding::Proto),
        _ => return None,
    })
}

/// True for a Connect request: a POST of a Connect content type, or a GET with `connect=v1`,
/// to `/<package>.<Service>/<Method>` (the REST edge's `/api/` and the file URLs excluded).
pub fn is_connect(req: &Request) -> bool {
    let path = req.uri().path();
    let rpc_path = path.len() > 1
        && path[1..].split('/').count() == 2
        && !crate::rest::is_rest_path(path)
        && !path.starts_with(crate::storage::LOCAL_FILES_PREFIX);
    if !rpc_path {
        return false;
    }
    match *req.method() {
        Method::POST => shape_of(content_type(req)).is_some(),
        Method::GET => req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == "connect=v1")),
        _ => false,
    }
}

impl Rest {
    /// The Connect routes (every RPC), behind CORS for the allowed browser origins.
    pub fn connect_router(self) -> Router {
        let origins = self.origins.clone();
        let cors = crate::cors::layer(
            origins.as_ref().clone(),
            vec![Method::GET, Method::POST],
            &[
                "authorization",
                "content-type",
                "connect-protocol-version",
                "connect-timeout-ms",
                "x-request-id",
                "x-user-agent",
            ],
            &["x-request-id", "retry-after"],
        );
        super::behind_cors(
            Router::new().fallback(handle).with_state(self),
            cors,
            origins,
        )
    }

    fn method(&self, path: &str) -> Option<MethodDescriptor> {
        let (service, method) = path.strip_prefix('/')?.split_once('/')?;
        let service = self.pool.get_service_by_name(service)?;
        service.methods().find(|m| m.name() == method)
    }
}

async fn handle(State(rest): State<Rest>, req: Request) -> Response {
    let Some(method) = rest.method(req.uri().path()) else {
        let e = Status::unimplemented(format!("no procedure {}", req.uri().path()));
        return unary_error(StatusCode::NOT_FOUND, &e);
    };
    let shape = if req.method() == Method::GET {
        // The reply is in the encoding the query names.
        let proto = form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
            .any(|(k, v)| k == "encoding" && v == "proto");
        Shape::Unary(if proto {
            Encoding::Proto
        } else {
            Encoding::Json
        })
    } else {
        match shape_of(content_type(&req)) {
            Some(s) => s,
            None => return unsupported("a Connect content type"),
        }
    };
    match (shape, method.is_server_streaming()) {
        (Shape::Unary(_), true) => return unsupported("application/connect+json or +proto"),
        (Shape::Stream(_), false) => return unsupported("application/json or application/proto"),
        _ => {}
    }
    let compressed = ["content-encoding", "connect-content-encoding"]
        .iter()
        .any(|h| {
            req.headers()
                .get(*h)
                .is_some_and(|v| v.as_bytes() != b"identity")
        });
    if compressed {
        let e = Status::unimplemented("compressed requests are not accepted");
        return unary_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, &e);
    }
    if method.is_client_streaming() {
        return unary_error(
            StatusCode::NOT_IMPLEMENTED,
            &Status::unimplemented("client streaming is not served over Connect"),
        );
    }
    if req.method() == Method::GET && !has_no_side_effects(&method) {
        let e = Status::unimplemented(format!("{} has side effects: POST it", method.full_name()));
        return unary_error(StatusCode::METHOD_NOT_ALLOWED, &e);
    }
    let grpc_path = format!("/{}/{}", method.parent_service().full_name(), method.name());
    let (parts, body) = req.into_parts();
    let render = |refusal: admit::Refusal| {
        let status = refusal_status(refusal);
        match shape {
            Shape::Unary(_) => unary_error(super::status::http_status(status.code()), &status),
            Shape::Stream(e) => stream_response(e, stream::once(async move { Err(status) })),
        }
    };
    let taken = admit::take(
        &rest.admission,
        &parts,
        body,
        &grpc_path,
        super::MAX_BODY,
        crate::metrics::Protocol::Connect,
        render,
    )
    .await;
    let taken = match taken {
        Ok(t) => t,
        Err(answer) => return answer,
    };
    let decoded = match shape {
        Shape::Unary(_) if parts.method == Method::GET => {
            from_query(&method.input(), parts.uri.query())
        }
        Shape::Unary(e) => decode(e, &method.input(), &taken.bytes),
        Shape::Stream(e) => unenvelope(&taken.bytes).and_then(|m| decode(e, &method.input(), &m)),
    };
    let mut metadata = taken.metadata;
    if let Some(t) = timeout(&parts.headers) {
        metadata.insert("grpc-timeout", t);
    }
    let message = match (decoded, shape) {
        (Ok(m), _) => m,
        (Err(s), Shape::Unary(_)) => return unary_error(StatusCode::BAD_REQUEST, &s),
        (Err(s), Shape::Stream(e)) => {
            return stream_response(e, stream::once(async move { Err(s) }));
        }
    };
    let call = Call {
        grpc: &rest.grpc,
        method: &method,
        message,
        metadata,
        extensions: taken.extensions,
    };
    match shape {
        Shape::Unary(e) => unary(call, e).await,
        Shape::Stream(e) => streaming(call, e).await,
    }
}

/// What a call needs.
struct Call<'a> {
    grpc: &'a Router,
    method: &'a MethodDescriptor,
    message: DynamicMessage,
    metadata: MetadataMap,
    extensions: http::Extensions,
}

async fn unary(call: Call<'_>, encoding: Encoding) -> Response {
    let (mut client, codec, path) = match super::prepare(call.grpc, call.method).await {
        Ok(c) => c,
        Err(s) => return unary_error(super::status::http_status(s.code()), &s),
    };
    let request = grpc_request(
        call.message,
        call.metadata,
        call.extensions,
        crate::metrics::Protocol::Connect,
    );
    match client.unary(request, path, codec).await {
        Ok(reply) => {
            let (meta, msg, _) = reply.into_parts();
            let mut r = (
                [(header::CONTENT_TYPE, mime(encoding, false))],
                encode(encoding, &msg),
            )
                .into_response();
            copy_response_headers(&meta, r.headers_mut());
            r
        }
        Err(s) => {
            let mut r = unary_error(super::status::http_status(s.code()), &s);
            copy_response_headers(s.metadata(), r.headers_mut());
            r
        }
    }
}

async fn streaming(call: Call<'_>, encoding: Encoding) -> Response {
    let (mut client, codec, path) = match super::prepare(call.grpc, call.method).await {
        Ok(c) => c,
        Err(s) => return stream_response(encoding, stream::once(async move { Err(s) })),
    };
    let request = grpc_request(
        call.message,
        call.metadata,
        call.extensions,
        crate::metrics::Protocol::Connect,
    );
    match client.server_streaming(request, path, codec).await {
        Ok(reply) => {
            let (meta, messages, _) = reply.into_parts();
            let items = stream::unfold(Some(messages), |state| async move {
                let mut messages = state?;
                match messages.message().await {
                    Ok(Some(m)) => Some((Ok(m), Some(messages))),
                    Ok(None) => None,
                    Err(s) => Some((Err(s), None)),
                }
            });
            let mut r = stream_response(encoding, items);
            copy_response_headers(&meta, r.headers_mut());
            r
        }
        Err(s) => stream_response(encoding, stream::once(async move { Err(s) })),
    }
}

/// A streaming response: each message in an envelope, then the end-of-stream message (with
/// the error that ended the stream, if one did).
fn stream_response(
    encoding: Encoding,
    items: impl Stream<Item = Result<DynamicMessage, Status>> + Send + 'static,
) -> Response {
    let frames = items.map(move |item| match item {
        Ok(m) => envelope(0, &encode(encoding, &m)),
        Err(s) => end_of_stream(Some(&s)),
    });
    let body = Body::from_stream(with_end(frames).map(Ok::<_, std::convert::Infallible>));
    ([(header::CONTENT_TYPE, mime(encoding, true))], body).into_response()
}

/// `frames`, followed by a bare end-of-stream message unless one was already sent.
fn with_end(
    frames: impl Stream<Item = Bytes> + Send + 'static,
) -> impl Stream<Item = Bytes> + Send + 'static {
    stream::unfold(
        (Box::pin(frames), false),
        |(mut frames, ended)| async move {
            if ended {
                return None;
            }
            match frames.next().await {
                Some(f) => {
                    let end = f.first().is_some_and(|flags| flags & END_STREAM != 0);
                    Some((f, (frames, end)))
                }
                None => Some((end_of_stream(None), (frames, true))),
            }
        },
    )
}

fn has_no_side_effects(method: &MethodDescriptor) -> bool {
    use prost_types::method_options::IdempotencyLevel;
    method
        .method_descriptor_proto()
        .options
        .as_ref()
        .is_some_and(|o| o.idempotency_level() == IdempotencyLevel::NoSideEffects)
}

/// `connect-timeout-ms` as a `grpc-timeout` (at most 8 digits).
fn timeout(
    headers: &http::HeaderMap,
) -> Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> {
    let ms: u64 = headers
        .get("connect-timeout-ms")?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    format!("{}m", ms.min(99_999_999)).parse().ok()
}

fn refusal_status(refusal: admit::Refusal) -> Status {
    use crate::intake::Refused;
    match refusal {
        admit::Refusal::Caller(s) => s,
        admit::Refusal::Body(Refused::TooLarge, limit) => {
            Status::resource_exhausted(format!("the body exceeds {limit} bytes"))
        }
        admit::Refusal::Body(Refused::NotReceived, _) => {
            Status::deadline_exceeded("the request body was not received in time")
        }
        admit::Refusal::Body(Refused::Busy, _) => {
            Status::unavailable("the server is busy receiving other requests; retry")
        }
    }
}

fn unsupported(wanted: &str) -> Response {
    let e = Status::unimplemented(format!("this procedure takes {wanted}"));
    unary_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, &e)
}
