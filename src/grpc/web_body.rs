//! gRPC-Web over HTTP/1.1 reads the whole (bounded) request body before anything answers.
//!
//! An HTTP/1.1 server that answers before reading the body (an invalid token is refused
//! from the headers alone) and closes the connection makes a client still writing that body
//! fail with EPIPE or a reset instead of seeing the answer: its refresh-on-UNAUTHENTICATED
//! never runs. gRPC-Web requests carry one message (no client streaming), so the body is read
//! first, within the message size limit and a time limit; HTTP/2 is left alone (a stream is
//! reset on its own, the connection stays).

use axum::{
    body::Body,
    extract::{Request, State},
    http::{HeaderValue, Version, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use std::time::Duration;

/// How long a client has to send a gRPC-Web request's body.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

fn is_grpc_web_over_http1(req: &Request) -> bool {
    let http1 = matches!(req.version(), Version::HTTP_10 | Version::HTTP_11);
    let web = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/grpc-web"));
    http1 && web
}

/// A trailers-only gRPC-Web answer with `code` and `message`.
fn grpc_web_error(req_type: Option<HeaderValue>, code: tonic::Code, message: &str) -> Response {
    let mut r = Response::new(Body::empty());
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        req_type.unwrap_or(HeaderValue::from_static("application/grpc-web+proto")),
    );
    h.insert("grpc-status", HeaderValue::from(code as i32));
    if let Ok(m) = HeaderValue::from_str(message) {
        h.insert("grpc-message", m);
    }
    r
}

/// Past this many bytes a body is no longer drained: the connection is dropped instead.
const DRAIN_LIMIT: usize = 64 << 20;

/// Reads a body: its bytes, or `None` when it passed `limit` (then drained, up to
/// [`DRAIN_LIMIT`], so the client can read the refusal); `Err` if the client went away.
async fn read_body(body: Body, limit: usize) -> Result<Option<Bytes>, ()> {
    let mut body = body;
    let mut kept = BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| ())?;
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            if seen > DRAIN_LIMIT {
                return Err(());
            }
            if seen <= limit {
                kept.extend_from_slice(&data);
            }
        }
    }
    Ok((seen <= limit).then(|| kept.freeze()))
}

/// The middleware: `max_message` bounds the message (base64 text may take a third more).
pub async fn read_first(State(max_message): State<usize>, req: Request, next: Next) -> Response {
    if !is_grpc_web_over_http1(&req) {
        return next.run(req).await;
    }
    let content_type = req.headers().get(header::CONTENT_TYPE).cloned();
    let limit = max_message / 3 * 4 + 1024;
    let (parts, body) = req.into_parts();
    let bytes = match tokio::time::timeout(BODY_READ_TIMEOUT, read_body(body, limit)).await {
        Ok(Ok(Some(bytes))) => bytes,
        Ok(Ok(None)) => {
            return grpc_web_error(
                content_type,
                tonic::Code::ResourceExhausted,
                &format!("the request is larger than {max_message} bytes"),
            );
        }
        // The client went away, sent far too much, or too slowly: nobody reads an answer.
        Ok(Err(())) | Err(_) => {
            return (
                axum::http::StatusCode::REQUEST_TIMEOUT,
                "request body not received",
            )
                .into_response();
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
