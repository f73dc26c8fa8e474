//! Request bodies of authenticated gRPC calls (and public ones, within their small limit):
//! what tonic buffers holds room in the budget of [`Intake`] until the message is decoded.
//!
//! gRPC-Web over HTTP/1.1 is read whole first. An HTTP/1.1 server that answers before
//! reading the body (a rate limit, a message over the size limit) and closes the connection
//! makes a client still writing that body fail with EPIPE or a reset instead of seeing the
//! answer. gRPC-Web requests carry one message (no client streaming), so the body is read
//! first, within the message size limit and the body deadline; HTTP/2 is left alone (a stream
//! is reset on its own, the connection stays). This runs after authentication: a stranger's
//! body is never buffered beyond the public calls' limit.

use crate::{
    auth::Caller,
    intake::{Intake, Refused, STRANGER_LIMIT, drain},
    metrics::Protocol,
};
use axum::{
    body::Body,
    extract::{Request, State},
    http::{HeaderValue, Version, header},
    middleware::Next,
    response::Response,
};

/// What the middleware needs: the budget, and the largest message.
#[derive(Debug, Clone)]
pub struct Bodies {
    /// The budget and deadline of request bodies.
    pub intake: Intake,
    /// The largest message of an authenticated call.
    pub max_message: usize,
}

/// How much of an authenticated caller's oversized body is read (and thrown away) so that
/// the client sees the refusal; past it the connection is closed.
const MEMBER_DRAIN: usize = 64 << 20;

/// A trailers-only gRPC-Web answer with `code` and `message`.
fn grpc_web_error(code: tonic::Code, message: &str) -> Response {
    let mut r = Response::new(Body::empty());
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc-web+proto"),
    );
    h.insert("grpc-status", HeaderValue::from(code as i32));
    if let Ok(m) = HeaderValue::from_str(message) {
        h.insert("grpc-message", m);
    }
    r
}

/// The middleware, inside gRPC-Web translation and authentication.
pub async fn take(State(b): State<Bodies>, req: Request, next: Next) -> Response {
    let protocol = req.extensions().get::<Protocol>().copied();
    // The HTTP edges' in-process calls: their body was read (and is held) by the edge.
    if matches!(
        protocol,
        Some(Protocol::Rest | Protocol::Sse | Protocol::Connect)
    ) {
        return next.run(req).await;
    }
    let stranger = req.extensions().get::<Caller>().is_none();
    let http1 = matches!(req.version(), Version::HTTP_10 | Version::HTTP_11);
    if !(http1 && protocol == Some(Protocol::GrpcWeb)) {
        let (parts, body) = req.into_parts();
        let body = b.intake.metered(body, stranger);
        return next.run(Request::from_parts(parts, body)).await;
    }
    // One message and its 5-byte frame header (gRPC-Web's text form is decoded by now).
    let limit = if stranger {
        STRANGER_LIMIT
    } else {
        b.max_message + 5
    };
    let (parts, mut body) = req.into_parts();
    match b
        .intake
        .collect(&parts.headers, &mut body, limit, stranger)
        .await
    {
        Ok(got) => {
            let body = Intake::holding(got.bytes, got.held);
            next.run(Request::from_parts(parts, body)).await
        }
        Err(Refused::TooLarge) => {
            let mut r = grpc_web_error(
                tonic::Code::ResourceExhausted,
                &format!("the request is larger than {} bytes", limit - 5),
            );
            // An authenticated browser sees the answer, not a reset: the rest of its body is
            // read and thrown away (up to a bound, within the deadline); a stranger's is not.
            let drained = !stranger && drain(&mut body, MEMBER_DRAIN, b.intake.deadline).await;
            if !drained {
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            r
        }
        Err(Refused::Busy) => grpc_web_error(
            tonic::Code::Unavailable,
            "the server is busy receiving other requests; retry",
        ),
        // The client went away or was too slow: nobody reads an answer.
        Err(Refused::NotReceived) => {
            let mut r = grpc_web_error(
                tonic::Code::DeadlineExceeded,
                "the request body was not received in time",
            );
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            r
        }
    }
}
