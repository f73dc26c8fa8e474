//! Whether the database is out of reach, as a circuit breaker. The send and MarkRead writers
//! trip it when they cannot reach the database (their connections are their own, so a wait
//! there is never a busy pool: it is the database); while it is open they answer
//! UNAVAILABLE at once and the authentication layer decides by what it last knew, instead of
//! each call waiting out a connection timeout. One probe at a time opens a new connection
//! every [`PROBE_EVERY`] (not from the pool, whose waits may only mean it is busy) and closes
//! the breaker when the database answers.

use super::tls::Target;
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

/// How often the probe tries the database while it is out of reach.
pub const PROBE_EVERY: Duration = Duration::from_millis(250);

/// The longest one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The breaker of one database.
#[derive(Debug)]
pub struct Outage {
    target: Target,
    down: AtomicBool,
}

impl Outage {
    /// A closed breaker for the database at `url`.
    pub fn new(url: &str) -> anyhow::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            target: Target::parse(url)?,
            down: AtomicBool::new(false),
        }))
    }

    /// True when a new connection answers a trivial query within [`PROBE_TIMEOUT`].
    async fn answers(&self) -> bool {
        use diesel_async::RunQueryDsl;
        let probe = async {
            let mut conn = self.target.establish().await.ok()?;
            diesel::sql_query("SELECT 1").execute(&mut conn).await.ok()
        };
        matches!(
            tokio::time::timeout(PROBE_TIMEOUT, probe).await,
            Ok(Some(_))
        )
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
                if outage.answers().await {
                    outage.down.store(false, Ordering::Release);
                    tracing::info!(down_for = ?since.elapsed(), "database reachable again");
                    return;
                }
            }
        });
    }
}
