//! The broker: the inboxes of this instance's stream sessions, which each event reaches by its
//! recipients (fed by Redis pub/sub when configured; see `inboxes`), plus presence: the
//! streams open here, and with Redis the claims of every instance (see `presence`).

use super::{
    inboxes::{Inbox, Inboxes},
    presence::Presence,
};
use crate::db::{events::Event, projects::Project, tasks::Task};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};
use uuid::Uuid;

/// How long a user stays online after their last stream closes.
pub const PRESENCE_GRACE: Duration = Duration::from_secs(5);

/// What travels through the broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Published {
    /// A durable event, for the conversation's members at commit time.
    Durable {
        /// The event.
        event: Event,
        /// Who may see it.
        recipients: Recipients,
    },
    /// Someone is typing (ephemeral).
    Typing {
        /// The conversation.
        conversation_id: Uuid,
        /// Who types.
        user_id: Uuid,
        /// When the indicator lapses.
        expires_at: DateTime<Utc>,
        /// Who may see it.
        recipients: Recipients,
    },
    /// A piece of the assistant's answer in a conversation (ephemeral: the answer is then
    /// stored as a message).
    Assistant {
        /// The piece.
        delta: crate::domain::ai::AssistantDelta,
        /// The conversation's members.
        recipients: Recipients,
    },
    /// A project board changed (ephemeral: clients refetch the board after a reconnect).
    Board {
        /// What changed.
        change: BoardChange,
        /// The project's members.
        recipients: Recipients,
    },
    /// A user's inbox changed (ephemeral: clients list the inbox after a reconnect).
    Inbox {
        /// What changed.
        change: crate::domain::notifications::Change,
        /// The user.
        recipients: Recipients,
    },
    /// The broker may have missed events (a reconnect to Redis, an instance's overflowed
    /// publish queue), so every session re-reads the log from its positions.
    Rewind,
    /// A user went online or offline (ephemeral; streams pass it only to the people who
    /// share a conversation with the user).
    Presence {
        /// The user.
        user_id: Uuid,
        /// Online when true.
        online: bool,
    },
    /// Sessions of a user were revoked (sign-out, password reset, disabled, deleted, role
    /// changed): their open streams end.
    Revoked {
        /// The user.
        user_id: Uuid,
        /// Which of their sessions.
        sessions: Revoked,
    },
}

impl Published {
    /// Its kind, for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Durable { .. } => "durable",
            Self::Typing { .. } => "typing",
            Self::Assistant { .. } => "assistant",
            Self::Board { .. } => "board",
            Self::Inbox { .. } => "inbox",
            Self::Rewind => "rewind",
            Self::Presence { .. } => "presence",
            Self::Revoked { .. } => "revoked",
        }
    }
}

/// The users an event is for: sorted and without duplicates, so each of the instance's
/// sessions finds itself by binary search (a group of thousands is not scanned per stream).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "Vec<Uuid>", into = "Vec<Uuid>")]
pub struct Recipients(Vec<Uuid>);

impl From<Vec<Uuid>> for Recipients {
    fn from(mut users: Vec<Uuid>) -> Self {
        users.sort_unstable();
        users.dedup();
        Self(users)
    }
}

impl From<Recipients> for Vec<Uuid> {
    fn from(r: Recipients) -> Self {
        r.0
    }
}

impl Recipients {
    /// How many.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Them, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Uuid> {
        self.0.iter()
    }

    /// True when `user` is one of them.
    pub fn contains(&self, user: &Uuid) -> bool {
        self.0.binary_search(user).is_ok()
    }

    /// Adds `more`.
    pub fn extend(&mut self, more: impl IntoIterator<Item = Uuid>) {
        let mut all = std::mem::take(&mut self.0);
        all.extend(more);
        *self = all.into();
    }
}

/// Which sessions of a user a revocation ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Revoked {
    /// Every session.
    All,
    /// Every session but this one (a password change keeps the caller's).
    AllBut(Uuid),
    /// This session (sign-out).
    Only(Uuid),
}

/// A change to a project or its tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BoardChange {
    /// A task was created or changed.
    Task(Box<Task>),
    /// A task was deleted.
    TaskDeleted {
        /// Its project.
        project_id: Uuid,
        /// The task.
        task_id: Uuid,
    },
    /// A project or its membership changed.
    Project(Box<Project>),
    /// A project was deleted.
    ProjectDeleted {
        /// The project.
        project_id: Uuid,
    },
}

/// Fans events out to this instance's streams and counts who is online here.
#[derive(Debug, Clone, Default)]
pub struct Broker {
    inboxes: Arc<Inboxes>,
    streams: Arc<Mutex<HashMap<Uuid, usize>>>,
    /// With Redis: the queue of the task that publishes to it (in order).
    redis: Option<super::redis::Outbox>,
    /// With Redis: presence across instances.
    presence: Option<Presence>,
    /// With Redis: the leases that cap a user's streams across instances.
    leases: Option<Arc<crate::ratelimit::leases::Leases>>,
}

impl Broker {
    /// A broker that fans out through Redis pub/sub on `channel`, so every instance's
    /// streams see every instance's events, with presence claims lasting `presence_ttl`
    /// unless renewed; it stops with `stop`.
    pub async fn redis(
        url: &str,
        channel: &str,
        presence_ttl: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<Self> {
        let mut broker = Self::default();
        let redis = crate::redis_link::Redis::new(url, 4, Duration::from_secs(5))?;
        let queue =
            super::redis::start(redis.clone(), channel, broker.inboxes.clone(), stop.clone());
        broker.redis = Some(queue);
        broker.presence = Some(Presence::new(redis, channel, presence_ttl));
        let prefix = format!("{channel}:leases:");
        broker.leases =
            Some(crate::ratelimit::leases::Leases::new(url, &prefix, stop.clone()).await?);
        tokio::spawn(broker.clone().refresh_claims(stop));
        Ok(broker)
    }

    /// Keeps this instance's presence claims alive while their streams are open, and
    /// announces offline the users of instances that died (whose claims lapsed).
    async fn refresh_claims(self, stop: tokio_util::sync::CancellationToken) {
        let Some(presence) = &self.presence else {
            return;
        };
        let mut every = tokio::time::interval(presence.renew_every());
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            let users: Vec<Uuid> = {
                let streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
                streams
                    .iter()
                    .filter(|(_, n)| **n > 0)
                    .map(|(u, _)| *u)
                    .collect()
            };
            // Renewing answers who had no live claim left (theirs lapsed while Redis was out
            // of reach): they are back online. Sweeping answers the users of dead instances.
            let changes = [
                (presence.claim(&users).await, true),
                (presence.sweep().await, false),
            ];
            for (users, online) in changes {
                match users {
                    Ok(users) => {
                        for user_id in users {
                            self.publish(Published::Presence { user_id, online });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "presence upkeep in redis failed"),
                }
            }
        }
    }

    /// Publishes to every subscribed session of every instance (best effort: none
    /// listening is fine, and what is lost is in the log).
    pub fn publish(&self, item: Published) {
        metrics::counter!("epop_broker_published_total", "kind" => item.kind()).increment(1);
        match &self.redis {
            Some(outbox) => outbox.push(item),
            None => self.inboxes.dispatch(item),
        }
    }

    /// Ends the open streams of `user`'s `sessions` on every instance, and tells the
    /// watcher of this instance at once (before Redis echoes it back).
    pub fn revoke(&self, user: Uuid, sessions: Revoked) {
        if self.redis.is_some()
            && let Some(w) = self.inboxes.watcher()
        {
            w.revoked(user, sessions);
        }
        self.publish(Published::Revoked {
            user_id: user,
            sessions,
        });
    }

    /// Tells `watcher` of every revocation this instance learns of, its own and (with Redis)
    /// every other instance's.
    pub fn watch_grants(&self, watcher: Arc<dyn super::inboxes::GrantWatcher>) {
        self.inboxes.watch(watcher);
    }

    /// An inbox for a stream of `user`: what is published for them from now on.
    pub fn subscribe(&self, user: Uuid) -> Inbox {
        self.inboxes.open(user)
    }

    /// True while `user` has a stream open on this instance or (with Redis) on any other.
    pub async fn is_online(&self, user: Uuid) -> bool {
        let here = {
            let streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
            streams.get(&user).is_some_and(|n| *n > 0)
        };
        match &self.presence {
            Some(presence) if !here => presence.is_online(user).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "reading presence from redis failed");
                false
            }),
            _ => here,
        }
    }

    /// Those of `users` who have a stream open here or (with Redis) on any instance.
    pub async fn online_among(&self, users: Vec<Uuid>) -> Vec<Uuid> {
        let (here, elsewhere): (Vec<Uuid>, Vec<Uuid>) = {
            let streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
            users
                .into_iter()
                .partition(|u| streams.get(u).is_some_and(|n| *n > 0))
        };
        let Some(presence) = &self.presence else {
            return here;
        };
        match presence.online_among(&elsewhere).await {
            Ok(more) => here.into_iter().chain(more).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "reading presence from redis failed");
                here
            }
        }
    }

    /// Publishes that `user` is online or offline, when (with Redis) no other instance holds
    /// a stream of theirs.
    fn announce(&self, user: Uuid, online: bool) {
        let Some(presence) = self.presence.clone() else {
            self.publish(Published::Presence {
                user_id: user,
                online,
            });
            return;
        };
        let broker = self.clone();
        tokio::spawn(async move {
            let changed = if online {
                presence.claim(&[user]).await.map(|came| !came.is_empty())
            } else {
                presence.release(user).await.map(|live| live == 0)
            };
            // Without Redis' answer, this instance's own view decides.
            let changed = changed.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "presence in redis failed");
                true
            });
            if changed {
                broker.publish(Published::Presence {
                    user_id: user,
                    online,
                });
            }
        });
    }

    /// Counts a stream of `user` as open unless they have `max` open here already (then
    /// answers false); the first one makes them online.
    fn try_stream_opened(&self, user: Uuid, max: usize) -> bool {
        let first = {
            let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
            let n = streams.entry(user).or_default();
            if *n >= max {
                return false;
            }
            *n += 1;
            metrics::gauge!("epop_event_streams_open").increment(1.0);
            *n == 1
        };
        if first {
            self.announce(user, true);
        }
        true
    }

    /// With Redis, the leases that count concurrency across the instances.
    pub fn leases(&self) -> Option<Arc<crate::ratelimit::leases::Leases>> {
        self.leases.clone()
    }

    /// Counts a new stream of `user` if they have fewer than `max` open: with Redis across
    /// the instances (a lease, given back when dropped; while Redis cannot answer, this
    /// instance's count decides alone), and on this instance. Err when they have `max`.
    pub async fn open_stream(
        &self,
        user: Uuid,
        max: usize,
    ) -> Result<Option<crate::ratelimit::leases::Lease>, ()> {
        let lease = match &self.leases {
            Some(leases) => Some(leases.take("streams", user, max).await?),
            None => None,
        };
        if self.try_stream_opened(user, max) {
            Ok(lease)
        } else {
            Err(())
        }
    }

    /// Counts a stream of `user` as closed; after the grace period with none open, they are
    /// offline.
    pub fn stream_closed(&self, user: Uuid) {
        let last = {
            let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
            let n = streams.entry(user).or_default();
            if *n > 0 {
                metrics::gauge!("epop_event_streams_open").decrement(1.0);
            }
            *n = n.saturating_sub(1);
            *n == 0
        };
        if last {
            let broker = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(PRESENCE_GRACE).await;
                let still_gone = {
                    let mut streams = broker.streams.lock().unwrap_or_else(|p| p.into_inner());
                    let gone = streams.get(&user).is_none_or(|n| *n == 0);
                    if gone {
                        streams.remove(&user);
                    }
                    gone
                };
                if still_gone {
                    broker.announce(user, false);
                }
            });
        }
    }
}
