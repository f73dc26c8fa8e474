//! Server-streaming RPCs over HTTP: Server-Sent Events by default (one `data:` JSON event per
//! message, `id:` from a message's `cursor` field, `event: error` with the status on
//! failure, comment-line heartbeats), or NDJSON when the client accepts
//! `application/x-ndjson`. When the HTTP client goes away the body is dropped, and with it
//! the in-process call, so the RPC is cancelled.

use crate::rest::{bind, copy_response_headers, grpc_request, prepare, routes::Route, status};
use axum::{
    Router,
    body::Body,
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures::{Stream, StreamExt, stream};
use http::{HeaderMap, HeaderValue};
use prost_reflect::{DynamicMessage, ReflectMessage, Value};
use std::{convert::Infallible, time::Duration};
use tonic::{Status, Streaming, metadata::MetadataMap};

/// How often an idle stream sends a heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// The request field a reconnecting client's `Last-Event-ID` fills, by convention.
const RESUME_FIELD: &str = "resume_cursor";
/// The response field whose value becomes the SSE `id:`, by convention.
const CURSOR_FIELD: &str = "cursor";

/// Sets the request's `resume_cursor` from `Last-Event-ID` when the request has that field
/// and did not set it.
pub fn resume_from_last_event_id(message: &mut DynamicMessage, headers: &HeaderMap) {
    let Some(id) = headers.get("last-event-id").and_then(|v| v.to_str().ok()) else {
        return;
    };
    if let Some(field) = message.descriptor().get_field_by_name(RESUME_FIELD)
        && !message.has_field(&field)
    {
        message.set_field(&field, Value::String(id.to_owned()));
    }
}

/// Calls a server-streaming RPC and streams its messages to the HTTP client.
pub async fn respond(
    grpc: &Router,
    route: &Route,
    message: DynamicMessage,
    metadata: MetadataMap,
    headers: &HeaderMap,
    extensions: http::Extensions,
) -> Response {
    let (mut client, codec, path) = match prepare(grpc, &route.rpc).await {
        Ok(call) => call,
        Err(s) => return status::error_response(&s),
    };
    let result = client
        .server_streaming(
            grpc_request(message, metadata, extensions, crate::metrics::Protocol::Sse),
            path,
            codec,
        )
        .await;
    // A call that fails before its first message is an ordinary error response.
    let reply = match result {
        Ok(r) => r,
        Err(s) => return status::error_response(&s),
    };
    let (meta, messages, _) = reply.into_parts();
    let ndjson = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/x-ndjson"));
    let mut response = if ndjson {
        ndjson_response(messages)
    } else {
        Sse::new(sse_events(messages))
            .keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat"))
            .into_response()
    };
    copy_response_headers(&meta, response.headers_mut());
    response
}

/// Each message, or the final error, once: the stream ends after an error.
fn items(
    messages: Streaming<DynamicMessage>,
) -> impl Stream<Item = Result<DynamicMessage, Status>> {
    stream::unfold(Some(messages), |state| async move {
        let mut messages = state?;
        match messages.message().await {
            Ok(Some(m)) => Some((Ok(m), Some(messages))),
            Ok(None) => None,
            Err(s) => Some((Err(s), None)),
        }
    })
}

fn sse_events(
    messages: Streaming<DynamicMessage>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    items(messages).map(|item| {
        Ok(match item {
            Ok(m) => {
                let json = String::from_utf8(bind::to_json_bytes(&m)).unwrap_or_default();
                let event = Event::default().data(json);
                match cursor(&m) {
                    Some(id) => event.id(id),
                    None => event,
                }
            }
            Err(s) => Event::default()
                .event("error")
                .data(status::status_json(&s).to_string()),
        })
    })
}

fn ndjson_response(messages: Streaming<DynamicMessage>) -> Response {
    let lines = items(messages).map(|item| {
        let value = match item {
            Ok(m) => bind::to_json(&m),
            Err(s) => serde_json::json!({ "error": status::status_json(&s) }),
        };
        Ok::<_, Infallible>(format!("{value}\n"))
    });
    let mut response = Body::from_stream(lines).into_response();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    response
}

fn cursor(m: &DynamicMessage) -> Option<String> {
    let field = m.descriptor().get_field_by_name(CURSOR_FIELD)?;
    match m.get_field(&field).as_ref() {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}
