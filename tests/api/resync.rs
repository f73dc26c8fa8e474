//! Past the replay limit, after a Redis outage: every open stream is told to resync, each
//! with a fresh cursor to continue from after reloading and its own random wait, so clients
//! neither loop on their old cursor nor all come back at the same moment.

use crate::{
    events::{OwnRedis, ann_and_bob_in_a_group, any_event, client, next, open, send},
    helpers::*,
};
use epop::pb::{self, event::Kind};
use std::time::Duration;

/// The next resync of `stream` (skipping anything else), within 20 s.
async fn resync_of(stream: &mut tonic::Streaming<pb::Event>) -> pb::Resync {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match stream.message().await.unwrap() {
                Some(pb::Event {
                    kind: Some(Kind::Resync(r)),
                    ..
                }) => return r,
                Some(_) => continue,
                None => panic!("the stream ended without a resync"),
            }
        }
    })
    .await
    .expect("a resync")
}

#[tokio::test(flavor = "multi_thread")]
async fn after_an_outage_past_the_replay_limit_each_stream_gets_a_fresh_cursor_and_its_own_wait() {
    let mut redis = OwnRedis::start();
    let app = TestApp::spawn_with(|c| {
        c.redis_url = Some(redis.url().into());
        c.redis_channel = format!("epop:test:{}", uuid::Uuid::new_v4());
    })
    .await;
    let (ann, bob, g) = ann_and_bob_in_a_group(&app).await;
    let mut streams = vec![];
    for _ in 0..8 {
        let mut s = open(&app, &bob, "").await;
        // Up: its presence snapshot arrived.
        any_event(&mut s).await;
        streams.push(s);
    }
    client(&app)
        .await
        .send_message(authed(send(&g, "before"), &ann))
        .await
        .unwrap();
    let mut old_cursor = String::new();
    for s in &mut streams {
        old_cursor = next(s).await.cursor;
    }

    // Redis goes away, and 1,001 events are logged meanwhile (written directly, to be quick).
    redis.kill();
    crate::pressure::past_the_replay_limit(&app.db_name, &g).await;
    redis.restart();

    // Back, the instance re-reads the log for every stream: too much to replay.
    let mut waits = vec![];
    let mut fresh = String::new();
    for s in &mut streams {
        let r = resync_of(s).await;
        assert!(!r.cursor.is_empty(), "{r:?}");
        assert!(r.reason.contains("reconnect with this cursor"), "{r:?}");
        let wait = r.retry_after.expect("a wait");
        let ms = wait.seconds * 1000 + i64::from(wait.nanos) / 1_000_000;
        assert!((250..=5000).contains(&ms), "{ms}");
        waits.push(ms);
        fresh = r.cursor;
    }
    waits.sort_unstable();
    waits.dedup();
    assert!(waits.len() >= 4, "spread, not one moment: {waits:?}");
    assert!(
        waits.last().unwrap() - waits.first().unwrap() >= 500,
        "{waits:?}"
    );

    // The old cursor only gets another resync; the fresh one continues, live.
    let mut again = open(&app, &bob, &old_cursor).await;
    resync_of(&mut again).await;
    let mut resumed = open(&app, &bob, &fresh).await;
    let first = any_event(&mut resumed).await;
    assert!(
        matches!(first.kind, Some(Kind::PresenceSnapshot(_))),
        "no resync, nothing to replay: {first:?}"
    );
    client(&app)
        .await
        .send_message(authed(send(&g, "after"), &ann))
        .await
        .unwrap();
    let e = next(&mut resumed).await;
    assert!(
        matches!(e.kind, Some(Kind::MessageCreated(_))),
        "live again: {e:?}"
    );
}
