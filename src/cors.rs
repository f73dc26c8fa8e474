//! CORS for browsers on other origins: one allow-list (`EPOP_CORS_ORIGINS`) for gRPC-Web and
//! the REST edge, with credentials (cookies) only for listed origins, `Vary: Origin`, and no
//! CORS headers at all for other origins.

use axum::{extract::Request, middleware::Next, response::Response};
use http::{HeaderName, HeaderValue, Method};
use std::sync::Arc;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The configured origins, checked.
pub fn origins(list: &[String]) -> anyhow::Result<Vec<HeaderValue>> {
    list.iter()
        .filter(|o| !o.trim().is_empty())
        .map(|o| HeaderValue::from_str(o.trim()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| anyhow::anyhow!("EPOP_CORS_ORIGINS holds an invalid origin"))
}

/// A CORS layer for `origins` allowing `methods` and the request headers `allow`, exposing the
/// response headers `expose`.
pub fn layer(
    origins: Vec<HeaderValue>,
    methods: Vec<Method>,
    allow: &[&'static str],
    expose: &[&'static str],
) -> CorsLayer {
    let names = |list: &[&'static str]| -> Vec<HeaderName> {
        list.iter().map(|h| HeaderName::from_static(h)).collect()
    };
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_credentials(true)
        .allow_methods(methods)
        .allow_headers(names(allow))
        .expose_headers(names(expose))
        .max_age(std::time::Duration::from_secs(600))
}

/// Middleware (outside the CORS layer) that leaves no `access-control-*` header on answers
/// to origins that are not listed: tower-http's layer marks those with
/// `allow-credentials` too.
pub async fn only_listed(
    axum::extract::State(origins): axum::extract::State<Arc<Vec<HeaderValue>>>,
    req: Request,
    next: Next,
) -> Response {
    let listed = req
        .headers()
        .get(http::header::ORIGIN)
        .is_some_and(|o| origins.contains(o));
    let mut response = next.run(req).await;
    if !listed {
        let names: Vec<HeaderName> = response
            .headers()
            .keys()
            .filter(|k| k.as_str().starts_with("access-control-"))
            .cloned()
            .collect();
        for name in names {
            response.headers_mut().remove(name);
        }
    }
    response
}
