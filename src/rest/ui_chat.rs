//! `POST /api/ai/ui-chat`: the AI SDK's UI message stream protocol (what `useChat` and its
//! `DefaultChatTransport` speak), backed by AiService.Chat called in process, so limits,
//! usage, saved history and context are the RPC's own.
//!
//! The request is the SDK's `{ id, messages: [{ role, parts: [{ type: "text", text }] }] }`
//! (plus `model`, `conversationId` or `projectId` when the app adds them). `id` names the
//! saved chat: a saved chat's UUID continues it, and any other id (the SDK's generated ones)
//! maps to a chat of the caller's of its own (UUIDv5 of the caller and the id), started on
//! first use; a saved chat is the history, so of `messages` only the last (the question) is
//! new. The answer is SSE `data:` parts: `start` (with `messageMetadata.chatId`),
//! `text-start`, `text-delta`s, `text-end`, `finish`, or `error` when the answer fails after
//! it started, then `[DONE]`; header `x-vercel-ai-ui-message-stream: v1`. A call refused
//! before it answers is an HTTP error with the REST edge's JSON.
//!
//! Answers are resumable (the SDK's `resume: true`): an answer runs to its end and is saved
//! even when its client goes away, and `GET /api/ai/ui-chat/{id}/stream` rejoins the caller's
//! answer in progress for chat `id` from its first part (on any instance when Redis is
//! configured), or answers 204 when none is. Stopping an answer is therefore not closing its
//! request; it ends on its own, or at the assistant's answer timeout.

use crate::{
    auth::Caller,
    pb::{self, ai_service_client::AiServiceClient},
    rest::{Rest, admit, status},
};
use axum::{
    extract::{Request, State},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures::{Stream, StreamExt, stream};
use serde::Deserialize;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use tonic::Status;
use uuid::Uuid;

pub mod answers;

/// The route.
pub const PATH: &str = "/api/ai/ui-chat";
/// The route that rejoins an answer in progress.
pub const REJOIN_PATH: &str = "/api/ai/ui-chat/{id}/stream";
/// The RPC whose limits and authentication the routes take.
const RPC: &str = "/epop.v1.AiService/Chat";

/// The namespace of chat ids derived from the SDK's chat ids.
const NAMESPACE: Uuid = Uuid::from_u128(0x6570_6f70_2d75_692d_6368_6174_2d69_6473);

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UiRequest {
    id: String,
    messages: Vec<UiMessage>,
    #[serde(default)]
    model: String,
    #[serde(default)]
    conversation_id: String,
    #[serde(default)]
    project_id: String,
}

#[derive(Debug, Deserialize)]
struct UiMessage {
    role: String,
    #[serde(default)]
    parts: Vec<UiPart>,
}

#[derive(Debug, Deserialize)]
struct UiPart {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: String,
}

/// The handler.
pub async fn handle(State(rest): State<Rest>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let taken = admit::take(
        &rest.admission,
        &parts,
        body,
        RPC,
        super::MAX_BODY,
        crate::metrics::Protocol::Sse,
        super::refusal_response,
    )
    .await;
    let taken = match taken {
        Ok(t) => t,
        Err(answer) => return answer,
    };
    let Some(caller) = taken.extensions.get::<Caller>().copied() else {
        return status::error_response(&Status::unauthenticated("sign in first"));
    };
    let request = match chat_request(&caller, &taken.bytes) {
        Ok(r) => r,
        Err(s) => return status::error_response(&s),
    };
    let key = format!("{}:{}", caller.user_id.0, request.chat_id);
    let mut client = AiServiceClient::new(rest.grpc.clone());
    let mut call = tonic::Request::from_parts(taken.metadata, taken.extensions, request);
    call.extensions_mut().insert(crate::metrics::Protocol::Sse);
    let chunks = match client.chat(call).await {
        Ok(r) => r.into_inner(),
        Err(s) => return status::error_response(&s),
    };
    // The answer runs in a task of its own, recorded for rejoining, to its end: the client
    // gets its parts while it listens.
    let mut recorder = rest.answers.begin(&key).await;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Arc<str>>();
    tokio::spawn(async move {
        let mut parts = std::pin::pin!(parts_of(chunks));
        while let Some(part) = parts.next().await {
            let part: Arc<str> = part.into();
            // The listening client first; the record after.
            let _ = tx.send(part.clone());
            recorder.push(&part).await;
        }
        recorder.end().await;
    });
    sse(tokio_stream::wrappers::UnboundedReceiverStream::new(rx).boxed())
}

/// `GET /api/ai/ui-chat/{id}/stream`: the caller's answer in progress in chat `id`, from its
/// first part, or 204.
pub async fn rejoin(
    State(rest): State<Rest>,
    axum::extract::Path(id): axum::extract::Path<String>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let taken = admit::take(
        &rest.admission,
        &parts,
        body,
        RPC,
        0,
        crate::metrics::Protocol::Sse,
        super::refusal_response,
    )
    .await;
    let caller = match taken.map(|t| t.extensions.get::<Caller>().copied()) {
        Ok(Some(caller)) => caller,
        Ok(None) => return status::error_response(&Status::unauthenticated("sign in first")),
        Err(answer) => return answer,
    };
    let chat_id = match chat_id(&caller, &id) {
        Ok(id) => id,
        Err(s) => return status::error_response(&s),
    };
    let key = format!("{}:{chat_id}", caller.user_id.0);
    match rest.answers.rejoin(&key).await {
        Ok(Some(parts)) => sse(parts),
        Ok(None) => http::StatusCode::NO_CONTENT.into_response(),
        Err(answers::Busy) => {
            let busy = Status::unavailable("too many answers are being rejoined here: retry");
            let mut r = status::error_response(&busy);
            r.headers_mut()
                .insert("retry-after", http::HeaderValue::from_static("1"));
            r
        }
    }
}

/// The SSE response of a UI message stream's `data:` parts.
fn sse(parts: futures::stream::BoxStream<'static, Arc<str>>) -> Response {
    let events = parts.map(|p| Ok::<_, Infallible>(Event::default().data(&*p)));
    let mut r = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(super::stream::HEARTBEAT))
        .into_response();
    let h = r.headers_mut();
    h.insert(
        "x-vercel-ai-ui-message-stream",
        http::HeaderValue::from_static("v1"),
    );
    h.insert("x-accel-buffering", http::HeaderValue::from_static("no"));
    r
}

/// The saved chat of the SDK's chat `id`: a saved chat's UUID, or the caller's own chat of
/// that id.
fn chat_id(caller: &Caller, id: &str) -> Result<Uuid, Status> {
    if id.is_empty() || id.len() > 200 {
        return Err(Status::invalid_argument(
            "id: must have 1 to 200 characters",
        ));
    }
    Ok(Uuid::parse_str(id).unwrap_or_else(|_| {
        Uuid::new_v5(
            &NAMESPACE,
            format!("{}/{}", caller.user_id.0, id).as_bytes(),
        )
    }))
}

/// The Chat request of an SDK request.
fn chat_request(caller: &Caller, body: &[u8]) -> Result<pb::ChatRequest, Status> {
    let ui: UiRequest = serde_json::from_slice(body)
        .map_err(|e| Status::invalid_argument(format!("body: not a chat request: {e}")))?;
    let chat_id = chat_id(caller, &ui.id)?;
    let messages = ui
        .messages
        .into_iter()
        .filter_map(|m| {
            let role = match m.role.as_str() {
                "user" => pb::ChatRole::User,
                "assistant" => pb::ChatRole::Assistant,
                "system" => pb::ChatRole::System,
                _ => return None,
            };
            let text: Vec<String> = m
                .parts
                .into_iter()
                .filter(|p| p.kind == "text")
                .map(|p| p.text)
                .collect();
            let content = text.join("");
            (!content.is_empty()).then_some(pb::ChatMessage {
                role: role as i32,
                content,
            })
        })
        .collect();
    let context = match (ui.conversation_id.is_empty(), ui.project_id.is_empty()) {
        (false, _) => Some(pb::chat_request::Context::ConversationId(
            ui.conversation_id,
        )),
        (true, false) => Some(pb::chat_request::Context::ProjectId(ui.project_id)),
        (true, true) => None,
    };
    Ok(pb::ChatRequest {
        messages,
        model: ui.model,
        chat_id: chat_id.to_string(),
        start_if_missing: true,
        context,
    })
}

/// The UI message stream parts of an answer, ending with `[DONE]`.
fn parts_of(
    chunks: tonic::Streaming<pb::ChatChunk>,
) -> impl Stream<Item = String> + Send + 'static {
    let message_id = Uuid::new_v4().to_string();
    let part = |v: Value| v.to_string();
    let body = stream::unfold(
        (chunks, false, false),
        move |(mut chunks, started, done)| {
            let message_id = message_id.clone();
            async move {
                if done {
                    return None;
                }
                let (events, started, done) = match chunks.message().await {
                    Ok(Some(c)) => {
                        let mut events = vec![];
                        if !started {
                            let meta = json!({ "chatId": c.chat_id, "model": c.model });
                            events.push(part(json!({
                                "type": "start", "messageId": message_id, "messageMetadata": meta,
                            })));
                            events.push(part(json!({ "type": "text-start", "id": "text" })));
                        }
                        if !c.delta.is_empty() {
                            events.push(part(json!({
                                "type": "text-delta", "id": "text", "delta": c.delta,
                            })));
                        }
                        let finished = !c.finish_reason.is_empty();
                        if finished {
                            events.push(part(json!({ "type": "text-end", "id": "text" })));
                            events.push(part(json!({ "type": "finish" })));
                        }
                        (events, true, finished)
                    }
                    // Ended without a finish: the answer was cut off.
                    Ok(None) => (vec![part(json!({ "type": "finish" }))], started, true),
                    Err(s) => {
                        let error = json!({ "type": "error", "errorText": s.message() });
                        (vec![part(error)], started, true)
                    }
                };
                Some((stream::iter(events), (chunks, started, done)))
            }
        },
    );
    body.flatten()
        .chain(stream::once(async { "[DONE]".to_owned() }))
}
