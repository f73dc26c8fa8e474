//! Access that ends with its grant: event streams end when their token expires or their
//! session or user is revoked (also on another instance), a deleted user leaves every
//! conversation, and admin rights come from the database on every call of every service.

use crate::{
    events::{ann_and_bob_in_a_group, client, group, next, open, redis_url, send},
    helpers::*,
};
use epop::pb::{self, event::Kind, project_service_client::ProjectServiceClient};
use std::time::Duration;
use tonic::{Code, Streaming};

/// Reads until the stream ends; answers its final status (UNAUTHENTICATED expected).
pub(crate) async fn ends(stream: &mut Streaming<pb::Event>) -> tonic::Status {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the stream ended without a status"),
                Err(status) => return status,
            }
        }
    })
    .await
    .expect("the stream ends")
}

async fn admin_update(app: &TestApp, token: &str, r: pb::UpdateUserRequest) {
    app.admin()
        .await
        .update_user(authed(r, token))
        .await
        .expect("the admin's update");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_ends_when_its_access_token_expires() {
    let app = TestApp::spawn_with(|c| c.access_token_ttl = Duration::from_secs(2)).await;
    let (_, bob) = user(&app, "bob").await;
    let mut stream = open(&app, &bob, "").await;
    let status = ends(&mut stream).await;
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("expired"), "{status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_out_password_changes_and_admin_actions_end_the_streams_they_revoke() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let (bob_id, _) = user(&app, "bob").await;
    let login = || app.login("bob@example.com", "user-password-1");

    // Sign-out ends that session's stream, not another session's.
    let (one, two) = (login().await, login().await);
    let mut s1 = open(&app, &one.access_token, "").await;
    let mut s2 = open(&app, &two.access_token, "").await;
    app.auth()
        .await
        .logout(pb::LogoutRequest {
            refresh_token: one.refresh_token.clone(),
        })
        .await
        .unwrap();
    assert_eq!(ends(&mut s1).await.code(), Code::Unauthenticated);

    // A password change ends the other sessions' streams and keeps the caller's.
    let three = login().await;
    let mut s3 = open(&app, &three.access_token, "").await;
    app.users()
        .await
        .change_password(authed(
            pb::ChangePasswordRequest {
                current_password: "user-password-1".into(),
                new_password: "user-password-2".into(),
            },
            &two.access_token,
        ))
        .await
        .unwrap();
    assert_eq!(ends(&mut s3).await.code(), Code::Unauthenticated);
    let still = tokio::time::timeout(Duration::from_millis(300), s2.message()).await;
    assert!(
        !matches!(still, Ok(Err(_)) | Ok(Ok(None))),
        "the caller's own stream goes on: {still:?}"
    );

    // A role change and disabling each end every stream of the user.
    let mut s2b = open(&app, &two.access_token, "").await;
    admin_update(
        &app,
        &admin,
        pb::UpdateUserRequest {
            id: bob_id.clone(),
            role: Some(pb::Role::Admin.into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ends(&mut s2).await.code(), Code::Unauthenticated);
    assert_eq!(ends(&mut s2b).await.code(), Code::Unauthenticated);
    let four = app.login("bob@example.com", "user-password-2").await;
    let mut s4 = open(&app, &four.access_token, "").await;
    admin_update(
        &app,
        &admin,
        pb::UpdateUserRequest {
            id: bob_id.clone(),
            disabled: Some(true),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ends(&mut s4).await.code(), Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread")]
async fn revoking_on_one_instance_ends_the_stream_on_another() {
    let (a, b) = two_instances(&redis_url()).await;
    let session = {
        a.create_user("bob@example.com", "user-password-1", pb::Role::User)
            .await;
        a.login("bob@example.com", "user-password-1").await
    };
    let mut on_b = open(&b, &session.access_token, "").await;
    // The stream is up once its presence snapshot arrived.
    tokio::time::timeout(Duration::from_secs(5), on_b.message())
        .await
        .unwrap()
        .unwrap();
    a.auth()
        .await
        .logout(pb::LogoutRequest {
            refresh_token: session.refresh_token,
        })
        .await
        .unwrap();
    assert_eq!(ends(&mut on_b).await.code(), Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_user_leaves_every_conversation_and_their_stream_ends() {
    let app = TestApp::spawn().await;
    let (ann, bob, g) = ann_and_bob_in_a_group(&app).await;
    let bob_id = my_id(&app, &bob).await;
    let mut bob_stream = open(&app, &bob, "").await;
    let mut ann_stream = open(&app, &ann, "").await;
    app.admin()
        .await
        .delete_user(authed(
            pb::DeleteUserRequest { id: bob_id.clone() },
            &app.admin_token().await,
        ))
        .await
        .unwrap();
    assert_eq!(ends(&mut bob_stream).await.code(), Code::Unauthenticated);
    let left = next(&mut ann_stream).await;
    assert!(
        matches!(left.kind, Some(Kind::MembershipChanged(ref m)) if m.removed_user_ids == [bob_id.clone()]),
        "{left:?}"
    );
    let c = client(&app)
        .await
        .get_conversation(authed(pb::GetConversationRequest { id: g.clone() }, &ann))
        .await
        .unwrap()
        .into_inner();
    assert!(!c.member_ids.contains(&bob_id), "{c:?}");
    // Ann's messages keep flowing to the members that remain, and Bob's stays gone.
    client(&app)
        .await
        .send_message(authed(send(&g, "after bob"), &ann))
        .await
        .unwrap();
    assert!(matches!(
        next(&mut ann_stream).await.kind,
        Some(Kind::MessageCreated(_))
    ));
    let _ = group;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_demoted_or_disabled_admin_loses_admin_rights_at_once_on_every_service() {
    let app = TestApp::spawn().await;
    let root = app.admin_token().await;
    // Another user's project, which an admin may read and delete.
    let (_, olga) = user(&app, "olga").await;
    let mut projects = ProjectServiceClient::new(app.channel().await);
    let new = pb::CreateProjectRequest {
        name: "Olga's".into(),
        description: String::new(),
    };
    let project = projects
        .create_project(authed(new, &olga))
        .await
        .unwrap()
        .into_inner();
    let get = pb::GetProjectRequest {
        id: project.id.clone(),
    };
    for change in ["demote", "disable"] {
        let email = format!("{change}@example.com");
        let other = app
            .create_user(&email, "admin-password-2", pb::Role::Admin)
            .await;
        let token = app.login(&email, "admin-password-2").await.access_token;
        let list = |t: String| {
            let app = &app;
            async move {
                app.admin()
                    .await
                    .list_users(authed(pb::AdminListUsersRequest::default(), &t))
                    .await
            }
        };
        list(token.clone()).await.expect("an admin lists users");
        projects
            .get_project(authed(get.clone(), &token))
            .await
            .expect("an admin reads any project");
        let update = match change {
            "demote" => pb::UpdateUserRequest {
                id: other.id.clone(),
                role: Some(pb::Role::User.into()),
                ..Default::default()
            },
            _ => pb::UpdateUserRequest {
                id: other.id.clone(),
                disabled: Some(true),
                ..Default::default()
            },
        };
        admin_update(&app, &root, update).await;
        // The token still says ADMIN and has not expired; the database decides (its session
        // was revoked with the change, so the authentication layer refuses it first).
        let denied = list(token.clone()).await.unwrap_err();
        assert_eq!(denied.code(), Code::Unauthenticated, "{change}");
        // Outside AdminService too: no reading, listing or deleting others' projects.
        let denied = projects
            .get_project(authed(get.clone(), &token))
            .await
            .unwrap_err();
        assert_eq!(denied.code(), Code::Unauthenticated, "{change}");
        let all = pb::ListProjectsRequest::default();
        let denied = projects.list_projects(authed(all, &token)).await;
        assert_eq!(
            denied.unwrap_err().code(),
            Code::Unauthenticated,
            "{change}"
        );
        let delete = pb::DeleteProjectRequest {
            id: project.id.clone(),
        };
        let denied = projects.delete_project(authed(delete, &token)).await;
        assert_eq!(
            denied.unwrap_err().code(),
            Code::Unauthenticated,
            "{change}"
        );
    }
    projects
        .get_project(authed(get, &olga))
        .await
        .expect("the project is still there");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_reset_ends_every_stream_of_the_user() {
    let app = TestApp::spawn().await;
    let (_, bob) = user(&app, "bob").await;
    let mut stream = open(&app, &bob, "").await;
    app.reset_password("bob@example.com", "user-password-9")
        .await;
    assert_eq!(ends(&mut stream).await.code(), Code::Unauthenticated);
}
