//! UserService: my profile, password change, the directory.

use crate::helpers::*;
use epop::pb;
use prost_types::FieldMask;
use tonic::Code;

#[tokio::test(flavor = "multi_thread")]
async fn i_can_read_and_rename_myself() {
    let app = TestApp::spawn().await;
    app.create_user("me@example.com", "me-password-1", pb::Role::User)
        .await;
    let t = app
        .login("me@example.com", "me-password-1")
        .await
        .access_token;
    let mut users = app.users().await;
    let me = users
        .get_me(authed(pb::GetMeRequest {}, &t))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.display_name, "me");
    let renamed = users
        .update_me(authed(
            pb::UpdateMeRequest {
                update_mask: None,
                display_name: Some(" Ada L. ".into()),
            },
            &t,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.display_name, "Ada L.");
    let blank = users
        .update_me(authed(
            pb::UpdateMeRequest {
                update_mask: Some(FieldMask {
                    paths: vec!["display_name".into()],
                }),
                display_name: None,
            },
            &t,
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&blank), ["display_name"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn changing_my_password_needs_the_current_one_and_ends_my_other_sessions() {
    let app = TestApp::spawn().await;
    app.create_user("pw@example.com", "pw-password-1", pb::Role::User)
        .await;
    let here = app.login("pw@example.com", "pw-password-1").await;
    let elsewhere = app.login("pw@example.com", "pw-password-1").await;
    let mut users = app.users().await;
    let wrong = users
        .change_password(authed(
            pb::ChangePasswordRequest {
                current_password: "nope-nope-1".into(),
                new_password: "pw-password-2".into(),
            },
            &here.access_token,
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&wrong), ["current_password"]);
    users
        .change_password(authed(
            pb::ChangePasswordRequest {
                current_password: "pw-password-1".into(),
                new_password: "pw-password-2".into(),
            },
            &here.access_token,
        ))
        .await
        .unwrap();
    let mut auth = app.auth().await;
    let refresh = |t: String| pb::RefreshRequest {
        refresh_token: t,
        return_refresh_token: false,
    };
    auth.refresh(refresh(here.refresh_token))
        .await
        .expect("this session stays");
    let other = auth
        .refresh(refresh(elsewhere.refresh_token))
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::Unauthenticated);
    app.login("pw@example.com", "pw-password-2").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_directory_lists_active_users_by_name_paged_and_searchable() {
    let app = TestApp::spawn().await;
    let t = app.admin_token().await;
    for name in ["carol", "alice", "bob", "dave"] {
        app.create_user(
            &format!("{name}@example.com"),
            "password-123",
            pb::Role::User,
        )
        .await;
    }
    let dave = app
        .create_user("disabled@example.com", "password-123", pb::Role::User)
        .await;
    app.admin()
        .await
        .update_user(authed(
            pb::UpdateUserRequest {
                id: dave.id.clone(),
                disabled: Some(true),
                ..Default::default()
            },
            &t,
        ))
        .await
        .unwrap();
    let mut users = app.users().await;
    let mut names = vec![];
    let mut token = String::new();
    loop {
        let page = users
            .list_users(authed(
                pb::ListUsersRequest {
                    page_size: 2,
                    page_token: token,
                    ..Default::default()
                },
                &t,
            ))
            .await
            .unwrap()
            .into_inner();
        names.extend(page.users.into_iter().map(|u| u.display_name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(names, ["admin", "alice", "bob", "carol", "dave"]);
    let found = users
        .list_users(authed(
            pb::ListUsersRequest {
                query: "AL".into(),
                ..Default::default()
            },
            &t,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.users.len(), 1);
    let hidden = users
        .get_user(authed(pb::GetUserRequest { id: dave.id }, &t))
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);
}
