//! The authentication layer in front of every gRPC (and gRPC-Web) route: checks
//! `authorization: Bearer <jwt>` on every RPC that is not explicitly public, and leaves the
//! [`Caller`](super::Caller) in the request's extensions for the handlers.

use crate::auth::jwt::JwtKeys;
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

/// The axum middleware: passes public RPCs through, authenticates the rest.
pub async fn authenticate(
    State(keys): State<Arc<JwtKeys>>,
    mut req: Request,
    next: Next,
) -> Response {
    if is_public(req.uri().path()) {
        return next.run(req).await;
    }
    let token = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    let Some(token) = token else {
        return tonic::Status::unauthenticated("missing bearer token").into_http();
    };
    match keys.verify(token.trim()) {
        Some(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        None => tonic::Status::unauthenticated("invalid or expired access token").into_http(),
    }
}
