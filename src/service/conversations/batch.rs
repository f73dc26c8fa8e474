//! The send queue: group commit ("smart batching"). Sends wait in a channel; one writer
//! takes whatever is waiting (at least one, at most the cap), commits it as one
//! transaction (`db::send_batch`), publishes the events in sequence order, then answers
//! each caller. Nothing waits for a batch to fill: an idle writer takes a lone send at
//! once, and while a batch commits the next one gathers in the channel. When a batch fails
//! in the database, its sends are retried one by one, so that only the send at fault fails.

use crate::{
    db::{
        self, Pool,
        send_batch::{Outcome, Queued},
    },
    error::{Error, Result},
    realtime::{Broker, Published},
};
use diesel_async::AsyncConnection;
use tokio::sync::{mpsc, oneshot};

/// How many sends may wait for the writer before callers wait to queue.
const QUEUE: usize = 4096;

/// Hands sends to the writer.
#[derive(Debug, Clone)]
pub struct SendQueue {
    tx: mpsc::Sender<Waiting>,
}

#[derive(Debug)]
struct Waiting {
    send: Queued,
    reply: Reply,
}

impl SendQueue {
    /// Starts the writer: batches of at most `max_batch` sends (1: a transaction each).
    /// It stops when the last handle is dropped, after the sends already queued.
    pub fn start(pool: Pool, broker: Broker, max_batch: usize) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(writer(rx, pool, broker, max_batch.max(1)));
        Self { tx }
    }

    /// Queues `send` and waits for its outcome (committed and published when `Sent`).
    pub async fn send(&self, send: Queued) -> Result<Outcome> {
        let (reply, outcome) = oneshot::channel();
        self.tx
            .send(Waiting { send, reply })
            .await
            .map_err(|_| Error::Unavailable("the server is stopping".into()))?;
        outcome
            .await
            .map_err(|_| Error::Unavailable("the server is stopping".into()))?
    }
}

async fn writer(mut rx: mpsc::Receiver<Waiting>, pool: Pool, broker: Broker, max: usize) {
    let mut batch = Vec::with_capacity(max);
    while rx.recv_many(&mut batch, max).await > 0 {
        metrics::histogram!("epop_send_batch_size").record(batch.len() as f64);
        let (sends, replies): (Vec<Queued>, Vec<Reply>) =
            batch.drain(..).map(|w| (w.send, w.reply)).unzip();
        match commit(&pool, &sends).await {
            Ok(outcomes) => answer(&broker, replies, outcomes),
            Err(e) if sends.len() == 1 => {
                if let Some(reply) = replies.into_iter().next() {
                    let _ = reply.send(Err(e));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, sends = sends.len(), "a send batch failed: retrying its sends one by one");
                metrics::counter!("epop_send_batch_retries_total").increment(1);
                for (send, reply) in sends.iter().zip(replies) {
                    match commit(&pool, std::slice::from_ref(send)).await {
                        Ok(outcomes) => answer(&broker, vec![reply], outcomes),
                        Err(e) => {
                            let _ = reply.send(Err(e));
                        }
                    }
                }
            }
        }
    }
}

/// Where a send's outcome goes.
type Reply = oneshot::Sender<Result<Outcome>>;

async fn commit(pool: &Pool, sends: &[Queued]) -> Result<Vec<Outcome>> {
    let mut conn = pool.get().await?;
    conn.transaction::<_, Error, _>(async |conn| db::send_batch::send_all(conn, sends).await)
        .await
}

/// Publishes the committed events (in the batch's order: sequence order per conversation),
/// then answers the callers. The recipients go to the broker, not back: callers use the
/// message.
fn answer(broker: &Broker, replies: Vec<Reply>, mut outcomes: Vec<Outcome>) {
    for outcome in &mut outcomes {
        if let Outcome::Sent(sent) = outcome {
            broker.publish(Published::Durable {
                event: sent.event.clone(),
                recipients: std::mem::take(&mut sent.recipients).into(),
            });
        }
    }
    for (reply, outcome) in replies.into_iter().zip(outcomes) {
        let _ = reply.send(Ok(outcome));
    }
}
