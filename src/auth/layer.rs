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

/// Path prefixes of the RPCs callable without a token.
const PUBLIC: &[&str] = &[
    "/epop.v1.AuthService/",
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// True for RPCs that need no token.
pub fn is_public(path: &str) -> bool {
    PUBLIC.iter().any(|p| path.starts_with(p))
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
