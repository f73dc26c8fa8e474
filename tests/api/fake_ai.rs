//! A fake OpenAI-compatible chat-completions server for the AI tests: it streams SSE chunks
//! with delays, as a real provider does, and does what the last user message asks:
//! `tokens=N` (5), `every=MS` (20), `status=CODE` (fail before streaming), `break` (cut the
//! connection after two tokens), `hang` (one token, then silence), `nul` (a NUL character in
//! every token: `t1\0x `). It records every request
//! body and how many answers were dropped by their client before they finished.

use axum::{
    Json, Router,
    body::Body,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use bytes::Bytes;
use serde_json::{Value, json};
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

/// What the fake saw.
#[derive(Default)]
pub struct Seen {
    /// Every request body.
    pub requests: Mutex<Vec<Value>>,
    /// Answers whose client went away before the end.
    pub dropped: AtomicUsize,
    /// The authorization headers received.
    pub keys: Mutex<Vec<String>>,
}

/// A running fake.
pub struct FakeAi {
    /// Its API base (`http://127.0.0.1:port/v1`).
    pub base: String,
    /// What it saw.
    pub seen: Arc<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeAi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Counts a dropped answer unless it finished.
struct Guard {
    seen: Arc<Seen>,
    finished: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.finished {
            self.seen.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn directive(body: &Value, key: &str) -> Option<String> {
    let question = body["messages"]
        .as_array()?
        .iter()
        .rev()
        .find(|m| m["role"] == "user")?["content"]
        .as_str()?
        .to_owned();
    question.split_whitespace().find_map(|w| {
        if w == key {
            Some(String::new())
        } else {
            w.strip_prefix(&format!("{key}=")).map(str::to_owned)
        }
    })
}

fn chunk(delta: Value, finish: Value) -> Bytes {
    let c = json!({
        "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1,
        "model": "fake-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    });
    Bytes::from(format!("data: {c}\n\n"))
}

async fn completions(seen: Arc<Seen>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    seen.requests.lock().unwrap().push(body.clone());
    if let Some(k) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        seen.keys.lock().unwrap().push(k.to_owned());
    }
    if let Some(code) = directive(&body, "status") {
        let status = StatusCode::from_u16(code.parse().unwrap()).unwrap();
        let error = json!({"error": {"message": "fake failure", "type": "fake", "param": null, "code": null}});
        return (status, [("retry-after", "0")], Json(error)).into_response();
    }
    let n: usize = directive(&body, "tokens").map_or(5, |t| t.parse().unwrap());
    let every = Duration::from_millis(directive(&body, "every").map_or(20, |t| t.parse().unwrap()));
    let cut = directive(&body, "break").is_some();
    let hang = directive(&body, "hang").is_some();
    let nul = directive(&body, "nul").is_some();
    let prompt_chars: usize = body["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|m| m["content"].as_str().unwrap_or("").len())
                .sum()
        })
        .unwrap_or(0);
    let stream = async_stream::stream! {
        let mut guard = Guard { seen, finished: false };
        for i in 1..=n {
            tokio::time::sleep(every).await;
            let text = if nul { format!("t{i}\u{0}x ") } else { format!("t{i} ") };
            yield Ok::<_, std::io::Error>(chunk(json!({"content": text}), Value::Null));
            if hang {
                std::future::pending::<()>().await;
            }
            if cut && i == 2 {
                guard.finished = true;
                // Let the token go out before the connection breaks.
                tokio::time::sleep(Duration::from_millis(200)).await;
                yield Err(std::io::Error::other("the fake cuts the connection"));
                return;
            }
        }
        yield Ok(chunk(json!({}), json!("stop")));
        let usage = json!({
            "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1,
            "model": "fake-model", "choices": [],
            "usage": {"prompt_tokens": prompt_chars / 4, "completion_tokens": n, "total_tokens": prompt_chars / 4 + n},
        });
        yield Ok(Bytes::from(format!("data: {usage}\n\n")));
        yield Ok(Bytes::from_static(b"data: [DONE]\n\n"));
        guard.finished = true;
    };
    (
        [("content-type", "text/event-stream")],
        Body::from_stream(stream),
    )
        .into_response()
}

impl FakeAi {
    /// Starts a fake on a free port.
    pub async fn start() -> Self {
        let seen = Arc::new(Seen::default());
        let s = seen.clone();
        let app = Router::new().route(
            "/v1/chat/completions",
            post(move |h: HeaderMap, b: Json<Value>| completions(s.clone(), h, b)),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            base: format!("http://{addr}/v1"),
            seen,
            task,
        }
    }

    /// Points `c` at this fake.
    pub fn configure(&self, c: &mut epop::config::Config) {
        c.ai.ai_base_url = Some(self.base.clone());
        c.ai.ai_model = "fake-model".into();
        c.ai.ai_api_key = Some("fake-key".to_owned().into());
    }

    /// The last request's messages as (role, content).
    pub fn last_messages(&self) -> Vec<(String, String)> {
        let r = self.seen.requests.lock().unwrap();
        r.last().unwrap()["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["role"].as_str().unwrap().to_owned(),
                    m["content"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// How many answers their client dropped before the end.
    pub fn dropped(&self) -> usize {
        self.seen.dropped.load(Ordering::SeqCst)
    }
}
