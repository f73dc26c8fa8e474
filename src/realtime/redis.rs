//! Redis pub/sub fan-out between instances: one task publishes this instance's events in
//! order (through a bb8 pool, in pipelines of what queued meanwhile; a failed publish is
//! retried before the next), and one dedicated subscriber connection per instance feeds
//! every instance's events to the local streams' inboxes. The subscriber reconnects and
//! resubscribes by itself (redis' PubSub does not), and after each (re)subscription asks the
//! local sessions to re-read the log, so what was published while it was away is not lost.

use crate::realtime::{Published, inboxes::Inboxes};
use anyhow::Context;
use bb8_redis::RedisConnectionManager;
use futures::StreamExt;
use std::{
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
/// The longest wait between attempts to publish one event.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);

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

/// Starts the publisher (on `pool`) and the subscriber; returns the publisher's queue.
pub fn start(
    url: &str,
    channel: &str,
    pool: bb8::Pool<RedisConnectionManager>,
    local: Arc<Inboxes>,
    stop: CancellationToken,
) -> anyhow::Result<Outbox> {
    let client = redis::Client::open(url).context("REDIS_URL is not a valid Redis URL")?;
    let (queue, mut rx) = mpsc::channel::<Published>(QUEUE);
    let outbox = Outbox {
        queue,
        overflowed: Arc::default(),
    };
    let overflowed = outbox.overflowed.clone();
    let channel = channel.to_owned();
    let publish_channel = channel.clone();
    let publish_stop = stop.clone();
    tokio::spawn(async move {
        // Whatever queued while the last batch was on its way goes in one pipeline: one
        // round trip for many events (one at a time fell behind under load).
        let mut batch = Vec::with_capacity(BATCH);
        while rx.recv_many(&mut batch, BATCH).await > 0 {
            publish(&pool, &publish_channel, &batch, &publish_stop).await;
            batch.clear();
            if overflowed.swap(false, Ordering::Relaxed) {
                publish(&pool, &publish_channel, &[Published::Rewind], &publish_stop).await;
            }
        }
    });
    tokio::spawn(subscribe_forever(client, channel, local, stop));
    Ok(outbox)
}

/// Publishes `items` in order in one pipeline, retrying with backoff until Redis takes them
/// or the server stops: the events after them wait, so other instances see this instance's
/// events in order, and a quiet conversation cannot hide a message that one failed publish lost. (A publish that
/// timed out may still have reached Redis: sessions drop a durable event they already
/// delivered, and ephemeral ones are harmless twice.)
async fn publish(
    pool: &bb8::Pool<RedisConnectionManager>,
    channel: &str,
    items: &[Published],
    stop: &CancellationToken,
) {
    let mut pipe = redis::pipe();
    for item in items {
        if let Ok(payload) = serde_json::to_vec(item) {
            pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
        }
    }
    let mut delay = Duration::from_millis(50);
    loop {
        let sent = async {
            let mut conn = pool.get().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            pipe.query_async::<()>(&mut *conn)
                .await
                .map_err(anyhow::Error::from)
        };
        match sent.await {
            Ok(()) => return,
            Err(e) => {
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
    client: redis::Client,
    channel: String,
    local: Arc<Inboxes>,
    stop: CancellationToken,
) {
    let mut delay = Duration::from_millis(100);
    loop {
        match subscribe_once(&client, &channel, &local, &stop, &mut delay).await {
            Ok(()) => return,
            Err(e) => tracing::warn!(error = %e, retry_in = ?delay, "redis subscription lost"),
        }
        // Other instances' revocations do not arrive until the subscription is back.
        if let Some(w) = local.watcher() {
            w.unlinked();
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

async fn subscribe_once(
    client: &redis::Client,
    channel: &str,
    local: &Inboxes,
    stop: &CancellationToken,
    delay: &mut Duration,
) -> anyhow::Result<()> {
    let mut pubsub = client.get_async_pubsub().await?;
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
                let msg = msg.context("redis closed the subscription")?;
                let payload = msg.get_payload_bytes();
                // No stream open here (an instance that only serves requests): nobody
                // would read the event, so it is not even parsed, unless it is a revocation
                // (the authentication layer's cache must hear of it).
                if local.is_empty() && !payload.starts_with(REVOKED_PREFIX) {
                    metrics::counter!("epop_broker_received_total", "kind" => "unread").increment(1);
                    continue;
                }
                match serde_json::from_slice::<Published>(payload) {
                    Ok(item) => {
                        received(&item);
                        local.dispatch(item);
                    }
                    Err(e) => tracing::warn!(error = %e, "unreadable broker message"),
                }
            }
        }
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
