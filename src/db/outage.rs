//! Whether the database is out of reach, as a circuit breaker: whoever fails to reach it
//! trips the breaker, and while it is open the send and MarkRead writers answer UNAVAILABLE
//! at once and the authentication layer decides by what it last knew, instead of each call
//! waiting out a connection timeout. One probe at a time tries the database every
//! [`PROBE_EVERY`] and closes the breaker when it answers.

use super::Pool;
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

/// How often the probe tries the database while it is out of reach.
pub const PROBE_EVERY: Duration = Duration::from_millis(250);

/// The breaker of one database.
#[derive(Debug)]
pub struct Outage {
    pool: Pool,
    down: AtomicBool,
}

impl Outage {
    /// A closed breaker for the database of `pool` (which the probe uses).
    pub fn new(pool: Pool) -> Arc<Self> {
        Arc::new(Self {
            pool,
            down: AtomicBool::new(false),
        })
    }

    /// True while the database is taken to be out of reach.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    /// Records that the database could not be reached (`why`), and unless a probe runs
    /// already, starts one on the current runtime.
    pub fn trip(self: &Arc<Self>, why: &str) {
        if self.down.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::warn!(
            why,
            "database unreachable: answering UNAVAILABLE at once until it answers again"
        );
        metrics::counter!("epop_db_outages_total").increment(1);
        let outage = self.clone();
        tokio::spawn(async move {
            let since = Instant::now();
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                if super::ping(&outage.pool).await {
                    outage.down.store(false, Ordering::Release);
                    tracing::info!(down_for = ?since.elapsed(), "database reachable again");
                    return;
                }
            }
        });
    }
}
