//! Access tokens: what the authentication layer accepts and rejects.

use crate::helpers::*;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use epop::pb;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tonic::Code;

async fn signing_key(app: &TestApp) -> EncodingKey {
    EncodingKey::from_secret(&signing_secret(&app.db_name, None).await)
}

/// The claims of `token` (unchecked).
fn claims_of(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// Claims of `sub` in session `sid` (a real one, or the token is refused for it).
fn claims(sub: &str, sid: &serde_json::Value, exp_offset: i64) -> serde_json::Value {
    let now = chrono::Utc::now().timestamp();
    serde_json::json!({
        "sub": sub, "role": "USER", "sid": sid, "iss": "epop",
        "iat": now, "exp": now + exp_offset,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_expired_and_unsigned_tokens_are_rejected() {
    let app = TestApp::spawn().await;
    let user = app
        .create_user("eve@example.com", "eve-password-1", pb::Role::User)
        .await;
    let key = signing_key(&app).await;
    let own = app
        .login("eve@example.com", "eve-password-1")
        .await
        .access_token;
    let sid = &claims_of(&own)["sid"];

    // Control: a token signed here with the server's key works, so the rejections below
    // are about the token, not about how the test makes it.
    let good = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(&user.id, sid, 60),
        &key,
    )
    .unwrap();
    assert_eq!(app.get_me(&good).await.unwrap().id, user.id);

    // Signed with the right key, but naming a session that does not exist, or another role.
    for (claim, value) in [
        ("sid", uuid::Uuid::new_v4().to_string()),
        ("role", "ADMIN".into()),
    ] {
        let mut c = claims(&user.id, sid, 60);
        c[claim] = value.into();
        let t = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &c, &key).unwrap();
        assert_eq!(
            app.get_me(&t).await.unwrap_err().code(),
            Code::Unauthenticated,
            "{claim}"
        );
    }

    let expired = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(&user.id, sid, -5),
        &key,
    )
    .unwrap();
    assert_eq!(
        app.get_me(&expired).await.unwrap_err().code(),
        Code::Unauthenticated
    );

    // Eve promotes herself by editing the payload of her own token.
    let parts: Vec<&str> = own.split('.').collect();
    let mut payload: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    payload["role"] = "ADMIN".into();
    let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).unwrap());
    let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    assert_eq!(
        app.get_me(&tampered).await.unwrap_err().code(),
        Code::Unauthenticated
    );

    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let unsigned = format!("{none_header}.{forged_payload}.");
    assert_eq!(
        app.get_me(&unsigned).await.unwrap_err().code(),
        Code::Unauthenticated
    );

    let wrong_key = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(&user.id, sid, 60),
        &EncodingKey::from_secret(&[1; 64]),
    )
    .unwrap();
    assert_eq!(
        app.get_me(&wrong_key).await.unwrap_err().code(),
        Code::Unauthenticated
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rpc_but_the_public_ones_needs_a_token() {
    let app = TestApp::spawn().await;
    let no_token = app
        .users()
        .await
        .get_me(pb::GetMeRequest {})
        .await
        .unwrap_err();
    assert_eq!(no_token.code(), Code::Unauthenticated);
    let garbage = app.get_me("not-a-jwt").await.unwrap_err();
    assert_eq!(garbage.code(), Code::Unauthenticated);
    let admin = app
        .admin()
        .await
        .list_users(pb::AdminListUsersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(admin.code(), Code::Unauthenticated);

    // Streaming RPCs authenticate first too.
    let mut ai = pb::ai_service_client::AiServiceClient::new(app.channel().await);
    let anon = ai.chat(pb::ChatRequest::default()).await.unwrap_err();
    assert_eq!(anon.code(), Code::Unauthenticated);
    let token = app.admin_token().await;
    let signed_in = ai
        .chat(authed(pb::ChatRequest::default(), &token))
        .await
        .unwrap_err();
    assert_eq!(signed_in.code(), Code::InvalidArgument);
    // Files authenticate too.
    let mut files = pb::file_service_client::FileServiceClient::new(app.channel().await);
    let anon = files
        .get_file(pb::GetFileRequest::default())
        .await
        .unwrap_err();
    assert_eq!(anon.code(), Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_user_is_refused_by_refresh_at_once() {
    let app = TestApp::spawn().await;
    let user = app
        .create_user("gone@example.com", "gone-password-1", pb::Role::User)
        .await;
    let session = app.login("gone@example.com", "gone-password-1").await;
    let admin = app.admin_token().await;
    app.admin()
        .await
        .delete_user(authed(
            pb::DeleteUserRequest {
                id: user.id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap();
    let refresh = app
        .auth()
        .await
        .refresh(pb::RefreshRequest {
            refresh_token: session.refresh_token,
            return_refresh_token: false,
        })
        .await
        .unwrap_err();
    assert_eq!(refresh.code(), Code::Unauthenticated);
    // A still-valid access token of the deleted user is refused too.
    assert_eq!(
        app.get_me(&session.access_token).await.unwrap_err().code(),
        Code::Unauthenticated
    );
}
