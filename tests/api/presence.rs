//! Presence across instances behind Redis: a user is online while they hold a stream on any
//! instance, and offline (after the grace period) only when the last one, wherever it was,
//! has closed.

use crate::{
    events::{any_event, group, open, redis_url},
    helpers::*,
};
use epop::pb::{self, event::Kind};
use std::time::Duration;
use tonic::Streaming;

/// The next presence change of `user` within `wait`, if any.
async fn presence_of(
    stream: &mut Streaming<pb::Event>,
    user: &str,
    wait: Duration,
) -> Option<bool> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let e = tokio::time::timeout_at(deadline, stream.message())
            .await
            .ok()?
            .unwrap()
            .expect("the stream is open");
        if let Some(Kind::Presence(p)) = e.kind
            && p.user_id == user
        {
            return Some(p.online);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_with_streams_on_two_instances_stays_online_until_the_last_one_closes() {
    let (a, b) = two_instances(&redis_url()).await;
    let (_, ann) = user(&a, "ann").await;
    let (carol_id, carol) = user(&a, "carol").await;
    group(&a, &ann, &[&carol_id]).await;
    let mut watcher = open(&a, &ann, "").await;

    let on_a = open(&a, &carol, "").await;
    let wait = Duration::from_secs(5);
    assert_eq!(presence_of(&mut watcher, &carol_id, wait).await, Some(true));
    let on_b = open(&b, &carol, "").await;
    assert_eq!(
        presence_of(&mut watcher, &carol_id, Duration::from_secs(1)).await,
        None,
        "a second stream on another instance is no news"
    );
    drop(on_a);
    assert_eq!(
        presence_of(&mut watcher, &carol_id, Duration::from_secs(8)).await,
        None,
        "still online on B after A's grace period"
    );
    drop(on_b);
    assert_eq!(
        presence_of(&mut watcher, &carol_id, Duration::from_secs(10)).await,
        Some(false),
        "offline once the last stream, on B, has closed"
    );
}

/// The snapshot a new stream starts with, after any missed events.
async fn snapshot(stream: &mut Streaming<pb::Event>) -> Vec<String> {
    loop {
        if let Some(Kind::PresenceSnapshot(s)) = any_event(stream).await.kind {
            let mut online = s.online_user_ids;
            online.sort();
            return online;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_stream_learns_which_of_its_contacts_are_online_on_any_instance() {
    let (a, b) = two_instances(&redis_url()).await;
    let (ann_id, ann) = user(&a, "ann").await;
    let (carol_id, carol) = user(&a, "carol").await;
    let (dave_id, dave) = user(&a, "dave").await;
    let (eve_id, _) = user(&a, "eve").await;
    let (_, stranger) = user(&a, "stranger").await;
    group(&a, &ann, &[&carol_id, &dave_id, &eve_id]).await;

    let mut dave_on_a = open(&a, &dave, "").await;
    assert_eq!(snapshot(&mut dave_on_a).await, Vec::<String>::new());
    let _ann_on_a = open(&a, &ann, "").await;
    // Ann's claim is in Redis once her "online" has gone out.
    assert_eq!(
        presence_of(&mut dave_on_a, &ann_id, Duration::from_secs(5)).await,
        Some(true)
    );
    let mut carol_on_b = open(&b, &carol, "").await;
    let mut expected = vec![ann_id.clone(), dave_id.clone()];
    expected.sort();
    assert_eq!(
        snapshot(&mut carol_on_b).await,
        expected,
        "Ann and Dave, online on A; not Eve, who has no stream"
    );
    let mut stranger_on_b = open(&b, &stranger, "").await;
    assert_eq!(
        snapshot(&mut stranger_on_b).await,
        Vec::<String>::new(),
        "only people the caller shares a conversation with"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_users_of_a_killed_instance_go_offline_when_its_claims_lapse() {
    let redis = redis_url();
    let channel = format!("epop:test:{}", uuid::Uuid::new_v4());
    let a = TestApp::spawn_with(|c| {
        c.redis_url = Some(redis.clone().into());
        c.redis_channel = channel.clone();
        c.jwt_secret = Some(SHARED_SECRET.to_owned().into());
        c.presence_ttl = Duration::from_secs(3);
    })
    .await;
    let (mut b, b_url, _dir) = spawn_process(
        &a.db_name,
        &[
            ("REDIS_URL", &redis),
            ("EPOP_REDIS_CHANNEL", &channel),
            ("EPOP_PRESENCE_TTL", "3s"),
        ],
    )
    .await;
    let (_, ann) = user(&a, "ann").await;
    let (carol_id, carol) = user(&a, "carol").await;
    group(&a, &ann, &[&carol_id]).await;
    let mut watcher = open(&a, &ann, "").await;
    let on_b = tonic::transport::Channel::from_shared(b_url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let _carol_on_b = pb::conversation_service_client::ConversationServiceClient::new(on_b)
        .stream_events(authed(pb::StreamEventsRequest::default(), &carol))
        .await
        .unwrap();
    assert_eq!(
        presence_of(&mut watcher, &carol_id, Duration::from_secs(5)).await,
        Some(true)
    );
    b.kill().unwrap();
    b.wait().unwrap();
    // Nobody releases Carol's claim: it lapses (3 s), and A's sweep (every 1 s) tells.
    assert_eq!(
        presence_of(&mut watcher, &carol_id, Duration::from_secs(10)).await,
        Some(false),
        "offline once the dead instance's claim has lapsed"
    );
}
