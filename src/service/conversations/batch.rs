//! Group commit ("smart batching") of the hot writes: message sends and read positions.
//! Requests wait in a channel; one writer per kind, on a thread of its own with its own
//! connection, takes whatever is waiting (at least one, at most the cap), commits it as one
//! transaction (`db::send_batch`, `db::read_batch`), publishes the events in sequence order,
//! then answers each caller.
//! Nothing waits for a batch to fill: an idle writer takes a lone request at once, and
//! while a batch commits the next one gathers in the channel. When a batch fails in the
//! database, its requests are retried one by one, so that only the one at fault fails.
//! A COMMIT whose answer is lost (the connection cut after PostgreSQL got it) is not
//! retried blindly: the transaction's id, read inside it, is looked up (`txid_status`)
//! on a new connection, so a batch that did commit is answered as committed and never
//! written twice, with or without idempotency keys. While the database is unreachable
//! (`db::outage`) the writer answers UNAVAILABLE at once, and a request whose caller has gone
//! (its deadline passed) is never written.

use crate::db::outage::Outage;
use crate::{
    db::{self, Pool, read_batch, send_batch},
    error::{Error, Result},
    realtime::{Broker, Published},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use std::{sync::Arc, time::Duration};
use tokio::sync::{mpsc, oneshot};

/// The histogram of how long requests wait in the queue (`stage="queue"`) and how long a
/// batch takes from its BEGIN to its COMMIT's answer (`stage="commit"`), per writer.
const STAGES: &str = "epop_batch_stage_seconds";
/// How many requests may wait for the writer before callers wait to queue.
const QUEUE: usize = 4096;
/// The longest a writer waits for its connection (its pool is its own: only connecting
/// takes time, and a database out of reach should not hold the requests behind).
const CONNECT_WAIT: Duration = Duration::from_secs(1);

/// A kind of write committed in batches.
pub trait Batch: 'static {
    /// One caller's request, validated.
    type Item: Send + Sync + 'static;
    /// What became of it.
    type Outcome: Send + 'static;
    /// The name of the writer's thread.
    const THREAD: &'static str;
    /// The histogram of batch sizes.
    const SIZES: &'static str;
    /// The counter of batches retried one by one.
    const RETRIES: &'static str;
    /// Writes `items` in the caller's transaction (its statements may be pipelined behind
    /// the BEGIN): one outcome per item, in order.
    fn write<'a>(
        conn: &'a AsyncPgConnection,
        items: &'a [Self::Item],
    ) -> impl Future<Output = Result<Vec<Self::Outcome>>> + Send + 'a;
    /// The event a committed outcome publishes (taken out of it: callers do not need it).
    fn event(outcome: &mut Self::Outcome) -> Option<Published>;
}

/// Message sends without files.
#[derive(Debug)]
pub struct Sends;

impl Batch for Sends {
    type Item = send_batch::Queued;
    type Outcome = send_batch::Outcome;
    const THREAD: &'static str = "epop-sends";
    const SIZES: &'static str = "epop_send_batch_size";
    const RETRIES: &'static str = "epop_send_batch_retries_total";

    fn write<'a>(
        conn: &'a AsyncPgConnection,
        items: &'a [Self::Item],
    ) -> impl Future<Output = Result<Vec<Self::Outcome>>> + Send + 'a {
        send_batch::send_all(conn, items)
    }

    fn event(outcome: &mut Self::Outcome) -> Option<Published> {
        match outcome {
            send_batch::Outcome::Sent(sent) => Some(Published::Durable {
                event: sent.event.clone(),
                recipients: std::mem::take(&mut sent.recipients).into(),
            }),
            _ => None,
        }
    }
}

/// Read positions (MarkRead).
#[derive(Debug)]
pub struct Reads;

impl Batch for Reads {
    type Item = read_batch::Mark;
    type Outcome = read_batch::Marked;
    const THREAD: &'static str = "epop-reads";
    const SIZES: &'static str = "epop_read_batch_size";
    const RETRIES: &'static str = "epop_read_batch_retries_total";

    fn write<'a>(
        conn: &'a AsyncPgConnection,
        items: &'a [Self::Item],
    ) -> impl Future<Output = Result<Vec<Self::Outcome>>> + Send + 'a {
        read_batch::mark_all(conn, items)
    }

    fn event(outcome: &mut Self::Outcome) -> Option<Published> {
        match outcome {
            read_batch::Marked::Read { receipt, .. } => receipt.take().map(|r| {
                let (event, to) = *r;
                Published::Durable {
                    event,
                    recipients: to.into(),
                }
            }),
            read_batch::Marked::NotMember => None,
        }
    }
}

/// The send queue.
pub type SendQueue = Queue<Sends>;
/// The MarkRead queue.
pub type ReadQueue = Queue<Reads>;

/// Hands requests of one kind to its writer.
pub struct Queue<B: Batch> {
    tx: mpsc::Sender<Waiting<B>>,
}

impl<B: Batch> Clone for Queue<B> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<B: Batch> std::fmt::Debug for Queue<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("kind", &std::any::type_name::<B>())
            .finish_non_exhaustive()
    }
}

struct Waiting<B: Batch> {
    item: B::Item,
    reply: Reply<B>,
    /// When it was queued.
    queued: std::time::Instant,
}

/// Where an outcome goes.
type Reply<B> = oneshot::Sender<Result<<B as Batch>::Outcome>>;

impl<B: Batch> Queue<B> {
    /// Starts the writer: batches of at most `max_batch` requests (1: a transaction each),
    /// on a thread of its own with its own connection to `url`, so that its round trips to
    /// PostgreSQL never wait behind request handling for a worker thread. It stops when the
    /// last handle is dropped, after the requests already queued.
    pub async fn start(
        url: &str,
        broker: Broker,
        outage: Arc<Outage>,
        max_batch: usize,
    ) -> anyhow::Result<Self> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (ready, connected) = oneshot::channel();
        let url = url.to_owned();
        std::thread::Builder::new()
            .name(B::THREAD.into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => return drop(ready.send(Err(e.into()))),
                };
                runtime.block_on(async move {
                    let pool = match db::connect(&url, 1).await {
                        Ok(pool) => pool,
                        Err(e) => return drop(ready.send(Err(e))),
                    };
                    let _ = ready.send(Ok(()));
                    writer::<B>(rx, pool, broker, outage, max_batch.max(1)).await;
                });
            })?;
        connected.await??;
        Ok(Self { tx })
    }

    /// Queues `item` and waits for its outcome (committed and published).
    pub async fn send(&self, item: B::Item) -> Result<B::Outcome> {
        let (reply, outcome) = oneshot::channel();
        self.tx
            .send(Waiting {
                item,
                reply,
                queued: std::time::Instant::now(),
            })
            .await
            .map_err(|_| Error::Unavailable("the server is stopping".into()))?;
        outcome
            .await
            .map_err(|_| Error::Unavailable("the server is stopping".into()))?
    }
}

async fn writer<B: Batch>(
    mut rx: mpsc::Receiver<Waiting<B>>,
    pool: Pool,
    broker: Broker,
    outage: Arc<Outage>,
    max: usize,
) {
    let mut batch: Vec<Waiting<B>> = Vec::with_capacity(max);
    while rx.recv_many(&mut batch, max).await > 0 {
        // Callers that gave up (their deadline passed) are not written for.
        batch.retain(|w| !w.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        if outage.is_down() {
            metrics::counter!("epop_batch_refused_total").increment(batch.len() as u64);
            for w in batch.drain(..) {
                let _ = w.reply.send(Err(unreachable()));
            }
            continue;
        }
        metrics::histogram!(B::SIZES).record(batch.len() as f64);
        let taken = std::time::Instant::now();
        let waited = metrics::histogram!(STAGES, "writer" => B::THREAD, "stage" => "queue");
        for w in &batch {
            waited.record(taken.duration_since(w.queued).as_secs_f64());
        }
        let (items, replies): (Vec<B::Item>, Vec<Reply<B>>) =
            batch.drain(..).map(|w| (w.item, w.reply)).unzip();
        let committed = commit::<B>(&pool, &items).await;
        metrics::histogram!(STAGES, "writer" => B::THREAD, "stage" => "commit")
            .record(taken.elapsed().as_secs_f64());
        match committed {
            Ok(outcomes) => answer::<B>(&broker, replies, outcomes),
            // Whether the batch committed is unknown: none of it may be written again.
            Err(Failed::Unknown) => {
                for reply in replies {
                    let _ = reply.send(Err(unknown()));
                }
            }
            // The database, not a request, failed: no request is tried again alone, and the
            // next ones are answered at once until it answers again.
            Err(Failed::RolledBack(Error::Unavailable(why))) => {
                outage.trip(&why);
                for reply in replies {
                    let _ = reply.send(Err(unreachable()));
                }
            }
            Err(Failed::RolledBack(e)) if items.len() == 1 => {
                if let Some(reply) = replies.into_iter().next() {
                    let _ = reply.send(Err(e));
                }
            }
            Err(Failed::RolledBack(e)) => {
                tracing::warn!(error = %e, batch = items.len(), kind = std::any::type_name::<B>(), "a batch failed: retrying its requests one by one");
                metrics::counter!(B::RETRIES).increment(1);
                for (item, reply) in items.iter().zip(replies) {
                    if reply.is_closed() {
                        continue;
                    }
                    match commit::<B>(&pool, std::slice::from_ref(item)).await {
                        Ok(outcomes) => answer::<B>(&broker, vec![reply], outcomes),
                        Err(Failed::RolledBack(e)) => {
                            let _ = reply.send(Err(e));
                        }
                        Err(Failed::Unknown) => {
                            let _ = reply.send(Err(unknown()));
                        }
                    }
                }
            }
        }
    }
}

/// What the callers are told while the database is unreachable.
fn unreachable() -> Error {
    Error::Unavailable("database unavailable, try again".into())
}

/// Why a batch's transaction did not commit, as far as the writer can tell.
enum Failed {
    /// It did not commit: its requests may be written again.
    RolledBack(Error),
    /// Its COMMIT's answer was lost and what became of it could not be learnt.
    Unknown,
}

/// What the callers of a batch of unknown fate are told.
fn unknown() -> Error {
    Error::Unavailable(
        "the database connection was lost while saving, and whether it was saved is unknown: \
         retry with the same idempotency key"
            .into(),
    )
}

/// Commits `items` in one transaction. The BEGIN goes out with the batch's first statements
/// (pipelined: PostgreSQL runs them in order, inside the transaction) rather than a round
/// trip ahead of them, and so does the read of the transaction's id; the transaction ends
/// with COMMIT, or ROLLBACK on any error. A COMMIT that fails is looked up by that id.
async fn commit<B: Batch>(pool: &Pool, items: &[B::Item]) -> Result<Vec<B::Outcome>, Failed> {
    let conn = connection(pool).await.map_err(Failed::RolledBack)?;
    let (mut begin, mut id): (&AsyncPgConnection, &AsyncPgConnection) = (&conn, &conn);
    let written = futures::try_join!(
        async { begin.batch_execute("BEGIN").await.map_err(Error::from) },
        async {
            diesel::select(txid_current())
                .get_result::<i64>(&mut id)
                .await
                .map_err(Error::from)
        },
        B::write(&conn, items),
    );
    let mut end: &AsyncPgConnection = &conn;
    match written {
        Ok((_, xid, outcomes)) => match end.batch_execute("COMMIT").await {
            Ok(()) => Ok(outcomes),
            Err(e) => {
                drop(conn);
                match committed(pool, xid).await {
                    Some(true) => {
                        tracing::warn!(error = %e, xid, "a batch's COMMIT answer was lost; it committed");
                        metrics::counter!("epop_batch_commits_resolved_total", "outcome" => "committed").increment(1);
                        Ok(outcomes)
                    }
                    Some(false) => Err(Failed::RolledBack(e.into())),
                    None => {
                        tracing::error!(error = %e, xid, "a batch's COMMIT answer was lost and its fate is unknown");
                        metrics::counter!("epop_batch_commits_resolved_total", "outcome" => "unknown").increment(1);
                        Err(Failed::Unknown)
                    }
                }
            }
        },
        Err(e) => {
            // A ROLLBACK that fails (a lost connection) rolls back all the same.
            let _ = end.batch_execute("ROLLBACK").await;
            Err(Failed::RolledBack(e))
        }
    }
}

/// The writer's connection, within [`CONNECT_WAIT`].
async fn connection(pool: &Pool) -> Result<db::PooledConnection<'_>> {
    match tokio::time::timeout(CONNECT_WAIT, pool.get()).await {
        Ok(got) => Ok(got?),
        Err(_) => Err(unreachable()),
    }
}

diesel::define_sql_function! {
    /// The current transaction's id (assigning one).
    fn txid_current() -> diesel::sql_types::BigInt;
}

diesel::define_sql_function! {
    /// What became of transaction `xid`: committed, aborted, in progress, or NULL when too
    /// old to tell.
    fn txid_status(xid: diesel::sql_types::BigInt) -> diesel::sql_types::Nullable<diesel::sql_types::Text>;
}

/// Whether transaction `xid` committed, asked on a new connection: its backend may still be
/// finishing the COMMIT, so "in progress" is asked again for up to five seconds. None when
/// the database cannot tell or cannot be reached.
async fn committed(pool: &Pool, xid: i64) -> Option<bool> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let status = async {
            let mut conn = connection(pool).await.ok()?;
            diesel::select(txid_status(xid))
                .get_result::<Option<String>>(&mut conn)
                .await
                .ok()
        };
        match status.await {
            Some(Some(s)) if s == "committed" => return Some(true),
            Some(Some(s)) if s == "aborted" => return Some(false),
            Some(None) => return None,
            _ if tokio::time::Instant::now() >= deadline => return None,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Publishes the committed events (in the batch's order: sequence order per conversation),
/// then answers the callers.
fn answer<B: Batch>(broker: &Broker, replies: Vec<Reply<B>>, mut outcomes: Vec<B::Outcome>) {
    for outcome in &mut outcomes {
        if let Some(event) = B::event(outcome) {
            broker.publish(event);
        }
    }
    for (reply, outcome) in replies.into_iter().zip(outcomes) {
        let _ = reply.send(Ok(outcome));
    }
}
