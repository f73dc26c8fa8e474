//! The fleet on a Redis Cluster: six `redis-server`s in cluster mode (three masters, three
//! replicas), started by the test and joined by `redis-cli --cluster create`. Instances
//! given some of its nodes fan out over sharded channels (`SSUBSCRIBE`, none of the classic
//! ones), share presence, rate limits and lockouts; and when the master of a conversation's
//! channel is killed mid-traffic, its replica takes over, deliveries resume, and a live
//! stream and a resuming one both receive every message once and in order.

use crate::{
    events::{OwnRedis, client, created_text, group, next, open, send},
    helpers::*,
};
use epop::pb::{self, event::Kind};
use std::time::{Duration, Instant};
use tonic::{Code, Streaming};

/// Six nodes joined as three masters with a replica each; stopped on drop.
struct RedisCluster {
    nodes: Vec<OwnRedis>,
}

impl RedisCluster {
    async fn start() -> Self {
        let nodes: Vec<OwnRedis> = (0..6)
            .map(|_| {
                OwnRedis::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "1000",
                    // Replicas sync at once (not after the diskless sync's 5 s delay): a
                    // replica that never synced may not take over.
                    "--repl-diskless-sync-delay",
                    "0",
                ])
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = std::process::Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli is installed with redis-server");
        assert!(out.status.success(), "redis-cli --cluster create: {out:?}");
        let cluster = Self { nodes };
        let deadline = Instant::now() + Duration::from_secs(30);
        for n in &cluster.nodes {
            while !cluster.info(n.port).await.contains("cluster_state:ok") {
                assert!(Instant::now() < deadline, "the cluster never came up");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        // Every replica in sync with its master.
        let mut synced = 0;
        while synced < 3 {
            assert!(Instant::now() < deadline, "the replicas never synced");
            tokio::time::sleep(Duration::from_millis(100)).await;
            synced = 0;
            for n in &cluster.nodes {
                let info: String = redis::cmd("INFO")
                    .arg("replication")
                    .query_async(&mut cluster.conn(n.port).await)
                    .await
                    .unwrap_or_default();
                synced += usize::from(info.contains("master_link_status:up"));
            }
        }
        cluster
    }

    /// `REDIS_URL` for the instances: two of the nodes, as seeds.
    fn url(&self) -> String {
        format!("{},{}", self.nodes[0].url(), self.nodes[3].url())
    }

    async fn conn(&self, port: u16) -> redis::aio::MultiplexedConnection {
        redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    async fn info(&self, port: u16) -> String {
        redis::cmd("CLUSTER")
            .arg("INFO")
            .query_async(&mut self.conn(port).await)
            .await
            .unwrap_or_default()
    }

    /// The port of the master that serves `slot` now, as `port`'s node sees it.
    async fn master_of(&self, slot: u16, port: u16) -> Option<u16> {
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut self.conn(port).await)
            .await
            .ok()?;
        nodes.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let master = fields.get(2)?.contains("master") && !fields[2].contains("fail");
            let serves = fields.iter().skip(8).any(|range| {
                let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                matches!((lo.parse::<u16>(), hi.parse::<u16>()), (Ok(lo), Ok(hi)) if lo <= slot && slot <= hi)
            });
            let port = fields.get(1)?.split(['@', ':']).nth(1)?.parse().ok()?;
            (master && serves).then_some(port)
        })
    }

    /// The channels with subscribers on the node at `port`: (classic, sharded).
    async fn channels(&self, port: u16) -> (Vec<String>, Vec<String>) {
        let mut conn = self.conn(port).await;
        let classic: Vec<String> = redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .query_async(&mut conn)
            .await
            .unwrap();
        let sharded: Vec<String> = redis::cmd("PUBSUB")
            .arg("SHARDCHANNELS")
            .query_async(&mut conn)
            .await
            .unwrap();
        (classic, sharded)
    }
}

/// The texts of the next `n` new messages on `stream` within `wait`, skipping other events.
async fn texts(stream: &mut Streaming<pb::Event>, n: usize, wait: Duration) -> Vec<String> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while got.len() < n {
        let e = tokio::time::timeout_at(deadline, stream.message())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} messages arrived: {got:?}", got.len()))
            .unwrap()
            .expect("the stream is open");
        if let Some(Kind::MessageCreated(m)) = &e.kind {
            got.push(m.text.clone());
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_on_a_redis_cluster_fan_out_over_sharded_channels_and_share_limits() {
    let cluster = RedisCluster::start().await;
    let apps = instances(&cluster.url(), 2, |c| {
        c.write_rate_limit = "30/1m".parse().unwrap();
        c.login_lockout = "3/1m".parse().unwrap();
    })
    .await;
    let (a, b) = (&apps[0], &apps[1]);
    let (ann_id, ann) = user(a, "ann").await;
    let (bob_id, bob) = user(a, "bob").await;
    let g = group(a, &ann, &[&bob_id]).await;

    // Delivery across instances, in order.
    let mut on_b = open(b, &bob, "").await;
    let mut c = client(a).await;
    for i in 0..10 {
        c.send_message(authed(send(&g, &format!("m{i}")), &ann))
            .await
            .unwrap();
    }
    let want: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    assert_eq!(texts(&mut on_b, 10, Duration::from_secs(10)).await, want);

    // Only sharded channels are in use, spread over the masters.
    let mut sharded = 0;
    for n in &cluster.nodes {
        let (classic, shard) = cluster.channels(n.port).await;
        assert!(classic.is_empty(), "no classic channel: {classic:?}");
        sharded += shard.len();
    }
    assert!(
        sharded >= 16,
        "every sharded channel has subscribers: {sharded}"
    );

    // Presence: Ann's stream on A is seen from B.
    let _ann_on_a = open(a, &ann, "").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let e = tokio::time::timeout_at(deadline.into(), on_b.message())
            .await
            .expect("Ann comes online on B's stream")
            .unwrap()
            .unwrap();
        if let Some(Kind::Presence(p)) = e.kind
            && p.user_id == ann_id
        {
            assert!(p.online);
            break;
        }
    }

    // The per-user limit holds across the instances (counted in the cluster): Ann has sent
    // ten; alone, each instance would let her send thirty more.
    let mut on = [client(a).await, client(b).await];
    let mut refused_at = None;
    for i in 0..40 {
        let sent = on[i % 2]
            .send_message(authed(send(&g, &format!("n{i}")), &ann))
            .await;
        if let Err(e) = sent {
            assert_eq!(e.code(), Code::ResourceExhausted);
            refused_at = Some(i);
            break;
        }
    }
    assert!(
        refused_at.is_some_and(|i| i <= 20),
        "thirty writes a minute across both: refused at {refused_at:?}"
    );

    // The lockout too: three wrong passwords on A lock the account on B.
    for _ in 0..3 {
        let wrong = pb::LoginRequest {
            email: ADMIN_EMAIL.into(),
            password: "wrong-password".into(),
            ..Default::default()
        };
        let e = a.auth().await.login(wrong).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
    }
    let right = pb::LoginRequest {
        email: ADMIN_EMAIL.into(),
        password: ADMIN_PASSWORD.into(),
        ..Default::default()
    };
    let e = b.auth().await.login(right).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "locked on B too: {e:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_cluster_master_is_replaced_and_streams_miss_nothing_and_repeat_nothing() {
    let mut cluster = RedisCluster::start().await;
    let apps = instances(&cluster.url(), 2, |c| {
        c.write_rate_limit = "off".parse().unwrap();
    })
    .await;
    let (a, b) = (&apps[0], &apps[1]);
    let (_, ann) = user(a, "ann").await;
    let (bob_id, bob) = user(a, "bob").await;
    let (carol_id, carol) = user(a, "carol").await;
    let g = group(a, &ann, &[&bob_id, &carol_id]).await;
    let mut on_b = open(b, &bob, "").await;
    let mut carol_stream = open(b, &carol, "").await;
    let mut c = client(a).await;
    c.send_message(authed(send(&g, "m0"), &ann)).await.unwrap();
    assert_eq!(created_text(&next(&mut on_b).await), "m0");
    let first = next(&mut carol_stream).await;
    assert_eq!(created_text(&first), "m0");
    // Carol goes away, keeping her place.
    drop(carol_stream);

    // The master of the conversation's channel.
    let uuid: uuid::Uuid = g.parse().unwrap();
    let shard = (uuid.as_u128() % 16) as usize;
    let mut channels = Vec::new();
    for n in &cluster.nodes {
        channels.extend(cluster.channels(n.port).await.1);
    }
    channels.sort();
    channels.dedup();
    assert_eq!(channels.len(), 16, "{channels:?}");
    let slot = slot_of_shard(&channels, shard);
    let victim = cluster
        .master_of(slot, cluster.nodes[0].port)
        .await
        .expect("a master serves the channel's slot");

    // Traffic on: a message every 20 ms; the master dies after the first ten.
    let sender = {
        let (mut c, ann, g) = (c.clone(), ann.clone(), g.clone());
        tokio::spawn(async move {
            for i in 1..=150 {
                c.send_message(authed(send(&g, &format!("m{i}")), &ann))
                    .await
                    .expect("sends do not depend on Redis");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    assert_eq!(
        texts(&mut on_b, 10, Duration::from_secs(10)).await,
        (1..=10).map(|i| format!("m{i}")).collect::<Vec<_>>()
    );
    let killed = Instant::now();
    let node = cluster.nodes.iter_mut().find(|n| n.port == victim).unwrap();
    node.kill();

    // Bob's live stream gets every later message once and in order, across the failover.
    let rest = texts(&mut on_b, 140, Duration::from_secs(20)).await;
    let resumed = killed.elapsed();
    assert_eq!(
        rest,
        (11..=150).map(|i| format!("m{i}")).collect::<Vec<_>>()
    );
    sender.await.unwrap();
    let survivor = cluster
        .nodes
        .iter()
        .find(|n| n.port != victim)
        .unwrap()
        .port;
    let promoted = cluster.master_of(slot, survivor).await;
    assert!(
        promoted.is_some_and(|p| p != victim),
        "a replica took the slot over: {promoted:?}"
    );

    // A message after the failover arrives live.
    let sent = Instant::now();
    c.send_message(authed(send(&g, "after"), &ann))
        .await
        .unwrap();
    assert_eq!(
        texts(&mut on_b, 1, Duration::from_secs(10)).await,
        ["after"]
    );
    let live = sent.elapsed();

    // Carol resumes from her place, on A, and gets each missed message once, in order.
    let mut resumed_stream = open(a, &carol, &first.cursor).await;
    let mut want: Vec<String> = (1..=150).map(|i| format!("m{i}")).collect();
    want.push("after".into());
    assert_eq!(
        texts(&mut resumed_stream, 151, Duration::from_secs(10)).await,
        want
    );
    eprintln!(
        "redis cluster failover: the last of 150 messages reached the live stream {resumed:?} after the kill; a message after it took {live:?}"
    );
}

/// The slot of the sharded channel that conversations of `shard` use, among `channels`
/// (each `{<channel>:<n>}` names its slot range by its position).
fn slot_of_shard(channels: &[String], shard: usize) -> u16 {
    let width = 16384 / 16;
    channels
        .iter()
        .map(|c| epop::redis_link::slot(c))
        .find(|s| usize::from(*s) / width == shard)
        .expect("a channel in the shard's range")
}
