//! Cross-site request forgery on the cookie routes: `Refresh` and `Logout` act on the
//! `epop_refresh` cookie, which a browser also sends with requests that another page of the
//! same site started (SameSite=Strict does not tell a sibling subdomain apart). A request that
//! carries the cookie is refused unless its `Origin` is the server's own, the web app's
//! (`EPOP_PUBLIC_URL`) or one of `EPOP_CORS_ORIGINS` (without `Origin`: unless
//! `Sec-Fetch-Site` says cross-site or same-site), and on REST unless it is JSON (a page can
//! send `text/plain` or a form to another origin without asking; JSON needs a preflight).

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::Response,
};
use http::{HeaderMap, StatusCode, header};
use std::sync::Arc;
use tonic::Code;

/// The routes that act on the refresh cookie, on REST and on gRPC-Web.
const COOKIE_ROUTES: [&str; 4] = [
    "/api/auth/refresh",
    "/api/auth/logout",
    "/epop.v1.AuthService/Refresh",
    "/epop.v1.AuthService/Logout",
];

/// The origins whose pages may use the cookie routes, besides the server's own.
#[derive(Debug, Clone, Default)]
pub struct Origins(Arc<Vec<String>>);

impl Origins {
    /// `cors` and the origin of `public_url` (the web app).
    pub fn new(cors: &[String], public_url: &str) -> Self {
        let mut list: Vec<String> = cors
            .iter()
            .map(|o| o.trim().trim_end_matches('/').to_owned())
            .filter(|o| !o.is_empty())
            .collect();
        if let Ok(uri) = public_url.parse::<http::Uri>()
            && let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority())
        {
            list.push(format!("{scheme}://{authority}"));
        }
        Self(Arc::new(list))
    }
}

/// Why a request to a cookie route is refused, if it is: (HTTP status, gRPC code, message).
fn refusal(
    headers: &HeaderMap,
    authority: Option<&str>,
    allowed: &Origins,
    grpc: bool,
) -> Option<(StatusCode, Code, &'static str)> {
    let cross = (
        StatusCode::FORBIDDEN,
        Code::PermissionDenied,
        "a request with the session cookie from another site is refused",
    );
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if !grpc {
        // Not a type a plain HTML form can send: JSON (REST, Connect) or Connect's binary.
        let typed = text(header::CONTENT_TYPE).is_some_and(|t| {
            t.split(';').next().is_some_and(|m| {
                let m = m.trim();
                m.eq_ignore_ascii_case("application/json")
                    || m.eq_ignore_ascii_case("application/proto")
            })
        });
        if !typed {
            return Some((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Code::InvalidArgument,
                "a request with the session cookie must be sent as application/json (or proto)",
            ));
        }
    }
    match text(header::ORIGIN) {
        Some(origin) => {
            let origin = origin.trim_end_matches('/');
            let own = authority.is_some_and(|a| {
                ["http://", "https://"]
                    .iter()
                    .filter_map(|scheme| origin.strip_prefix(scheme))
                    .any(|host| host.eq_ignore_ascii_case(a))
            });
            (!own && !allowed.0.iter().any(|o| o == origin)).then_some(cross)
        }
        None => matches!(
            text(header::HeaderName::from_static("sec-fetch-site")),
            Some("cross-site" | "same-site")
        )
        .then_some(cross),
    }
}

/// The middleware, in front of every route.
pub async fn guard(State(allowed): State<Origins>, req: Request, next: Next) -> Response {
    if !COOKIE_ROUTES.contains(&req.uri().path())
        || crate::auth::cookie::read(req.headers()).is_none()
    {
        return next.run(req).await;
    }
    let grpc = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/grpc"));
    let authority = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()));
    let Some((status, code, message)) =
        refusal(req.headers(), authority.as_deref(), &allowed, grpc)
    else {
        return next.run(req).await;
    };
    tracing::info!(
        path = req.uri().path(),
        message,
        "cookie route: request refused"
    );
    crate::metrics::rate_limited("cross_site");
    let answer = if grpc {
        tonic::Status::new(code, message).into_http()
    } else {
        crate::rest::status::plain_error(status, code, message)
    };
    // As every refusal from the headers: a little of the body is drained, then it is closed.
    crate::auth::layer::refuse(req, answer).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_the_servers_own_and_listed_origins_pass_and_rest_must_be_json() {
        let allowed = Origins::new(&["https://app.example".into()], "https://web.example/x");
        let host = Some("api.example:8443");
        let check = |pairs: &[(&'static str, &'static str)], grpc: bool| {
            refusal(&headers(pairs), host, &allowed, grpc).map(|(s, _, _)| s.as_u16())
        };
        let json = ("content-type", "application/json; charset=utf-8");
        assert_eq!(check(&[json], false), None, "no Origin: curl, a native app");
        assert_eq!(
            check(&[json, ("origin", "https://api.example:8443")], false),
            None
        );
        assert_eq!(
            check(&[json, ("origin", "https://app.example")], false),
            None
        );
        assert_eq!(
            check(&[json, ("origin", "https://web.example")], false),
            None
        );
        assert_eq!(
            check(&[json, ("origin", "https://evil.example")], false),
            Some(403)
        );
        assert_eq!(check(&[json, ("origin", "null")], false), Some(403));
        assert_eq!(
            check(&[json, ("sec-fetch-site", "same-site")], false),
            Some(403)
        );
        assert_eq!(
            check(&[json, ("sec-fetch-site", "same-origin")], false),
            None
        );
        // Connect's binary form cannot come from an HTML form either.
        let proto = ("content-type", "application/proto");
        assert_eq!(
            check(&[proto, ("origin", "https://app.example")], false),
            None
        );
        assert_eq!(
            check(&[proto, ("origin", "https://evil.example")], false),
            Some(403)
        );
        let plain = ("content-type", "text/plain");
        assert_eq!(
            check(&[plain, ("origin", "https://app.example")], false),
            Some(415)
        );
        assert_eq!(
            check(&[("origin", "https://evil.example")], true),
            Some(403)
        );
        assert_eq!(check(&[("origin", "https://app.example")], true), None);
    }
}
