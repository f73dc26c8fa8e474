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
    // Only the server's own account reaches it (and, as root, the postgres user).
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data) & 0o007, 0, "the data dir is closed to others");
    assert_eq!(mode(&data.join("postgres-run")), 0o700);
    let socket = std::fs::read_dir(data.join("postgres-run"))
        .unwrap()
        .flatten()
        .find(|e| {
            e.file_name().to_string_lossy().starts_with(".s.PGSQL.")
                && !e.file_name().to_string_lossy().ends_with(".lock")
        })
        .expect("the cluster's socket");
    assert_eq!(mode(&socket.path()), 0o700, "socket permissions 0700");
    let hba = std::fs::read_to_string(data.join("postgres/pg_hba.conf")).unwrap();
    let rules: Vec<&str> = hba
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .collect();
    assert!(rules.iter().all(|l| !l.contains("trust")), "{rules:?}");
    assert!(
        rules
            .iter()
            .any(|l| l.starts_with("local") && l.contains("peer")),
        "{rules:?}"
    );
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
