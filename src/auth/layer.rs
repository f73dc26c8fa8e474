//! The authentication layer in front of every gRPC (and gRPC-Web) route, which the REST edge
//! and its event streams call too: checks `authorization: Bearer <jwt>` on every RPC that is
//! not explicitly public, then that the token's session is still open and its user active
//! (with the role they have now), and leaves the [`Caller`](super::Caller) in the request's
//! extensions for the handlers.

use crate::auth::{grants::Grants, jwt::JwtKeys};
use axum::{
    extract::{Request, State},
    middleware::Next,
    response::Response,
};
use std::sync::Arc;

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

/// The access token of a request: `Authorization: Bearer <token>` (the scheme name is
/// case-insensitive, RFC 9110), or for the event stream, the `epop_events` cookie.
pub fn bearer<B>(req: &http::Request<B>) -> Option<String> {
    bearer_in(req.headers(), takes_events_cookie(req.uri().path()))
}

/// The bearer token in `headers` (or, when `cookie` says so, the `epop_events` cookie).
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

/// The axum middleware: passes public RPCs through, authenticates the rest.
pub async fn authenticate(State(gate): State<Gate>, mut req: Request, next: Next) -> Response {
    if is_public(req.uri().path()) {
        return next.run(req).await;
    }
    let Some(token) = bearer(&req) else {
        return tonic::Status::unauthenticated("missing bearer token").into_http();
    };
    let Some(caller) = gate.keys.authenticate(&token).await else {
        return tonic::Status::unauthenticated("invalid or expired access token").into_http();
    };
    match gate.grants.check(caller).await {
        Ok(caller) => {
            crate::telemetry::record_user(caller.user_id.0);
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => tonic::Status::from(e).into_http(),
    }
}
