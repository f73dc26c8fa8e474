//! One open event stream: catches up from the database, then delivers live events from the
//! broker, exactly once and in order per conversation, with heartbeats, a buffer bounded in
//! items and in bytes, and an explicit resync when the client is too far behind or too slow.
//! A stream lives only as long as its grant: it ends when its access token expires or its
//! session or user is revoked (on any instance).

use crate::{
    auth::Caller,
    db::{self, Pool, events::Event},
    domain::UserId,
    error::{Error, Result},
    realtime::{
        Broker, Published, Revoked,
        cursor::{CursorKey, Positions},
        inboxes::Inbox,
    },
};
use chrono::Utc;
use futures::Stream;
use std::{
    collections::HashSet,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};
use tokio::sync::{broadcast::error::RecvError, mpsc};
use uuid::Uuid;

/// How many items a stream buffers for its client before it is dropped as too slow: well
/// past one group commit's burst (a batch of up to 256 sends publishes its events at once),
/// so a client that reads is not dropped for one burst it could not have read yet; the byte
/// bound below keeps the memory small.
pub const BUFFER: usize = 1024;
/// How many bytes (cursors and message text, estimated) a stream buffers before it is
/// dropped as too slow.
pub const BUFFER_BYTES: usize = 4 << 20;
/// How many missed events a resume may replay; more means "resync".
pub const MAX_REPLAY: i64 = 1000;
/// The longest a resync tells its client to wait before reconnecting (it waits a random
/// part of this, at least a twentieth).
pub const RESYNC_SPREAD: Duration = Duration::from_secs(5);
/// How often an idle stream sends a heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

pub use super::item::Item;

/// What bounds the streams of one server.
#[derive(Debug, Clone)]
pub struct StreamLimits {
    /// Open streams per user on this server.
    pub max_per_user: usize,
    /// Cancelled when the server starts shutting down: streams end, new ones are refused.
    pub closing: tokio_util::sync::CancellationToken,
}

/// The receiving end of a stream: ends when the session does; dropping it ends the session.
pub struct Events {
    rx: mpsc::Receiver<Box<Item>>,
    bytes: Arc<AtomicUsize>,
}

impl Stream for Events {
    type Item = Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        let polled = self.rx.poll_recv(cx);
        if let Poll::Ready(Some(item)) = &polled {
            self.bytes.fetch_sub(item.weight(), Ordering::Relaxed);
            if let Item::Event {
                received: Some(at), ..
            } = &**item
            {
                handoff().record(at.elapsed().as_secs_f64());
            }
        }
        polled.map(|item| item.map(|boxed| *boxed))
    }
}

/// `epop_stream_handoff_seconds`, looked up once: it is recorded for every live delivery.
/// (The recorder is installed before the server builds anything that streams.)
fn handoff() -> &'static metrics::Histogram {
    static HANDOFF: std::sync::OnceLock<metrics::Histogram> = std::sync::OnceLock::new();
    HANDOFF.get_or_init(|| metrics::histogram!("epop_stream_handoff_seconds"))
}

/// The session ended early: the client went away or cannot keep up, or the grant ended.
struct Stop;

struct Session {
    pool: Pool,
    broker: Broker,
    user: UserId,
    /// The access token's session (refresh-token family).
    grant: Uuid,
    key: Arc<CursorKey>,
    positions: Positions,
    /// The people who share a conversation with the user: whose presence they see.
    contacts: HashSet<Uuid>,
    /// Boxed items: the channel allocates its first 32 slots at once, for every stream.
    out: mpsc::Sender<Box<Item>>,
    bytes: Arc<AtomicUsize>,
}

impl Session {
    /// Sends without waiting: a full buffer (in items or bytes) means the client is too slow.
    fn send(&self, item: Item) -> Result<(), Stop> {
        let weight = item.weight();
        if self.bytes.load(Ordering::Relaxed) + weight > BUFFER_BYTES {
            return Err(self.too_slow());
        }
        // Counted before it can be received (and subtracted), never after.
        self.bytes.fetch_add(weight, Ordering::Relaxed);
        match self.out.try_send(Box::new(item)) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.bytes.fetch_sub(weight, Ordering::Relaxed);
                match e {
                    mpsc::error::TrySendError::Full(_) => Err(self.too_slow()),
                    mpsc::error::TrySendError::Closed(_) => Err(Stop),
                }
            }
        }
    }

    fn too_slow(&self) -> Stop {
        self.finish(self.resync(
            "the client is too slow: reload, then reconnect with this cursor",
            &self.positions,
        ))
    }

    /// A resync for `reason` whose cursor resumes after `positions`, with a random wait
    /// (so that streams told to resync at once do not all reconnect at once).
    fn resync(&self, reason: &str, positions: &Positions) -> Item {
        let spread = RESYNC_SPREAD.as_millis() as u64;
        Item::Resync {
            reason: reason.into(),
            cursor: self.key.encode(self.user, positions),
            retry_after: Duration::from_millis(rand::random_range(spread / 20..=spread)),
        }
    }

    /// Ends the stream with `last`, delivered after what is buffered (within 5 s).
    fn finish(&self, last: Item) -> Stop {
        // Counted like any item, so the receiver's accounting stays exact.
        self.bytes.fetch_add(last.weight(), Ordering::Relaxed);
        let out = self.out.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), out.send(Box::new(last))).await;
        });
        Stop
    }

    fn end(&self, reason: &str) -> Stop {
        self.finish(Item::End {
            reason: reason.into(),
        })
    }

    async fn load_contacts(&mut self) -> Result<()> {
        let mut conn = self.pool.get().await?;
        self.contacts = db::conversations::contacts(&mut conn, self.user)
            .await?
            .into_iter()
            .collect();
        Ok(())
    }

    /// Delivers an event unless it was delivered already.
    fn deliver(&mut self, event: Event, received: Option<std::time::Instant>) -> Result<(), Stop> {
        let seen = self.positions.get(&event.conversation_id).copied();
        if seen.is_some_and(|s| event.seq <= s) {
            return Ok(());
        }
        self.positions.insert(event.conversation_id, event.seq);
        // What a deleted message left (its reactions and pins) is not replayed.
        if event.body == db::events::EventBody::Redacted {
            return Ok(());
        }
        let cursor = self.key.encode(self.user, &self.positions);
        self.send(Item::Event {
            event: Box::new(event),
            cursor,
            received,
        })
    }

    /// Reads missed events from the database (of one conversation, or all) and delivers
    /// them; too many means resync.
    async fn catch_up(&mut self, only: Option<Uuid>) -> Result<Result<(), Stop>> {
        let events = {
            let mut conn = self.pool.get().await?;
            db::events::since(&mut conn, self.user, &self.positions, only, MAX_REPLAY + 1).await?
        };
        if events.len() as i64 > MAX_REPLAY {
            // The client continues from the end of what it may see now, once it reloaded.
            let now = {
                let mut conn = self.pool.get().await?;
                db::events::positions(&mut conn, self.user).await?
            };
            let reason = "too far behind to replay: reload, then reconnect with this cursor";
            let _ = self.send(self.resync(reason, &now));
            return Ok(Err(Stop));
        }
        for e in events {
            if let Err(stop) = self.deliver(e, None) {
                return Ok(Err(stop));
            }
        }
        Ok(Ok(()))
    }

    async fn on_published(
        &mut self,
        item: &Published,
        received: std::time::Instant,
    ) -> Result<Result<(), Stop>> {
        let me = self.user.0;
        match item {
            Published::Durable { event, recipients } if recipients.contains(&me) => {
                if matches!(event.body, db::events::EventBody::Membership { .. }) {
                    // Who shares a conversation with the user may have changed.
                    Box::pin(self.load_contacts()).await?;
                }
                let next = self.positions.get(&event.conversation_id).map(|s| s + 1);
                if next == Some(event.seq) {
                    Ok(self.deliver(event.clone(), Some(received)))
                } else if next.is_some_and(|n| event.seq < n) {
                    Ok(Ok(()))
                } else {
                    // A gap, or a conversation new to this stream: the log fills it in order.
                    Box::pin(self.catch_up(Some(event.conversation_id))).await
                }
            }
            Published::Typing {
                conversation_id,
                user_id,
                expires_at,
                recipients,
            } if recipients.contains(&me) && *user_id != me => Ok(self.send(Item::Typing {
                conversation_id: *conversation_id,
                user_id: *user_id,
                expires_at: *expires_at,
            })),
            Published::Board { change, recipients } if recipients.contains(&me) => {
                Ok(self.send(Item::Board(change.clone())))
            }
            Published::Inbox { change, recipients } if recipients.contains(&me) => {
                Ok(self.send(Item::Inbox(change.clone())))
            }
            Published::Assistant { delta, recipients } if recipients.contains(&me) => {
                Ok(self.send(Item::Assistant(Box::new(delta.clone()))))
            }
            Published::Rewind => Box::pin(self.catch_up(None)).await,
            Published::Presence { user_id, online } if self.contacts.contains(user_id) => Ok(self
                .send(Item::Presence {
                    user_id: *user_id,
                    online: *online,
                })),
            Published::Revoked { user_id, sessions } if *user_id == me => {
                let ends = match sessions {
                    Revoked::All => true,
                    Revoked::AllBut(kept) => *kept != self.grant,
                    Revoked::Only(s) => *s == self.grant,
                };
                if ends {
                    Ok(Err(self.end("the session was revoked: sign in again")))
                } else {
                    Ok(Ok(()))
                }
            }
            _ => Ok(Ok(())),
        }
    }
}

const SHUTTING_DOWN: &str =
    "the server is shutting down: reconnect with the last cursor (another instance answers)";

/// Opens a stream for `caller`, from `resume` (positions from a verified cursor) or from
/// now; it ends when the caller's token expires or their grant is revoked.
pub async fn open(
    pool: Pool,
    broker: Broker,
    key: Arc<CursorKey>,
    caller: &Caller,
    resume: Option<Positions>,
    limits: &StreamLimits,
) -> Result<Events> {
    if limits.closing.is_cancelled() {
        return Err(Error::Unavailable(SHUTTING_DOWN.into()));
    }
    let user = caller.user_id;
    // Subscribe before reading the log, so nothing committed in between is missed.
    let mut live = broker.subscribe(user.0);
    let current = {
        let mut conn = pool.get().await?;
        db::events::positions(&mut conn, user).await?
    };
    // Only the caller's conversations: a cursor's other entries are dropped, and those it
    // lacks are read from where the caller joined.
    let positions = match resume {
        Some(mut p) => {
            p.retain(|c, _| current.contains_key(c));
            p
        }
        None => current,
    };
    let (out, rx) = mpsc::channel(BUFFER);
    let bytes = Arc::new(AtomicUsize::new(0));
    let mut session = Session {
        pool,
        broker: broker.clone(),
        user,
        grant: caller.session,
        key,
        positions,
        contacts: HashSet::new(),
        out,
        bytes: bytes.clone(),
    };
    let lifetime = (caller.expires_at - Utc::now())
        .to_std()
        .unwrap_or(Duration::ZERO);
    let Ok(lease) = broker.open_stream(user.0, limits.max_per_user).await else {
        crate::metrics::rate_limited("streams");
        return Err(Error::ResourceExhausted(format!(
            "too many open event streams: at most {} per user; close one",
            limits.max_per_user
        )));
    };
    let closing = limits.closing.clone();
    tokio::spawn(async move {
        let _lease = lease;
        let result = run(&mut session, &mut live, lifetime, &closing).await;
        if let Err(e) = result {
            tracing::warn!(user = %user, error = %e, "event stream failed");
            let reason = "the server could not continue the stream: reload, then reconnect";
            session.finish(session.resync(reason, &session.positions));
        }
        broker.stream_closed(user.0);
    });
    Ok(Events { rx, bytes })
}

/// The stream's loop. The steps that read the database (catching up, reloading contacts,
/// asking who is online) are rare and their futures large (KiBs: a pool checkout and a
/// query each), so they are boxed when taken: an idle stream's task holds only the loop's
/// own small state.
async fn run(
    session: &mut Session,
    live: &mut Inbox,
    lifetime: Duration,
    closing: &tokio_util::sync::CancellationToken,
) -> Result<()> {
    let expiry = tokio::time::sleep(lifetime);
    tokio::pin!(expiry);
    if Box::pin(session.catch_up(None)).await?.is_err() {
        return Ok(());
    }
    Box::pin(session.load_contacts()).await?;
    let contacts = session.contacts.iter().copied().collect();
    let online = Box::pin(session.broker.online_among(contacts)).await;
    if session.send(Item::PresenceSnapshot(online)).is_err() {
        return Ok(());
    }
    let mut heartbeat =
        tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
    loop {
        let step = tokio::select! {
            () = session.out.closed() => return Ok(()),
            () = closing.cancelled() => Err(session.finish(Item::Unavailable {
                reason: SHUTTING_DOWN.into(),
            })),
            () = &mut expiry => Err(session.end(
                "the access token expired: reconnect with a fresh one and the last cursor",
            )),
            _ = heartbeat.tick() => session.send(Item::Heartbeat),
            received = live.recv() => match received {
                Ok(dispatched) => session.on_published(&dispatched.0, dispatched.1).await?,
                // The inbox overflowed: the log has everything that was dropped.
                Err(RecvError::Lagged(_)) => Box::pin(session.catch_up(None)).await?,
                Err(RecvError::Closed) => return Ok(()),
            },
        };
        if step.is_err() {
            return Ok(());
        }
    }
}
