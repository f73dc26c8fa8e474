//! Signing keys: with nothing configured they live in the database, shared by every instance
//! on it; tokens name their key (`kid`); `epop keys rotate` adds a key that instances pick up,
//! while the old one verifies until its tokens expire, then not; a key file left by an
//! earlier version is imported (and refused unless it holds a whole key).

use crate::helpers::{
    ADMIN_EMAIL, ADMIN_PASSWORD, TestApp, admin_sql, config, database_url, db_count, signing_secret,
};
use base64::Engine;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_short_or_garbled_key_file_stops_the_server_with_what_to_do() {
    let db_name = format!("epop_test_{}", uuid::Uuid::new_v4().simple());
    admin_sql(&format!("CREATE DATABASE {db_name}")).await;
    for (content, says) in [
        ("", "holds a 0-byte key"),
        ("c2hvcnQga2V5\n", "holds a 9-byte key"),
        ("%%% not base64 %%%\n", "is not a base64 key"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("jwt.key"), content).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_epop"))
            .env_remove("EPOP_JWT_SECRET")
            .env("DATABASE_URL", database_url(&db_name))
            .env("EPOP_LISTEN", "127.0.0.1:0")
            .env("EPOP_DATA_DIR", dir.path())
            .env("EPOP_ADMIN_EMAIL", ADMIN_EMAIL)
            .env("EPOP_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{content:?}: the server started");
        assert!(stderr.contains(says), "{content:?}: {stderr}");
        assert!(stderr.contains("delete it"), "{content:?}: {stderr}");
    }
    admin_sql(&format!("DROP DATABASE {db_name} WITH (FORCE)")).await;
}

/// The `kid` in a token's header.
fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

/// `token`'s claims with a later expiry, signed with `secret` under `kid` (None: no kid, as
/// tokens were before keys had ids).
fn resign(token: &str, kid: Option<&str>, secret: &[u8], lifetime: Duration) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let mut claims: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    claims["exp"] = (chrono::Utc::now() + lifetime).timestamp().into();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

/// Runs `epop keys rotate` on database `db`; answers the new key's id.
pub(crate) fn rotate(db: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_epop"))
        .args(["keys", "rotate"])
        .env_remove("EPOP_JWT_SECRET")
        .env("DATABASE_URL", database_url(db))
        .env("EPOP_DATA_DIR", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("new signing key "))
        .expect("the new key's id")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_on_one_database_with_nothing_configured_share_one_key() {
    let db_name = format!("epop_test_{}", uuid::Uuid::new_v4().simple());
    admin_sql(&format!("CREATE DATABASE {db_name}")).await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = tokio::join!(
        TestApp::start(config(&db_name, dir_a.path()), db_name.clone()),
        TestApp::start(config(&db_name, dir_b.path()), db_name.clone()),
    );
    assert_eq!(
        db_count(&db_name, "SELECT count(*) AS n FROM signing_keys").await,
        1
    );
    for dir in [&dir_a, &dir_b] {
        assert!(!dir.path().join("jwt.key").exists(), "no key in a data dir");
    }
    for (from, to) in [(&a, &b), (&b, &a)] {
        let token = from.admin_token().await;
        let me = to
            .get_me(&token)
            .await
            .expect("a token of one instance is valid on the other");
        assert_eq!(me.email, ADMIN_EMAIL);
    }
    drop(b);
    drop(a);
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_rotation_old_tokens_verify_until_they_expire_then_the_old_key_is_refused() {
    let app = TestApp::spawn_with(|c| {
        c.jwt_secret = None;
        c.access_token_ttl = Duration::from_secs(3);
        c.jwt_keys_reload = Duration::from_secs(1);
    })
    .await;
    let before = app.admin_token().await;
    let old = kid(&before);
    // A token of the old key that outlives the key's grace (ttl 3 s + reload 1 s).
    let secret = signing_secret(&app.db_name, Some(&old)).await;
    let long = resign(&before, Some(&old), &secret, Duration::from_secs(600));
    assert!(app.get_me(&long).await.is_ok());

    let new = rotate(&app.db_name);
    assert_ne!(new, old);
    let mut after = app.admin_token().await;
    for _ in 0..40 {
        if kid(&after) == new {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = app.admin_token().await;
    }
    assert_eq!(kid(&after), new, "the instance signs with the new key");
    assert!(
        app.get_me(&before).await.is_ok(),
        "an old token still works"
    );
    assert!(app.get_me(&after).await.is_ok());

    // Past the old key's grace: its tokens are refused even before their own expiry.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let err = app.get_me(&long).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let fresh = app.admin_token().await;
    assert_eq!(kid(&fresh), new);
    assert!(app.get_me(&fresh).await.is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_of_a_key_created_since_the_last_reload_is_accepted_at_once() {
    let app = TestApp::spawn_with(|c| {
        c.jwt_secret = None;
        c.jwt_keys_reload = Duration::from_secs(600);
    })
    .await;
    let token = app.admin_token().await;
    let new = rotate(&app.db_name);
    // The instance has not reloaded (every 10 min) and still signs with the old key...
    assert_ne!(kid(&app.admin_token().await), new);
    // ...but a token of the new key (signed by another instance) makes it reload.
    let secret = signing_secret(&app.db_name, Some(&new)).await;
    let theirs = resign(&token, Some(&new), &secret, Duration::from_secs(60));
    assert!(app.get_me(&theirs).await.is_ok());
    let unknown = resign(
        &token,
        Some("no-such-key"),
        &secret,
        Duration::from_secs(60),
    );
    let err = app.get_me(&unknown).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_key_file_of_an_earlier_version_is_imported_and_its_tokens_stay_valid() {
    let key = [42u8; 64];
    let app = TestApp::spawn_with(|c| {
        c.jwt_secret = None;
        let b64 = base64::engine::general_purpose::STANDARD.encode(key);
        std::fs::write(c.store.data_dir.join("jwt.key"), format!("{b64}\n")).unwrap();
    })
    .await;
    let token = app.admin_token().await;
    // A token as an earlier version signed it: this key, no kid.
    let legacy = resign(&token, None, &key, Duration::from_secs(60));
    assert!(app.get_me(&legacy).await.is_ok());
    assert_eq!(
        signing_secret(&app.db_name, Some(&kid(&token))).await,
        key.to_vec()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configured_key_wins_over_the_database() {
    let app = TestApp::spawn_with(|c| {
        c.jwt_secret = Some("a-configured-key-of-at-least-32-bytes!!".to_owned().into());
    })
    .await;
    let token = app.admin_token().await;
    assert!(kid(&token).starts_with("cfg-"));
    assert_eq!(
        db_count(&app.db_name, "SELECT count(*) AS n FROM signing_keys").await,
        0
    );
    assert!(app.get_me(&token).await.is_ok());
}
