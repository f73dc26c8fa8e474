//! ProjectService: projects, members, the role rules, and who gets which answer.

use crate::helpers::*;
use epop::pb::{self, project_service_client::ProjectServiceClient};
use prost_types::FieldMask;
use tonic::{Code, transport::Channel};

async fn projects(app: &TestApp) -> ProjectServiceClient<Channel> {
    ProjectServiceClient::new(app.channel().await)
}

async fn create(app: &TestApp, token: &str, name: &str) -> pb::Project {
    projects(app)
        .await
        .create_project(authed(
            pb::CreateProjectRequest {
                name: name.into(),
                description: format!("about {name}"),
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner()
}

async fn add(
    app: &TestApp,
    token: &str,
    project: &str,
    user: &str,
    role: pb::ProjectRole,
) -> Result<pb::ProjectMember, tonic::Status> {
    projects(app)
        .await
        .add_project_member(authed(
            pb::AddProjectMemberRequest {
                project_id: project.into(),
                user_id: user.into(),
                role: role.into(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_project_is_created_read_updated_listed_and_deleted() {
    let app = TestApp::spawn().await;
    let (_, t) = user(&app, "olga").await;
    let p = create(&app, &t, " Apollo ").await;
    assert_eq!(
        (p.name.as_str(), p.member_count, p.my_role),
        ("Apollo", 1, pb::ProjectRole::Owner as i32)
    );
    let mut c = projects(&app).await;
    let got = c
        .get_project(authed(pb::GetProjectRequest { id: p.id.clone() }, &t))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, p);
    let updated = c
        .update_project(authed(
            pb::UpdateProjectRequest {
                id: p.id.clone(),
                update_mask: Some(FieldMask {
                    paths: vec!["description".into()],
                }),
                name: Some("ignored".into()),
                description: Some("to the moon".into()),
            },
            &t,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (updated.name.as_str(), updated.description.as_str()),
        ("Apollo", "to the moon")
    );
    for name in ["Gemini", "Mercury", "Artemis"] {
        create(&app, &t, name).await;
    }
    let mut names = vec![];
    let mut token = String::new();
    loop {
        let page = c
            .list_projects(authed(
                pb::ListProjectsRequest {
                    page_size: 3,
                    page_token: token,
                    ..Default::default()
                },
                &t,
            ))
            .await
            .unwrap()
            .into_inner();
        names.extend(page.projects.into_iter().map(|p| p.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(names, ["Apollo", "Artemis", "Gemini", "Mercury"]);
    let found = c
        .list_projects(authed(
            pb::ListProjectsRequest {
                query: "MOON".into(),
                ..Default::default()
            },
            &t,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.projects.len(), 1);

    c.delete_project(authed(pb::DeleteProjectRequest { id: p.id.clone() }, &t))
        .await
        .unwrap();
    let gone = c
        .get_project(authed(pb::GetProjectRequest { id: p.id }, &t))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn outsiders_get_not_found_and_only_admins_list_every_project() {
    let app = TestApp::spawn().await;
    let (_, owner) = user(&app, "owner").await;
    let (_, outsider) = user(&app, "outsider").await;
    let p = create(&app, &owner, "Secret").await;
    let mut c = projects(&app).await;
    let hidden = c
        .get_project(authed(
            pb::GetProjectRequest { id: p.id.clone() },
            &outsider,
        ))
        .await
        .unwrap_err();
    let missing = c
        .get_project(authed(
            pb::GetProjectRequest {
                id: uuid::Uuid::new_v4().to_string(),
            },
            &outsider,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (hidden.code(), hidden.message()),
        (missing.code(), missing.message()),
        "no difference to learn from"
    );
    let mine = c
        .list_projects(authed(pb::ListProjectsRequest::default(), &outsider))
        .await
        .unwrap()
        .into_inner();
    assert!(mine.projects.is_empty());
    let all = c
        .list_projects(authed(
            pb::ListProjectsRequest {
                all: true,
                ..Default::default()
            },
            &outsider,
        ))
        .await
        .unwrap_err();
    assert_eq!(all.code(), Code::PermissionDenied);
    let admin = app.admin_token().await;
    let all = c
        .list_projects(authed(
            pb::ListProjectsRequest {
                all: true,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.projects.len(), 1);
    assert_eq!(all.projects[0].my_role, pb::ProjectRole::Unspecified as i32);
    let bad = c
        .get_project(authed(pb::GetProjectRequest { id: "nope".into() }, &owner))
        .await
        .unwrap_err();
    assert_eq!(violations(&bad), ["id"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_project_always_keeps_an_owner_and_managers_cannot_touch_owners() {
    let app = TestApp::spawn().await;
    let (owner_id, owner) = user(&app, "first").await;
    let (manager_id, manager) = user(&app, "manager").await;
    let p = create(&app, &owner, "Keep").await;
    add(&app, &owner, &p.id, &manager_id, pb::ProjectRole::Manager)
        .await
        .unwrap();
    let mut c = projects(&app).await;
    let set = |user: &str, role: pb::ProjectRole| pb::UpdateProjectMemberRequest {
        project_id: p.id.clone(),
        user_id: user.into(),
        role: role.into(),
    };
    let remove = |user: &str| pb::RemoveProjectMemberRequest {
        project_id: p.id.clone(),
        user_id: user.into(),
    };

    let demote = c
        .update_project_member(authed(set(&owner_id, pb::ProjectRole::Member), &owner))
        .await
        .unwrap_err();
    assert_eq!(demote.code(), Code::FailedPrecondition);
    let leave = c
        .remove_project_member(authed(remove(&owner_id), &owner))
        .await
        .unwrap_err();
    assert_eq!(leave.code(), Code::FailedPrecondition);
    let by_manager = c
        .update_project_member(authed(set(&owner_id, pb::ProjectRole::Viewer), &manager))
        .await
        .unwrap_err();
    assert_eq!(by_manager.code(), Code::PermissionDenied);
    let promote_self = c
        .update_project_member(authed(set(&manager_id, pb::ProjectRole::Owner), &manager))
        .await
        .unwrap_err();
    assert_eq!(promote_self.code(), Code::PermissionDenied);

    // With a second owner, the first may leave.
    c.update_project_member(authed(set(&manager_id, pb::ProjectRole::Owner), &owner))
        .await
        .unwrap();
    c.remove_project_member(authed(remove(&owner_id), &owner))
        .await
        .unwrap();
    let members = c
        .list_project_members(authed(
            pb::ListProjectMembersRequest {
                project_id: p.id.clone(),
            },
            &manager,
        ))
        .await
        .unwrap()
        .into_inner()
        .members;
    assert_eq!(members.len(), 1);
    assert_eq!(
        (members[0].user_id.as_str(), members[0].role),
        (manager_id.as_str(), pb::ProjectRole::Owner as i32)
    );
    let again = add(&app, &manager, &p.id, &manager_id, pb::ProjectRole::Member)
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists);
}

/// The callers of the matrix, in column order.
const WHO: [&str; 7] = [
    "anonymous",
    "non-member",
    "viewer",
    "member",
    "manager",
    "owner",
    "admin",
];

#[tokio::test(flavor = "multi_thread")]
async fn the_authorization_matrix_gives_every_caller_the_exact_answer() {
    use Code::{NotFound as NF, Ok as OK, PermissionDenied as PD, Unauthenticated as UA};
    let app = TestApp::spawn().await;
    let (_, owner) = user(&app, "owner").await;
    let (manager_id, manager) = user(&app, "manager").await;
    let (member_id, member) = user(&app, "member").await;
    let (viewer_id, viewer) = user(&app, "viewer").await;
    let (_, outsider) = user(&app, "outsider").await;
    let (other_id, _) = user(&app, "other").await;
    let (newbie_id, _) = user(&app, "newbie").await;
    let admin = app.admin_token().await;
    let tokens = [
        String::new(),
        outsider,
        viewer,
        member,
        manager,
        owner.clone(),
        admin,
    ];

    let rows: Vec<(&str, [Code; 7])> = vec![
        ("GetProject", [UA, NF, OK, OK, OK, OK, OK]),
        ("ListProjectMembers", [UA, NF, OK, OK, OK, OK, OK]),
        ("UpdateProject", [UA, NF, PD, PD, OK, OK, OK]),
        ("DeleteProject", [UA, NF, PD, PD, PD, OK, OK]),
        ("AddProjectMember", [UA, NF, PD, PD, OK, OK, OK]),
        ("AddProjectMember(OWNER)", [UA, NF, PD, PD, PD, OK, OK]),
        ("UpdateProjectMember", [UA, NF, PD, PD, OK, OK, OK]),
        ("RemoveProjectMember", [UA, NF, PD, PD, OK, OK, OK]),
        ("ListProjects", [UA, OK, OK, OK, OK, OK, OK]),
    ];
    let mut c = projects(&app).await;
    for (rpc, expected) in rows {
        for (i, want) in expected.iter().enumerate() {
            // A fresh project for every cell, so no call changes what the next one sees.
            let p = create(&app, &owner, &format!("{rpc} {i}")).await;
            for (id, role) in [
                (&manager_id, pb::ProjectRole::Manager),
                (&member_id, pb::ProjectRole::Member),
                (&viewer_id, pb::ProjectRole::Viewer),
                (&other_id, pb::ProjectRole::Member),
            ] {
                add(&app, &owner, &p.id, id, role).await.unwrap();
            }
            let t = &tokens[i];
            let pid = p.id.clone();
            let got = match rpc {
                "GetProject" => c
                    .get_project(call(t, pb::GetProjectRequest { id: pid }))
                    .await
                    .map(|_| ()),
                "ListProjectMembers" => c
                    .list_project_members(call(
                        t,
                        pb::ListProjectMembersRequest { project_id: pid },
                    ))
                    .await
                    .map(|_| ()),
                "UpdateProject" => c
                    .update_project(call(
                        t,
                        pb::UpdateProjectRequest {
                            id: pid,
                            name: Some("n".into()),
                            ..Default::default()
                        },
                    ))
                    .await
                    .map(|_| ()),
                "DeleteProject" => c
                    .delete_project(call(t, pb::DeleteProjectRequest { id: pid }))
                    .await
                    .map(|_| ()),
                "AddProjectMember" => c
                    .add_project_member(call(
                        t,
                        pb::AddProjectMemberRequest {
                            project_id: pid,
                            user_id: newbie_id.clone(),
                            role: pb::ProjectRole::Member.into(),
                        },
                    ))
                    .await
                    .map(|_| ()),
                "AddProjectMember(OWNER)" => c
                    .add_project_member(call(
                        t,
                        pb::AddProjectMemberRequest {
                            project_id: pid,
                            user_id: newbie_id.clone(),
                            role: pb::ProjectRole::Owner.into(),
                        },
                    ))
                    .await
                    .map(|_| ()),
                "UpdateProjectMember" => c
                    .update_project_member(call(
                        t,
                        pb::UpdateProjectMemberRequest {
                            project_id: pid,
                            user_id: other_id.clone(),
                            role: pb::ProjectRole::Viewer.into(),
                        },
                    ))
                    .await
                    .map(|_| ()),
                "RemoveProjectMember" => c
                    .remove_project_member(call(
                        t,
                        pb::RemoveProjectMemberRequest {
                            project_id: pid,
                            user_id: other_id.clone(),
                        },
                    ))
                    .await
                    .map(|_| ()),
                "ListProjects" => c
                    .list_projects(call(t, pb::ListProjectsRequest::default()))
                    .await
                    .map(|_| ()),
                _ => unreachable!(),
            };
            let code = got.err().map_or(Code::Ok, |s| s.code());
            assert_eq!(code, *want, "{rpc} as {}", WHO[i]);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_project_routes_work_over_rest() {
    use serde_json::{Value, json};
    let app = TestApp::spawn().await;
    let (_, t) = user(&app, "rest").await;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", app.url());
    let created: Value = http
        .post(url("/api/projects"))
        .bearer_auth(&t)
        .json(&json!({ "name": "Via REST" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["myRole"], "PROJECT_ROLE_OWNER");
    let listed: Value = http
        .get(url("/api/projects"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["projects"][0]["id"], id);
    let got: Value = http
        .get(url(&format!("/api/projects/{id}")))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["name"], "Via REST");
    let put: Value = http
        .put(url(&format!("/api/projects/{id}")))
        .bearer_auth(&t)
        .json(&json!({ "description": "changed" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (put["name"].as_str(), put["description"].as_str()),
        (Some("Via REST"), Some("changed"))
    );
    let deleted = http
        .delete(url(&format!("/api/projects/{id}")))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    let gone = http
        .get(url(&format!("/api/projects/{id}")))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn member_routes_and_task_reads_work_over_rest() {
    use serde_json::{Value, json};
    let app = TestApp::spawn().await;
    let (_, owner) = user(&app, "owner").await;
    let (bea, _) = user(&app, "bea").await;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", app.url());
    let send = async |req: reqwest::RequestBuilder| -> (u16, Value) {
        let r = req.bearer_auth(&owner).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    };
    let (_, p) = send(
        http.post(url("/api/projects"))
            .json(&json!({ "name": "Members" })),
    )
    .await;
    let id = p["id"].as_str().unwrap();
    let (s, m) = send(
        http.post(url(&format!("/api/projects/{id}/members")))
            .json(&json!({ "userId": bea, "role": "PROJECT_ROLE_VIEWER" })),
    )
    .await;
    assert_eq!((s, m["role"].as_str()), (200, Some("PROJECT_ROLE_VIEWER")));
    let (s, m) = send(
        http.put(url(&format!("/api/projects/{id}/members/{bea}")))
            .json(&json!({ "role": "PROJECT_ROLE_MEMBER" })),
    )
    .await;
    assert_eq!((s, m["role"].as_str()), (200, Some("PROJECT_ROLE_MEMBER")));
    let (s, list) = send(http.get(url(&format!("/api/projects/{id}/members")))).await;
    assert_eq!(
        (s, list["members"].as_array().map(Vec::len)),
        (200, Some(2))
    );
    let (s, t) = send(
        http.post(url("/api/tasks"))
            .json(&json!({ "projectId": id, "title": "Read me", "assigneeId": bea })),
    )
    .await;
    assert_eq!(s, 200);
    let task = t["id"].as_str().unwrap();
    let (s, got) = send(http.get(url(&format!("/api/tasks/{task}")))).await;
    assert_eq!((s, got["assigneeId"].as_str()), (200, Some(bea.as_str())));
    let (s, _) = send(http.delete(url(&format!("/api/projects/{id}/members/{bea}")))).await;
    assert_eq!(s, 200);
    let (_, got) = send(http.get(url(&format!("/api/tasks/{task}")))).await;
    assert!(
        got.get("assigneeId").is_none(),
        "a member who leaves is unassigned: {got}"
    );
    let (s, _) = send(http.delete(url(&format!("/api/tasks/{task}")))).await;
    assert_eq!(s, 200);
    let (s, _) = send(http.get(url(&format!("/api/tasks/{task}")))).await;
    assert_eq!(s, 404);
}
