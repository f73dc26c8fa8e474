//! AdminService: users, roles and divisions, for admins only.

use crate::helpers::*;
use epop::pb;
use prost_types::FieldMask;
use tonic::Code;

#[tokio::test(flavor = "multi_thread")]
async fn non_admins_get_permission_denied_on_every_admin_rpc() {
    let app = TestApp::spawn().await;
    app.create_user("user@example.com", "user-password-1", pb::Role::User)
        .await;
    let t = app
        .login("user@example.com", "user-password-1")
        .await
        .access_token;
    let mut admin = app.admin().await;
    let id = uuid::Uuid::new_v4().to_string();
    let codes = vec![
        admin
            .list_users(authed(pb::AdminListUsersRequest::default(), &t))
            .await
            .unwrap_err()
            .code(),
        admin
            .create_user(authed(pb::CreateUserRequest::default(), &t))
            .await
            .unwrap_err()
            .code(),
        admin
            .get_user(authed(pb::AdminGetUserRequest { id: id.clone() }, &t))
            .await
            .unwrap_err()
            .code(),
        admin
            .update_user(authed(
                pb::UpdateUserRequest {
                    id: id.clone(),
                    ..Default::default()
                },
                &t,
            ))
            .await
            .unwrap_err()
            .code(),
        admin
            .delete_user(authed(pb::DeleteUserRequest { id }, &t))
            .await
            .unwrap_err()
            .code(),
        admin
            .list_divisions(authed(pb::ListDivisionsRequest {}, &t))
            .await
            .unwrap_err()
            .code(),
        admin
            .create_division(authed(pb::CreateDivisionRequest { name: "x".into() }, &t))
            .await
            .unwrap_err()
            .code(),
        admin
            .update_division(authed(
                pb::UpdateDivisionRequest {
                    id: 1,
                    name: "y".into(),
                },
                &t,
            ))
            .await
            .unwrap_err()
            .code(),
        admin
            .delete_division(authed(pb::DeleteDivisionRequest { id: 1 }, &t))
            .await
            .unwrap_err()
            .code(),
        admin
            .add_division_member(authed(pb::AddDivisionMemberRequest::default(), &t))
            .await
            .unwrap_err()
            .code(),
        admin
            .remove_division_member(authed(pb::RemoveDivisionMemberRequest::default(), &t))
            .await
            .unwrap_err()
            .code(),
    ];
    assert!(
        codes.iter().all(|c| *c == Code::PermissionDenied),
        "{codes:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_creates_lists_pages_updates_and_deletes_users() {
    let app = TestApp::spawn().await;
    let t = app.admin_token().await;
    let mut admin = app.admin().await;
    let division = admin
        .create_division(authed(
            pb::CreateDivisionRequest {
                name: "Engineering".into(),
            },
            &t,
        ))
        .await
        .unwrap()
        .into_inner();
    for i in 0..5 {
        admin
            .create_user(authed(
                pb::CreateUserRequest {
                    email: format!("u{i}@example.com"),
                    display_name: format!("User {i}"),
                    password: "user-password-1".into(),
                    role: pb::Role::User.into(),
                    division_ids: if i % 2 == 0 {
                        vec![division.id]
                    } else {
                        vec![]
                    },
                },
                &t,
            ))
            .await
            .unwrap();
    }
    // Paging by email: 6 users (admin + 5) in pages of 4 then 2, no overlap.
    let list = |token: String| pb::AdminListUsersRequest {
        page_size: 4,
        page_token: token,
        ..Default::default()
    };
    let p1 = admin
        .list_users(authed(list(String::new()), &t))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p1.users.len(), 4);
    assert!(!p1.next_page_token.is_empty());
    let p2 = admin
        .list_users(authed(list(p1.next_page_token), &t))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p2.users.len(), 2);
    assert!(p2.next_page_token.is_empty());
    let emails: Vec<String> = p1
        .users
        .iter()
        .chain(&p2.users)
        .map(|u| u.email.clone())
        .collect();
    let mut sorted = emails.clone();
    sorted.sort();
    assert_eq!(emails, sorted);
    assert_eq!(emails.len(), 6);

    let in_division = admin
        .list_users(authed(
            pb::AdminListUsersRequest {
                division_id: division.id,
                ..Default::default()
            },
            &t,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(in_division.users.len(), 3);
    let searched = admin
        .list_users(authed(
            pb::AdminListUsersRequest {
                query: "USER 3".into(),
                ..Default::default()
            },
            &t,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(searched.users.len(), 1);

    // Promote u1 with a field mask; fields outside the mask are left alone.
    let u1 = searched_one(&mut admin, &t, "u1@").await;
    let updated = admin
        .update_user(authed(
            pb::UpdateUserRequest {
                id: u1.id.clone(),
                update_mask: Some(FieldMask {
                    paths: vec!["role".into(), "division_ids".into()],
                }),
                role: Some(pb::Role::Admin.into()),
                display_name: Some("ignored".into()),
                division_ids: vec![division.id],
                ..Default::default()
            },
            &t,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.role, pb::Role::Admin as i32);
    assert_eq!(updated.display_name, "User 1");
    assert_eq!(updated.division_ids, vec![division.id]);

    admin
        .delete_user(authed(pb::DeleteUserRequest { id: u1.id.clone() }, &t))
        .await
        .unwrap();
    let gone = admin
        .get_user(authed(pb::AdminGetUserRequest { id: u1.id.clone() }, &t))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    let again = admin
        .delete_user(authed(pb::DeleteUserRequest { id: u1.id }, &t))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound);
    // The address is free again.
    app.create_user("u1@example.com", "user-password-2", pb::Role::User)
        .await;
}

async fn searched_one(
    admin: &mut AdminServiceClient<tonic::transport::Channel>,
    t: &str,
    q: &str,
) -> pb::User {
    let mut r = admin
        .list_users(authed(
            pb::AdminListUsersRequest {
                query: q.into(),
                ..Default::default()
            },
            t,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.users.len(), 1);
    r.users.remove(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_taken_email_is_already_exists() {
    let app = TestApp::spawn().await;
    app.create_user("dup@example.com", "dup-password-1", pb::Role::User)
        .await;
    let t = app.admin_token().await;
    let err = app
        .admin()
        .await
        .create_user(authed(
            pb::CreateUserRequest {
                email: "DUP@example.com".into(),
                password: "dup-password-2".into(),
                ..Default::default()
            },
            &t,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_cannot_demote_disable_or_delete_themselves() {
    let app = TestApp::spawn().await;
    let login = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (t, me) = (login.access_token, login.user.unwrap());
    let mut admin = app.admin().await;
    let demote = admin
        .update_user(authed(
            pb::UpdateUserRequest {
                id: me.id.clone(),
                role: Some(pb::Role::User.into()),
                ..Default::default()
            },
            &t,
        ))
        .await
        .unwrap_err();
    assert_eq!(demote.code(), Code::FailedPrecondition);
    let disable = admin
        .update_user(authed(
            pb::UpdateUserRequest {
                id: me.id.clone(),
                disabled: Some(true),
                ..Default::default()
            },
            &t,
        ))
        .await
        .unwrap_err();
    assert_eq!(disable.code(), Code::FailedPrecondition);
    let delete = admin
        .delete_user(authed(pb::DeleteUserRequest { id: me.id }, &t))
        .await
        .unwrap_err();
    assert_eq!(delete.code(), Code::FailedPrecondition);
}

#[tokio::test(flavor = "multi_thread")]
async fn divisions_are_created_renamed_joined_left_and_deleted() {
    let app = TestApp::spawn().await;
    let user = app
        .create_user("d@example.com", "d-password-1", pb::Role::User)
        .await;
    let t = app.admin_token().await;
    let mut admin = app.admin().await;
    let d = admin
        .create_division(authed(
            pb::CreateDivisionRequest {
                name: " Sales ".into(),
            },
            &t,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.name, "Sales");
    let dup = admin
        .create_division(authed(
            pb::CreateDivisionRequest {
                name: "Sales".into(),
            },
            &t,
        ))
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists);
    let renamed = admin
        .update_division(authed(
            pb::UpdateDivisionRequest {
                id: d.id,
                name: "Field Sales".into(),
            },
            &t,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.name, "Field Sales");
    let joined = admin
        .add_division_member(authed(
            pb::AddDivisionMemberRequest {
                division_id: d.id,
                user_id: user.id.clone(),
            },
            &t,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(joined.member_count, 1);
    let got = admin
        .get_user(authed(
            pb::AdminGetUserRequest {
                id: user.id.clone(),
            },
            &t,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.division_ids, vec![d.id]);
    let left = admin
        .remove_division_member(authed(
            pb::RemoveDivisionMemberRequest {
                division_id: d.id,
                user_id: user.id.clone(),
            },
            &t,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(left.member_count, 0);
    let unknown_user = admin
        .add_division_member(authed(
            pb::AddDivisionMemberRequest {
                division_id: d.id,
                user_id: uuid::Uuid::new_v4().to_string(),
            },
            &t,
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown_user.code(), Code::NotFound);
    admin
        .delete_division(authed(pb::DeleteDivisionRequest { id: d.id }, &t))
        .await
        .unwrap();
    let list = admin
        .list_divisions(authed(pb::ListDivisionsRequest {}, &t))
        .await
        .unwrap()
        .into_inner();
    assert!(list.divisions.is_empty());
    let missing = admin
        .delete_division(authed(pb::DeleteDivisionRequest { id: d.id }, &t))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_input_names_the_field_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let t = app.admin_token().await;
    let mut admin = app.admin().await;
    let err = admin
        .create_user(authed(
            pb::CreateUserRequest {
                email: "not-an-email".into(),
                password: "long-enough-1".into(),
                ..Default::default()
            },
            &t,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(violations(&err), ["email"]);
    assert!(err.message().contains("email"));

    let err = admin
        .create_user(authed(
            pb::CreateUserRequest {
                email: "x@example.com".into(),
                password: "short".into(),
                ..Default::default()
            },
            &t,
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), ["password"]);

    // A bad division in a create leaves no half-made user behind.
    let err = admin
        .create_user(authed(
            pb::CreateUserRequest {
                email: "x@example.com".into(),
                password: "long-enough-1".into(),
                division_ids: vec![999],
                ..Default::default()
            },
            &t,
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), ["division_ids"]);
    let none = admin
        .list_users(authed(
            pb::AdminListUsersRequest {
                query: "x@example.com".into(),
                ..Default::default()
            },
            &t,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(none.users.is_empty(), "the transaction rolled back");

    let err = admin
        .update_user(authed(
            pb::UpdateUserRequest {
                id: "nope".into(),
                ..Default::default()
            },
            &t,
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), ["id"]);
    let err = admin
        .update_user(authed(
            pb::UpdateUserRequest {
                id: uuid::Uuid::new_v4().to_string(),
                update_mask: Some(FieldMask {
                    paths: vec!["password_hash".into()],
                }),
                ..Default::default()
            },
            &t,
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), ["update_mask"]);
    let err = admin
        .list_users(authed(
            pb::AdminListUsersRequest {
                page_size: -1,
                ..Default::default()
            },
            &t,
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), ["page_size"]);
    let err = admin
        .list_users(authed(
            pb::AdminListUsersRequest {
                page_token: "garbage!".into(),
                ..Default::default()
            },
            &t,
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&err), ["page_token"]);
}
