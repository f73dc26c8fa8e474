//! This instance's open streams, by user: each event goes to the inboxes of its recipients'
//! streams only, so the cost of an event is its local recipients, not every open stream (a
//! broadcast woke all of them for each event, which bounded fan-out at high rates). An
//! inbox is bounded: one that overflows drops the event and tells its session it lagged, and
//! the session re-reads the log, as it does after any gap.

use super::{Published, Revoked};
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Instant,
};
use tokio::sync::{broadcast::error::RecvError, mpsc};
use uuid::Uuid;

/// How many events a stream may fall behind before it must re-read from the database.
pub const CAPACITY: usize = 4096;

/// The inboxes of the open streams, by user.
#[derive(Debug, Default)]
pub struct Inboxes {
    users: Mutex<HashMap<Uuid, Vec<Slot>>>,
    next_id: AtomicU64,
    watcher: OnceLock<Arc<dyn GrantWatcher>>,
}

/// What keeps a cache of session and user state true (the authentication layer's): told at
/// once of every revocation this instance learns of, and of whether it may have missed some.
pub trait GrantWatcher: Send + Sync + std::fmt::Debug {
    /// `sessions` of `user` were revoked.
    fn revoked(&self, user: Uuid, sessions: Revoked);
    /// Revocations arrive from every instance from now on (Redis subscribed): whatever was
    /// cached before may have missed some, so it is forgotten.
    fn linked(&self);
    /// Revocations of other instances may not arrive (the Redis subscription is lost).
    fn unlinked(&self);
}

/// The sending end of one stream's inbox.
#[derive(Debug)]
struct Slot {
    id: u64,
    tx: mpsc::Sender<Dispatched>,
    lagged: Arc<AtomicBool>,
}

/// An event handed to the inboxes, and when: one allocation shared by its recipients, so an
/// inbox's slots are a pointer each (every inbox allocates its first 32 at once).
pub type Dispatched = Arc<(Published, Instant)>;

impl Slot {
    fn push(&self, item: &Dispatched) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(item.clone())
            && !self.lagged.swap(true, Ordering::AcqRel)
        {
            metrics::counter!("epop_stream_inbox_overflows_total").increment(1);
        }
    }
}

impl Inboxes {
    fn users(&self) -> MutexGuard<'_, HashMap<Uuid, Vec<Slot>>> {
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the watcher told of revocations (once; later calls are ignored).
    pub fn watch(&self, watcher: Arc<dyn GrantWatcher>) {
        let _ = self.watcher.set(watcher);
    }

    /// The watcher, if one is set.
    pub(super) fn watcher(&self) -> Option<&Arc<dyn GrantWatcher>> {
        self.watcher.get()
    }

    /// True when no stream is open here: nobody would read an event.
    pub fn is_empty(&self) -> bool {
        self.users().is_empty()
    }

    /// Opens an inbox for a stream of `user`: it receives what is dispatched from now on.
    pub fn open(self: &Arc<Self>, user: Uuid) -> Inbox {
        let (tx, rx) = mpsc::channel(CAPACITY);
        let lagged = Arc::new(AtomicBool::new(false));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.users().entry(user).or_default().push(Slot {
            id,
            tx,
            lagged: lagged.clone(),
        });
        Inbox {
            rx,
            lagged,
            owner: self.clone(),
            user,
            id,
        }
    }

    /// Hands `item` to the inboxes of the streams it is for: a recipient's streams, a
    /// revoked user's streams, or every stream (presence, which sessions filter by
    /// contacts, and rewinds).
    pub fn dispatch(&self, item: Published) {
        match (&item, self.watcher()) {
            (Published::Revoked { user_id, sessions }, Some(w)) => w.revoked(*user_id, *sessions),
            (Published::Rewind, Some(w)) => w.linked(),
            _ => {}
        }
        let item = Arc::new((item, Instant::now()));
        let users = self.users();
        let recipients = match &item.0 {
            Published::Durable { recipients, .. }
            | Published::Typing { recipients, .. }
            | Published::Assistant { recipients, .. }
            | Published::Board { recipients, .. }
            | Published::Inbox { recipients, .. } => recipients,
            Published::Revoked { user_id, .. } => {
                users
                    .get(user_id)
                    .into_iter()
                    .flatten()
                    .for_each(|s| s.push(&item));
                return;
            }
            Published::Presence { .. } | Published::Rewind => {
                users.values().flatten().for_each(|s| s.push(&item));
                return;
            }
        };
        // Whichever is smaller is walked: a group of thousands with few streams here, or
        // many streams and a small group.
        if recipients.len() <= users.len() {
            recipients
                .iter()
                .filter_map(|u| users.get(u))
                .flatten()
                .for_each(|s| s.push(&item));
        } else {
            users
                .iter()
                .filter(|(u, _)| recipients.contains(u))
                .flat_map(|(_, slots)| slots)
                .for_each(|s| s.push(&item));
        }
    }

    fn close(&self, user: Uuid, id: u64) {
        let mut users = self.users();
        if let Some(slots) = users.get_mut(&user) {
            slots.retain(|s| s.id != id);
            if slots.is_empty() {
                users.remove(&user);
            }
        }
    }
}

/// One stream's inbox; dropping it removes it from the dispatch.
#[derive(Debug)]
pub struct Inbox {
    rx: mpsc::Receiver<Dispatched>,
    lagged: Arc<AtomicBool>,
    owner: Arc<Inboxes>,
    user: Uuid,
    id: u64,
}

impl Inbox {
    /// The next event, or `Lagged` once after the inbox overflowed (events were dropped
    /// since; those still queued are older than the gap and come next).
    pub async fn recv(&mut self) -> Result<Dispatched, RecvError> {
        if self.lagged.swap(false, Ordering::AcqRel) {
            return Err(RecvError::Lagged(0));
        }
        self.rx.recv().await.ok_or(RecvError::Closed)
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.owner.close(self.user, self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::Revoked;

    fn typing(recipients: Vec<Uuid>) -> Published {
        Published::Typing {
            conversation_id: Uuid::nil(),
            user_id: Uuid::nil(),
            expires_at: chrono::Utc::now(),
            recipients: recipients.into(),
        }
    }

    fn queued(inbox: &mut Inbox) -> usize {
        let mut n = 0;
        while inbox.rx.try_recv().is_ok() {
            n += 1;
        }
        n
    }

    #[tokio::test]
    async fn an_event_reaches_the_streams_of_its_recipients_only() {
        let inboxes = Arc::new(Inboxes::default());
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let (mut a1, mut a2, mut b1) = (inboxes.open(a), inboxes.open(a), inboxes.open(b));
        // Small group, more streams: walks the recipients; large group: walks the streams.
        inboxes.dispatch(typing(vec![a]));
        inboxes.dispatch(typing(vec![a, b, c, Uuid::new_v4()]));
        assert_eq!(
            (queued(&mut a1), queued(&mut a2), queued(&mut b1)),
            (2, 2, 1)
        );
        inboxes.dispatch(Published::Revoked {
            user_id: b,
            sessions: Revoked::All,
        });
        inboxes.dispatch(Published::Rewind);
        assert_eq!(
            (queued(&mut a1), queued(&mut a2), queued(&mut b1)),
            (1, 1, 2)
        );
    }

    #[tokio::test]
    async fn an_overflowed_inbox_reports_one_lag_then_goes_on() {
        let inboxes = Arc::new(Inboxes::default());
        let a = Uuid::new_v4();
        let mut inbox = inboxes.open(a);
        for _ in 0..CAPACITY + 3 {
            inboxes.dispatch(typing(vec![a]));
        }
        assert!(matches!(inbox.recv().await, Err(RecvError::Lagged(_))));
        assert_eq!(queued(&mut inbox), CAPACITY);
        inboxes.dispatch(typing(vec![a]));
        assert!(inbox.recv().await.is_ok());
    }

    #[tokio::test]
    async fn a_dropped_inbox_leaves_the_dispatch() {
        let inboxes = Arc::new(Inboxes::default());
        let a = Uuid::new_v4();
        let (first, mut second) = (inboxes.open(a), inboxes.open(a));
        drop(first);
        assert!(!inboxes.is_empty());
        inboxes.dispatch(typing(vec![a]));
        assert_eq!(queued(&mut second), 1);
        drop(second);
        assert!(inboxes.is_empty());
    }
}
