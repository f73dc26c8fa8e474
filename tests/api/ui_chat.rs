//! POST /api/ai/ui-chat: the AI SDK's UI message stream protocol, by hand (the SDK's own
//! client: clients/ts/test/ai-sdk.ts). And ChatRequest.start_if_missing, which it uses.

use crate::{fake_ai::FakeAi, helpers::*};
use epop::pb;

/// The JSON parts of a UI message stream, and whether it ended with `[DONE]`.
fn stream_parts(body: &str) -> (Vec<serde_json::Value>, bool) {
    let data: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    let done = data.last() == Some(&"[DONE]");
    let parts = data
        .iter()
        .filter(|d| **d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    (parts, done)
}

async fn ask(app: &TestApp, token: &str, id: &str, text: &str) -> reqwest::Response {
    let body = serde_json::json!({
        "id": id,
        "trigger": "submit-message",
        "messages": [{ "id": "m1", "role": "user", "parts": [{ "type": "text", "text": text }] }],
    });
    reqwest::Client::new()
        .post(format!("{}/api/ai/ui-chat", app.url()))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ui_chat_route_speaks_the_ai_sdk_stream_protocol_into_saved_chats() {
    let fake = FakeAi::start().await;
    let app = TestApp::spawn_with(|c| fake.configure(c)).await;
    let (_, ann) = user(&app, "ann").await;
    let r = ask(&app, &ann, "my-sdk-chat", "Hello?").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-vercel-ai-ui-message-stream"], "v1");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let (parts, done) = stream_parts(&r.text().await.unwrap());
    assert!(done, "ends with [DONE]");
    let kinds: Vec<&str> = parts.iter().map(|p| p["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"start"));
    assert_eq!(&kinds[1..2], ["text-start"]);
    assert!(kinds.contains(&"text-delta"));
    assert_eq!(&kinds[kinds.len() - 2..], ["text-end", "finish"]);
    let chat = parts[0]["messageMetadata"]["chatId"]
        .as_str()
        .unwrap()
        .to_owned();
    // The same SDK id continues the same saved chat; another user's same id is another chat.
    let r = ask(&app, &ann, "my-sdk-chat", "And then?").await;
    let (again, _) = stream_parts(&r.text().await.unwrap());
    assert_eq!(again[0]["messageMetadata"]["chatId"], chat.as_str());
    let (_, bob) = user(&app, "bob").await;
    let r = ask(&app, &bob, "my-sdk-chat", "Hi").await;
    let (bobs, _) = stream_parts(&r.text().await.unwrap());
    assert_ne!(bobs[0]["messageMetadata"]["chatId"], chat.as_str());
    let mut ai = pb::ai_service_client::AiServiceClient::new(app.channel().await);
    let saved = ai
        .get_chat(authed(
            pb::GetChatRequest {
                id: chat.clone(),
                ..Default::default()
            },
            &ann,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(saved.turns.len(), 4, "two questions and two answers");
    // A saved chat's own id (from ListChats) continues it too.
    let r = ask(&app, &ann, &chat, "Third?").await;
    let (third, _) = stream_parts(&r.text().await.unwrap());
    assert_eq!(third[0]["messageMetadata"]["chatId"], chat.as_str());
    // Refusals are plain HTTP errors: no token, or not a chat request.
    let r = reqwest::Client::new()
        .post(format!("{}/api/ai/ui-chat", app.url()))
        .json(&serde_json::json!({ "id": "x", "messages": [] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = reqwest::Client::new()
        .post(format!("{}/api/ai/ui-chat", app.url()))
        .bearer_auth(&ann)
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}
