//! Task reminders: scheduled through the jobs table, rescheduled, cancelled, and sent exactly
//! once across a restart.

use crate::helpers::*;
use diesel::{
    QueryableByName,
    sql_types::{Bool, Text},
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use epop::pb::{
    self, project_service_client::ProjectServiceClient, task_service_client::TaskServiceClient,
};
use std::time::Duration;

#[derive(QueryableByName, Debug, PartialEq)]
struct Job {
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Text)]
    run_at: String,
    #[diesel(sql_type = Bool)]
    for_task: bool,
}

/// The reminder jobs, oldest first: status, run time (UTC, to the second), for this task.
async fn reminders(app: &TestApp, task: &str) -> Vec<(String, String)> {
    let mut conn = AsyncPgConnection::establish(&database_url(&app.db_name))
        .await
        .unwrap();
    let jobs: Vec<Job> = diesel::sql_query(format!(
        "SELECT status, to_char(run_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') AS run_at, \
         key = 'task:{task}' AS for_task FROM jobs WHERE kind = 'task_reminder' ORDER BY id"
    ))
    .load(&mut conn)
    .await
    .unwrap();
    assert!(jobs.iter().all(|j| j.for_task));
    jobs.into_iter().map(|j| (j.status, j.run_at)).collect()
}

fn day(days: i64) -> chrono::NaiveDate {
    chrono::Utc::now().date_naive() + chrono::Duration::days(days)
}

/// Signs in a new user, makes a project, returns (user id, token, project id).
async fn board(app: &TestApp) -> (String, String, String) {
    let u = app
        .create_user("rita@example.com", "rita-password-1", pb::Role::User)
        .await;
    let t = app
        .login("rita@example.com", "rita-password-1")
        .await
        .access_token;
    let p = ProjectServiceClient::new(app.channel().await)
        .create_project(authed(
            pb::CreateProjectRequest {
                name: "R".into(),
                description: String::new(),
            },
            &t,
        ))
        .await
        .unwrap()
        .into_inner();
    (u.id, t, p.id)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reminder_is_scheduled_rescheduled_and_cancelled_with_its_task() {
    let app = TestApp::spawn().await; // default lead: 24 h before the due day
    let (rita, t, p) = board(&app).await;
    let mut c = TaskServiceClient::new(app.channel().await);
    let task = c
        .create_task(authed(
            pb::CreateTaskRequest {
                project_id: p,
                title: "Report".into(),
                assignee_id: rita.clone(),
                due_date: day(10).to_string(),
                ..Default::default()
            },
            &t,
        ))
        .await
        .unwrap()
        .into_inner();
    let at = |d: i64| format!("{} 00:00", day(d - 1));
    assert_eq!(
        reminders(&app, &task.id).await,
        [("pending".into(), at(10))]
    );

    let update = |r: pb::UpdateTaskRequest| {
        authed(
            pb::UpdateTaskRequest {
                id: task.id.clone(),
                ..r
            },
            &t,
        )
    };
    c.update_task(update(pb::UpdateTaskRequest {
        due_date: Some(day(20).to_string()),
        ..Default::default()
    }))
    .await
    .unwrap();
    assert_eq!(
        reminders(&app, &task.id).await,
        [("cancelled".into(), at(10)), ("pending".into(), at(20))]
    );
    c.update_task(update(pb::UpdateTaskRequest {
        title: Some("Report v2".into()),
        ..Default::default()
    }))
    .await
    .unwrap();
    assert_eq!(
        reminders(&app, &task.id).await.len(),
        2,
        "a new title does not touch the reminder"
    );
    c.update_task(update(pb::UpdateTaskRequest {
        status: Some(pb::TaskStatus::Done.into()),
        ..Default::default()
    }))
    .await
    .unwrap();
    assert_eq!(
        reminders(&app, &task.id).await[1].0,
        "cancelled",
        "done tasks need no reminder"
    );
    c.update_task(update(pb::UpdateTaskRequest {
        status: Some(pb::TaskStatus::Todo.into()),
        ..Default::default()
    }))
    .await
    .unwrap();
    assert_eq!(
        reminders(&app, &task.id).await[2],
        ("pending".into(), at(20)),
        "reopened"
    );
    c.update_task(update(pb::UpdateTaskRequest {
        assignee_id: Some(String::new()),
        ..Default::default()
    }))
    .await
    .unwrap();
    assert_eq!(
        reminders(&app, &task.id).await[2].0,
        "cancelled",
        "unassigned tasks need none"
    );
    c.update_task(update(pb::UpdateTaskRequest {
        assignee_id: Some(rita),
        ..Default::default()
    }))
    .await
    .unwrap();
    c.delete_task(authed(
        pb::DeleteTaskRequest {
            id: task.id.clone(),
        },
        &t,
    ))
    .await
    .unwrap();
    let all = reminders(&app, &task.id).await;
    assert_eq!(all.len(), 4);
    assert!(all.iter().all(|(s, _)| s == "cancelled"), "{all:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_due_reminder_is_emailed_once_and_not_again_after_a_restart() {
    let lead = Duration::from_secs(30 * 24 * 3600);
    let app = TestApp::spawn_with(|c| c.reminder_lead = lead).await;
    let (rita, t, p) = board(&app).await;
    let task = TaskServiceClient::new(app.channel().await)
        .create_task(authed(
            pb::CreateTaskRequest {
                project_id: p,
                title: "Ship it".into(),
                assignee_id: rita,
                due_date: day(2).to_string(),
                ..Default::default()
            },
            &t,
        ))
        .await
        .unwrap()
        .into_inner();
    let emails = app.wait_for_emails(1).await;
    assert!(emails[0].contains("To: rita@example.com"));
    assert!(
        emails[0].contains("Subject: Reminder: \"Ship it\" is due"),
        "{}",
        emails[0]
    );
    assert_eq!(reminders(&app, &task.id).await[0].0, "done");

    let data_dir = app.data_dir.clone();
    let (db, dir) = app.stop().await;
    let mut cfg = config(&db, &data_dir);
    cfg.reminder_lead = lead;
    let app = TestApp::start(cfg, db).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(app.email_count(), 1, "sent exactly once");
    drop(dir);
}
