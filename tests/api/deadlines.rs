//! Per-call deadlines (the client's `grpc-timeout`, bounded by the server's limit) and the
//! cap on concurrent calls per HTTP/2 connection.

use crate::{events::client, helpers::*, protocol::grpc_web_frame};
use epop::pb;
use std::time::Duration;
use tonic::Code;

fn login() -> tonic::Request<pb::LoginRequest> {
    tonic::Request::new(pb::LoginRequest {
        email: ADMIN_EMAIL.into(),
        password: ADMIN_PASSWORD.into(),
        return_refresh_token: false,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_unary_call_past_its_grpc_timeout_gets_deadline_exceeded_from_the_server() {
    let app = TestApp::spawn().await;
    // The header alone, from a client that keeps no timer of its own (tonic's would cancel
    // the call itself): checking a password takes far longer than a millisecond.
    let reply = reqwest::Client::builder()
        .http1_only()
        .build()
        .unwrap()
        .post(format!("{}/epop.v1.AuthService/Login", app.url()))
        .header("content-type", "application/grpc-web+proto")
        .header("grpc-timeout", "1m")
        .body(grpc_web_frame(login().get_ref()))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.headers()["grpc-status"], "4", "{:?}", reply.headers());
    let message = reply.headers()["grpc-message"].to_str().unwrap().to_owned();
    assert!(message.contains("deadline"), "{message}");
    let mut ample = login();
    ample
        .metadata_mut()
        .insert("grpc-timeout", "30S".parse().unwrap());
    app.auth()
        .await
        .login(ample)
        .await
        .expect("within its deadline");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_servers_own_limit_bounds_calls_that_ask_for_more_or_nothing() {
    let app = TestApp::spawn_with(|c| c.rpc_timeout = Duration::from_millis(1)).await;
    let mut long = login();
    long.metadata_mut()
        .insert("grpc-timeout", "1H".parse().unwrap());
    for request in [login(), long] {
        let e = app.auth().await.login(request).await.unwrap_err();
        assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_past_the_per_connection_stream_cap_wait_for_a_free_one() {
    let app = TestApp::spawn_with(|c| c.http2_max_streams = 2).await;
    let (_, ann) = user(&app, "ann").await;
    // One connection for all three calls.
    let mut conversations = client(&app).await;
    let open = |token: &str| {
        authed(
            pb::StreamEventsRequest {
                resume_cursor: String::new(),
            },
            token,
        )
    };
    let first = conversations.stream_events(open(&ann)).await.unwrap();
    let _second = conversations.stream_events(open(&ann)).await.unwrap();
    let mut third = conversations.clone();
    let waiting = tokio::spawn({
        let request = open(&ann);
        async move { third.stream_events(request).await }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !waiting.is_finished(),
        "a third call ran beside two on one connection"
    );
    drop(first);
    let third = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the third call starts once a stream is free")
        .unwrap();
    third.expect("and succeeds");
}
