//! One open event stream: catches up from the database, then delivers live events from the
//! broker, exactly once and in order per conversation, with heartbeats, a bounded buffer,
//! and an explicit resync when the client is too far behind or too slow.

use crate::{
    db::{self, Pool, events::Event},
    domain::UserId,
    error::Result,
    realtime::{
        BoardChange, Broker, Published,
        cursor::{self, Positions},
    },
};
use chrono::{DateTime, Utc};
use std::{sync::Arc, time::Duration};
use tokio::sync::{broadcast::error::RecvError, mpsc};
use uuid::Uuid;

/// How many items a stream buffers for its client before it is dropped as too slow.
pub const BUFFER: usize = 256;
/// How many missed events a resume may replay; more means "resync".
pub const MAX_REPLAY: i64 = 1000;
/// How often an idle stream sends a heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// What a stream sends.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A durable event, with the cursor to resume after it.
    Event {
        /// The event.
        event: Box<Event>,
        /// The cursor after it.
        cursor: String,
    },
    /// Someone is typing.
    Typing {
        /// The conversation.
        conversation_id: Uuid,
        /// Who.
        user_id: Uuid,
        /// Until when.
        expires_at: DateTime<Utc>,
    },
    /// Someone went online or offline.
    Presence {
        /// Who.
        user_id: Uuid,
        /// Online when true.
        online: bool,
    },
    /// Who of the user's contacts is online (once, when the stream opens).
    PresenceSnapshot(Vec<Uuid>),
    /// A project board changed.
    Board(BoardChange),
    /// Reload state and open a fresh stream.
    Resync {
        /// Why.
        reason: String,
    },
    /// Keep-alive.
    Heartbeat,
}

/// Why a session ended early.
enum Stop {
    /// The client went away or cannot keep up.
    Gone,
}

struct Session {
    pool: Pool,
    broker: Broker,
    user: UserId,
    positions: Positions,
    out: mpsc::Sender<Item>,
}

impl Session {
    /// Sends without waiting: a full buffer means the client is too slow.
    fn send(&self, item: Item) -> Result<(), Stop> {
        match self.out.try_send(item) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                let out = self.out.clone();
                tokio::spawn(async move {
                    let resync = Item::Resync {
                        reason: "the client is too slow; reload and reconnect".into(),
                    };
                    let _ = tokio::time::timeout(Duration::from_secs(5), out.send(resync)).await;
                });
                Err(Stop::Gone)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Stop::Gone),
        }
    }

    /// Delivers an event unless it was delivered already.
    fn deliver(&mut self, event: Event) -> Result<(), Stop> {
        let seen = self.positions.get(&event.conversation_id).copied();
        if seen.is_some_and(|s| event.seq <= s) {
            return Ok(());
        }
        self.positions.insert(event.conversation_id, event.seq);
        let cursor = cursor::encode(&self.positions);
        self.send(Item::Event {
            event: Box::new(event),
            cursor,
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
            let _ = self.send(Item::Resync {
                reason: "too far behind to replay; reload and reconnect".into(),
            });
            return Ok(Err(Stop::Gone));
        }
        for e in events {
            if let Err(stop) = self.deliver(e) {
                return Ok(Err(stop));
            }
        }
        Ok(Ok(()))
    }

    async fn on_published(&mut self, item: &Published) -> Result<Result<(), Stop>> {
        let me = self.user.0;
        match item {
            Published::Durable { event, recipients } if recipients.contains(&me) => {
                let next = self.positions.get(&event.conversation_id).map(|s| s + 1);
                if next == Some(event.seq) {
                    Ok(self.deliver(event.clone()))
                } else if next.is_some_and(|n| event.seq < n) {
                    Ok(Ok(()))
                } else {
                    // A gap, or a conversation new to this stream: the log fills it in order.
                    self.catch_up(Some(event.conversation_id)).await
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
            Published::Rewind => self.catch_up(None).await,
            Published::Presence { user_id, online } => Ok(self.send(Item::Presence {
                user_id: *user_id,
                online: *online,
            })),
            _ => Ok(Ok(())),
        }
    }
}

/// Opens a stream for `user`, from `resume` (a cursor) or from now. The receiver ends when
/// the stream does; dropping it ends the session.
pub async fn open(
    pool: Pool,
    broker: Broker,
    user: UserId,
    resume: Option<Positions>,
) -> Result<mpsc::Receiver<Item>> {
    // Subscribe before reading the log, so nothing committed in between is missed.
    let mut live = broker.subscribe();
    let positions = match resume {
        Some(p) => p,
        None => {
            let mut conn = pool.get().await?;
            db::events::positions(&mut conn, user).await?
        }
    };
    let (out, rx) = mpsc::channel(BUFFER);
    let mut session = Session {
        pool,
        broker: broker.clone(),
        user,
        positions,
        out,
    };
    broker.stream_opened(user.0);
    tokio::spawn(async move {
        let result = run(&mut session, &mut live).await;
        if let Err(e) = result {
            tracing::warn!(user = %user, error = %e, "event stream failed");
            let _ = session.out.try_send(Item::Resync {
                reason: "the server could not continue the stream".into(),
            });
        }
        broker.stream_closed(user.0);
    });
    Ok(rx)
}

async fn run(
    session: &mut Session,
    live: &mut tokio::sync::broadcast::Receiver<Arc<Published>>,
) -> Result<()> {
    if session.catch_up(None).await?.is_err() {
        return Ok(());
    }
    let contacts = {
        let mut conn = session.pool.get().await?;
        db::conversations::contacts(&mut conn, session.user).await?
    };
    let online = session.broker.online_among(contacts).await;
    if session.send(Item::PresenceSnapshot(online)).is_err() {
        return Ok(());
    }
    let mut heartbeat =
        tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
    loop {
        let step = tokio::select! {
            () = session.out.closed() => return Ok(()),
            _ = heartbeat.tick() => session.send(Item::Heartbeat),
            received = live.recv() => match received {
                Ok(item) => session.on_published(&item).await?,
                // Fell behind the broker: the log has everything that was missed.
                Err(RecvError::Lagged(_)) => session.catch_up(None).await?,
                Err(RecvError::Closed) => return Ok(()),
            },
        };
        if step.is_err() {
            return Ok(());
        }
    }
}
