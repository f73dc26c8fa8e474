//! Live session and user state behind every authenticated call: a token verifies, but the
//! call goes on only while its session is open and its user is active, with the role the
//! database gives now (not the one in the token). Looked up once per session and remembered
//! for a short while; every revocation this instance learns of (its own at once, the other
//! instances' through Redis) forgets the sessions it names, so a revoked token is refused on
//! every instance within the Redis round trip. While revocations of other instances cannot
//! arrive (no Redis, or the subscription lost), an entry is trusted for `fallback` only.
//! While the database cannot be asked, the last known state decides (a session never seen
//! is refused with UNAVAILABLE at once).

use super::Caller;
use crate::{
    db::{self, Pool, outage::Outage},
    domain::Role,
    error::{Error, Result},
    realtime::{Revoked, inboxes::GrantWatcher},
};
use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use uuid::Uuid;

/// The most sessions remembered (about 64 bytes each).
const MAX_ENTRIES: usize = 65_536;

/// What the database said about a session, and when.
#[derive(Debug, Clone, Copy)]
struct Entry {
    user: Uuid,
    /// The user's role while the session is open; None once it is not.
    role: Option<Role>,
    at: Instant,
}

/// The remembered state of sessions, kept true by revocations.
#[derive(Debug)]
pub struct Grants {
    pool: Pool,
    /// How long an entry is trusted while revocations of every instance arrive.
    linked_for: Duration,
    /// How long while they may not.
    fallback: Duration,
    linked: AtomicBool,
    /// Bumped by every revocation: a lookup that began before one does not remember what it
    /// read (it may predate the revocation).
    epoch: AtomicU64,
    entries: RwLock<HashMap<Uuid, Entry>>,
    /// Whether the database is out of reach.
    outage: Arc<Outage>,
}

impl Grants {
    /// Grants looked up on `pool`, trusted for `linked_for` while Redis carries every
    /// instance's revocations, else for `fallback`.
    pub fn new(pool: Pool, outage: Arc<Outage>, linked_for: Duration, fallback: Duration) -> Self {
        Self {
            pool,
            linked_for,
            fallback,
            linked: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            entries: RwLock::new(HashMap::new()),
            outage,
        }
    }

    fn ttl(&self) -> Duration {
        if self.linked.load(Ordering::Acquire) {
            self.linked_for
        } else {
            self.fallback
        }
    }

    /// `caller` (from a verified token) with the role their user has now, or UNAUTHENTICATED
    /// when the session is revoked or the user disabled, deleted or given another role.
    pub async fn check(&self, caller: Caller) -> Result<Caller> {
        let known = {
            let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
            entries
                .get(&caller.session)
                .filter(|e| e.user == caller.user_id.0)
                .copied()
        };
        let role = match known {
            Some(e) if e.at.elapsed() < self.ttl() => e.role,
            _ => match self.look_up(caller).await {
                Ok(role) => role,
                // The database cannot be asked now (out of reach, or no connection free in
                // time): what was last known decides (every revocation is a write to it, and
                // those this instance hears of are applied at once); a session never seen is
                // not let in.
                Err(Error::Unavailable(why)) => match known {
                    Some(e) => {
                        metrics::counter!("epop_session_checks_stale_total").increment(1);
                        e.role
                    }
                    None => return Err(Error::Unavailable(why)),
                },
                Err(e) => return Err(e),
            },
        };
        match role {
            Some(role) if role == caller.role => Ok(Caller { role, ..caller }),
            Some(_) => Err(Error::Unauthenticated(
                "your role changed: sign in again".into(),
            )),
            None => Err(Error::Unauthenticated(
                "the session was revoked or the account disabled: sign in again".into(),
            )),
        }
    }

    /// The session's state in the database, unless it is known to be out of reach (then
    /// UNAVAILABLE at once).
    async fn look_up(&self, caller: Caller) -> Result<Option<Role>> {
        if self.outage.is_down() {
            return Err(Error::Unavailable("database unavailable, try again".into()));
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let role = {
            let mut conn = self.pool.get().await?;
            db::tokens::live_grant(&mut conn, caller.user_id, caller.session).await?
        };
        metrics::counter!("epop_session_checks_total").increment(1);
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        // A revocation since the lookup began: what it read may be older than that.
        if self.epoch.load(Ordering::Acquire) == epoch {
            if entries.len() >= MAX_ENTRIES {
                let ttl = self.ttl();
                entries.retain(|_, e| e.at.elapsed() < ttl);
                if entries.len() >= MAX_ENTRIES {
                    entries.clear();
                }
            }
            let entry = Entry {
                user: caller.user_id.0,
                role,
                at: Instant::now(),
            };
            entries.insert(caller.session, entry);
        }
        Ok(role)
    }

    fn forget(&self, keep: impl Fn(&Uuid, &Entry) -> bool) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        self.epoch.fetch_add(1, Ordering::AcqRel);
        entries.retain(|session, e| keep(session, e));
    }
}

impl GrantWatcher for Grants {
    fn revoked(&self, user: Uuid, sessions: Revoked) {
        match sessions {
            Revoked::All => self.forget(|_, e| e.user != user),
            Revoked::AllBut(kept) => self.forget(|s, e| e.user != user || *s == kept),
            Revoked::Only(gone) => self.forget(|s, _| *s != gone),
        }
    }

    fn linked(&self) {
        self.forget(|_, _| false);
        self.linked.store(true, Ordering::Release);
    }

    fn unlinked(&self) {
        self.linked.store(false, Ordering::Release);
    }
}
