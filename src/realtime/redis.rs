//! Redis pub/sub fan-out between instances: one task publishes this instance's events in
//! order (in pipelines of what queued meanwhile; a failed publish is retried before the
//! next), and one subscriber per instance feeds every instance's events to the local
//! streams' inboxes. After each (re)subscription the local sessions re-read the log, so what
//! was published while the subscriber was away is not lost.
//!
//! On a single Redis, everything goes over one channel (`PUBLISH` / `SUBSCRIBE`); the
//! subscriber reconnects and resubscribes by itself (redis' PubSub does not). On a Redis
//! Cluster, classic pub/sub would copy every message to every node, so events go over
//! [`SHARDS`] sharded channels (`SPUBLISH` / `SSUBSCRIBE`, Redis 7) whose slots are spread
//! evenly over the slot space: each event reaches only the master (and replicas) of its
//! channel's slot. An event's channel follows from what it is about (its conversation,
//! project or user), so the events of one conversation keep their order. Every instance
//! subscribes to every channel, and subscribes again from a new view of the cluster when a
//! node's connection drops (a failover), then rewinds the sessions.

use crate::realtime::{BoardChange, Published, inboxes::Inboxes};
use crate::redis_link::Redis;
use futures::StreamExt;
use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How many events may wait for the publisher task.
const QUEUE: usize = 65_536;
/// The most events published in one pipeline.
const BATCH: usize = 256;
/// How a [`Published::Revoked`] begins in its JSON form (serde's externally tagged enum).
const REVOKED_PREFIX: &[u8] = br#"{"Revoked""#;
/// How often the cluster subscriber checks that each of its channels still delivers (a
/// master cut off without closing its connections sends no disconnection): it publishes a
/// probe on each, and subscribes again when one did not come back by the next check.
const PROBE_EVERY: Duration = Duration::from_secs(5);
/// How a probe begins (never a JSON event).
const PROBE: &str = "probe:";
/// The longest one attempt to publish may take.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest wait between attempts to publish one event.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);
/// How many sharded channels a Redis Cluster carries the events on.
pub const SHARDS: usize = 16;

/// This instance's events on their way to Redis, in order.
#[derive(Debug, Clone)]
pub struct Outbox {
    queue: mpsc::Sender<Published>,
    overflowed: Arc<AtomicBool>,
}

impl Outbox {
    /// Queues `item` for publishing. When the queue is full (Redis out of reach for long),
    /// the item is dropped and every instance's sessions are told to re-read the log once
    /// the queue drains, so nothing durable stays hidden.
    pub fn push(&self, item: Published) {
        if self.queue.try_send(item).is_err() {
            self.overflowed.store(true, Ordering::Relaxed);
            tracing::warn!("redis publish queue full: an event goes only to the log");
        }
    }
}

/// The channels of one deployment: the one of a single Redis, and the sharded ones of a
/// cluster.
#[derive(Debug, Clone)]
struct Channels {
    single: String,
    sharded: Vec<String>,
}

impl Channels {
    /// `channel`, and [`SHARDS`] names `{<channel>:<n>}` whose slots fall one in each
    /// [`SHARDS`]th of the slot space (a cluster's masters hold ranges of it).
    fn new(channel: &str) -> Self {
        // Braces in the name would make a hash tag of part of it (all in one slot).
        let tag = channel.replace(['{', '}'], "");
        let width = 16384 / SHARDS;
        let mut sharded = vec![String::new(); SHARDS];
        let mut left = SHARDS;
        for n in 0.. {
            let name = format!("{{{tag}:{n}}}");
            let range = usize::from(crate::redis_link::slot(&name)) / width;
            if sharded[range].is_empty() {
                sharded[range] = name;
                left -= 1;
                if left == 0 {
                    break;
                }
            }
        }
        Self {
            single: channel.to_owned(),
            sharded,
        }
    }

    /// The sharded channel `item` goes to: the one of what it is about (a rewind, about
    /// everything, goes on the first: every instance subscribes to every channel).
    fn shard_of(item: &Published) -> usize {
        order_key(item).map_or(0, |key| (key.as_u128() % SHARDS as u128) as usize)
    }
}

/// What `item` is about, whose events must keep their order between instances (a
/// conversation, a project, a user); None for what concerns everyone.
fn order_key(item: &Published) -> Option<uuid::Uuid> {
    match item {
        Published::Durable { event, .. } => Some(event.conversation_id),
        Published::Typing {
            conversation_id, ..
        } => Some(*conversation_id),
        Published::Assistant { delta, .. } => Some(delta.conversation_id),
        Published::Board { change, .. } => Some(match change {
            BoardChange::Task(task) => task.project_id.0,
            BoardChange::TaskDeleted { project_id, .. }
            | BoardChange::ProjectDeleted { project_id } => *project_id,
            BoardChange::Project(project) => project.id.0,
        }),
        Published::Inbox { recipients, .. } => recipients.iter().next().copied(),
        Published::Presence { user_id, .. } | Published::Revoked { user_id, .. } => Some(*user_id),
        Published::Rewind => None,
    }
}

/// Starts the publisher (on `redis`) and the subscriber; returns the publisher's queue.
pub fn start(redis: Redis, channel: &str, local: Arc<Inboxes>, stop: CancellationToken) -> Outbox {
    let (queue, mut rx) = mpsc::channel::<Published>(QUEUE);
    let outbox = Outbox {
        queue,
        overflowed: Arc::default(),
    };
    let overflowed = outbox.overflowed.clone();
    let channels = Channels::new(channel);
    let (publish_redis, publish_channels, publish_stop) =
        (redis.clone(), channels.clone(), stop.clone());
    tokio::spawn(async move {
        // Whatever queued while the last batch was on its way goes in one pipeline: one
        // round trip for many events (one at a time fell behind under load).
        let mut batch = Vec::with_capacity(BATCH);
        while rx.recv_many(&mut batch, BATCH).await > 0 {
            publish(&publish_redis, &publish_channels, &batch, &publish_stop).await;
            batch.clear();
            if overflowed.swap(false, Ordering::Relaxed) {
                let rewind = [Published::Rewind];
                publish(&publish_redis, &publish_channels, &rewind, &publish_stop).await;
            }
        }
    });
    tokio::spawn(subscribe_forever(redis, channels, local, stop));
    outbox
}

/// Publishes `items` in order (per channel, one pipeline each), retrying with backoff until
/// Redis takes them or the server stops: the events after them wait, so other instances see
/// this instance's events in order, and a quiet conversation cannot hide a message that one
/// failed publish lost. (A publish that timed out may still have reached Redis: sessions drop
/// a durable event they already delivered, and ephemeral ones are harmless twice.)
async fn publish(
    redis: &Redis,
    channels: &Channels,
    items: &[Published],
    stop: &CancellationToken,
) {
    let payloads: Vec<_> = items
        .iter()
        .filter_map(|item| Some((item, serde_json::to_vec(item).ok()?)))
        .collect();
    let mut delay = Duration::from_millis(50);
    loop {
        let sent = async {
            let mut pipes = BTreeMap::<&str, redis::Pipeline>::new();
            if redis.is_cluster().await? {
                for (item, payload) in &payloads {
                    let channel = channels.sharded[Channels::shard_of(item)].as_str();
                    let pipe = pipes.entry(channel).or_insert_with(redis::pipe);
                    pipe.cmd("SPUBLISH").arg(channel).arg(payload).ignore();
                }
            } else {
                let pipe = pipes.entry(&channels.single).or_insert_with(redis::pipe);
                for (_, payload) in &payloads {
                    pipe.cmd("PUBLISH")
                        .arg(&channels.single)
                        .arg(payload)
                        .ignore();
                }
            }
            futures::future::try_join_all(pipes.values().map(|pipe| async move {
                let mut conn = redis.get().await?;
                pipe.query_async::<()>(&mut conn).await
            }))
            .await
            .map(drop)
        };
        let sent = tokio::time::timeout(PUBLISH_TIMEOUT, sent)
            .await
            .unwrap_or_else(|_| Err((redis::ErrorKind::Io, "timed out").into()));
        match sent {
            Ok(()) => return,
            Err(e) => {
                redis.reset().await;
                metrics::counter!("epop_broker_publish_failures_total").increment(1);
                tracing::warn!(error = %e, retry_in = ?delay, "redis publish failed");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(MAX_RETRY_DELAY);
    }
}

async fn subscribe_forever(
    redis: Redis,
    channels: Channels,
    local: Arc<Inboxes>,
    stop: CancellationToken,
) {
    let mut delay = Duration::from_millis(100);
    loop {
        let subscribed = match redis.is_cluster().await {
            Ok(false) => subscribe_once(&redis, &channels.single, &local, &stop, &mut delay).await,
            Ok(true) => {
                subscribe_sharded(&redis, &channels.sharded, &local, &stop, &mut delay).await
            }
            Err(e) => Err(e.into()),
        };
        match subscribed {
            Ok(()) => return,
            Err(e) => tracing::warn!(error = %e, retry_in = ?delay, "redis subscription lost"),
        }
        unlinked(&local);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Other instances' revocations do not arrive until the subscription is back.
fn unlinked(local: &Inboxes) {
    if let Some(w) = local.watcher() {
        w.unlinked();
    }
}

async fn subscribe_once(
    redis: &Redis,
    channel: &str,
    local: &Inboxes,
    stop: &CancellationToken,
    delay: &mut Duration,
) -> anyhow::Result<()> {
    let mut pubsub = redis.pubsub().await?;
    pubsub.subscribe(channel).await?;
    *delay = Duration::from_millis(100);
    tracing::info!(channel, "subscribed to redis");
    // Whatever was published while unsubscribed is in the log: sessions re-read it.
    local.dispatch(Published::Rewind);
    let mut messages = pubsub.into_on_message();
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            msg = messages.next() => {
                let msg = msg.ok_or_else(|| anyhow::anyhow!("redis closed the subscription"))?;
                deliver(local, msg.get_payload_bytes());
            }
        }
    }
}

/// Subscribes to the sharded channels of a cluster, on a connection of its own, and delivers
/// until the server stops. When a node's connection drops (a master died, slots moved) the
/// subscription is made again on a new connection, from a new view of the cluster, which
/// finds the replica promoted in the dead master's place; then the sessions re-read the log,
/// where whatever was published meanwhile is.
async fn subscribe_sharded(
    redis: &Redis,
    channels: &[String],
    local: &Inboxes,
    stop: &CancellationToken,
    delay: &mut Duration,
) -> anyhow::Result<()> {
    let (tx, mut pushes) = mpsc::unbounded_channel();
    let mut conn = redis.subscriber(tx).await?;
    // One at a time: a command's channels must share a slot.
    for channel in channels {
        conn.ssubscribe(channel).await?;
    }
    *delay = Duration::from_millis(100);
    tracing::info!(
        channels = channels.len(),
        "subscribed to the redis cluster's sharded channels"
    );
    local.dispatch(Published::Rewind);
    let mine = format!("{PROBE}{}:", uuid::Uuid::new_v4());
    let mut heard = vec![true; channels.len()];
    let mut probe = tokio::time::interval(PROBE_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            _ = probe.tick() => {
                if let Some(i) = heard.iter().position(|h| !h) {
                    anyhow::bail!("channel {} stopped delivering", channels[i]);
                }
                heard.fill(false);
                let sent = async {
                    for (i, channel) in channels.iter().enumerate() {
                        redis::cmd("SPUBLISH").arg(channel).arg(format!("{mine}{i}"))
                            .query_async::<i64>(&mut conn).await?;
                    }
                    anyhow::Ok(())
                };
                tokio::time::timeout(PUBLISH_TIMEOUT, sent).await??;
            }
            push = pushes.recv() => {
                let push = push.ok_or_else(|| anyhow::anyhow!("the cluster connection closed"))?;
                match push.kind {
                    redis::PushKind::SMessage => {
                        let Some(redis::Value::BulkString(payload)) = push.data.get(1) else {
                            continue;
                        };
                        if payload.starts_with(PROBE.as_bytes()) {
                            let probe = std::str::from_utf8(payload).unwrap_or_default();
                            if let Some(i) = probe.strip_prefix(&mine).and_then(|i| i.parse::<usize>().ok())
                                && let Some(h) = heard.get_mut(i)
                            {
                                *h = true;
                            }
                        } else {
                            deliver(local, payload);
                        }
                    }
                    redis::PushKind::Disconnection => anyhow::bail!("a cluster node's connection dropped"),
                    redis::PushKind::SUnsubscribe => anyhow::bail!("a channel's slot moved"),
                    _ => {}
                }
            }
        }
    }
}

/// Hands one message from Redis to the local sessions.
fn deliver(local: &Inboxes, payload: &[u8]) {
    // No stream open here (an instance that only serves requests): nobody would read the
    // event, so it is not even parsed, unless it is a revocation (the authentication
    // layer's cache must hear of it).
    if local.is_empty() && !payload.starts_with(REVOKED_PREFIX) {
        metrics::counter!("epop_broker_received_total", "kind" => "unread").increment(1);
        return;
    }
    match serde_json::from_slice::<Published>(payload) {
        Ok(item) => {
            received(&item);
            local.dispatch(item);
        }
        Err(e) => tracing::warn!(error = %e, "unreadable broker message"),
    }
}

/// Counts an event from Redis, and for a durable one how long after its commit it arrived
/// here (across instances: their clocks' difference is part of it).
fn received(item: &Published) {
    metrics::counter!("epop_broker_received_total", "kind" => item.kind()).increment(1);
    if let Published::Durable { event, .. } = item {
        let lag = (chrono::Utc::now() - event.created_at)
            .to_std()
            .unwrap_or_default();
        metrics::histogram!("epop_broker_lag_seconds").record(lag.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revocation_is_told_apart_by_its_first_bytes_only() {
        let revoked = Published::Revoked {
            user_id: uuid::Uuid::nil(),
            sessions: crate::realtime::Revoked::All,
        };
        assert!(
            serde_json::to_vec(&revoked)
                .unwrap()
                .starts_with(REVOKED_PREFIX)
        );
        let presence = Published::Presence {
            user_id: uuid::Uuid::nil(),
            online: true,
        };
        assert!(
            !serde_json::to_vec(&presence)
                .unwrap()
                .starts_with(REVOKED_PREFIX)
        );
    }
}
