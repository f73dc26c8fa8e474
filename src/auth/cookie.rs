//! The cookies of browsers: `epop_refresh` carries the refresh token, `epop_events` the
//! access token of the REST event stream (for `EventSource`, which cannot send headers).
//!
//! `epop_refresh` is set twice, with the same value: `Path=/api/auth` for the REST routes, and
//! `Path=/epop.v1.AuthService` for gRPC-Web clients, whose calls go to that path.

use http::HeaderMap;
use std::time::Duration;

/// The cookie's name.
pub const NAME: &str = "epop_refresh";
const PATHS: [&str; 2] = ["/api/auth", "/epop.v1.AuthService"];

/// `set-cookie` values that store `token` for `max_age`.
pub fn set(token: &str, max_age: Duration) -> Vec<String> {
    PATHS
        .iter()
        .map(|path| {
            format!(
                "{NAME}={token}; HttpOnly; Secure; SameSite=Strict; Path={path}; Max-Age={}",
                max_age.as_secs()
            )
        })
        .collect()
}

/// `set-cookie` values that delete the refresh cookie and the event stream's cookie (so that
/// a browser's EventSource does not reconnect with it after sign-out).
pub fn clear() -> Vec<String> {
    PATHS
        .iter()
        .map(|path| format!("{NAME}=; HttpOnly; Secure; SameSite=Strict; Path={path}; Max-Age=0"))
        .chain([format!(
            "{EVENTS_NAME}=; HttpOnly; Secure; SameSite=Strict; Path={EVENTS_PATH}; Max-Age=0"
        )])
        .collect()
}

/// The refresh token from the `cookie` headers, if any.
pub fn read(headers: &HeaderMap) -> Option<String> {
    read_named(headers, NAME)
}

/// The name of the cookie that binds a single sign-on to the browser that started it.
pub const OIDC_NAME: &str = "epop_oidc";

/// `set-cookie` values that store a single sign-on's binder (ten minutes, where the sign-in
/// is finished: the REST route and gRPC-Web's path).
pub fn set_oidc(binder: &str) -> Vec<String> {
    PATHS
        .iter()
        .map(|path| {
            format!(
                "{OIDC_NAME}={binder}; HttpOnly; Secure; SameSite=Strict; Path={path}; Max-Age=600"
            )
        })
        .collect()
}

/// The name of the event stream's cookie.
pub const EVENTS_NAME: &str = "epop_events";
/// Where browsers send it: the REST event stream only.
const EVENTS_PATH: &str = "/api/events";

/// The `set-cookie` value that stores access token `token` for the REST event stream only,
/// for `max_age` (the token's remaining life).
pub fn set_events(token: &str, max_age: Duration) -> String {
    format!(
        "{EVENTS_NAME}={token}; HttpOnly; Secure; SameSite=Strict; Path={EVENTS_PATH}; Max-Age={}",
        max_age.as_secs()
    )
}

/// The cookie `name` from the `cookie` headers, if set and not empty.
pub fn read_named(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| v.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_read_back_from_a_cookie_header() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            "a=b; epop_refresh=tok; c=d".parse().unwrap(),
        );
        assert_eq!(read(&h).as_deref(), Some("tok"));
        assert!(
            set("tok", Duration::from_secs(5))[0]
                .contains("HttpOnly; Secure; SameSite=Strict; Path=/api/auth")
        );
    }
}
