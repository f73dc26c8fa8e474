//! Redis pub/sub fan-out between instances: one task publishes this instance's events in
//! order (through a bb8 pool), and one dedicated subscriber connection per instance feeds
//! every instance's events to the local broadcast. The subscriber reconnects and
//! resubscribes by itself (redis' PubSub does not), and after each (re)subscription asks the
//! local sessions to re-read the log, so what was published while it was away is not lost.

use crate::realtime::Published;
use anyhow::Context;
use bb8_redis::RedisConnectionManager;
use futures::StreamExt;
use std::{sync::Arc, time::Duration};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

/// How many events may wait for the publisher task.
const QUEUE: usize = 65_536;

/// Starts the publisher (on `pool`) and the subscriber; returns the publisher's queue.
pub fn start(
    url: &str,
    channel: &str,
    pool: bb8::Pool<RedisConnectionManager>,
    local: broadcast::Sender<Arc<Published>>,
    stop: CancellationToken,
) -> anyhow::Result<mpsc::Sender<Published>> {
    let client = redis::Client::open(url).context("REDIS_URL is not a valid Redis URL")?;
    let (queue, mut rx) = mpsc::channel::<Published>(QUEUE);
    let channel = channel.to_owned();
    let publish_channel = channel.clone();
    tokio::spawn(async move {
        while let Some(item) = rx.recv().await {
            let Ok(payload) = serde_json::to_vec(&item) else {
                continue;
            };
            let sent = async {
                let mut conn = pool.get().await.map_err(|e| anyhow::anyhow!("{e}"))?;
                redis::cmd("PUBLISH")
                    .arg(&publish_channel)
                    .arg(payload)
                    .query_async::<()>(&mut *conn)
                    .await
                    .map_err(anyhow::Error::from)
            };
            if let Err(e) = sent.await {
                // Best effort: the event is in the log, and sessions fill gaps from it.
                tracing::warn!(error = %e, "redis publish failed");
            }
        }
    });
    tokio::spawn(subscribe_forever(client, channel, local, stop));
    Ok(queue)
}

async fn subscribe_forever(
    client: redis::Client,
    channel: String,
    local: broadcast::Sender<Arc<Published>>,
    stop: CancellationToken,
) {
    let mut delay = Duration::from_millis(100);
    loop {
        match subscribe_once(&client, &channel, &local, &stop, &mut delay).await {
            Ok(()) => return,
            Err(e) => tracing::warn!(error = %e, retry_in = ?delay, "redis subscription lost"),
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
    local: &broadcast::Sender<Arc<Published>>,
    stop: &CancellationToken,
    delay: &mut Duration,
) -> anyhow::Result<()> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    *delay = Duration::from_millis(100);
    tracing::info!(channel, "subscribed to redis");
    // Whatever was published while unsubscribed is in the log: sessions re-read it.
    let _ = local.send(Arc::new(Published::Rewind));
    let mut messages = pubsub.into_on_message();
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            msg = messages.next() => {
                let msg = msg.context("redis closed the subscription")?;
                let payload: Vec<u8> = msg.get_payload()?;
                match serde_json::from_slice::<Published>(&payload) {
                    Ok(item) => { let _ = local.send(Arc::new(item)); }
                    Err(e) => tracing::warn!(error = %e, "unreadable broker message"),
                }
            }
        }
    }
}
