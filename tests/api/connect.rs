//! The Connect protocol on the same port (issue 35), spoken by hand with reqwest: unary JSON,
//! binary and GET, a server stream in envelopes ending with its end-of-stream message, and
//! Connect's error JSON with details. Connect-ES itself: clients/ts/test (scripts/clients).

use crate::helpers::*;
use base64::{Engine, engine::general_purpose::STANDARD_NO_PAD};
use epop::pb;
use prost::Message;
use std::time::Duration;

fn post(app: &TestApp, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", app.url()))
        .header("connect-protocol-version", "1");
    match token {
        Some(t) => r.bearer_auth(t),
        None => r,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unary_calls_answer_json_binary_and_get_with_connect_errors() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    // JSON.
    let r = post(&app, "/epop.v1.UserService/GetMe", Some(&token))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let me: serde_json::Value = r.json().await.unwrap();
    assert_eq!(me["email"], ADMIN_EMAIL);
    // Binary.
    let r = post(&app, "/epop.v1.UserService/GetMe", Some(&token))
        .header("content-type", "application/proto")
        .body(pb::GetMeRequest {}.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/proto");
    let me = pb::User::decode(r.bytes().await.unwrap()).unwrap();
    assert_eq!(me.email, ADMIN_EMAIL);
    // GET, for a method without side effects.
    let get = |path: &str| {
        reqwest::Client::new()
            .get(format!("{}{path}", app.url()))
            .bearer_auth(&token)
    };
    let r = get("/epop.v1.UserService/GetMe?connect=v1&encoding=json&message=%7B%7D")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Binary, base64url in the query: the reply is binary too.
    let message = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b"");
    let r = get(&format!(
        "/epop.v1.UserService/GetMe?connect=v1&encoding=proto&base64=1&message={message}"
    ))
    .send()
    .await
    .unwrap();
    assert_eq!(r.headers()["content-type"], "application/proto");
    assert_eq!(
        pb::User::decode(r.bytes().await.unwrap()).unwrap().email,
        ADMIN_EMAIL
    );
    let r = get("/epop.v1.ProjectService/CreateProject?connect=v1&encoding=json&message=%7B%7D")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405, "a method with side effects is not a GET");
    // Errors: Connect's JSON, with the BadRequest detail in binary.
    let r = post(&app, "/epop.v1.ProjectService/CreateProject", Some(&token))
        .header("content-type", "application/json")
        .body(r#"{"name": ""}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["code"], "invalid_argument", "{e}");
    assert_eq!(e["details"][0]["type"], "google.rpc.BadRequest", "{e}");
    let raw = STANDARD_NO_PAD
        .decode(e["details"][0]["value"].as_str().unwrap())
        .unwrap();
    let bad = tonic_types::pb::BadRequest::decode(&raw[..]).unwrap();
    assert_eq!(bad.field_violations[0].field, "name");
    let r = post(&app, "/epop.v1.UserService/GetMe", None)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["code"], "unauthenticated");
    // connect-timeout-ms becomes the call's deadline; an unknown procedure is a 404.
    let r = post(&app, "/epop.v1.UserService/NoSuchThing", Some(&token))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = post(&app, "/epop.v1.UserService/GetMe", Some(&token))
        .header("content-type", "application/connect+json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        415,
        "a unary method with a streaming content type"
    );
}

/// Splits Connect envelopes: (flags, data).
fn envelopes(mut b: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = vec![];
    while b.len() >= 5 {
        let len = u32::from_be_bytes(b[1..5].try_into().unwrap()) as usize;
        out.push((b[0], b[5..5 + len].to_vec()));
        b = &b[5 + len..];
    }
    out
}

fn envelope(data: &[u8]) -> Vec<u8> {
    let mut b = vec![0];
    b.extend((data.len() as u32).to_be_bytes());
    b.extend(data);
    b
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_stream_is_sent_in_envelopes_and_ends_with_its_error() {
    let app = TestApp::spawn().await;
    let (_, ann) = user(&app, "ann").await;
    let (bob_id, _) = user(&app, "bob").await;
    let group = crate::events::group(&app, &ann, &[&bob_id]).await;
    let mut r = post(
        &app,
        "/epop.v1.ConversationService/StreamEvents",
        Some(&ann),
    )
    .header("content-type", "application/connect+json")
    .body(envelope(b"{}"))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/connect+json");
    tokio::time::sleep(Duration::from_millis(300)).await;
    crate::events::client(&app)
        .await
        .send_message(authed(crate::events::send(&group, "over connect"), &ann))
        .await
        .unwrap();
    let mut got = vec![];
    let found = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(chunk) = r.chunk().await.unwrap() {
            got.extend_from_slice(&chunk);
            let text = String::from_utf8_lossy(&got);
            if text.contains("over connect") {
                return;
            }
        }
    })
    .await;
    assert!(found.is_ok(), "{}", String::from_utf8_lossy(&got));
    let frames = envelopes(&got);
    assert!(frames.iter().all(|(flags, _)| *flags == 0));
    let event: serde_json::Value = serde_json::from_slice(&frames.last().unwrap().1).unwrap();
    assert_eq!(event["messageCreated"]["text"], "over connect", "{event}");
    // A stream that fails: HTTP 200, no message, and the error in the end-of-stream message.
    let r = post(
        &app,
        "/epop.v1.ConversationService/StreamEvents",
        Some(&ann),
    )
    .header("content-type", "application/connect+json")
    .body(envelope(br#"{"resumeCursor": "not-a-cursor"}"#))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let frames = envelopes(&r.bytes().await.unwrap());
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].0, 0b10, "end of stream");
    let end: serde_json::Value = serde_json::from_slice(&frames[0].1).unwrap();
    assert_eq!(end["error"]["code"], "invalid_argument", "{end}");
}
