//! POST /api/ai/ui-chat: the AI SDK's UI message stream protocol, by hand (the SDK's own
//! client: clients/ts/test/ai-sdk.ts). And ChatRequest.start_if_missing, which it uses.

use crate::{events::redis_url, fake_ai::FakeAi, helpers::*};
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

/// An answer slow enough to rejoin in the middle: 20 tokens, 150 ms apart.
const SLOW: &str = "tokens=20 every=150";
const TOKENS: usize = 20;

/// Reads `r` until its first text delta, then drops it (the client went away mid-answer).
async fn leave_after_first_delta(mut r: reqwest::Response) {
    let mut seen = String::new();
    while let Some(chunk) = r.chunk().await.unwrap() {
        seen.push_str(&String::from_utf8_lossy(&chunk));
        if seen.contains("text-delta") {
            return;
        }
    }
    panic!("the answer ended before its first delta: {seen}");
}

async fn rejoin(app: &TestApp, token: &str, id: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{}/api/ai/ui-chat/{id}/stream", app.url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// The text of the deltas of a UI message stream.
fn answer_text(parts: &[serde_json::Value]) -> String {
    parts
        .iter()
        .filter(|p| p["type"] == "text-delta")
        .map(|p| p["delta"].as_str().unwrap())
        .collect()
}

/// Checks a rejoined stream: the whole answer from its start, to `[DONE]`, as saved.
async fn check_rejoined(r: reqwest::Response, saved_by: &TestApp, token: &str) {
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-vercel-ai-ui-message-stream"], "v1");
    let (parts, done) = stream_parts(&r.text().await.unwrap());
    assert!(done, "the rejoined stream ends with [DONE]");
    let kinds: Vec<&str> = parts.iter().map(|p| p["type"].as_str().unwrap()).collect();
    assert_eq!(
        &kinds[..2],
        ["start", "text-start"],
        "replayed from the start"
    );
    assert_eq!(&kinds[kinds.len() - 2..], ["text-end", "finish"]);
    let text = answer_text(&parts);
    let expected: String = (1..=TOKENS).map(|i| format!("t{i} ")).collect();
    assert_eq!(text, expected, "every delta once, in order");
    let chat = parts[0]["messageMetadata"]["chatId"].as_str().unwrap();
    let mut ai = pb::ai_service_client::AiServiceClient::new(saved_by.channel().await);
    let saved = ai
        .get_chat(authed(
            pb::GetChatRequest {
                id: chat.to_owned(),
                ..Default::default()
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(saved.turns.len(), 2, "the question and the whole answer");
    assert_eq!(saved.turns[1].content, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_whose_client_left_runs_on_and_can_be_rejoined_from_its_start() {
    let fake = FakeAi::start().await;
    let app = TestApp::spawn_with(|c| fake.configure(c)).await;
    let (_, ann) = user(&app, "ann").await;
    // Nothing in progress yet: 204, as the SDK's resume expects.
    assert_eq!(rejoin(&app, &ann, "reloaded").await.status(), 204);
    let r = ask(&app, &ann, "reloaded", SLOW).await;
    assert_eq!(r.status(), 200);
    leave_after_first_delta(r).await;
    // Another user's same id is not ann's answer; no credential is refused.
    let (_, bob) = user(&app, "bob").await;
    assert_eq!(rejoin(&app, &bob, "reloaded").await.status(), 204);
    let r = reqwest::Client::new()
        .get(format!("{}/api/ai/ui-chat/reloaded/stream", app.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    check_rejoined(rejoin(&app, &ann, "reloaded").await, &app, &ann).await;
    assert_eq!(fake.dropped(), 0, "the provider's answer was not cut off");
    // Ended: in the saved chat, not in progress.
    assert_eq!(rejoin(&app, &ann, "reloaded").await.status(), 204);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_started_on_one_instance_is_rejoined_on_another() {
    let fake = FakeAi::start().await;
    let (a, b) = two_instances_with(&redis_url(), |c| fake.configure(c)).await;
    let (_, ann) = user(&a, "ann").await;
    let r = ask(&a, &ann, "moved", SLOW).await;
    assert_eq!(r.status(), 200);
    leave_after_first_delta(r).await;
    check_rejoined(rejoin(&b, &ann, "moved").await, &b, &ann).await;
    assert_eq!(rejoin(&b, &ann, "moved").await.status(), 204);
    assert_eq!(fake.dropped(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_answer_in_a_chat_is_rejoined_alone_while_the_one_before_runs_on() {
    let fake = FakeAi::start().await;
    let (a, b) = two_instances_with(&redis_url(), |c| fake.configure(c)).await;
    let (_, ann) = user(&a, "ann").await;
    // A long answer, left; then a shorter one in the same chat, left too.
    leave_after_first_delta(ask(&a, &ann, "twice", "tokens=40 every=100").await).await;
    leave_after_first_delta(ask(&a, &ann, "twice", "tokens=8 every=150").await).await;
    let r = rejoin(&b, &ann, "twice").await;
    assert_eq!(r.status(), 200);
    let (parts, done) = stream_parts(&r.text().await.unwrap());
    assert!(done, "ends with [DONE]");
    let expected: String = (1..=8).map(|i| format!("t{i} ")).collect();
    assert_eq!(
        answer_text(&parts),
        expected,
        "the newer answer alone, whole"
    );
}
