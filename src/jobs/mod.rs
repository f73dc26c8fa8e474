//! The job worker: runs the durable jobs that services write into the `jobs` table in their
//! own transactions (an outbox). Jobs are claimed with `FOR UPDATE SKIP LOCKED` under a
//! lease, retried with exponential backoff, and survive restarts: a job is marked done only
//! after its work is done, and a worker that dies mid-job gives it back when the lease ends.

pub mod mailer;

use crate::{
    db::{self, Pool, jobs::Job},
    service::auth as auth_service,
};
use chrono::Utc;
use std::{sync::Arc, time::Duration};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use mailer::Mailer;

/// The kind of the job that emails a password reset link.
pub const PASSWORD_RESET_EMAIL: &str = "password_reset_email";
/// The kind of the job that emails a member a digest of unread messages.
pub const MESSAGE_DIGEST: &str = "message_digest";
/// The kind of the job that, a while after a conversation's messages, queues the digests of
/// its members.
pub const CONVERSATION_DIGEST: &str = "conversation_digest";
/// The kind of the job that emails a task's assignee before it is due.
pub const TASK_REMINDER: &str = "task_reminder";

/// How long a claimed job is this worker's.
const LEASE: Duration = Duration::from_secs(120);
/// How long one job may run: well inside its lease, so no other worker can claim a job that
/// is still running here.
pub const JOB_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_secs(2);

/// What job handlers need.
#[derive(Debug, Clone)]
pub struct Worker {
    /// The database.
    pub pool: Pool,
    /// Where email goes.
    pub mailer: Arc<Mailer>,
    /// The web app's base URL, for links.
    pub public_url: String,
    /// Woken when a job is enqueued, so it runs at once rather than at the next poll.
    pub wake: Arc<Notify>,
    /// Who has a stream open here (digests skip them).
    pub broker: crate::realtime::Broker,
}

impl Worker {
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
            let recorded = match outcome {
                Ok(()) => db::jobs::finish(&mut conn, &job).await?,
                Err(e) => {
                    let retry_at = Utc::now() + backoff(job.attempts);
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

    async fn handle(&self, job: &Job) -> anyhow::Result<()> {
        match job.kind.as_str() {
            PASSWORD_RESET_EMAIL => auth_service::send_reset_email(self, job).await,
            TASK_REMINDER => crate::service::tasks::send_reminder(self, job).await,
            MESSAGE_DIGEST => crate::service::digests::send_digest(self, job).await,
            CONVERSATION_DIGEST => crate::service::digests::queue_members(self, job).await,
            other => anyhow::bail!("unknown job kind {other}"),
        }
    }
}

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
