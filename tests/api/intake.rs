//! Request bodies (issue 34, item 1): a stranger's body is not read past 64 KiB, every body
//! has a read deadline on every protocol, an oversized message is refused without being read
//! whole, and the bytes buffered for requests in flight share a budget.

use crate::helpers::*;
use bytes::Bytes;
use http_body_util::StreamBody;
use hyper::body::Frame;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use std::{
    convert::Infallible,
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::mpsc,
};

/// Sends `head` and then `sent` bytes of body (of the larger one it announced), and never the
/// rest. Writes the server refuses (a closed connection) end the sending.
async fn stall(app: &TestApp, head: &str, sent: usize) -> TcpStream {
    let mut tcp = TcpStream::connect(app.addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    let piece = vec![b'x'; 16 << 10];
    let mut left = sent;
    while left > 0 {
        let n = left.min(piece.len());
        if tcp.write_all(&piece[..n]).await.is_err() {
            break;
        }
        left -= n;
    }
    tcp
}

/// What the server sends back within `limit`, until it closes or resets the connection
/// (`closed`), or the first reply's head is complete and the connection stays open.
async fn answer(tcp: &mut TcpStream, limit: Duration) -> Option<(String, bool)> {
    let mut got = vec![];
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
            if text.contains("\r\n\r\n") && !text.contains("connection: close") {
                return false;
            }
        }
    })
    .await
    .ok()
    .map(|closed| (String::from_utf8_lossy(&got).to_ascii_lowercase(), closed))
}

fn grpc_web_head(path: &str, token: Option<&str>, length: usize) -> String {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/grpc-web+proto\r\n\
         X-Grpc-Web: 1\r\n{auth}Content-Length: {length}\r\n\r\n"
    )
}

fn rest_head(path: &str, token: Option<&str>, length: usize) -> String {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         {auth}Content-Length: {length}\r\n\r\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_strangers_body_is_not_read_past_64_kib_on_grpc_web_or_rest() {
    let app = TestApp::spawn().await;
    let cases = [
        grpc_web_head("/epop.v1.UserService/GetMe", None, 22_000_000),
        grpc_web_head(
            "/epop.v1.UserService/GetMe",
            Some("not-a-token"),
            22_000_000,
        ),
        rest_head("/api/conversations", None, 4_000_000),
    ];
    for head in cases {
        // 256 KiB of the announced megabytes, then nothing: the server must answer (or close)
        // at once instead of waiting for the rest.
        let started = Instant::now();
        let mut tcp = stall(&app, &head, 256 << 10).await;
        let (reply, closed) = answer(&mut tcp, Duration::from_secs(8))
            .await
            .unwrap_or_else(|| panic!("no answer and still open: {head}"));
        assert!(closed, "the connection is closed: {reply}");
        assert!(started.elapsed() < Duration::from_secs(6), "{head}");
        // The refusal is the answer when the client could read it before the close.
        if !reply.is_empty() {
            assert!(
                reply.contains("grpc-status: 16") || reply.starts_with("http/1.1 401"),
                "{reply}"
            );
        }
    }
    // A small body is read whole and refused on a connection that stays open.
    let mut tcp = stall(
        &app,
        &grpc_web_head("/epop.v1.UserService/GetMe", None, 2_000),
        2_000,
    )
    .await;
    let (reply, closed) = answer(&mut tcp, Duration::from_secs(5)).await.unwrap();
    assert!(!closed && reply.contains("grpc-status: 16"), "{reply}");
}

/// A native gRPC (HTTP/2) GetMe whose body is the frame header of a `declared`-byte message
/// and `sent` bytes of it, never finished; the grpc-status of the answer, or None for a
/// reset stream. Panics if nothing comes within `limit`.
async fn h2_stalled_call(
    app: &TestApp,
    token: &str,
    declared: u32,
    sent: usize,
    limit: Duration,
) -> Option<String> {
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    let mut first = vec![0u8];
    first.extend(declared.to_be_bytes());
    first.extend(vec![0u8; sent]);
    tx.send(Ok(Frame::data(Bytes::from(first)))).await.unwrap();
    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let req = http::Request::post(format!("{}/epop.v1.UserService/GetMe", app.url()))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {token}"))
        .body(body)
        .unwrap();
    let reply = tokio::time::timeout(limit, async {
        let response = client.request(req).await.ok()?;
        if let Some(s) = response.headers().get("grpc-status") {
            return Some(s.to_str().unwrap().to_owned());
        }
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .ok()?;
        body.trailers()?
            .get("grpc-status")
            .map(|s| s.to_str().unwrap().to_owned())
    })
    .await
    .expect("an answer within the limit");
    drop(tx);
    reply
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_body_is_cut_at_its_deadline_on_every_protocol() {
    let app = TestApp::spawn_with(|c| c.body_read_timeout = Duration::from_secs(1)).await;
    let token = app.admin_token().await;
    let t = Some(token.as_str());
    for head in [
        rest_head("/api/conversations", t, 1_000),
        grpc_web_head("/epop.v1.UserService/GetMe", t, 1_000),
    ] {
        let started = Instant::now();
        let mut tcp = stall(&app, &head, 10).await;
        let (reply, closed) = answer(&mut tcp, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("not cut: {head}"));
        assert!(closed, "{reply}");
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(900), "{took:?}");
        assert!(took < Duration::from_secs(4), "{took:?}");
        assert!(
            reply.is_empty()
                || reply.starts_with("http/1.1 408")
                || reply.contains("grpc-status: 4"),
            "{reply}"
        );
    }
    // Native gRPC: the call ends within the deadline too, not at the 30 s RPC limit.
    let started = Instant::now();
    let status = h2_stalled_call(&app, &token, 100, 10, Duration::from_secs(5)).await;
    assert_ne!(status.as_deref(), Some("0"));
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_message_is_refused_without_being_read_whole() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    // Native gRPC: a frame header announcing 100 MB against the 16 MiB limit, and a few bytes:
    // RESOURCE_EXHAUSTED or OUT_OF_RANGE at once, while the body is still open.
    let status = h2_stalled_call(&app, &token, 100_000_000, 1_000, Duration::from_secs(3)).await;
    assert!(
        matches!(status.as_deref(), Some("8") | Some("11")),
        "{status:?}"
    );
    // REST: a Content-Length over the 4 MiB limit is refused before the body is read.
    let started = Instant::now();
    let mut tcp = stall(
        &app,
        &rest_head("/api/conversations", Some(&token), 100_000_000),
        1_000,
    )
    .await;
    let (reply, closed) = answer(&mut tcp, Duration::from_secs(3))
        .await
        .expect("an answer at once");
    assert!(closed && reply.starts_with("http/1.1 413"), "{reply}");
    assert!(reply.contains("4194304 bytes"), "{reply}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_over_the_buffer_budget_wait_for_room_while_bodiless_calls_go_on() {
    let app = TestApp::spawn_with(|c| {
        c.request_buffer_bytes = 1 << 20;
        c.body_read_timeout = Duration::from_secs(3);
    })
    .await;
    let token = app.admin_token().await;
    let t = Some(token.as_str());
    // 900 KB of a 1 MB body held, stalled: most of the budget.
    let mut holder = stall(
        &app,
        &rest_head("/api/conversations", t, 1_000_000),
        900_000,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A complete 300 KB body does not fit until the holder is cut at its deadline.
    let body = format!("{{\"name\":\"{}\"}}", "n".repeat(300_000));
    let http = reqwest::Client::new();
    let waiting = {
        let (http, url, token, body) = (http.clone(), app.url(), token.clone(), body.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let r = http
                .post(format!("{url}/api/conversations"))
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            (r.status(), started.elapsed())
        })
    };
    // Meanwhile a call without a body is answered at once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let me = http
        .get(format!("{}/api/users/me", app.url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(1));
    let (status, waited) = waiting.await.unwrap();
    assert!(waited >= Duration::from_millis(1_800), "{waited:?}");
    // It got in once the holder was cut (and was then judged on its content).
    assert_ne!(status, 503, "{waited:?}");
    let (_, closed) = answer(&mut holder, Duration::from_secs(2)).await.unwrap();
    assert!(closed);
}
