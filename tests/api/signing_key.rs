//! The generated signing-key file: refused unless it holds a whole key, and agreed on by
//! servers that start at the same moment on one data directory.

use crate::helpers::{
    ADMIN_EMAIL, ADMIN_PASSWORD, TestApp, admin_sql, authed, config, database_url,
};
use epop::pb;

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

#[tokio::test(flavor = "multi_thread")]
async fn two_servers_started_at_once_on_one_data_dir_share_one_valid_key() {
    let db_name = format!("epop_test_{}", uuid::Uuid::new_v4().simple());
    admin_sql(&format!("CREATE DATABASE {db_name}")).await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = tokio::join!(
        TestApp::start(config(&db_name, dir.path()), db_name.clone()),
        TestApp::start(config(&db_name, dir.path()), db_name.clone()),
    );
    let key = std::fs::read_to_string(dir.path().join("jwt.key")).unwrap();
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(key.trim())
        .unwrap();
    assert_eq!(bytes.len(), 64);
    let files = std::fs::read_dir(dir.path()).unwrap().count();
    let token = a.admin_token().await;
    let me = b
        .users()
        .await
        .get_me(authed(pb::GetMeRequest {}, &token))
        .await
        .expect("a token of one server is valid on the other")
        .into_inner();
    assert_eq!(me.email, ADMIN_EMAIL);
    assert!(files <= 2, "only jwt.key (and mail/) in the data dir");
    drop(b);
    drop(a);
}
