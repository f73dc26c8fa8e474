//! The authentication layer in front of every gRPC (and gRPC-Web) route, which the REST edge
//! and its event streams call too: checks `authorization: Bearer <jwt>` on every RPC that is
//! not explicitly public, then that the token's session is still open and its user active
//! (with the role they have now), and leaves the [`Caller`](super::Caller) in the request's
//! extensions for the handlers.

use crate::auth::{Caller, grants::Grants, jwt::JwtKeys};
use axum::{
    extract::{Request, State},
    middleware::Next,
    response::Response,
};
use std::sync::Arc;
use tonic::Status;

/// The services callable without a token (every RPC of each), by their generated names.
const PUBLIC: [&str; 4] = [
    crate::pb::auth_service_server::SERVICE_NAME,
    tonic_health::pb::health_server::SERVICE_NAME,
    tonic_reflection::pb::v1::server_reflection_server::SERVICE_NAME,
    tonic_reflection::pb::v1alpha::server_reflection_server::SERVICE_NAME,
];

/// True for RPCs (`/<service>/<method>`) that need no token.
pub fn is_public(path: &str) -> bool {
    let service = path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .map(|(service, _)| service);
    service.is_some_and(|s| PUBLIC.contains(&s))
}

/// The RPC that also takes its access token from the `epop_events` cookie.
fn takes_events_cookie(path: &str) -> bool {
    path.strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .is_some_and(|(service, method)| {
            service == crate::pb::conversation_service_server::SERVICE_NAME
                && method == "StreamEvents"
        })
}

/// The access token in `headers`: `Authorization: Bearer <token>` (the scheme name is
/// case-insensitive, RFC 9110), or when `cookie` says so (the event stream), the
/// `epop_events` cookie.
pub fn bearer_in(headers: &http::HeaderMap, cookie: bool) -> Option<String> {
    let header = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Some(value) = header {
        let (scheme, token) = value.trim().split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned())
            .filter(|t| !t.is_empty());
    }
    if cookie {
        return super::cookie::read_named(headers, super::cookie::EVENTS_NAME);
    }
    None
}

/// What the layer checks tokens and sessions with.
#[derive(Debug, Clone)]
pub struct Gate {
    /// The keys that verify tokens.
    pub keys: Arc<JwtKeys>,
    /// The live state of sessions and users.
    pub grants: Arc<Grants>,
}

impl Gate {
    /// The caller of the RPC at `path` (`/<service>/<method>`) from its request headers alone,
    /// before anything of its body is read.
    pub async fn admit(&self, headers: &http::HeaderMap, path: &str) -> Result<Caller, Status> {
        let Some(token) = bearer_in(headers, takes_events_cookie(path)) else {
            return Err(Status::unauthenticated("missing bearer token"));
        };
        let Some(caller) = self.keys.authenticate(&token).await else {
            return Err(Status::unauthenticated("invalid or expired access token"));
        };
        let caller = self.grants.check(caller).await.map_err(Status::from)?;
        crate::telemetry::record_user(caller.user_id.0);
        Ok(caller)
    }
}

/// The axum middleware: passes public RPCs (and calls the REST edge already authenticated)
/// through, authenticates the rest from their headers; a refused call's body is not read
/// past [`intake::STRANGER_DRAIN`](crate::intake::STRANGER_DRAIN).
pub async fn authenticate(State(gate): State<Gate>, mut req: Request, next: Next) -> Response {
    if is_public(req.uri().path()) || req.extensions().get::<Caller>().is_some() {
        return next.run(req).await;
    }
    match gate.admit(req.headers(), req.uri().path()).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(status) => refuse(req, status.into_http()).await,
    }
}

/// Answers a request refused from its headers with `response`. Over HTTP/1 the client may
/// still be writing its body and would see a reset instead of the answer: a little of the
/// body is drained first, and past that the connection is closed with the answer.
pub async fn refuse(req: Request, mut response: Response) -> Response {
    let http1 = matches!(
        req.version(),
        http::Version::HTTP_10 | http::Version::HTTP_11
    );
    if http1 {
        use crate::intake::{STRANGER_DRAIN, STRANGER_DRAIN_TIME, drain};
        if !drain(&mut req.into_body(), STRANGER_DRAIN, STRANGER_DRAIN_TIME).await {
            response.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
    }
    response
}
