//! NUL characters, which PostgreSQL cannot store in text or jsonb, are refused at the
//! boundary with a 400 / INVALID_ARGUMENT naming the field, in every value that is stored.

use crate::helpers::*;
use epop::{grpc::convert::json_to_struct, pb};
use pb::conversation_service_client::ConversationServiceClient;
use reqwest::{Client, Method};
use serde_json::{Value, json};

fn doc_with(paragraph: Value) -> Value {
    json!({"type":"doc","content":[paragraph]})
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nul_in_any_stored_field_is_a_400_naming_the_field_over_rest_and_grpc() {
    let app = TestApp::spawn().await;
    let http = Client::new();
    let token = app.admin_token().await;
    let rest = async |method: Method, path: &str, body: Value| {
        let r = http
            .request(method, format!("{}{path}", app.url()))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap_or_default())
    };
    let (_, project) = rest(Method::POST, "/api/projects", json!({"name": "Board"})).await;
    let project = project["id"].as_str().unwrap().to_owned();
    let (_, conversation) = rest(
        Method::POST,
        "/api/conversations",
        json!({"kind": "CONVERSATION_KIND_GROUP", "title": "Room"}),
    )
    .await;
    let conversation = conversation["id"].as_str().unwrap().to_owned();
    let messages = format!("/api/conversations/{conversation}/messages");
    let (status, message) = rest(
        Method::POST,
        &messages,
        json!({"content": doc_with(json!({"type":"paragraph","content":[{"type":"text","text":"hi"}]}))}),
    )
    .await;
    assert_eq!(status, 200, "{message}");
    let message_path = format!("{messages}/{}", message["id"].as_str().unwrap());
    let nul = "a\u{0}b";
    let attrs_doc = doc_with(json!({"type":"paragraph","attrs":{"textAlign":nul},
        "content":[{"type":"text","text":"hi"}]}));
    let mark_doc = doc_with(
        json!({"type":"paragraph","content":[{"type":"text","text":"hi",
        "marks":[{"type":"link","attrs":{"href":"https://x.org","title":nul}}]}]}),
    );
    let key_doc = doc_with(json!({"type":"paragraph","attrs":{nul: 1},
        "content":[{"type":"text","text":"hi"}]}));
    let mention_doc = doc_with(json!({"type":"paragraph","content":[
        {"type":"mention","attrs":{"id":"0b4f8cf2-5a44-4a39-9a1e-4c0a51c2b0f1","label":nul}}]}));
    let cases: Vec<(Method, String, Value, &str)> = vec![
        (
            Method::POST,
            messages.clone(),
            json!({"content": attrs_doc}),
            "content",
        ),
        (
            Method::POST,
            messages.clone(),
            json!({"content": mark_doc}),
            "content",
        ),
        (
            Method::POST,
            messages.clone(),
            json!({"content": key_doc}),
            "content",
        ),
        (
            Method::POST,
            messages.clone(),
            json!({"content": mention_doc}),
            "content",
        ),
        (
            Method::PATCH,
            message_path.clone(),
            json!({"content": attrs_doc}),
            "content",
        ),
        (
            Method::POST,
            messages.clone(),
            json!({"content": doc_with(json!({"type":"paragraph","content":[{"type":"text","text":"x"}]})), "idempotencyKey": nul}),
            "idempotency_key",
        ),
        (
            Method::PATCH,
            format!("/api/conversations/{conversation}"),
            json!({"title": nul}),
            "title",
        ),
        (
            Method::POST,
            "/api/conversations".into(),
            json!({"kind": "CONVERSATION_KIND_GROUP", "title": nul}),
            "title",
        ),
        (
            Method::POST,
            "/api/projects".into(),
            json!({"name": nul}),
            "name",
        ),
        // A filter is compared as text too (found by schemathesis).
        (
            Method::GET,
            "/api/admin/audit-log?target=a%00b".into(),
            json!({}),
            "target",
        ),
        (
            Method::POST,
            "/api/projects".into(),
            json!({"name": "P", "description": nul}),
            "description",
        ),
        (
            Method::PUT,
            format!("/api/projects/{project}"),
            json!({"description": nul}),
            "description",
        ),
        (
            Method::POST,
            "/api/tasks".into(),
            json!({"projectId": project, "title": nul}),
            "title",
        ),
        (
            Method::POST,
            "/api/tasks".into(),
            json!({"projectId": project, "title": "T", "description": nul}),
            "description",
        ),
        (
            Method::PATCH,
            "/api/users/me".into(),
            json!({"displayName": nul}),
            "display_name",
        ),
        (
            Method::POST,
            "/api/admin/users".into(),
            json!({"email": "x@example.com", "password": "long-enough-1", "displayName": nul}),
            "display_name",
        ),
        (
            Method::POST,
            "/api/admin/users".into(),
            json!({"email": "x\u{0}@example.com", "password": "long-enough-1"}),
            "email",
        ),
        (
            Method::POST,
            "/api/admin/divisions".into(),
            json!({"name": nul}),
            "name",
        ),
    ];
    for (method, path, body, field) in cases {
        let (status, reply) = rest(method.clone(), &path, body.clone()).await;
        assert_eq!(status, 400, "{method} {path} {body}: {reply}");
        let named = reply["details"][0]["fieldViolations"][0]["field"].as_str();
        assert_eq!(named, Some(field), "{method} {path} {body}: {reply}");
    }

    // The same over native gRPC.
    let mut conversations = ConversationServiceClient::new(app.channel().await);
    let status = conversations
        .send_message(authed(
            pb::SendMessageRequest {
                conversation_id: conversation.clone(),
                content: Some(json_to_struct(&attrs_doc)),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(violations(&status), ["content"]);
    let status = conversations
        .create_conversation(authed(
            pb::CreateConversationRequest {
                kind: pb::ConversationKind::Group.into(),
                title: nul.into(),
                member_ids: vec![],
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(violations(&status), ["title"]);
    let status = pb::task_service_client::TaskServiceClient::new(app.channel().await)
        .create_task(authed(
            pb::CreateTaskRequest {
                project_id: project.clone(),
                title: "T".into(),
                description: nul.into(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(violations(&status), ["description"]);
    let status = app
        .admin()
        .await
        .create_division(authed(
            pb::CreateDivisionRequest { name: nul.into() },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(violations(&status), ["name"]);
}
