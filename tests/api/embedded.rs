//! The embedded default database: initialised on first start, reused, stopped on shutdown.

use crate::helpers::ADMIN_EMAIL;
use epop::{app::App, config::Config};
use std::{os::unix::fs::PermissionsExt, time::Duration};

#[tokio::test(flavor = "multi_thread")]
async fn the_embedded_postgres_starts_is_reused_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    // Running as root, the cluster runs as `postgres`, which must pass through this dir.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = dir.path().join("data");
    let config = || {
        let mut c = Config::with_defaults(data.clone(), None);
        c.listen = "127.0.0.1:0".parse().unwrap();
        c.admin_email = ADMIN_EMAIL.into();
        c.admin_password = None;
        c.shutdown_grace = Duration::from_secs(5);
        c
    };
    let pid_file = data.join("postgres/postmaster.pid");

    let first = App::build(config()).await.expect("first start");
    assert!(
        data.join("postgres/PG_VERSION").exists(),
        "a cluster was initialised"
    );
    assert!(pid_file.exists(), "and is running");
    let password = first
        .generated_admin_password
        .clone()
        .expect("a generated admin password");
    let stop = first.stop_token();
    let run = tokio::spawn(first.run_until_stopped());
    stop.cancel();
    run.await.unwrap().unwrap();
    assert!(!pid_file.exists(), "stopped with the server");

    let second = App::build(config()).await.expect("second start");
    assert!(
        second.generated_admin_password.is_none(),
        "the admin from the first start is still there"
    );
    let addr = second.local_addr();
    let stop = second.stop_token();
    let run = tokio::spawn(second.run_until_stopped());
    let mut auth =
        epop::pb::auth_service_client::AuthServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
    auth.login(epop::pb::LoginRequest {
        email: ADMIN_EMAIL.into(),
        password,
        return_refresh_token: false,
    })
    .await
    .expect("the first start's admin signs in after a restart");
    stop.cancel();
    run.await.unwrap().unwrap();
    assert!(!pid_file.exists());
}
