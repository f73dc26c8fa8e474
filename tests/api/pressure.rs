//! Bounded streams: a client too far behind to replay, or too slow to keep up, is told to
//! resync instead of making the server buffer without limit.

use crate::{
    events::{ann_and_bob_in_a_group, client, next, open, send, typing},
    helpers::*,
};
use epop::pb::{self, conversation_service_client::ConversationServiceClient, event::Kind};
use std::time::Duration;
use tonic::{Code, transport::Channel};

/// `token`'s event stream over a small HTTP/2 window, so that the server's per-stream buffer
/// is what fills up when the client stops reading.
async fn slow_stream(app: &TestApp, token: &str) -> tonic::Streaming<pb::Event> {
    let slow = Channel::from_shared(app.url())
        .unwrap()
        .initial_stream_window_size(Some(16 * 1024))
        .initial_connection_window_size(Some(64 * 1024))
        .connect()
        .await
        .unwrap();
    ConversationServiceClient::new(slow)
        .stream_events(authed(pb::StreamEventsRequest::default(), token))
        .await
        .unwrap()
        .into_inner()
}

/// Reads a stalled stream to its end: how many events `counted` matched, and whether it was
/// told to resync.
async fn drain(
    stream: &mut tonic::Streaming<pb::Event>,
    counted: impl Fn(&Kind) -> bool,
) -> (usize, bool) {
    let (mut n, mut resync) = (0, false);
    loop {
        let item = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("the stream ends rather than stalls");
        match item {
            Ok(Some(pb::Event { kind: Some(k), .. })) => {
                resync |= matches!(k, Kind::Resync(_));
                n += usize::from(counted(&k));
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return (n, resync),
        }
    }
}

/// Logs 1,001 events in conversation `g` of database `db` (read receipts, written directly
/// to be quick): more than a resume may replay.
pub(crate) async fn past_the_replay_limit(db: &str, g: &str) {
    db_sql(
        db,
        &format!(
            "WITH c AS (UPDATE conversations SET last_event_seq = last_event_seq + 1001 \
               WHERE id = '{g}' RETURNING last_event_seq) \
             INSERT INTO conversation_events (conversation_id, seq, body) \
             SELECT '{g}', s, jsonb_build_object('kind', 'read_receipt', 'user_id', '{g}', 'seq', 0) \
             FROM c, generate_series(c.last_event_seq - 1000, c.last_event_seq) AS s"
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_more_than_a_thousand_events_behind_is_told_to_resync() {
    let app = TestApp::spawn().await;
    let (ann, bob, g) = ann_and_bob_in_a_group(&app).await;
    let mut stream = open(&app, &bob, "").await;
    client(&app)
        .await
        .send_message(authed(send(&g, "marker"), &ann))
        .await
        .unwrap();
    let cursor = next(&mut stream).await.cursor;
    drop(stream);
    // 1,001 more events in the log.
    past_the_replay_limit(&app.db_name, &g).await;
    let mut resumed = open(&app, &bob, &cursor).await;
    assert!(
        matches!(next(&mut resumed).await.kind, Some(Kind::Resync(_))),
        "resync instead of replaying 1,001 events"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_is_told_to_resync_and_dropped() {
    // A flood of typing notices, past what the per-user write limit allows.
    let app = TestApp::spawn_with(|c| c.write_rate_limit = "off".parse().unwrap()).await;
    let (ann, bob, g) = ann_and_bob_in_a_group(&app).await;
    let mut stream = slow_stream(&app, &bob).await;
    // Bob reads nothing while Ann types 3,000 times.
    let mut typers = Vec::new();
    for _ in 0..8 {
        let (mut c, ann, g) = (client(&app).await, ann.clone(), g.clone());
        typers.push(tokio::spawn(async move {
            for _ in 0..375 {
                c.send_typing(authed(typing(&g), &ann)).await.unwrap();
            }
        }));
    }
    for t in typers {
        t.await.unwrap();
    }
    let (typing, resync) = drain(&mut stream, |k| matches!(k, Kind::Typing(_))).await;
    assert!(resync, "told to resync");
    assert!(
        typing < 3000,
        "dropped before everything was sent ({typing})"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_stream_is_bounded_in_bytes_not_only_in_events() {
    let app = TestApp::spawn().await;
    let (ann, bob, g) = ann_and_bob_in_a_group(&app).await;
    // Bob is in 1,000 more (quiet) conversations: every event's cursor is ~32 KB.
    let bob_id = my_id(&app, &bob).await;
    db_sql(
        &app.db_name,
        &format!(
            "WITH c AS (INSERT INTO conversations (title, is_group) \
               SELECT 'Quiet', true FROM generate_series(1, 1000) RETURNING id) \
             INSERT INTO conversation_members (conversation_id, user_id) \
             SELECT id, '{bob_id}' FROM c"
        ),
    )
    .await;
    let mut stream = slow_stream(&app, &bob).await;
    // Fewer events than the buffer holds (1,024), but more bytes (4 MiB).
    let mut c = client(&app).await;
    for i in 0..200 {
        c.send_message(authed(send(&g, &format!("m{i}")), &ann))
            .await
            .unwrap();
    }
    let (messages, resync) = drain(&mut stream, |k| matches!(k, Kind::MessageCreated(_))).await;
    assert!(resync, "told to resync after {messages} messages");
    assert!(
        messages < 200,
        "dropped before everything was sent ({messages})"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_flood_leaves_other_calls_fast_and_is_refused_past_the_queue() {
    use std::{
        sync::{
            Arc,
            atomic::{AtomicBool, AtomicUsize, Ordering},
        },
        time::Instant,
    };
    // Every sign-in limit off: only the bounded queue of password checks stands between the
    // flood and the rest of the server (with the limits on, nearly every flooding request
    // is refused before hashing, and this would pass without the queue's bound).
    let off = || "off".parse().unwrap();
    let app = TestApp::spawn_with(|c| {
        c.auth_rate_limit = off();
        c.login_lockout = off();
        c.login_address_failures = off();
        c.login_account_failures = off();
    })
    .await;
    let (_, bob) = user(&app, "bob").await;
    let channel = app.channel().await;
    let median_get_me = async || {
        let mut users = UserServiceClient::new(channel.clone());
        let mut times = vec![];
        for _ in 0..20 {
            let t = Instant::now();
            users
                .get_me(authed(pb::GetMeRequest {}, &bob))
                .await
                .expect("GetMe answers during the flood");
            times.push(t.elapsed());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        times.sort();
        times[times.len() / 2]
    };
    let idle = median_get_me().await;

    // 64 clients sign in with wrong passwords as fast as they are answered.
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicUsize::new(0));
    let mut flood = vec![];
    for _ in 0..64 {
        let (stop, refused, mut auth) = (stop.clone(), refused.clone(), app.auth().await);
        flood.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = auth
                    .login(pb::LoginRequest {
                        email: "bob@example.com".into(),
                        password: "wrong-password".into(),
                        return_refresh_token: false,
                    })
                    .await;
                match r.map_err(|s| s.code()) {
                    Err(Code::Unauthenticated) => {}
                    Err(Code::ResourceExhausted) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    other => panic!("a flooding login got {other:?}"),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let flooded = median_get_me().await;
    stop.store(true, Ordering::Relaxed);
    for f in flood {
        f.await.unwrap();
    }
    eprintln!(
        "GetMe median: {idle:?} idle, {flooded:?} during the flood; {} logins refused",
        refused.load(Ordering::Relaxed)
    );
    assert!(
        refused.load(Ordering::Relaxed) > 0,
        "logins past the queue are refused"
    );
    // Measured with every limit off (debug build, three runs): 3.6-3.8 ms idle, 15.7-19.3 ms
    // during the flood, about 6,300 logins refused by the queue.
    assert!(
        flooded < idle * 10 + Duration::from_millis(50),
        "GetMe took {flooded:?} during the flood, {idle:?} idle"
    );
}
