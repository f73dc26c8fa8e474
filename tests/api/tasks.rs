//! TaskService: tasks of a project, filters and paging, optimistic concurrency, who may do
//! what, and due-date reminders.

use crate::helpers::*;
use epop::pb::{
    self, project_service_client::ProjectServiceClient, task_service_client::TaskServiceClient,
};
use prost_types::FieldMask;
use tonic::{Code, transport::Channel};

async fn tasks(app: &TestApp) -> TaskServiceClient<Channel> {
    TaskServiceClient::new(app.channel().await)
}

/// A project owned by `token`'s user, with extra members: its id.
pub(crate) async fn project(
    app: &TestApp,
    token: &str,
    members: &[(&str, pb::ProjectRole)],
) -> String {
    let mut c = ProjectServiceClient::new(app.channel().await);
    let p = c
        .create_project(authed(
            pb::CreateProjectRequest {
                name: "Board".into(),
                description: String::new(),
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner();
    for (user, role) in members {
        c.add_project_member(authed(
            pb::AddProjectMemberRequest {
                project_id: p.id.clone(),
                user_id: (*user).into(),
                role: (*role).into(),
            },
            token,
        ))
        .await
        .unwrap();
    }
    p.id
}

pub(crate) fn new_task(project: &str, title: &str) -> pb::CreateTaskRequest {
    pb::CreateTaskRequest {
        project_id: project.into(),
        title: title.into(),
        ..Default::default()
    }
}

fn date_in(days: i64) -> String {
    (chrono::Utc::now().date_naive() + chrono::Duration::days(days)).to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_is_created_read_updated_with_its_etag_and_deleted() {
    let app = TestApp::spawn().await;
    let (ann_id, ann) = user(&app, "ann").await;
    let p = project(&app, &ann, &[]).await;
    let mut c = tasks(&app).await;
    let t = c
        .create_task(authed(
            pb::CreateTaskRequest {
                assignee_id: ann_id.clone(),
                due_date: "2031-05-01".into(),
                ..new_task(&p, " Write spec ")
            },
            &ann,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (t.title.as_str(), t.status, t.due_date.as_str()),
        ("Write spec", pb::TaskStatus::Todo as i32, "2031-05-01")
    );
    let got = c
        .get_task(authed(pb::GetTaskRequest { id: t.id.clone() }, &ann))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, t);

    let update = |etag: &str, status: pb::TaskStatus| pb::UpdateTaskRequest {
        id: t.id.clone(),
        update_mask: Some(FieldMask {
            paths: vec!["status".into()],
        }),
        status: Some(status.into()),
        title: Some("ignored".into()),
        etag: etag.into(),
        ..Default::default()
    };
    let moved = c
        .update_task(authed(update(&t.etag, pb::TaskStatus::InProgress), &ann))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (moved.status, moved.title.as_str()),
        (pb::TaskStatus::InProgress as i32, "Write spec")
    );
    assert_ne!(moved.etag, t.etag);
    // A second editor still holding the old etag cannot overwrite silently.
    let stale = c
        .update_task(authed(update(&t.etag, pb::TaskStatus::Done), &ann))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    let fresh = c
        .get_task(authed(pb::GetTaskRequest { id: t.id.clone() }, &ann))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        fresh.status,
        pb::TaskStatus::InProgress as i32,
        "the stale write changed nothing"
    );
    // Without an etag, the last write wins (for clients that do not care).
    c.update_task(authed(update("", pb::TaskStatus::Done), &ann))
        .await
        .unwrap();

    c.delete_task(authed(pb::DeleteTaskRequest { id: t.id.clone() }, &ann))
        .await
        .unwrap();
    let gone = c
        .get_task(authed(pb::GetTaskRequest { id: t.id }, &ann))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn assignees_must_be_members_viewers_only_read_and_outsiders_see_nothing() {
    let app = TestApp::spawn().await;
    let (_, owner) = user(&app, "owner").await;
    let (viewer_id, viewer) = user(&app, "viewer").await;
    let (outsider_id, outsider) = user(&app, "outsider").await;
    let p = project(&app, &owner, &[(&viewer_id, pb::ProjectRole::Viewer)]).await;
    let mut c = tasks(&app).await;
    let bad = c
        .create_task(authed(
            pb::CreateTaskRequest {
                assignee_id: outsider_id.clone(),
                ..new_task(&p, "x")
            },
            &owner,
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&bad), ["assignee_id"]);
    let t = c
        .create_task(authed(new_task(&p, "Real"), &owner))
        .await
        .unwrap()
        .into_inner();
    let denied = c
        .create_task(authed(new_task(&p, "by viewer"), &viewer))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    c.get_task(authed(pb::GetTaskRequest { id: t.id.clone() }, &viewer))
        .await
        .unwrap();

    let hidden = c
        .get_task(authed(pb::GetTaskRequest { id: t.id.clone() }, &outsider))
        .await
        .unwrap_err();
    let missing = c
        .get_task(authed(
            pb::GetTaskRequest {
                id: uuid::Uuid::new_v4().to_string(),
            },
            &outsider,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (hidden.code(), hidden.message()),
        (missing.code(), missing.message())
    );
    let list = c
        .list_tasks(authed(
            pb::ListTasksRequest {
                project_id: p.clone(),
                ..Default::default()
            },
            &outsider,
        ))
        .await
        .unwrap_err();
    assert_eq!(list.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn filters_sorts_and_pages_stay_stable_while_tasks_are_added() {
    let app = TestApp::spawn().await;
    let (bo_id, bo) = user(&app, "bo").await;
    let p = project(&app, &bo, &[]).await;
    let mut c = tasks(&app).await;
    for (i, title) in ["delta", "alpha", "echo", "charlie", "bravo"]
        .iter()
        .enumerate()
    {
        c.create_task(authed(
            pb::CreateTaskRequest {
                due_date: if i % 2 == 0 {
                    date_in(i as i64 + 1)
                } else {
                    String::new()
                },
                assignee_id: if i < 2 { bo_id.clone() } else { String::new() },
                status: if i == 4 {
                    pb::TaskStatus::Done.into()
                } else {
                    0
                },
                description: if title == &"echo" {
                    "needle in here".into()
                } else {
                    String::new()
                },
                ..new_task(&p, title)
            },
            &bo,
        ))
        .await
        .unwrap();
    }
    let list = |extra: pb::ListTasksRequest| pb::ListTasksRequest {
        project_id: p.clone(),
        ..extra
    };
    let titles =
        |r: pb::ListTasksResponse| r.tasks.into_iter().map(|t| t.title).collect::<Vec<_>>();

    let by_title = c
        .list_tasks(authed(
            list(pb::ListTasksRequest {
                order_by: "title".into(),
                ..Default::default()
            }),
            &bo,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        titles(by_title),
        ["alpha", "bravo", "charlie", "delta", "echo"]
    );
    let by_due = c
        .list_tasks(authed(
            list(pb::ListTasksRequest {
                order_by: "due_date desc".into(),
                ..Default::default()
            }),
            &bo,
        ))
        .await
        .unwrap()
        .into_inner();
    // No due date sorts last, so first when descending (those two tie; the id decides).
    let mut by_due = titles(by_due);
    by_due[..2].sort();
    assert_eq!(by_due, ["alpha", "charlie", "bravo", "echo", "delta"]);
    let done = c
        .list_tasks(authed(
            list(pb::ListTasksRequest {
                status: vec![pb::TaskStatus::Done.into()],
                ..Default::default()
            }),
            &bo,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(titles(done), ["bravo"]);
    let mine = c
        .list_tasks(authed(
            list(pb::ListTasksRequest {
                assignee_id: bo_id.clone(),
                order_by: "title".into(),
                ..Default::default()
            }),
            &bo,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(titles(mine), ["alpha", "delta"]);
    let soon = c
        .list_tasks(authed(
            list(pb::ListTasksRequest {
                due_before: date_in(3),
                order_by: "title".into(),
                ..Default::default()
            }),
            &bo,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(titles(soon), ["delta", "echo"]);
    let found = c
        .list_tasks(authed(
            list(pb::ListTasksRequest {
                query: "NEEDLE".into(),
                ..Default::default()
            }),
            &bo,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(titles(found), ["echo"]);
    let bad = c
        .list_tasks(authed(
            list(pb::ListTasksRequest {
                order_by: "colour".into(),
                ..Default::default()
            }),
            &bo,
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&bad), ["order_by"]);

    // Page through by title while new tasks keep arriving: every task that existed at the
    // start is seen exactly once, in order.
    let mut seen = vec![];
    let mut token = String::new();
    let mut added = 0;
    loop {
        let page = c
            .list_tasks(authed(
                list(pb::ListTasksRequest {
                    order_by: "title".into(),
                    page_size: 2,
                    page_token: token,
                    ..Default::default()
                }),
                &bo,
            ))
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.tasks.into_iter().map(|t| t.title));
        c.create_task(authed(new_task(&p, &format!("aaa new {added}")), &bo))
            .await
            .unwrap();
        added += 1;
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        seen,
        ["aaa new 0", "alpha", "bravo", "charlie", "delta", "echo"].map(String::from)[1..]
    );
    let other_order = c
        .list_tasks(authed(
            list(pb::ListTasksRequest {
                order_by: "status".into(),
                page_size: 1,
                ..Default::default()
            }),
            &bo,
        ))
        .await
        .unwrap()
        .into_inner()
        .next_page_token;
    let mixed = c
        .list_tasks(authed(
            list(pb::ListTasksRequest {
                order_by: "title".into(),
                page_token: other_order,
                ..Default::default()
            }),
            &bo,
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&mixed), ["page_token"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_task_authorization_matrix_gives_every_caller_the_exact_answer() {
    use Code::{NotFound as NF, Ok as OK, PermissionDenied as PD, Unauthenticated as UA};
    let app = TestApp::spawn().await;
    let (_, owner) = user(&app, "owner").await;
    let (manager_id, manager) = user(&app, "manager").await;
    let (member_id, member) = user(&app, "member").await;
    let (viewer_id, viewer) = user(&app, "viewer").await;
    let (_, outsider) = user(&app, "outsider").await;
    let admin = app.admin_token().await;
    let who = [
        "anonymous",
        "non-member",
        "viewer",
        "member",
        "manager",
        "owner",
        "admin",
    ];
    let tokens = [
        String::new(),
        outsider,
        viewer,
        member,
        manager,
        owner.clone(),
        admin,
    ];
    let p = project(
        &app,
        &owner,
        &[
            (&manager_id, pb::ProjectRole::Manager),
            (&member_id, pb::ProjectRole::Member),
            (&viewer_id, pb::ProjectRole::Viewer),
        ],
    )
    .await;
    let rows: [(&str, [Code; 7]); 5] = [
        ("ListTasks", [UA, NF, OK, OK, OK, OK, OK]),
        ("GetTask", [UA, NF, OK, OK, OK, OK, OK]),
        ("CreateTask", [UA, NF, PD, OK, OK, OK, OK]),
        ("UpdateTask", [UA, NF, PD, OK, OK, OK, OK]),
        ("DeleteTask", [UA, NF, PD, OK, OK, OK, OK]),
    ];
    let mut c = tasks(&app).await;
    for (rpc, expected) in rows {
        for (i, want) in expected.iter().enumerate() {
            let t = c
                .create_task(authed(new_task(&p, "cell"), &owner))
                .await
                .unwrap()
                .into_inner();
            let tok = &tokens[i];
            let got = match rpc {
                "ListTasks" => c
                    .list_tasks(call(
                        tok,
                        pb::ListTasksRequest {
                            project_id: p.clone(),
                            ..Default::default()
                        },
                    ))
                    .await
                    .map(|_| ()),
                "GetTask" => c
                    .get_task(call(tok, pb::GetTaskRequest { id: t.id }))
                    .await
                    .map(|_| ()),
                "CreateTask" => c
                    .create_task(call(tok, new_task(&p, "new")))
                    .await
                    .map(|_| ()),
                "UpdateTask" => c
                    .update_task(call(
                        tok,
                        pb::UpdateTaskRequest {
                            id: t.id,
                            title: Some("t".into()),
                            ..Default::default()
                        },
                    ))
                    .await
                    .map(|_| ()),
                _ => c
                    .delete_task(call(tok, pb::DeleteTaskRequest { id: t.id }))
                    .await
                    .map(|_| ()),
            };
            assert_eq!(
                got.err().map_or(Code::Ok, |s| s.code()),
                *want,
                "{rpc} as {}",
                who[i]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_task_routes_work_over_rest_and_a_stale_etag_is_a_409() {
    use serde_json::{Value, json};
    let app = TestApp::spawn().await;
    let (_, t) = user(&app, "rest").await;
    let p = project(&app, &t, &[]).await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", app.url());
    let created: Value = http
        .post(url("/api/tasks"))
        .bearer_auth(&t)
        .json(&json!({ "projectId": p, "title": "Over REST", "status": "TASK_STATUS_IN_REVIEW", "dueDate": "2031-01-02" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["status"], "TASK_STATUS_IN_REVIEW");
    let listed: Value = http
        .get(url(&format!(
            "/api/tasks?projectId={p}&status=TASK_STATUS_IN_REVIEW"
        )))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["tasks"][0]["id"], id);
    let put = http
        .put(url(&format!("/api/tasks/{id}")))
        .bearer_auth(&t)
        .json(&json!({ "status": "TASK_STATUS_DONE", "etag": created["etag"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let stale = http
        .put(url(&format!("/api/tasks/{id}")))
        .bearer_auth(&t)
        .json(&json!({ "title": "late", "etag": created["etag"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 409);
    assert_eq!(stale.json::<Value>().await.unwrap()["code"], 10);
}
