//! Least privilege on the database (issue 34, item 14): migrations run as the owner, the
//! server serves as a role that can only read and write rows, so it cannot drop or disable
//! the audit log's append-only trigger. Embedded mode: tests/api/embedded.rs.

use crate::helpers::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

/// What a serving role must not be able to do, and the error PostgreSQL gives.
pub const FORBIDDEN: [&str; 6] = [
    "DROP TRIGGER audit_log_no_update_or_delete ON audit_log",
    "ALTER TABLE audit_log DISABLE TRIGGER ALL",
    "UPDATE audit_log SET action = action",
    "DELETE FROM audit_log",
    "TRUNCATE audit_log",
    "CREATE TABLE intruder (id int)",
];

/// Checks that `url`'s role can read and append to the audit log and do none of
/// [`FORBIDDEN`].
pub async fn only_reads_and_writes_rows(url: &str) {
    let mut conn = AsyncPgConnection::establish(url)
        .await
        .expect("the serving role signs in");
    diesel::sql_query("SELECT id FROM audit_log LIMIT 1")
        .execute(&mut conn)
        .await
        .expect("it reads the audit log");
    for sql in FORBIDDEN {
        let e = diesel::sql_query(sql)
            .execute(&mut conn)
            .await
            .expect_err(sql)
            .to_string();
        assert!(
            e.contains("permission denied") || e.contains("must be owner"),
            "{sql}: {e}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_migration_url_the_server_serves_as_a_role_that_only_reads_and_writes_rows() {
    let db_name = format!("epop_test_{}", uuid::Uuid::new_v4().simple());
    admin_sql(&format!("CREATE DATABASE {db_name}")).await;
    let role = format!(
        "epop_serving_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    admin_sql(&format!("CREATE ROLE {role} LOGIN")).await;
    let owner = database_url(&db_name);
    let (scheme, rest) = owner.split_once("://").unwrap();
    let (_, host_and_db) = rest.split_once('@').unwrap();
    let serving = format!("{scheme}://{role}@{host_and_db}");
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&db_name, dir.path());
    cfg.store.database_url = Some(serving.clone().into());
    cfg.store.migration_database_url = Some(owner.into());
    let app = TestApp::start(cfg, db_name).await;
    // It serves: sign-ins (written to the audit log) and admin work.
    let token = app.admin_token().await;
    app.create_user("ann@example.com", "a long password 1", epop::pb::Role::User)
        .await;
    assert!(app.get_me(&token).await.is_ok());
    only_reads_and_writes_rows(&serving).await;
    drop(app);
    admin_sql(&format!("DROP ROLE IF EXISTS {role}")).await;
}
