//! The durable jobs table: a job survives a restart and is sent exactly once.

use crate::helpers::*;
use epop::pb;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn jobs_left_by_a_stopped_or_crashed_worker_run_once_after_a_restart() {
    let app = TestApp::spawn().await;
    let user = app
        .create_user("job@example.com", "job-password-1", pb::Role::User)
        .await;
    let data_dir = app.data_dir.clone();
    let (db, dir) = app.stop().await;

    // While no server runs: one reset request committed but never picked up, and one that a
    // worker claimed and then died on (its lease has run out).
    db_sql(&db, &format!(
        "INSERT INTO jobs (kind, payload) VALUES ('password_reset_email', '{{\"user_id\": \"{}\"}}')",
        user.id
    ))
    .await;
    db_sql(
        &db,
        &format!(
            "INSERT INTO jobs (kind, payload, attempts, locked_until) VALUES \
         ('password_reset_email', '{{\"user_id\": \"{}\"}}', 1, now() - interval '1 second')",
            user.id
        ),
    )
    .await;

    let app = TestApp::start(config(&db, &data_dir), db.clone()).await;
    let emails = app.wait_for_emails(2).await;
    assert!(emails.iter().all(|e| e.contains("To: job@example.com")));
    let codes: Vec<String> = emails.iter().map(|e| reset_code(e)).collect();
    assert_ne!(codes[0], codes[1]);
    // They hold reset codes: readable by the server's account only.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data_dir.join("mail")), 0o700);
    for e in std::fs::read_dir(data_dir.join("mail")).unwrap().flatten() {
        assert_eq!(mode(&e.path()), 0o600, "{}", e.path().display());
    }

    // Both are done: another restart sends nothing more.
    let (db, _) = app.stop().await;
    let app = TestApp::start(config(&db, &data_dir), db).await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(app.email_count(), 2);
    drop(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_job_is_retried_later_with_its_error_recorded() {
    use diesel::{
        QueryableByName,
        sql_types::{BigInt, Bool, Integer, Text},
    };
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    #[derive(QueryableByName, Debug)]
    struct Row {
        #[diesel(sql_type = Text)]
        status: String,
        #[diesel(sql_type = Integer)]
        attempts: i32,
        #[diesel(sql_type = Text)]
        last_error: String,
        #[diesel(sql_type = Bool)]
        later: bool,
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let app = TestApp::spawn().await;
    // A payload the handler cannot read: the job fails on every attempt.
    db_sql(
        &app.db_name,
        "INSERT INTO jobs (kind, payload) VALUES ('password_reset_email', '{\"user_id\": 7}')",
    )
    .await;
    let mut conn = AsyncPgConnection::establish(&database_url(&app.db_name))
        .await
        .unwrap();
    let mut row = None;
    for _ in 0..50 {
        let r: Row = diesel::sql_query(
            "SELECT status, attempts, coalesce(last_error, '') AS last_error, run_at > now() AS later, count(*) OVER () AS n FROM jobs",
        )
        .get_result(&mut conn)
        .await
        .unwrap();
        if r.attempts > 0 && !r.last_error.is_empty() {
            row = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let row = row.expect("the worker tried the job");
    assert_eq!(
        (row.status.as_str(), row.attempts, row.n),
        ("pending", 1, 1)
    );
    assert!(row.later, "the retry waits for its backoff");
    assert!(row.last_error.contains("payload"), "{}", row.last_error);
    assert_eq!(app.email_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_whose_lease_lapsed_cannot_finish_or_fail_a_job_another_worker_claimed() {
    use diesel_async::{AsyncConnection, AsyncPgConnection};
    use epop::db::jobs;
    // No server: two "workers" claim by hand on a fresh database.
    let db_name = format!("epop_test_{}", uuid::Uuid::new_v4().simple());
    admin_sql(&format!("CREATE DATABASE {db_name}")).await;
    let url = database_url(&db_name);
    epop::db::migrate(&epop::db::roles::Urls::single(&url))
        .await
        .unwrap();
    let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
    let job = epop::domain::jobs::Job::MessageDigest {
        user_id: uuid::Uuid::nil(),
    };
    jobs::enqueue(&mut conn, &job, None).await.unwrap();
    let first = jobs::claim(&mut conn, 1, Duration::ZERO).await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    // The first lease lapsed: the second worker takes the job.
    let second = jobs::claim(&mut conn, 1, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!((first.len(), second.len()), (1, 1));
    assert_eq!(first[0].id, second[0].id);
    let later = chrono::Utc::now();
    assert!(!jobs::finish(&mut conn, &first[0]).await.unwrap());
    assert!(
        !jobs::fail(&mut conn, &first[0], "late", later)
            .await
            .unwrap()
    );
    assert!(jobs::finish(&mut conn, &second[0]).await.unwrap());
    drop(conn);
    admin_sql(&format!("DROP DATABASE {db_name} WITH (FORCE)")).await;
}
