//! Trace export: with `EPOP_OTLP_ENDPOINT` set, each request's span reaches an OTLP collector
//! (here a receiver built from the collector protocol's own definitions), named for its RPC,
//! in the caller's trace, with its status and user; at shutdown the buffered spans are sent.

use crate::helpers::*;
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::any_value::Value,
    trace::v1::{Span, span::SpanKind},
};
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

/// A collector that keeps every span it is sent.
#[derive(Default, Clone)]
struct Collector(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans = request.into_inner().resource_spans.into_iter();
        let spans = spans.flat_map(|r| r.scope_spans).flat_map(|s| s.spans);
        self.0.lock().unwrap().extend(spans);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn attribute(span: &Span, key: &str) -> Option<Value> {
    let kv = span.attributes.iter().find(|kv| kv.key == key)?;
    kv.value.as_ref()?.value.clone()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn request_spans_reach_the_collector_in_the_callers_trace_and_carry_no_secret() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let db_name = format!("epop_test_{}", uuid::Uuid::new_v4().simple());
    admin_sql(&format!("CREATE DATABASE {db_name}")).await;
    // A long schedule: the spans go out at shutdown, which proves the flush.
    let (mut child, url, _dir) = spawn_process(
        &db_name,
        &[
            ("EPOP_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
        ],
    )
    .await;

    let http = reqwest::Client::new();
    let login: serde_json::Value = http
        .post(format!("{url}/api/auth/login"))
        .json(&serde_json::json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["accessToken"].as_str().unwrap().to_owned();
    let (trace_id, parent_id) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let me = http
        .get(format!("{url}/api/users/me"))
        .header("traceparent", format!("00-{trace_id}-{parent_id}-01"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let me: serde_json::Value = me.json().await.unwrap();
    // A native gRPC call that fails on the caller's side, in a trace of its own.
    let mut users = epop::pb::user_service_client::UserServiceClient::connect(url.clone())
        .await
        .unwrap();
    let missing = users
        .get_user(authed(
            epop::pb::GetUserRequest {
                id: uuid::Uuid::new_v4().to_string(),
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        collector.0.lock().unwrap().is_empty(),
        "spans went out before the schedule"
    );

    let pid = child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    assert!(killed.unwrap().success());
    let exited = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap();
    assert!(exited.unwrap().success());
    let spans = collector.0.lock().unwrap().clone();

    let get_me = spans
        .iter()
        .find(|s| s.name == "epop.v1.UserService/GetMe")
        .unwrap_or_else(|| panic!("no GetMe span among {:?}", names(&spans)));
    assert_eq!(hex(&get_me.trace_id), trace_id);
    assert_eq!(hex(&get_me.parent_span_id), parent_id);
    assert_eq!(get_me.kind, SpanKind::Server as i32);
    assert_eq!(
        attribute(get_me, "user_id"),
        Some(Value::StringValue(me["id"].as_str().unwrap().into()))
    );
    assert_eq!(
        attribute(get_me, "rpc.grpc.status_code"),
        Some(Value::IntValue(0))
    );
    assert_eq!(
        attribute(get_me, "path"),
        Some(Value::StringValue("/api/users/me".into()))
    );

    let get_user = spans
        .iter()
        .find(|s| s.name == "epop.v1.UserService/GetUser")
        .unwrap_or_else(|| panic!("no GetUser span among {:?}", names(&spans)));
    assert_ne!(hex(&get_user.trace_id), trace_id);
    assert!(get_user.parent_span_id.is_empty());
    assert_eq!(
        attribute(get_user, "rpc.grpc.status_code"),
        Some(Value::IntValue(tonic::Code::NotFound as i64))
    );
    // NOT_FOUND is the caller's mistake, not a server error.
    assert_ne!(get_user.status.as_ref().map(|s| s.code), Some(2));

    let everything = format!("{spans:?}");
    for secret in [&token, ADMIN_PASSWORD] {
        assert!(!everything.contains(secret), "a secret was exported");
    }
}

fn names(spans: &[Span]) -> Vec<&str> {
    spans.iter().map(|s| s.name.as_str()).collect()
}
