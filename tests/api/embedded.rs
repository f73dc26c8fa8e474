//! The embedded default database: initialised on first start, reused, stopped on shutdown.

use crate::helpers::ADMIN_EMAIL;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use epop::{app::App, config::Config};
use std::{os::unix::fs::PermissionsExt, time::Duration};

/// The name of this process's OS user (the embedded cluster's superuser).
fn whoami() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .unwrap()
        .unwrap()
        .name
}

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
    // The server serves as a role that only reads and writes rows (issue 34, item 14).
    let serving = format!(
        "host='{}' user='epop_app' dbname=epop",
        data.join("postgres-run").display()
    );
    crate::db_roles::only_reads_and_writes_rows(&serving).await;
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
    // Every connection of the server to the cluster is the serving role's.
    let owner = serving.replace("user='epop_app'", &format!("user='{}'", whoami()));
    let mut conn = AsyncPgConnection::establish(&owner).await.unwrap();
    #[derive(diesel::QueryableByName)]
    struct Who {
        #[diesel(sql_type = diesel::sql_types::Text)]
        usename: String,
    }
    let who: Vec<Who> = diesel::sql_query(
        "SELECT DISTINCT usename::text AS usename FROM pg_stat_activity \
         WHERE datname = 'epop' AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
    )
    .load(&mut conn)
    .await
    .unwrap();
    let who: Vec<String> = who.into_iter().map(|w| w.usename).collect();
    assert_eq!(who, ["epop_app"]);
    drop(conn);
    stop.cancel();
    run.await.unwrap().unwrap();
    assert!(!pid_file.exists());
}

/// The postmaster's process id, from `postmaster.pid` under `data`.
fn postmaster(data: &std::path::Path) -> i32 {
    let text = std::fs::read_to_string(data.join("postgres/postmaster.pid")).unwrap();
    text.lines().next().unwrap().trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_embedded_postgres_is_started_again_and_a_server_whose_cluster_died_stops_cleanly()
{
    use nix::{sys::signal, unistd::Pid};
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = dir.path().join("data");
    let mut c = Config::with_defaults(data.clone(), None);
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.admin_email = ADMIN_EMAIL.into();
    c.admin_password = Some("admin-password-1".to_owned().into());
    c.shutdown_grace = Duration::from_secs(5);
    let app = App::build(c).await.expect("start");
    let url = format!("http://{}", app.local_addr());
    let stop = app.stop_token();
    let run = tokio::spawn(app.run_until_stopped());
    let http = reqwest::Client::new();
    let ready = async || {
        http.get(format!("{url}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    };
    let login = async || {
        let mut auth = epop::pb::auth_service_client::AuthServiceClient::connect(url.clone())
            .await
            .unwrap();
        auth.login(epop::pb::LoginRequest {
            email: ADMIN_EMAIL.into(),
            password: "admin-password-1".into(),
            return_refresh_token: false,
        })
        .await
        .is_ok()
    };
    for _ in 0..50 {
        if ready().await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(login().await, "signs in before");

    // The postmaster dies: the server starts it again by itself.
    let first = postmaster(&data);
    signal::kill(Pid::from_raw(first), signal::Signal::SIGKILL).unwrap();
    let killed = std::time::Instant::now();
    let mut back = None;
    while killed.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if ready().await && login().await {
            back = Some(killed.elapsed());
            break;
        }
    }
    let back = back.expect("the service came back within a minute");
    eprintln!("service back {back:?} after the postmaster was killed");
    assert_ne!(postmaster(&data), first, "a new postmaster");
    // Counted once `pg_ctl start` has returned, which may be a moment after the cluster
    // accepts connections (it polls): wait for it rather than race it.
    let mut restarts = None;
    for _ in 0..50 {
        let metrics = http
            .get(format!("{url}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        restarts = metrics
            .lines()
            .find(|l| l.starts_with("epop_embedded_postgres_restarts_total "))
            .map(str::to_owned);
        if restarts.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        restarts.as_deref(),
        Some("epop_embedded_postgres_restarts_total 1"),
        "counted once"
    );

    // It dies again, and the server is stopped at once: a clean stop, not an error.
    signal::kill(Pid::from_raw(postmaster(&data)), signal::Signal::SIGKILL).unwrap();
    stop.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("it stops")
        .unwrap();
    assert!(stopped.is_ok(), "{stopped:?}");
    // Nothing of the cluster runs afterwards (a restart in flight was stopped too).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let left = std::fs::read_to_string(data.join("postgres/postmaster.pid"))
        .ok()
        .and_then(|t| t.lines().next()?.trim().parse::<i32>().ok())
        .filter(|pid| signal::kill(Pid::from_raw(*pid), None).is_ok());
    assert_eq!(left, None, "a postmaster outlived the server");
}
