//! Stream limits and graceful drain: a user's open streams are capped; when a server starts
//! shutting down it is no longer ready, its streams end UNAVAILABLE at once (clients resume on
//! another instance with nothing lost), new streams are refused, unary calls still work during
//! the shutdown delay.

use crate::{
    events::{client, group, next, redis_url, send, try_open},
    helpers::*,
};
use epop::pb::event::Kind;
use std::time::Duration;
use tonic::Code;

#[tokio::test(flavor = "multi_thread")]
async fn a_users_open_streams_are_capped_and_a_closed_one_frees_its_place() {
    let app = TestApp::spawn_with(|c| c.max_streams_per_user = 2).await;
    let (_, ann) = user(&app, "ann").await;
    let first = try_open(&app, &ann, "").await.expect("one");
    let _second = try_open(&app, &ann, "").await.expect("two");
    let e = try_open(&app, &ann, "")
        .await
        .expect_err("a third is refused");
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(e.message().contains("at most 2"), "{e:?}");
    let (_, bob) = user(&app, "bob").await;
    try_open(&app, &bob, "")
        .await
        .expect("another user has his own places");
    drop(first);
    let mut opened = false;
    for _ in 0..50 {
        if try_open(&app, &ann, "").await.is_ok() {
            opened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(opened, "a closed stream frees its place");
}

#[tokio::test(flavor = "multi_thread")]
async fn at_shutdown_streams_end_unavailable_and_resume_on_the_other_instance_with_nothing_lost() {
    let (a, b) = two_instances(&redis_url()).await;
    let (_, ann) = user(&a, "ann").await;
    let (bob_id, bob) = user(&a, "bob").await;
    let g = group(&a, &ann, &[&bob_id]).await;
    let mut stream = try_open(&a, &bob, "").await.unwrap();
    client(&a)
        .await
        .send_message(authed(send(&g, "m1"), &ann))
        .await
        .unwrap();
    let m1 = next(&mut stream).await;
    assert!(matches!(&m1.kind, Some(Kind::MessageCreated(m)) if m.text == "m1"));

    a.begin_stop();
    let ended = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(s) => return Some(s),
            }
        }
    })
    .await
    .expect("the stream ends at once, not after the grace period");
    let status = ended.expect("with a status");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("shutting down"), "{status:?}");

    client(&b)
        .await
        .send_message(authed(send(&g, "m2"), &ann))
        .await
        .unwrap();
    let mut resumed = try_open(&b, &bob, &m1.cursor).await.unwrap();
    let m2 = next(&mut resumed).await;
    assert!(
        matches!(&m2.kind, Some(Kind::MessageCreated(m)) if m.text == "m2"),
        "{m2:?}"
    );
    drop(a);
}

#[tokio::test(flavor = "multi_thread")]
async fn during_the_shutdown_delay_the_server_is_not_ready_refuses_streams_and_still_answers() {
    let app = TestApp::spawn_with(|c| c.shutdown_delay = Duration::from_secs(3)).await;
    let (_, ann) = user(&app, "ann").await;
    let http = reqwest::Client::new();
    let ready = |http: reqwest::Client, url: String| async move {
        http.get(format!("{url}/readyz"))
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(ready(http.clone(), app.url()).await, 200);
    app.begin_stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        ready(http.clone(), app.url()).await,
        503,
        "not ready once shutdown starts"
    );
    let e = try_open(&app, &ann, "").await.expect_err("no new stream");
    assert_eq!(e.code(), Code::Unavailable);
    let me = app
        .get_me(&ann)
        .await
        .expect("unary calls are still answered");
    assert_eq!(me.email, "ann@example.com");
}
