//! Observability: Prometheus `/metrics` with RPCs counted by method, protocol and code on
//! every protocol, and the other series moving; JSON logs that carry the request id and the
//! user id and never a password, token, cookie or authorization header.

use crate::{
    events::{group, open, send},
    helpers::*,
    protocol::grpc_web_frame,
};
use epop::pb;
use std::time::Duration;

async fn scrape(app: &TestApp) -> String {
    let r = reqwest::get(format!("{}/metrics", app.url()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
        "{:?}",
        r.headers()
    );
    r.text().await.unwrap()
}

/// The value of the series `name{labels}` (labels in the exporter's order), 0 when absent.
fn value(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

fn rpc(method: &str, protocol: &str, code: &str) -> String {
    format!(
        "epop_rpc_requests_total{{method=\"/epop.v1.{method}\",protocol=\"{protocol}\",code=\"{code}\"}}"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_rpcs_by_method_protocol_and_code_on_every_protocol() {
    let app = TestApp::spawn().await;
    let before = scrape(&app).await;
    let token = app.admin_token().await;
    // gRPC: a call refused for its token, and one that succeeds.
    app.get_me("not-a-token").await.unwrap_err();
    app.get_me(&token).await.unwrap();
    // gRPC-Web over HTTP/1.1.
    let http = reqwest::Client::builder().http1_only().build().unwrap();
    let r = http
        .post(format!("{}/epop.v1.UserService/GetMe", app.url()))
        .header("content-type", "application/grpc-web+proto")
        .header("authorization", format!("Bearer {token}"))
        .body(grpc_web_frame(&pb::GetMeRequest {}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    // REST: a success and a NOT_FOUND.
    let rest = reqwest::Client::new();
    let ok = rest
        .get(format!("{}/api/users/me", app.url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let missing = rest
        .get(format!("{}/api/users/{}", app.url(), uuid::Uuid::new_v4()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let after = scrape(&app).await;
    for series in [
        rpc("AuthService/Login", "grpc", "OK"),
        rpc("UserService/GetMe", "grpc", "UNAUTHENTICATED"),
        rpc("UserService/GetMe", "grpc", "OK"),
        rpc("UserService/GetMe", "grpc-web", "OK"),
        rpc("UserService/GetMe", "rest", "OK"),
        rpc("UserService/GetUser", "rest", "NOT_FOUND"),
    ] {
        assert!(
            value(&after, &series) > value(&before, &series),
            "{series} did not move:\n{after}"
        );
    }
    assert!(
        after.contains("epop_rpc_duration_seconds_bucket{method=\"/epop.v1.UserService/GetMe\",protocol=\"grpc\",code=\"OK\",le=\"0.005\"}"),
        "{after}"
    );
    for gauge in [
        "epop_db_pool_connections",
        "epop_db_pool_idle_connections",
        "epop_db_pool_wait_seconds_total",
        "epop_jobs_due",
        "epop_jobs_failed",
        "epop_jobs_oldest_due_seconds",
    ] {
        assert!(
            after.lines().any(|l| l.starts_with(gauge)),
            "{gauge} missing:\n{after}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_follow_open_streams_broker_traffic_and_rate_limits() {
    let app = TestApp::spawn_with(|c| c.write_rate_limit = "3/1m".parse().unwrap()).await;
    let (_, ann) = user(&app, "ann").await;
    let (bob_id, bob) = user(&app, "bob").await;
    let g = group(&app, &ann, &[&bob_id]).await;
    let before = scrape(&app).await;
    let _stream = open(&app, &bob, "").await;
    let page = scrape(&app).await;
    assert!(
        value(&page, "epop_event_streams_open") >= 1.0,
        "no open stream counted:\n{page}"
    );
    crate::events::client(&app)
        .await
        .send_message(authed(send(&g, "hello"), &ann))
        .await
        .unwrap();
    // Typing notices past the per-user write limit are refused.
    for _ in 0..4 {
        let _ = crate::events::client(&app)
            .await
            .send_typing(authed(crate::events::typing(&g), &ann))
            .await;
    }
    let after = scrape(&app).await;
    let published = "epop_broker_published_total{kind=\"durable\"}";
    assert!(
        value(&after, published) > value(&before, published),
        "{after}"
    );
    let limited = "epop_rate_limited_total{limit=\"user\"}";
    assert!(value(&after, limited) > value(&before, limited), "{after}");
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_carry_request_and_user_ids_and_never_a_secret() {
    let db_name = format!("epop_test_{}", uuid::Uuid::new_v4().simple());
    admin_sql(&format!("CREATE DATABASE {db_name}")).await;
    let log = tempfile::NamedTempFile::new().unwrap();
    let (mut child, url, _dir) = spawn_process_logging(
        &db_name,
        &[("EPOP_LOG_FORMAT", "json"), ("RUST_LOG", "trace")],
        log.reopen().unwrap(),
    )
    .await;
    let http = reqwest::Client::new();
    // Sign in over REST (the password in a body, the refresh token back in a cookie).
    let password = ADMIN_PASSWORD;
    let r = http
        .post(format!("{url}/api/auth/login"))
        .header("x-request-id", "req-observability-1")
        .json(&serde_json::json!({"email": ADMIN_EMAIL, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    let body: serde_json::Value = r.json().await.unwrap();
    let access = body["accessToken"].as_str().unwrap().to_owned();
    let refresh_cookie = cookie.split(';').next().unwrap().to_owned();
    let refresh_value = refresh_cookie.split_once('=').unwrap().1.to_owned();
    // Calls that carry the token, the cookie, a wrong password and a bad token.
    let me = http
        .get(format!("{url}/api/users/me"))
        .header("x-request-id", "req-observability-2")
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let me: serde_json::Value = me.json().await.unwrap();
    let user_id = me["id"].as_str().unwrap().to_owned();
    let refreshed = http
        .post(format!("{url}/api/auth/refresh"))
        .header("cookie", &refresh_cookie)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 200);
    let wrong = "a-wrong-password-that-must-not-be-logged";
    http.post(format!("{url}/api/auth/login"))
        .json(&serde_json::json!({"email": ADMIN_EMAIL, "password": wrong}))
        .send()
        .await
        .unwrap();
    let bad_token = "bad.token.that-must-not-be-logged";
    http.get(format!("{url}/api/users/me"))
        .bearer_auth(bad_token)
        .send()
        .await
        .unwrap();
    // A change of password logs nothing of either.
    let new_password = "a-new-password-that-must-not-be-logged";
    let changed = http
        .post(format!("{url}/api/users/me/password"))
        .bearer_auth(&access)
        .json(&serde_json::json!({"currentPassword": password, "newPassword": new_password}))
        .send()
        .await
        .unwrap();
    assert!(changed.status().is_success(), "{:?}", changed.text().await);

    // The server flushes its lines as it writes them; stop it to be sure.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(log.path()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(lines.len() > 10, "too few JSON lines:\n{text}");
    let joined = text.to_lowercase();
    for secret in [
        password,
        wrong,
        new_password,
        &access,
        bad_token,
        &refresh_value,
    ] {
        assert!(
            !joined.contains(&secret.to_lowercase()),
            "a secret reached the logs: {secret}"
        );
    }
    assert!(
        !joined.contains("authorization: bearer"),
        "an authorization header was logged"
    );
    assert!(!joined.contains("\"cookie\""), "a cookie header was logged");
    // The request's lines carry its id, and (once authenticated) the user's.
    let with = |id: &str| {
        lines
            .iter()
            .filter(|l| l.to_string().contains(id))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert!(
        !with("req-observability-1").is_empty(),
        "no line names the request id:\n{text}"
    );
    assert!(
        with("req-observability-2")
            .iter()
            .any(|l| l.to_string().contains(&user_id)),
        "no line of the authenticated request names its user:\n{text}"
    );
    admin_sql(&format!("DROP DATABASE {db_name} WITH (FORCE)")).await;
}
