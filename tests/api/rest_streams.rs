//! Server streams over the REST edge, against small test services (the product's streaming
//! RPCs arrive with later issues): SSE framing, `id:` and `Last-Event-ID`, `event: error`,
//! NDJSON, and cancellation of the RPC when the HTTP client goes away.

use epop::{pb, rest::Rest};
use futures::StreamExt;
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};
use tonic::{Request, Response, Status, codegen::BoxStream, service::Routes};

/// Sets its flag when dropped: tells that the server's stream was dropped (cancelled).
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[derive(Clone)]
struct TestAi {
    dropped: Arc<AtomicBool>,
}

#[tonic::async_trait]
impl pb::ai_service_server::AiService for TestAi {
    /// Streams "a", "b", then either fails (model `fail`) or stays open forever.
    async fn chat(
        &self,
        request: Request<pb::ChatRequest>,
    ) -> Result<Response<BoxStream<pb::ChatChunk>>, Status> {
        let fail = request.get_ref().model == "fail";
        let flag = DropFlag(self.dropped.clone());
        let chunks = futures::stream::iter(["a", "b"]).map(|d| {
            Ok(pb::ChatChunk {
                chat_id: String::new(),
                model: String::new(),
                usage: None,
                delta: d.into(),
                finish_reason: String::new(),
            })
        });
        let tail = futures::stream::once(async move {
            let _flag = flag;
            if fail {
                Err(Status::resource_exhausted("quota used up"))
            } else {
                std::future::pending().await
            }
        });
        Ok(Response::new(Box::pin(chunks.chain(tail))))
    }
}

#[derive(Clone)]
struct TestEvents;

#[tonic::async_trait]
impl pb::conversation_service_server::ConversationService for TestEvents {
    /// Two events whose cursors continue from the resume cursor.
    async fn stream_events(
        &self,
        request: Request<pb::StreamEventsRequest>,
    ) -> Result<Response<BoxStream<pb::Event>>, Status> {
        let from: u64 = request.get_ref().resume_cursor.parse().unwrap_or(0);
        let events = (1..=2).map(move |i| {
            Ok(pb::Event {
                cursor: (from + i).to_string(),
                kind: Some(pb::event::Kind::Heartbeat(pb::Heartbeat { time: None })),
            })
        });
        Ok(Response::new(Box::pin(futures::stream::iter(events))))
    }
}

async fn serve(dropped: Arc<AtomicBool>) -> String {
    let grpc = Routes::new(pb::ai_service_server::AiServiceServer::new(TestAi {
        dropped,
    }))
    .add_service(pb::conversation_service_server::ConversationServiceServer::new(TestEvents))
    .into_axum_router();
    let admission = epop::rest::Admission {
        gate: None,
        bodies: epop::intake::Intake::new(1 << 20, Duration::from_secs(5)),
    };
    let app = Rest::new(
        pb::FILE_DESCRIPTOR_SET,
        grpc,
        &[],
        admission,
        Default::default(),
    )
    .unwrap()
    .router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// Reads the body until it holds `n` blank-line-separated SSE events.
async fn read_events(r: &mut reqwest::Response, n: usize) -> Vec<String> {
    let mut text = String::new();
    while text.matches("\n\n").count() < n {
        let chunk = tokio::time::timeout(Duration::from_secs(5), r.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_is_sent_as_server_sent_events_and_cancelled_when_the_client_leaves() {
    let dropped = Arc::new(AtomicBool::new(false));
    let base = serve(dropped.clone()).await;
    let mut r = reqwest::Client::new()
        .post(format!("{base}/api/ai/chat"))
        .json(&serde_json::json!({ "messages": [{ "role": "CHAT_ROLE_USER", "content": "hi" }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let events = read_events(&mut r, 2).await;
    assert_eq!(events, [r#"data: {"delta":"a"}"#, r#"data: {"delta":"b"}"#]);
    assert!(!dropped.load(Ordering::SeqCst), "the RPC is still running");
    drop(r);
    for _ in 0..50 {
        if dropped.load(Ordering::SeqCst) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the RPC was not cancelled when the HTTP client went away");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_stream_ends_with_an_error_event() {
    let base = serve(Arc::new(AtomicBool::new(false))).await;
    let mut r = reqwest::Client::new()
        .post(format!("{base}/api/ai/chat"))
        .json(&serde_json::json!({ "model": "fail" }))
        .send()
        .await
        .unwrap();
    let events = read_events(&mut r, 3).await;
    assert_eq!(
        events[2],
        r#"event: error
data: {"code":8,"details":[],"message":"quota used up"}"#
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ndjson_is_sent_when_the_client_asks_for_it() {
    let base = serve(Arc::new(AtomicBool::new(false))).await;
    let r = reqwest::Client::new()
        .post(format!("{base}/api/ai/chat"))
        .header("accept", "application/x-ndjson")
        .json(&serde_json::json!({ "model": "fail" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let body = r.text().await.unwrap();
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(
        lines,
        [
            r#"{"delta":"a"}"#,
            r#"{"delta":"b"}"#,
            r#"{"error":{"code":8,"details":[],"message":"quota used up"}}"#
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn resumable_streams_carry_ids_and_honour_last_event_id() {
    let base = serve(Arc::new(AtomicBool::new(false))).await;
    let http = reqwest::Client::new();
    let fresh = http
        .get(format!("{base}/api/events"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events: Vec<&str> = fresh.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(
        events,
        [
            "data: {\"cursor\":\"1\",\"heartbeat\":{}}\nid: 1",
            "data: {\"cursor\":\"2\",\"heartbeat\":{}}\nid: 2"
        ]
    );
    let resumed = http
        .get(format!("{base}/api/events"))
        .header("last-event-id", "41")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(resumed.starts_with("data: {\"cursor\":\"42\""), "{resumed}");
    assert!(resumed.contains("\nid: 42\n"), "{resumed}");
}
