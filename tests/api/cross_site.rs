//! The cookie routes and other sites: a refresh or sign-out that carries the session cookie
//! is refused unless its origin is the server's own or a configured one, and on REST unless
//! it is JSON; raw requests, and a page of a sibling origin in headless Chromium. Also
//! `/metrics` on a listener of its own.

use crate::{
    helpers::*,
    protocol::grpc_web_frame,
    rest::{refresh_cookie, rest_login},
};
use epop::pb;
use std::time::Duration;

/// A signed-in session's `epop_refresh` cookie (as `name=value`).
async fn session_cookie(app: &TestApp) -> String {
    refresh_cookie(&rest_login(app, &reqwest::Client::new()).await.1)
}

/// POSTs `body` (as `content_type`) to `path` with `cookie` and `headers`: the status.
async fn post(
    app: &TestApp,
    path: &str,
    cookie: &str,
    content_type: &str,
    headers: &[(&str, &str)],
) -> u16 {
    let mut rq = reqwest::Client::new()
        .post(format!("{}{path}", app.url()))
        .header("cookie", cookie)
        .header("content-type", content_type)
        .body("{}");
    for (k, v) in headers {
        rq = rq.header(*k, *v);
    }
    rq.send().await.unwrap().status().as_u16()
}

/// How many sessions were revoked and tokens rotated.
async fn changes(app: &TestApp) -> (i64, i64) {
    let count = |what: &'static str| {
        let db = app.db_name.clone();
        async move {
            db_count(
                &db,
                &format!("SELECT count(*) AS n FROM refresh_tokens WHERE {what} IS NOT NULL"),
            )
            .await
        }
    };
    (count("revoked_at").await, count("rotated_at").await)
}

const LISTED: &str = "http://app.example.test";

#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_or_sign_out_from_another_site_changes_nothing() {
    let app = TestApp::spawn_with(|c| c.cors_origins = vec![LISTED.into()]).await;
    let cookie = session_cookie(&app).await;
    let json = "application/json";
    let evil = [("origin", "http://evil.example.test")];
    for path in ["/api/auth/refresh", "/api/auth/logout"] {
        assert_eq!(
            post(&app, path, &cookie, "text/plain", &evil).await,
            415,
            "{path}"
        );
        assert_eq!(post(&app, path, &cookie, json, &evil).await, 403, "{path}");
        let sibling = [("sec-fetch-site", "same-site")];
        assert_eq!(
            post(&app, path, &cookie, json, &sibling).await,
            403,
            "{path}"
        );
        let form = "application/x-www-form-urlencoded";
        let own = format!("http://{}", app.addr);
        let own = [("origin", own.as_str())];
        assert_eq!(post(&app, path, &cookie, form, &own).await, 415, "{path}");
    }
    // gRPC-Web from a foreign origin with the cookie: PERMISSION_DENIED.
    let r = reqwest::Client::new()
        .post(format!("{}/epop.v1.AuthService/Logout", app.url()))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("origin", "http://evil.example.test")
        .header("cookie", &cookie)
        .body(grpc_web_frame(&pb::LogoutRequest::default()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["grpc-status"], "7");
    assert_eq!(changes(&app).await, (0, 0), "nothing revoked or rotated");

    // The server's own origin, a listed one, and a client with no Origin (curl, an app): each
    // refreshes with the session's current cookie and gets its next one.
    let own = format!("http://{}", app.addr);
    let mut current = cookie;
    for origin in [Some(own.as_str()), Some(LISTED), None] {
        let mut rq = reqwest::Client::new()
            .post(format!("{}/api/auth/refresh", app.url()))
            .header("cookie", &current)
            .header("content-type", json)
            .body("{}");
        if let Some(o) = origin {
            rq = rq.header("origin", o);
        }
        let r = rq.send().await.unwrap();
        assert_eq!(r.status(), 200, "{origin:?}");
        current = refresh_cookie(&r);
    }
    assert_eq!(changes(&app).await, (0, 3));
    assert_eq!(
        post(&app, "/api/auth/logout", &current, json, &[]).await,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_of_a_sibling_origin_cannot_sign_the_browser_out_or_refresh_it() {
    // Two origins of one site (localhost, two ports): the app's page, listed, and another.
    let site = axum::Router::new().route(
        "/",
        axum::routing::get(|| async { axum::response::Html("<!doctype html><title>p</title>") }),
    );
    let mut origins = vec![];
    for _ in 0..2 {
        let page = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        origins.push(format!(
            "http://localhost:{}",
            page.local_addr().unwrap().port()
        ));
        let site = site.clone();
        tokio::spawn(async move { axum::serve(page, site).await });
    }
    let listed = origins[0].clone();
    let app = TestApp::spawn_with(|c| c.cors_origins = vec![listed.clone()]).await;
    let api = format!("http://localhost:{}", app.addr.port());
    let modules = std::env::var("EPOP_BROWSER_NODE_PATH").unwrap_or_else(|_| {
        format!(
            "{}/.cache/epop/browser/node_modules",
            std::env::var("HOME").unwrap()
        )
    });
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("node")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/browser/csrf.cjs"
            ))
            .args([&api, &origins[0], &origins[1], ADMIN_EMAIL, ADMIN_PASSWORD])
            .env("NODE_PATH", modules)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the browser finishes")
    .expect("node is installed");
    let said = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = said.lines().collect();
    assert!(
        lines.contains(&"login 200"),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(lines.contains(&"attacks sent"), "{said}");
    // The page of the app refreshes with its cookie afterwards: the session survived.
    assert!(lines.contains(&"refresh 200"), "{said}");
    assert_eq!(changes(&app).await, (0, 1), "only the app's own refresh");
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_can_have_a_listener_of_their_own() {
    let app =
        TestApp::spawn_with(|c| c.metrics_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let public = reqwest::get(format!("{}/metrics", app.url()))
        .await
        .unwrap();
    assert_eq!(public.status(), 404, "not on the public port");
    let private = app.metrics_addr.expect("a metrics listener");
    let r = reqwest::get(format!("http://{private}/metrics"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("epop_db_pool_connections"));
    let health = reqwest::get(format!("{}/healthz", app.url()))
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "the probes stay public");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_of_a_listed_origin_uploads_to_the_local_backend() {
    let (page, origin) = {
        let site = axum::Router::new().route(
            "/",
            axum::routing::get(|| async {
                axum::response::Html("<!doctype html><title>p</title>")
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://localhost:{}", l.local_addr().unwrap().port());
        (
            tokio::spawn(async move { axum::serve(l, site).await }),
            origin,
        )
    };
    let app = TestApp::spawn_with(|c| c.cors_origins = vec![origin.clone()]).await;
    let (_, ann) = user(&app, "ann").await;
    let text = "total=100 EUR";
    let p = crate::files::presign(&app, &ann, "bill.txt", "text/plain", text.as_bytes()).await;
    // The preflight a browser sends first: answered by the file routes' CORS rules.
    let r = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, &p.upload_url)
        .header("origin", &origin)
        .header("access-control-request-method", "PUT")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    let allowed = r.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(allowed.contains("PUT"), "{allowed}");
    // And a real browser on that origin.
    let modules = std::env::var("EPOP_BROWSER_NODE_PATH").unwrap_or_else(|_| {
        format!(
            "{}/.cache/epop/browser/node_modules",
            std::env::var("HOME").unwrap()
        )
    });
    let out = tokio::process::Command::new("node")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/browser/upload.cjs"
        ))
        .args([&origin, &p.upload_url, "text/plain", text])
        .env("NODE_PATH", modules)
        .kill_on_drop(true)
        .output()
        .await
        .expect("node is installed");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.lines().any(|l| l == "put 200"), "{said}");
    // The bytes arrived whole: the upload attaches to a message.
    let (bob_id, _) = user(&app, "bob").await;
    let g = crate::events::group(&app, &ann, &[&bob_id]).await;
    let mut send = crate::events::send(&g, "the bill");
    send.attachment_ids = vec![p.file.unwrap().id];
    crate::events::client(&app)
        .await
        .send_message(authed(send, &ann))
        .await
        .expect("the uploaded file attaches");
    page.abort();
}
