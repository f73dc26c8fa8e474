//! Transport limits: slow headers are cut off, idle connections closed, connections are
//! capped, and replies are bounded in size.

use crate::{
    events::{ann_and_bob_in_a_group, client, send},
    helpers::*,
};
use epop::pb;
use std::time::Duration;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Reads what the server sends until it closes, within `limit`; None if it stays open.
async fn read_until_closed(tcp: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut got = vec![];
    tokio::time::timeout(limit, async {
        let mut buf = [0u8; 1024];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()?;
    Some(String::from_utf8_lossy(&got).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_sends_headers_too_slowly_is_cut_off() {
    let app = TestApp::spawn_with(|c| c.header_read_timeout = Duration::from_secs(1)).await;
    let mut tcp = TcpStream::connect(app.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // ... and never the blank line that ends the headers.
    let closed = read_until_closed(&mut tcp, Duration::from_secs(5)).await;
    assert!(closed.is_some(), "the connection stayed open");
    // A prompt client is unaffected.
    let mut tcp = TcpStream::connect(app.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let reply = read_until_closed(&mut tcp, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

/// An HTTP/2 (h2c) connection to `app` and its task, which ends when the connection closes.
async fn h2_connection(
    app: &TestApp,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    tokio::task::JoinHandle<hyper::Result<()>>,
) {
    let tcp = TcpStream::connect(app.addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    (send, tokio::spawn(conn))
}

fn get(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
) -> http::Request<http_body_util::Empty<bytes::Bytes>> {
    let mut req = http::Request::get(format!("{}{path}", app.url()));
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    req.body(http_body_util::Empty::new()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_without_a_call_in_flight_are_closed_after_the_idle_timeout() {
    let app = TestApp::spawn_with(|c| {
        c.idle_timeout = Duration::from_secs(1);
        c.header_read_timeout = Duration::from_secs(30);
    })
    .await;
    let (ann, bob, conversation) = ann_and_bob_in_a_group(&app).await;

    // HTTP/2: one call, then nothing: the server says GOAWAY and the connection ends.
    let (mut idle, idle_conn) = h2_connection(&app).await;
    let reply = idle.send_request(get(&app, "/readyz", None)).await.unwrap();
    assert_eq!(reply.status(), 200);
    drop(reply);
    let started = std::time::Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(10), idle_conn).await;
    assert!(ended.is_ok(), "the idle HTTP/2 connection stayed open");
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );

    // An open event stream is a call in flight: its connection outlives the timeout and the
    // stream keeps delivering; once the stream is dropped, the connection goes idle and ends.
    let (mut streaming, streaming_conn) = h2_connection(&app).await;
    let mut events = streaming
        .send_request(get(&app, "/api/events", Some(&bob)))
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !streaming_conn.is_finished(),
        "a streaming connection was closed as idle"
    );
    let another = streaming.send_request(get(&app, "/readyz", None)).await;
    assert_eq!(
        another
            .expect("the streaming connection was closing")
            .status(),
        200
    );
    client(&app)
        .await
        .send_message(authed(send(&conversation, "still here"), &ann))
        .await
        .unwrap();
    let mut seen = String::new();
    while !seen.contains("still here") {
        use http_body_util::BodyExt;
        let frame = tokio::time::timeout(Duration::from_secs(10), events.body_mut().frame())
            .await
            .expect("the stream went quiet")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(frame.data_ref().unwrap()));
    }
    drop(events);
    let ended = tokio::time::timeout(Duration::from_secs(10), streaming_conn).await;
    assert!(
        ended.is_ok(),
        "the connection stayed open after its stream ended"
    );

    // HTTP/1.1 keep-alive: an idle connection is closed too (by whichever comes first: the
    // idle timeout or the header-read timeout for the next request).
    let mut tcp = TcpStream::connect(app.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let reply = read_until_closed(&mut tcp, Duration::from_secs(10)).await;
    let reply = reply.expect("the idle keep-alive connection stayed open");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_past_the_cap_wait_until_one_closes() {
    let app = TestApp::spawn_with(|c| c.max_connections = 2).await;
    let idle_a = TcpStream::connect(app.addr).await.unwrap();
    let _idle_b = TcpStream::connect(app.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = TcpStream::connect(app.addr).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let waiting = read_until_closed(&mut third, Duration::from_millis(700)).await;
    assert!(waiting.is_none(), "served past the cap: {waiting:?}");
    drop(idle_a);
    let reply = read_until_closed(&mut third, Duration::from_secs(5))
        .await
        .expect("served once a place is free");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reply_larger_than_the_message_limit_is_refused_not_sent() {
    let app = TestApp::spawn_with(|c| c.max_message_bytes = 2048).await;
    let (ann, _, g) = ann_and_bob_in_a_group(&app).await;
    let mut c = client(&app).await;
    for _ in 0..10 {
        c.send_message(authed(send(&g, &"x".repeat(300)), &ann))
            .await
            .unwrap();
    }
    let list = |size| pb::ListMessagesRequest {
        conversation_id: g.clone(),
        page_size: size,
        ..Default::default()
    };
    c.list_messages(authed(list(2), &ann))
        .await
        .expect("a small page fits");
    let err = c.list_messages(authed(list(10), &ann)).await.unwrap_err();
    // tonic answers OUT_OF_RANGE, naming the size and the limit.
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err:?}");
    assert!(err.message().contains("limit"), "{err:?}");
}

/// A gRPC-Web call over HTTP/1.1 with a bad token, written as a browser or Node client does
/// it: headers first, the body after a pause, in pieces. The server must answer
/// UNAUTHENTICATED after reading the (small) body, not drop the connection while it is
/// written (which clients see as EPIPE or a reset); a stranger's body past 64 KiB is not read
/// (tests/api/intake.rs).
async fn early_refusal(app: &TestApp, body_len: usize, token: &str) -> String {
    let mut tcp = TcpStream::connect(app.addr).await.unwrap();
    // One gRPC-Web frame: flag 0, length, then a GetMe request padded with an unknown field
    // (bytes field 15) so the body is large enough not to fit in socket buffers.
    let pad = body_len - 5 - 6;
    let mut msg = vec![0x7a];
    let mut n = pad;
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            msg.push(b);
            break;
        }
        msg.push(b | 0x80);
    }
    msg.extend(std::iter::repeat_n(b'x', pad - msg.len()));
    let mut body = vec![0u8];
    body.extend((msg.len() as u32).to_be_bytes());
    body.extend(&msg);
    let head = format!(
        "POST /epop.v1.UserService/GetMe HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\n\
         Authorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for piece in body.chunks(64 * 1024) {
        tcp.write_all(piece)
            .await
            .expect("the server keeps reading the body it will refuse");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut got = vec![];
    let mut buf = [0u8; 4096];
    let reply = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let n = tcp.read(&mut buf).await.expect("no reset");
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got);
            if text.contains("grpc-status") && text.contains("\r\n\r\n") {
                break;
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    })
    .await
    .expect("an answer");
    reply.to_ascii_lowercase()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grpc_web_call_refused_early_over_http1_still_gets_its_code() {
    let app = TestApp::spawn_with(|c| c.max_message_bytes = 1 << 20).await;
    // A stranger's body is read up to 64 KiB (tests/api/intake.rs for larger ones).
    for len in [2_000, 60_000] {
        let reply = early_refusal(&app, len, "not-a-token").await;
        assert!(reply.starts_with("http/1.1 200"), "{reply}");
        assert!(reply.contains("grpc-status: 16"), "{len} bytes: {reply}");
    }
    // Over the message limit: RESOURCE_EXHAUSTED, also after the whole body was sent.
    let token = app.admin_token().await;
    let reply = early_refusal(&app, 4 << 20, &token).await;
    assert!(reply.contains("grpc-status: 8"), "{reply}");
}
