//! How the HTTP edges (REST and Connect) take a request before calling its RPC in process:
//! the caller is authenticated from the headers first (a refused caller's body is drained a
//! little, then the connection closed: `auth::layer::refuse`), then the body is read within
//! the deadline and the budget of buffered bytes (`intake`), and the RPC's metadata is built.

use crate::{
    auth::Caller,
    intake::{Held, Refused, STRANGER_LIMIT},
    metrics::Protocol,
    rest::Admission,
};
use axum::{body::Body, extract::Request, response::Response};
use bytes::Bytes;
use http::{HeaderValue, request::Parts};
use tonic::{Status, metadata::MetadataMap};

/// Why a request was not taken, for the edge to answer in its own format.
#[derive(Debug)]
pub enum Refusal {
    /// Its caller: no token, a bad one, a session ended.
    Caller(Status),
    /// Its body (`limit`: the most it could have been).
    Body(Refused, usize),
}

/// A request taken: its caller (none for public calls), its body and the budget it holds
/// (keep it until the call is answered), and the metadata and extensions of the RPC.
pub struct Taken {
    /// The body.
    pub bytes: Bytes,
    /// The budget held for it.
    pub held: Held,
    /// Forwarded headers and the client's address, for the in-process call.
    pub metadata: MetadataMap,
    /// The authenticated caller, so the gRPC layer does not check it again.
    pub extensions: http::Extensions,
}

/// Takes a request for the RPC at `grpc_path` whose body may be `limit` bytes, or answers
/// it with `render` (and closes the connection when its body was not read whole).
pub async fn take(
    admission: &Admission,
    parts: &Parts,
    body: Body,
    grpc_path: &str,
    limit: usize,
    protocol: Protocol,
    render: impl Fn(Refusal) -> Response,
) -> Result<Taken, Response> {
    let gate = admission.gate.as_ref();
    let caller: Option<Caller> = match gate.filter(|_| !crate::auth::layer::is_public(grpc_path)) {
        None => None,
        Some(gate) => match gate.admit(&parts.headers, grpc_path).await {
            Ok(caller) => Some(caller),
            Err(s) => {
                crate::metrics::refused(grpc_path, protocol, s.code());
                let mut req = Request::new(body);
                *req.version_mut() = parts.version;
                let answer = render(Refusal::Caller(s));
                return Err(crate::auth::layer::refuse(req, answer).await);
            }
        },
    };
    let limit = if caller.is_some() {
        limit
    } else {
        STRANGER_LIMIT
    };
    let mut body = body;
    let got = admission
        .bodies
        .collect(&parts.headers, &mut body, limit, caller.is_none())
        .await;
    let got = match got {
        Ok(got) => got,
        Err(refused) => {
            let mut r = render(Refusal::Body(refused, limit));
            // Not read whole (or not in time): the rest of it is not waited for.
            if refused != Refused::Busy {
                r.headers_mut()
                    .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            }
            return Err(r);
        }
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
    Ok(Taken {
        bytes: got.bytes,
        held: got.held,
        metadata,
        extensions,
    })
}

/// The request headers that travel to the RPC as metadata.
fn forwarded_metadata(headers: &http::HeaderMap) -> MetadataMap {
    let mut forwarded = http::HeaderMap::new();
    for name in super::FORWARDED_HEADERS {
        for v in headers.get_all(name) {
            forwarded.append(name, v.clone());
        }
    }
    MetadataMap::from_headers(forwarded)
}
