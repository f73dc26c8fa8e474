//! Sign-in, refresh rotation and theft detection, sign-out, password reset.

use crate::helpers::*;
use epop::pb;
use std::time::Duration;
use tonic::{Code, Request};

fn cookie_values(md: &tonic::metadata::MetadataMap) -> Vec<String> {
    md.get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn login_returns_an_access_token_and_sets_the_refresh_cookie() {
    let app = TestApp::spawn().await;
    let reply = app
        .auth()
        .await
        .login(pb::LoginRequest {
            email: " Admin@Example.com ".into(),
            password: ADMIN_PASSWORD.into(),
            return_refresh_token: false,
        })
        .await
        .unwrap();
    let cookies = cookie_values(reply.metadata());
    assert!(cookies.iter().any(|c| c.starts_with("epop_refresh=")
        && c.contains("HttpOnly; Secure; SameSite=Strict; Path=/api/auth")));
    let body = reply.into_inner();
    assert_eq!(body.token_type, "Bearer");
    assert!(
        body.refresh_token.is_empty(),
        "only in the cookie unless asked"
    );
    assert_eq!(body.user.unwrap().role, pb::Role::Admin as i32);
    let me = app
        .users()
        .await
        .get_me(authed(pb::GetMeRequest {}, &body.access_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.email, ADMIN_EMAIL);
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_password_and_unknown_email_get_the_same_answer() {
    let app = TestApp::spawn().await;
    let mut auth = app.auth().await;
    let mut attempt = async |email: &str, password: &str| {
        auth.login(pb::LoginRequest {
            email: email.into(),
            password: password.into(),
            return_refresh_token: false,
        })
        .await
        .unwrap_err()
    };
    let wrong = attempt(ADMIN_EMAIL, "not-the-password").await;
    let unknown = attempt("nobody@example.com", "not-the-password").await;
    assert_eq!(wrong.code(), Code::Unauthenticated);
    assert_eq!(unknown.code(), Code::Unauthenticated);
    assert_eq!(wrong.message(), unknown.message());
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_rotates_the_token_and_reusing_an_old_one_revokes_the_family() {
    let grace = Duration::from_secs(1);
    let app = TestApp::spawn_with(|c| c.refresh_reuse_grace = grace).await;
    let first = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.refresh_token;
    let mut auth = app.auth().await;
    let refresh = |token: &str| pb::RefreshRequest {
        refresh_token: token.into(),
        return_refresh_token: true,
    };
    let second = auth.refresh(refresh(&first)).await.unwrap().into_inner();
    assert_ne!(second.refresh_token, first);
    assert!(!second.access_token.is_empty());

    // A thief replays the first token after the grace window: refused, and the whole family
    // dies with it.
    tokio::time::sleep(grace + Duration::from_millis(200)).await;
    let replay = auth.refresh(refresh(&first)).await.unwrap_err();
    assert_eq!(replay.code(), Code::Unauthenticated);
    let legit = auth
        .refresh(refresh(&second.refresh_token))
        .await
        .unwrap_err();
    assert_eq!(legit.code(), Code::Unauthenticated, "the family is revoked");

    // Other sessions of the same user are not affected.
    let other = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.refresh_token;
    auth.refresh(refresh(&other)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn two_tabs_refreshing_one_cookie_at_once_both_get_the_same_new_token() {
    let app = TestApp::spawn().await;
    let first = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.refresh_token;
    let refresh = async |token: &str| {
        app.auth()
            .await
            .refresh(pb::RefreshRequest {
                refresh_token: token.into(),
                return_refresh_token: true,
            })
            .await
            .map(|r| r.into_inner())
    };
    let (a, b) = tokio::join!(refresh(&first), refresh(&first));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        a.refresh_token, b.refresh_token,
        "one successor for both tabs"
    );
    assert_ne!(a.refresh_token, first);
    // A third presentation in the window gets it too, and the session goes on.
    let c = refresh(&first).await.unwrap();
    assert_eq!(c.refresh_token, a.refresh_token);
    let d = refresh(&a.refresh_token)
        .await
        .expect("the session is alive");
    assert_ne!(d.refresh_token, a.refresh_token);

    // Once the successor itself was used, the old token is reuse again: the family dies.
    let reuse = refresh(&first).await.unwrap_err();
    assert_eq!(reuse.code(), Code::Unauthenticated);
    let after = refresh(&d.refresh_token).await.unwrap_err();
    assert_eq!(after.code(), Code::Unauthenticated, "the family is revoked");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_ends_at_its_maximum_age_however_often_it_is_refreshed() {
    let app = TestApp::spawn_with(|c| c.session_max_age = Duration::from_secs(2)).await;
    let first = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let mut auth = app.auth().await;
    let refresh = |token: &str| pb::RefreshRequest {
        refresh_token: token.into(),
        return_refresh_token: true,
    };
    let second = auth
        .refresh(refresh(&first.refresh_token))
        .await
        .unwrap()
        .into_inner();
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let late = auth
        .refresh(refresh(&second.refresh_token))
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::Unauthenticated, "the session is over");
    // Over REST, token answers are never cached.
    let r = reqwest::Client::new()
        .post(format!("{}/api/auth/login", app.url()))
        .json(&serde_json::json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_and_logout_read_the_cookie_when_the_body_has_no_token() {
    let app = TestApp::spawn().await;
    let token = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.refresh_token;
    let mut auth = app.auth().await;
    fn with_cookie<T>(msg: T, token: &str) -> Request<T> {
        let mut r = Request::new(msg);
        r.metadata_mut().insert(
            "cookie",
            format!("theme=dark; epop_refresh={token}").parse().unwrap(),
        );
        r
    }
    let reply = auth
        .refresh(with_cookie(pb::RefreshRequest::default(), &token))
        .await
        .unwrap();
    let cookies = cookie_values(reply.metadata());
    let new = cookies[0]
        .strip_prefix("epop_refresh=")
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_owned();
    assert_ne!(new, token);

    let out = auth
        .logout(with_cookie(pb::LogoutRequest::default(), &new))
        .await
        .unwrap();
    let cleared = cookie_values(out.metadata());
    assert!(
        cleared
            .iter()
            .all(|c| c.contains("=;") && c.contains("Max-Age=0")),
        "{cleared:?}"
    );
    for name in ["epop_refresh=;", "epop_events=;"] {
        assert!(cleared.iter().any(|c| c.starts_with(name)), "{cleared:?}");
    }
    let after = auth
        .refresh(with_cookie(pb::RefreshRequest::default(), &new))
        .await
        .unwrap_err();
    assert_eq!(after.code(), Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread")]
async fn password_reset_emails_a_single_use_code_that_sets_the_password_and_ends_sessions() {
    let app = TestApp::spawn().await;
    app.create_user("ada@example.com", "old-password-1", pb::Role::User)
        .await;
    let session = app.login("ada@example.com", "old-password-1").await;
    let mut auth = app.auth().await;
    auth.request_password_reset(pb::RequestPasswordResetRequest {
        email: "ADA@example.com".into(),
    })
    .await
    .unwrap();
    let emails = app.wait_for_emails(1).await;
    assert!(emails[0].contains("To: ada@example.com"));
    assert!(emails[0].contains("Subject: Reset your EPOP password"));
    let code = reset_code(&emails[0]);
    assert!(
        emails[0]
            .replace("=\r\n", "")
            .replace("=3D", "=")
            .contains(&format!("reset-password?token={code}"))
    );

    let confirm = |token: &str, password: &str| pb::ConfirmPasswordResetRequest {
        token: token.into(),
        new_password: password.into(),
    };
    let short = auth
        .confirm_password_reset(confirm(&code, "short"))
        .await
        .unwrap_err();
    assert_eq!(violations(&short), ["new_password"]);
    auth.confirm_password_reset(confirm(&code, "new-password-1"))
        .await
        .unwrap();
    let again = auth
        .confirm_password_reset(confirm(&code, "newer-password-1"))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::InvalidArgument);
    assert_eq!(violations(&again), ["token"]);

    app.login("ada@example.com", "new-password-1").await;
    let old = auth
        .refresh(pb::RefreshRequest {
            refresh_token: session.refresh_token,
            return_refresh_token: false,
        })
        .await
        .unwrap_err();
    assert_eq!(
        old.code(),
        Code::Unauthenticated,
        "every old session is revoked"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn password_reset_for_an_unknown_email_answers_ok_and_sends_nothing() {
    let app = TestApp::spawn().await;
    app.auth()
        .await
        .request_password_reset(pb::RequestPasswordResetRequest {
            email: "ghost@example.com".into(),
        })
        .await
        .unwrap();
    // A real request afterwards is the first and only email.
    app.auth()
        .await
        .request_password_reset(pb::RequestPasswordResetRequest {
            email: ADMIN_EMAIL.into(),
        })
        .await
        .unwrap();
    let emails = app.wait_for_emails(1).await;
    assert!(emails[0].contains(&format!("To: {ADMIN_EMAIL}")));
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(app.email_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_requests_send_one_email_per_address_per_minute_and_cost_the_same_for_unknown_ones() {
    let app = TestApp::spawn().await;
    let mut auth = app.auth().await;
    let jobs = async || {
        db_count(
            &app.db_name,
            "SELECT count(*) AS n FROM jobs WHERE kind = 'password_reset_email'",
        )
        .await
    };
    // Someone asks five times for the admin's account: one job, one email.
    for _ in 0..5 {
        auth.request_password_reset(pb::RequestPasswordResetRequest {
            email: ADMIN_EMAIL.into(),
        })
        .await
        .unwrap();
    }
    assert_eq!(jobs().await, 1);
    app.wait_for_emails(1).await;
    // An unknown address costs the same write (and sends nothing when it runs).
    for _ in 0..3 {
        auth.request_password_reset(pb::RequestPasswordResetRequest {
            email: "ghost@example.com".into(),
        })
        .await
        .unwrap();
    }
    assert_eq!(jobs().await, 2);
    // The admin's job is done, and still no second one within the minute.
    auth.request_password_reset(pb::RequestPasswordResetRequest {
        email: ADMIN_EMAIL.into(),
    })
    .await
    .unwrap();
    assert_eq!(jobs().await, 2);
    let pending = "SELECT count(*) AS n FROM jobs WHERE status = 'pending'";
    for _ in 0..50 {
        if db_count(&app.db_name, pending).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(db_count(&app.db_name, pending).await, 0, "every job ran");
    assert_eq!(app.email_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_user_cannot_sign_in_or_refresh() {
    let app = TestApp::spawn().await;
    let user = app
        .create_user("bob@example.com", "bob-password-1", pb::Role::User)
        .await;
    let session = app.login("bob@example.com", "bob-password-1").await;
    let admin = app.admin_token().await;
    app.admin()
        .await
        .update_user(authed(
            pb::UpdateUserRequest {
                id: user.id,
                disabled: Some(true),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap();
    let mut auth = app.auth().await;
    let login = auth
        .login(pb::LoginRequest {
            email: "bob@example.com".into(),
            password: "bob-password-1".into(),
            return_refresh_token: false,
        })
        .await
        .unwrap_err();
    assert_eq!(login.code(), Code::Unauthenticated);
    let refresh = auth
        .refresh(pb::RefreshRequest {
            refresh_token: session.refresh_token,
            return_refresh_token: false,
        })
        .await
        .unwrap_err();
    assert_eq!(refresh.code(), Code::Unauthenticated);
}
