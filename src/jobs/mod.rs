//! The job worker: runs the durable jobs that services write into the `jobs` table in their
//! own transactions (an outbox). Jobs are claimed with `FOR UPDATE SKIP LOCKED` under a
//! lease, retried with exponential backoff, and survive restarts: a job is marked done only
//! after its work is done, and a worker that dies mid-job gives it back when the lease ends.
//! The worker knows jobs only as data (`domain::jobs::Job`); what each kind does is the
//! handler it is built with, wired in `app` from the services' job functions.

use crate::{
    db::{self, Pool, jobs::Claimed},
    domain::jobs::Job,
};
use chrono::Utc;
use futures::future::BoxFuture;
use std::{sync::Arc, time::Duration};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How long a claimed job is this worker's.
const LEASE: Duration = Duration::from_secs(120);
/// How long one job may run: well inside its lease, so no other worker can claim a job that
/// is still running here.
pub const JOB_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_secs(2);

/// Runs one job: its parsed form and its stored row (id, creation time).
pub type Handler =
    Arc<dyn Fn(Job, Claimed) -> BoxFuture<'static, anyhow::Result<()>> + Send + Sync>;

/// The worker: claims due jobs and hands them to the handler it was built with.
#[derive(Clone)]
pub struct Worker {
    pool: Pool,
    wake: Arc<Notify>,
    handler: Handler,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").finish_non_exhaustive()
    }
}

impl Worker {
    /// A worker on `pool`, woken by `wake`, running jobs with `handler`.
    pub fn new(pool: Pool, wake: Arc<Notify>, handler: Handler) -> Self {
        Self {
            pool,
            wake,
            handler,
        }
    }

    /// Runs jobs until `stop` is cancelled; the job in hand is finished first.
    pub async fn run(self, stop: CancellationToken) {
        loop {
            loop {
                match self.run_batch().await {
                    Ok(0) => break,
                    Ok(_) if stop.is_cancelled() => return,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot claim jobs");
                        break;
                    }
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Claims one job (its lease starts as it starts), runs it within [`JOB_TIMEOUT`], and
    /// records the outcome if the claim still holds.
    async fn run_batch(&self) -> crate::error::Result<usize> {
        let claimed = {
            let mut conn = self.pool.get().await?;
            db::jobs::claim(&mut conn, 1, LEASE).await?
        };
        let n = claimed.len();
        for job in claimed {
            let outcome = tokio::time::timeout(JOB_TIMEOUT, self.handle(&job))
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out after {JOB_TIMEOUT:?}")));
            let mut conn = self.pool.get().await?;
            let result = match (&outcome, job.attempts >= job.max_attempts) {
                (Ok(()), _) => "done",
                (Err(_), false) => "retry",
                (Err(_), true) => "failed",
            };
            metrics::counter!("epop_jobs_run_total", "kind" => job.kind.clone(), "result" => result)
                .increment(1);
            let recorded = match outcome {
                Ok(()) => db::jobs::finish(&mut conn, &job).await?,
                Err(e) => {
                    // A handler that was told when to come back (a push service's
                    // Retry-After) is retried then; others back off.
                    let after = e
                        .downcast_ref::<RetryAfter>()
                        .map_or_else(|| backoff(job.attempts), |r| r.0);
                    let retry_at = chrono::Duration::from_std(after)
                        .ok()
                        .and_then(|d| Utc::now().checked_add_signed(d))
                        .unwrap_or_else(|| Utc::now() + backoff(job.attempts));
                    tracing::warn!(job = job.id, kind = %job.kind, attempt = job.attempts, error = %e, "job failed");
                    db::jobs::fail(&mut conn, &job, &format!("{e:#}"), retry_at).await?
                }
            };
            if !recorded {
                tracing::warn!(
                    job = job.id,
                    "the job's lease was lost: its outcome is not recorded"
                );
            }
        }
        Ok(n)
    }

    async fn handle(&self, claimed: &Claimed) -> anyhow::Result<()> {
        let job = Job::parse(&claimed.kind, &claimed.payload)?;
        (self.handler)(job, claimed.clone()).await
    }
}

/// A handler's failure that names when to try again (e.g. a push service's `Retry-After`).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("to be retried in {0:?}")]
pub struct RetryAfter(pub Duration);

/// 5 s after the first failure, doubling, at most one hour.
fn backoff(attempts: i32) -> Duration {
    let exp = u32::try_from(attempts.clamp(1, 12) - 1).unwrap_or(0);
    Duration::from_secs(5 * 2u64.pow(exp)).min(Duration::from_secs(3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(2), Duration::from_secs(10));
        assert_eq!(backoff(50), Duration::from_secs(3600));
    }
}
