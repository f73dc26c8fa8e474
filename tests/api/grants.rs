//! Revocation in the authentication layer: a token whose session was revoked, or whose user
//! was disabled, deleted or given another role, is refused on every RPC and protocol and
//! cannot open a new event stream, on this instance at once and on another within seconds
//! (a demoted admin's powers outside AdminService: `revocation.rs`).

use crate::{
    events::{open, redis_url, try_open},
    helpers::*,
    protocol::grpc_web_frame,
};
use epop::pb;
use std::time::{Duration, Instant};
use tonic::Code;

/// REST `GET /api/events` with `auth` (a header or a cookie): its HTTP status.
async fn rest_events(app: &TestApp, header: (&str, String)) -> u16 {
    reqwest::Client::new()
        .get(format!("{}/api/events", app.url()))
        .header(header.0, header.1)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The `epop_events` cookie of `token` (as `name=value`), from `POST /api/events/session`.
async fn events_cookie(app: &TestApp, token: &str) -> String {
    let r = reqwest::Client::new()
        .post(format!("{}/api/events/session", app.url()))
        .bearer_auth(token)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let set = r.headers()["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

/// A gRPC-Web GetMe (over HTTP/1.1) with `token`: true unless it is refused.
async fn grpc_web_get_me(app: &TestApp, token: &str) -> bool {
    let r = reqwest::Client::builder()
        .http1_only()
        .build()
        .unwrap()
        .post(format!("{}/epop.v1.UserService/GetMe", app.url()))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .bearer_auth(token)
        .body(grpc_web_frame(&pb::GetMeRequest {}))
        .send()
        .await
        .unwrap();
    // A refusal is trailers-only: its status is in the headers.
    r.headers().get("grpc-status").is_none()
}

/// Every way `token` could be used: a unary call on gRPC and gRPC-Web, a gRPC stream, a REST
/// stream by header and by the events cookie `cookie`; answers what each got.
async fn every_use(app: &TestApp, token: &str, cookie: &str) -> [bool; 5] {
    [
        app.get_me(token).await.is_ok(),
        grpc_web_get_me(app, token).await,
        try_open(app, token, "").await.is_ok(),
        rest_events(app, ("authorization", format!("Bearer {token}"))).await == 200,
        rest_events(app, ("cookie", cookie.to_owned())).await == 200,
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn after_sign_out_the_token_and_its_events_cookie_open_nothing_and_the_cookie_is_cleared() {
    let app = TestApp::spawn().await;
    user(&app, "bob").await;
    let s = app.login("bob@example.com", "user-password-1").await;
    let cookie = events_cookie(&app, &s.access_token).await;
    assert_eq!(
        every_use(&app, &s.access_token, &cookie).await,
        [true; 5],
        "control"
    );
    let r = reqwest::Client::new()
        .post(format!("{}/api/auth/logout", app.url()))
        .json(&serde_json::json!({ "refreshToken": s.refresh_token }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cleared: Vec<&str> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(
        cleared.iter().any(|c| c.starts_with("epop_events=;")
            && c.contains("Path=/api/events")
            && c.contains("Max-Age=0")),
        "{cleared:?}"
    );
    assert_eq!(every_use(&app, &s.access_token, &cookie).await, [false; 5]);
    let status = try_open(&app, &s.access_token, "").await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_or_deleted_user_is_refused_everywhere_at_once() {
    let app = TestApp::spawn().await;
    let root = app.admin_token().await;
    for change in ["disable", "delete"] {
        let (id, token) = user(&app, change).await;
        let cookie = events_cookie(&app, &token).await;
        assert_eq!(every_use(&app, &token, &cookie).await, [true; 5]);
        let mut admin = app.admin().await;
        if change == "disable" {
            let update = pb::UpdateUserRequest {
                id,
                disabled: Some(true),
                ..Default::default()
            };
            admin.update_user(authed(update, &root)).await.unwrap();
        } else {
            let delete = pb::DeleteUserRequest { id };
            admin.delete_user(authed(delete, &root)).await.unwrap();
        }
        assert_eq!(
            every_use(&app, &token, &cookie).await,
            [false; 5],
            "{change}"
        );
    }
}

/// How long after `revoke` ran `token` is refused by `app` (polled every 50 ms, up to 10 s).
async fn refused_after(app: &TestApp, token: &str, since: Instant) -> Duration {
    loop {
        if app.get_me(token).await.is_err() {
            return since.elapsed();
        }
        assert!(since.elapsed() < Duration::from_secs(10), "never refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sign_out_on_one_instance_is_refused_on_another_with_no_stream_open_there() {
    // B has no stream open, so the events of Redis are not even parsed there; a revocation
    // must be all the same, or B would trust its cache for its whole 30 s.
    let (a, b) = two_instances(&redis_url()).await;
    a.create_user("bob@example.com", "user-password-1", pb::Role::User)
        .await;
    let s = a.login("bob@example.com", "user-password-1").await;
    b.get_me(&s.access_token).await.expect("B remembers it");
    let since = Instant::now();
    a.auth()
        .await
        .logout(pb::LogoutRequest {
            refresh_token: s.refresh_token,
        })
        .await
        .unwrap();
    let took = refused_after(&b, &s.access_token, since).await;
    eprintln!("refused on the other instance after {took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    let status = try_open(&b, &s.access_token, "").await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_redis_another_instance_refuses_a_revoked_token_within_two_seconds() {
    let db_name = format!("epop_test_{}", uuid::Uuid::new_v4().simple());
    admin_sql(&format!("CREATE DATABASE {db_name}")).await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = TestApp::start(config(&db_name, dir_a.path()), db_name.clone()).await;
    let b = TestApp::start(config(&db_name, dir_b.path()), db_name.clone()).await;
    let (bob_id, token) = user(&a, "bob").await;
    b.get_me(&token).await.expect("B remembers it");
    let since = Instant::now();
    let update = pb::UpdateUserRequest {
        id: bob_id,
        disabled: Some(true),
        ..Default::default()
    };
    a.admin()
        .await
        .update_user(authed(update, &a.admin_token().await))
        .await
        .unwrap();
    let took = refused_after(&b, &token, since).await;
    eprintln!("refused on the other instance after {took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    drop(b);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_of_a_session_that_goes_on_keeps_working_across_its_streams() {
    // The check must not refuse what it should let through: a refreshed session's new token
    // and a password change's own session.
    let app = TestApp::spawn().await;
    user(&app, "bob").await;
    let s = app.login("bob@example.com", "user-password-1").await;
    let refreshed = app
        .auth()
        .await
        .refresh(pb::RefreshRequest {
            refresh_token: s.refresh_token,
            return_refresh_token: true,
        })
        .await
        .unwrap()
        .into_inner();
    for token in [&s.access_token, &refreshed.access_token] {
        app.get_me(token).await.expect("one session, two tokens");
        let _stream = open(&app, token, "").await;
    }
    let other = app.login("bob@example.com", "user-password-1").await;
    app.users()
        .await
        .change_password(authed(
            pb::ChangePasswordRequest {
                current_password: "user-password-1".into(),
                new_password: "user-password-2".into(),
            },
            &refreshed.access_token,
        ))
        .await
        .unwrap();
    app.get_me(&refreshed.access_token)
        .await
        .expect("the caller's own session goes on");
    assert_eq!(
        app.get_me(&other.access_token).await.unwrap_err().code(),
        Code::Unauthenticated,
        "the other session ends"
    );
}
