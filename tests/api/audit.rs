//! The audit log: each security event and admin action writes an entry; admins page and
//! filter it (gRPC and REST); nobody else reads it; the table refuses updates and deletes.

use crate::helpers::*;
use epop::pb;
use tonic::Code;

async fn entries(
    app: &TestApp,
    token: &str,
    filter: pb::ListAuditLogRequest,
) -> Vec<pb::AuditEntry> {
    app.admin()
        .await
        .list_audit_log(authed(filter, token))
        .await
        .unwrap()
        .into_inner()
        .entries
}

fn action(name: &str) -> pb::ListAuditLogRequest {
    pb::ListAuditLogRequest {
        action: name.into(),
        page_size: 500,
        ..Default::default()
    }
}

fn detail(e: &pb::AuditEntry, key: &str) -> String {
    let v = e.details.as_ref().and_then(|d| d.fields.get(key));
    match v.and_then(|v| v.kind.as_ref()) {
        Some(prost_types::value::Kind::StringValue(s)) => s.clone(),
        other => format!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_security_event_and_admin_action_writes_an_entry() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let admin_id = my_id(&app, &admin).await;
    let mut auth = app.auth().await;
    let login = |email: &str, password: &str| pb::LoginRequest {
        email: email.into(),
        password: password.into(),
        return_refresh_token: true,
    };
    // Sign-ins: a wrong password, an unknown account.
    auth.login(login(ADMIN_EMAIL, "wrong password"))
        .await
        .unwrap_err();
    auth.login(login("nobody@example.com", "whatever1"))
        .await
        .unwrap_err();
    // Admin actions.
    let ada = app
        .create_user("ada@example.com", "ada-password-1", pb::Role::User)
        .await;
    let mut admin_api = app.admin().await;
    admin_api
        .update_user(authed(
            pb::UpdateUserRequest {
                id: ada.id.clone(),
                role: Some(pb::Role::Admin.into()),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap();
    admin_api
        .update_user(authed(
            pb::UpdateUserRequest {
                id: ada.id.clone(),
                disabled: Some(true),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap();
    let division = admin_api
        .create_division(authed(
            pb::CreateDivisionRequest { name: "Ops".into() },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    admin_api
        .add_division_member(authed(
            pb::AddDivisionMemberRequest {
                division_id: division.id,
                user_id: ada.id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap();
    admin_api
        .delete_division(authed(
            pb::DeleteDivisionRequest { id: division.id },
            &admin,
        ))
        .await
        .unwrap();
    // A refresh token presented after its rotation.
    let bob = app
        .create_user("bob@example.com", "bob-password-1", pb::Role::User)
        .await;
    let first = auth
        .login(login("bob@example.com", "bob-password-1"))
        .await
        .unwrap()
        .into_inner();
    let refresh = || pb::RefreshRequest {
        refresh_token: first.refresh_token.clone(),
        return_refresh_token: true,
    };
    let second = auth.refresh(refresh()).await.unwrap().into_inner();
    auth.refresh(pb::RefreshRequest {
        refresh_token: second.refresh_token,
        return_refresh_token: true,
    })
    .await
    .unwrap();
    auth.refresh(refresh()).await.unwrap_err();
    // A password reset, then a change of password.
    app.reset_password("bob@example.com", "bob-password-2")
        .await;
    let bob_token = app
        .login("bob@example.com", "bob-password-2")
        .await
        .access_token;
    app.users()
        .await
        .change_password(authed(
            pb::ChangePasswordRequest {
                current_password: "bob-password-2".into(),
                new_password: "bob-password-3".into(),
            },
            &bob_token,
        ))
        .await
        .unwrap();
    // A key rotation from the command line.
    let kid = crate::signing_key::rotate(&app.db_name);

    let ada_target = format!("user:{}", ada.id);
    let bob_target = format!("user:{}", bob.id);
    let division_target = format!("division:{}", division.id);
    let admin_target = format!("user:{admin_id}");
    let key_target = format!("signing-key:{kid}");
    let expect: Vec<(&str, Option<&str>, Option<&str>)> = vec![
        ("sign_in", Some(admin_id.as_str()), None),
        ("sign_in_failed", None, Some(admin_target.as_str())),
        (
            "user_created",
            Some(admin_id.as_str()),
            Some(ada_target.as_str()),
        ),
        (
            "user_updated",
            Some(admin_id.as_str()),
            Some(ada_target.as_str()),
        ),
        (
            "role_changed",
            Some(admin_id.as_str()),
            Some(ada_target.as_str()),
        ),
        (
            "user_disabled",
            Some(admin_id.as_str()),
            Some(ada_target.as_str()),
        ),
        (
            "division_created",
            Some(admin_id.as_str()),
            Some(division_target.as_str()),
        ),
        (
            "division_member_added",
            Some(admin_id.as_str()),
            Some(division_target.as_str()),
        ),
        (
            "division_deleted",
            Some(admin_id.as_str()),
            Some(division_target.as_str()),
        ),
        ("refresh_token_reused", None, Some(bob_target.as_str())),
        ("password_reset_requested", None, None),
        (
            "password_reset",
            Some(bob.id.as_str()),
            Some(bob_target.as_str()),
        ),
        (
            "password_changed",
            Some(bob.id.as_str()),
            Some(bob_target.as_str()),
        ),
        ("signing_key_rotated", None, Some(key_target.as_str())),
    ];
    for (name, actor, target) in expect {
        let found = entries(&app, &admin, action(name)).await;
        assert!(
            found
                .iter()
                .any(|e| actor.is_none_or(|a| e.actor_id == a)
                    && target.is_none_or(|t| e.target == t)),
            "no {name} entry by {actor:?} on {target:?}: {found:#?}"
        );
    }
    let failed = entries(&app, &admin, action("sign_in_failed")).await;
    assert!(
        failed
            .iter()
            .any(|e| detail(e, "email") == "nobody@example.com" && e.target.is_empty()),
        "{failed:#?}"
    );
    let role = &entries(&app, &admin, action("role_changed")).await[0];
    assert_eq!(
        (detail(role, "from"), detail(role, "to")),
        ("USER".into(), "ADMIN".into())
    );
    let signed_in = &entries(&app, &admin, action("sign_in")).await[0];
    assert_eq!(signed_in.client_ip, "127.0.0.1", "{signed_in:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn admins_page_and_filter_the_log_newest_first_and_nobody_else_reads_it() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let admin_id = my_id(&app, &admin).await;
    for i in 0..5 {
        app.admin()
            .await
            .create_division(authed(
                pb::CreateDivisionRequest {
                    name: format!("D{i}"),
                },
                &admin,
            ))
            .await
            .unwrap();
    }
    // Paging: pages of two, newest first, every entry once.
    let mut seen = vec![];
    let mut token = String::new();
    loop {
        let page = app
            .admin()
            .await
            .list_audit_log(authed(
                pb::ListAuditLogRequest {
                    page_size: 2,
                    page_token: token.clone(),
                    action: "division_created".into(),
                    actor_id: admin_id.clone(),
                    ..Default::default()
                },
                &admin,
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(page.entries.len() <= 2);
        seen.extend(page.entries.iter().map(|e| detail(e, "name")));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ["D4", "D3", "D2", "D1", "D0"]);

    // Bad filters name their field.
    let bad = app
        .admin()
        .await
        .list_audit_log(authed(action("not_an_action"), &admin))
        .await
        .unwrap_err();
    assert_eq!(violations(&bad), ["action"]);

    // REST, with the same filter.
    let r = reqwest::Client::new()
        .get(format!(
            "{}/api/admin/audit-log?action=division_created&pageSize=1",
            app.url()
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["entries"][0]["details"]["name"], "D4", "{body}");
    assert_eq!(body["entries"][0]["action"], "division_created");

    // Others are refused.
    let (_, user) = user(&app, "eve").await;
    let e = app
        .admin()
        .await
        .list_audit_log(authed(action(""), &user))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_log_refuses_updates_and_deletes_even_from_the_database() {
    let app = TestApp::spawn().await;
    app.admin_token().await;
    let url = database_url(&app.db_name);
    for sql in [
        "UPDATE audit_log SET action = 'nothing'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ] {
        use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
        let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
        let e = diesel::sql_query(sql).execute(&mut conn).await.unwrap_err();
        assert!(e.to_string().contains("append-only"), "{sql}: {e}");
    }
    assert!(db_count(&app.db_name, "SELECT count(*) AS n FROM audit_log").await >= 1);
}
