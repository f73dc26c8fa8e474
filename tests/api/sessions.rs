//! Sessions a user can see and end: listed with their user agent, address and times, the
//! current one marked; ending one (or all others) stops its refresh token and its event
//! streams on every instance; an admin lists and ends a user's sessions. Audited.

use crate::{
    events::{open, redis_url},
    helpers::*,
    revocation::ends,
    two_factor::{audit_actions, security},
};
use epop::pb;
use tonic::Code;

/// Signs `email` in over REST with `agent` as its user agent: (access, refresh token).
async fn rest_sign_in(app: &TestApp, email: &str, agent: &str) -> (String, String) {
    let reply: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/api/auth/login", app.url()))
        .header("user-agent", agent)
        .json(&serde_json::json!({
            "email": email,
            "password": "user-password-1",
            "returnRefreshToken": true,
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = |k: &str| reply[k].as_str().unwrap_or_default().to_owned();
    (text("accessToken"), text("refreshToken"))
}

async fn list(app: &TestApp, token: &str) -> Vec<pb::Session> {
    security(app)
        .await
        .list_sessions(authed(pb::ListSessionsRequest {}, token))
        .await
        .expect("the sessions")
        .into_inner()
        .sessions
}

async fn refresh(app: &TestApp, token: &str) -> Result<pb::RefreshResponse, tonic::Status> {
    app.auth()
        .await
        .refresh(pb::RefreshRequest {
            refresh_token: token.into(),
            return_refresh_token: true,
        })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_sees_their_sessions_and_ending_one_ends_its_stream_on_the_other_instance() {
    let (a, b) = two_instances(&redis_url()).await;
    a.create_user("sam@example.com", "user-password-1", pb::Role::User)
        .await;
    let (laptop, _) = rest_sign_in(&a, "sam@example.com", "EPOP-Laptop/1.0 (Firefox)").await;
    let phone = b.login("sam@example.com", "user-password-1").await;

    let sessions = list(&a, &laptop).await;
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    let mine = sessions
        .iter()
        .find(|s| s.current)
        .expect("the current one is marked");
    assert_eq!(mine.user_agent, "EPOP-Laptop/1.0 (Firefox)");
    assert_eq!(mine.client_ip, "127.0.0.1");
    assert_eq!(mine.method, "password");
    let other = sessions.iter().find(|s| !s.current).unwrap();
    assert!(other.user_agent.contains("tonic"), "{other:?}");
    assert!(other.create_time.is_some() && other.last_use_time.is_some());

    // The phone's stream is on instance B; the laptop ends the phone's session on A.
    let mut stream = open(&b, &phone.access_token, "").await;
    let ended = security(&a)
        .await
        .end_session(authed(
            pb::EndSessionRequest {
                session_id: other.id.clone(),
            },
            &laptop,
        ))
        .await
        .expect("the session ends")
        .into_inner();
    assert_eq!(ended.ended, 1);
    let status = tokio::time::timeout(std::time::Duration::from_secs(5), ends(&mut stream))
        .await
        .expect("the stream on the other instance ends within seconds");
    assert_eq!(status.code(), Code::Unauthenticated);
    let gone = refresh(&b, &phone.refresh_token).await.unwrap_err();
    assert_eq!(gone.code(), Code::Unauthenticated);
    assert_eq!(list(&a, &laptop).await.len(), 1);
    b.get_me(&laptop).await.expect("the laptop stays signed in");

    // Someone else's session is not there for them.
    let (_, eve) = user(&a, "eve").await;
    let hidden = security(&a)
        .await
        .end_session(authed(
            pb::EndSessionRequest {
                session_id: mine.id.clone(),
            },
            &eve,
        ))
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);

    // Two more devices, then "sign out everywhere else".
    let (t1, _) = rest_sign_in(&a, "sam@example.com", "tablet").await;
    let (_, r2) = rest_sign_in(&b, "sam@example.com", "desktop").await;
    let n = security(&b)
        .await
        .end_other_sessions(authed(pb::EndOtherSessionsRequest {}, &laptop))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(n.ended, 2);
    assert_eq!(
        a.get_me(&t1).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert!(refresh(&a, &r2).await.is_err());
    let left = list(&b, &laptop).await;
    assert_eq!((left.len(), left[0].current), (1, true));

    // An admin sees and ends them.
    let root = a.admin_token().await;
    let sam_id = my_id(&a, &laptop).await;
    let seen = a
        .admin()
        .await
        .list_user_sessions(authed(
            pb::ListUserSessionsRequest {
                user_id: sam_id.clone(),
            },
            &root,
        ))
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert_eq!(seen.len(), 1);
    assert!(!seen[0].current);
    let denied = a
        .admin()
        .await
        .list_user_sessions(authed(
            pb::ListUserSessionsRequest {
                user_id: sam_id.clone(),
            },
            &eve,
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let mut stream = open(&b, &laptop, "").await;
    a.admin()
        .await
        .end_user_sessions(authed(
            pb::EndUserSessionsRequest {
                user_id: sam_id,
                session_id: String::new(),
            },
            &root,
        ))
        .await
        .expect("the admin ends them");
    assert_eq!(ends(&mut stream).await.code(), Code::Unauthenticated);
    let actions = audit_actions(&a, &root).await;
    assert!(
        actions.iter().filter(|x| *x == "session_ended").count() >= 3,
        "{actions:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_marks_when_and_where_a_session_was_last_used() {
    let app = TestApp::spawn().await;
    app.create_user("rita@example.com", "user-password-1", pb::Role::User)
        .await;
    let (_, refresh_token) = rest_sign_in(&app, "rita@example.com", "phone").await;
    let before = db_text(
        &app.db_name,
        "SELECT last_used_at::text AS v FROM sessions s JOIN users u ON u.id = s.user_id \
         WHERE u.email = 'rita@example.com'",
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let r = refresh(&app, &refresh_token).await.expect("refreshed");
    let sessions = list(&app, &r.access_token).await;
    assert_eq!(sessions.len(), 1, "a refresh keeps one session");
    let after = db_text(
        &app.db_name,
        "SELECT last_used_at::text AS v FROM sessions s JOIN users u ON u.id = s.user_id \
         WHERE u.email = 'rita@example.com'",
    )
    .await;
    assert!(after > before, "{before} then {after}");
}
