//! TLS to PostgreSQL: a throwaway cluster that accepts TLS connections only (`hostssl` in
//! pg_hba.conf), with a certificate from a throwaway CA naming `localhost` only. Each
//! `sslmode` does what libpq's does, and a server on `verify-full` serves calls.

use crate::{helpers::*, pg_cluster::Cluster, test_ca::*};
use std::{os::unix::fs::PermissionsExt, path::Path};

/// A running TLS-only cluster; stopped on drop (the cluster before its directory).
struct TlsCluster {
    cluster: Cluster,
    dir: tempfile::TempDir,
}

impl TlsCluster {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        test_ca(dir.path(), "DNS:localhost");
        let root = dir.path();
        let cluster = Cluster::new(root.join("pg"));
        std::fs::set_permissions(root.join("key.pem"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        for f in ["key.pem", "cert.pem"] {
            cluster.own(&root.join(f));
        }
        cluster.init();
        std::fs::write(
            cluster.pgdata.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhost all all 0.0.0.0/0 reject\n",
        )
        .unwrap();
        let p = |f: &str| root.join(f).to_string_lossy().into_owned();
        cluster.start(&format!(
            "-c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
            p("cert.pem"),
            p("key.pem"),
        ));
        Self { cluster, dir }
    }

    fn ca(&self) -> String {
        self.dir
            .path()
            .join("ca.pem")
            .to_string_lossy()
            .into_owned()
    }

    fn url(&self, host: &str, params: &str) -> String {
        self.cluster.url(host, params)
    }
}

async fn reaches(url: &str) -> Result<(), String> {
    epop::db::migrate(&epop::db::roles::Urls::single(url))
        .await
        .map_err(|e| format!("{e:#}"))
}

fn path_of(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_sslmode_connects_or_refuses_as_libpq_would_and_verify_full_serves() {
    let pg = TlsCluster::start();
    let ca = pg.ca();
    let root = format!("sslrootcert={ca}");

    // Plaintext is refused by the cluster (hostssl only).
    let plain = reaches(&pg.url("localhost", "sslmode=disable")).await;
    let plain = plain.expect_err("plaintext got in");
    assert!(plain.contains("no encryption"), "{plain}");
    // prefer (the default) and require encrypt without checking the certificate.
    reaches(&pg.url("localhost", "")).await.expect("prefer");
    reaches(&pg.url("127.0.0.1", "sslmode=require"))
        .await
        .expect("require");
    // verify-ca: the chain is checked, not the name (127.0.0.1 is not in the certificate).
    reaches(&pg.url("127.0.0.1", &format!("sslmode=verify-ca&{root}")))
        .await
        .expect("verify-ca");
    let other_ca = tempfile::tempdir().unwrap();
    test_ca(other_ca.path(), "DNS:localhost");
    let wrong_root = format!(
        "sslmode=verify-ca&sslrootcert={}",
        path_of(&other_ca.path().join("ca.pem"))
    );
    let err = reaches(&pg.url("localhost", &wrong_root))
        .await
        .unwrap_err();
    // Another CA of the same name: its key did not sign the certificate.
    assert!(
        err.contains("invalid peer certificate: BadSignature"),
        "{err}"
    );
    // verify-full: the name must match too.
    let err = reaches(&pg.url("127.0.0.1", &format!("sslmode=verify-full&{root}")))
        .await
        .unwrap_err();
    assert!(
        err.contains("certificate not valid for name \"127.0.0.1\""),
        "{err}"
    );
    let err = reaches(&pg.url("localhost", "sslmode=verify-full&sslrootcert=/nonexistent"))
        .await
        .unwrap_err();
    assert!(
        err.contains("cannot read sslrootcert /nonexistent"),
        "{err}"
    );
    let err = reaches(&pg.url("localhost", "sslmode=sometimes"))
        .await
        .unwrap_err();
    assert!(err.contains("sslmode `sometimes`"), "{err}");

    // A whole server on verify-full: it migrates, bootstraps its admin and serves calls,
    // all through its pool of TLS connections.
    let dir = tempfile::tempdir().unwrap();
    let db_name = format!(
        "epop_not_on_the_test_server_{}",
        uuid::Uuid::new_v4().simple()
    );
    let mut cfg = config(&db_name, dir.path());
    cfg.store.database_url = Some(
        pg.url("localhost", &format!("sslmode=verify-full&{root}"))
            .into(),
    );
    let app = TestApp::start(cfg, db_name).await;
    let token = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.access_token;
    let me = app.get_me(&token).await.expect("GetMe over a TLS pool");
    assert_eq!(me.email, ADMIN_EMAIL);
    app.stop().await;
}
