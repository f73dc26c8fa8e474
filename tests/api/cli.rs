//! The `epop` command as containers use it (issue 35): empty settings count as unset, and
//! `epop health` is the healthcheck (the image needs no curl).

use crate::helpers::*;

fn health(url: &str) -> bool {
    std::process::Command::new(env!("CARGO_BIN_EXE_epop"))
        .args(["health", "--url", url, "--timeout", "2s"])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_settings_count_as_unset_and_health_reports_readiness() {
    let db = format!("epop_test_{}", uuid::Uuid::new_v4().simple());
    admin_sql(&format!("CREATE DATABASE {db}")).await;
    // As an env file with `EPOP_ADMIN_PASSWORD=` hands them over: before, the server refused
    // the empty password and exited (a restart loop under compose).
    let (mut child, url, _dir) = spawn_process(
        &db,
        &[
            ("EPOP_ADMIN_PASSWORD", ""),
            ("EPOP_CORS_ORIGINS", ""),
            ("REDIS_URL", ""),
            ("EPOP_SMTP_URL", ""),
        ],
    )
    .await;
    assert!(health(&format!("{url}/readyz")), "ready");
    assert!(health(&format!("{url}/healthz")), "alive");
    assert!(
        !health(&format!("{url}/no-such-probe")),
        "404 is not healthy"
    );
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        !health(&format!("{url}/readyz")),
        "a stopped server is not healthy"
    );
    admin_sql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).await;
}
