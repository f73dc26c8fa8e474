//! Transport limits: slow headers are cut off, connections are capped, and replies are
//! bounded in size.

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
