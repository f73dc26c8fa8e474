//! Queries on `jobs`, the durable queue: enqueue inside the caller's transaction, claim with
//! `FOR UPDATE SKIP LOCKED` under a lease, then finish, retry later, or fail for good.

use crate::{db::schema::jobs, domain::jobs::Job, error::Result};
use chrono::{DateTime, Utc};
use diesel::{
    dsl::now,
    prelude::*,
    sql_types::{BigInt, Timestamptz},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::time::Duration;

/// A claimed job, as stored.
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = jobs, check_for_backend(diesel::pg::Pg))]
pub struct Claimed {
    /// The job's id.
    pub id: i64,
    /// What to do, e.g. `password_reset_email`.
    pub kind: String,
    /// The job's arguments.
    pub payload: serde_json::Value,
    /// Attempts so far, this one included.
    pub attempts: i32,
    /// Attempts allowed before the job fails for good.
    pub max_attempts: i32,
    /// When the job was enqueued.
    pub created_at: DateTime<Utc>,
    /// The end of this claim's lease: also the claim's identity, so a worker whose lease
    /// lapsed (and whose job another worker claimed) cannot finish or fail it.
    pub locked_until: Option<DateTime<Utc>>,
}

/// Enqueues `job` to run at `run_at` (now when `None`).
pub async fn enqueue(
    conn: &mut AsyncPgConnection,
    job: &Job,
    run_at: Option<DateTime<Utc>>,
) -> Result<i64> {
    diesel::insert_into(jobs::table)
        .values((
            jobs::kind.eq(job.kind()),
            jobs::key.eq(job.key()),
            jobs::payload.eq(job.payload()),
            jobs::run_at.eq(run_at.unwrap_or_else(Utc::now)),
        ))
        .returning(jobs::id)
        .get_result(conn)
        .await
        .map_err(Into::into)
}

/// Claims up to `limit` due jobs for `lease`: no other worker (in this process or another)
/// sees them until the lease ends, so a worker that dies mid-job gives it back. Claim only
/// the jobs about to run: the lease runs from now. A claimed job is `running`, so a job of
/// the same kind and key queued meanwhile is queued anew (the running one may already have
/// read past the work that queued it).
pub async fn claim(
    conn: &mut AsyncPgConnection,
    limit: i64,
    lease: Duration,
) -> Result<Vec<Claimed>> {
    // Diesel's DSL has no UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED LIMIT n).
    diesel::sql_query(
        "UPDATE jobs SET status = 'running', locked_until = $1, attempts = attempts + 1, updated_at = now() \
         WHERE id IN (SELECT id FROM jobs WHERE \
             (status = 'pending' AND run_at <= now() AND (locked_until IS NULL OR locked_until < now())) \
             OR (status = 'running' AND locked_until < now()) \
           ORDER BY run_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
         RETURNING id, kind, payload, attempts, max_attempts, created_at, locked_until",
    )
    .bind::<Timestamptz, _>(Utc::now() + lease)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await
    .map_err(Into::into)
}

/// Enqueues `jobs` to run at `run_at`, each unless one of its kind and key is pending
/// (batching); answers how many were queued. Takes a shared connection, so it can be
/// pipelined with other statements.
pub async fn enqueue_once(
    mut conn: &AsyncPgConnection,
    jobs: &[Job],
    run_at: DateTime<Utc>,
) -> Result<usize> {
    use crate::db::prepared::{bind, prepared};
    use diesel::sql_types::{Array, Jsonb, Text, Timestamptz};
    // A fixed statement over arrays, so that it is prepared once per connection.
    prepared(
        "INSERT INTO jobs (kind, key, payload, run_at) \
         SELECT j.kind, j.key, j.payload, $4 FROM unnest($1::text[], $2::text[], $3::jsonb[]) AS j(kind, key, payload) \
         ON CONFLICT (kind, key) WHERE status = 'pending' AND key IS NOT NULL DO NOTHING",
        (
            bind::<Array<Text>, _>(jobs.iter().map(Job::kind).collect::<Vec<_>>()),
            bind::<Array<Text>, _>(jobs.iter().map(Job::key).collect::<Vec<_>>()),
            bind::<Array<Jsonb>, _>(jobs.iter().map(Job::payload).collect::<Vec<_>>()),
            bind::<Timestamptz, _>(run_at),
        ),
    )
    .execute(&mut conn)
    .await
        .map_err(Into::into)
}

/// Enqueues `job` to run now, unless one of its kind and key was created within `every`
/// (whatever became of it); true when queued. The same statement whatever the key names,
/// so callers can use it without revealing anything by timing.
pub async fn enqueue_throttled(
    conn: &mut AsyncPgConnection,
    job: &Job,
    every: Duration,
) -> Result<bool> {
    use diesel::sql_types::{Jsonb, Text};
    let n = diesel::sql_query(
        "INSERT INTO jobs (kind, key, payload) SELECT $1, $2, $3 \
         WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE kind = $1 AND key = $2 AND created_at > $4) \
         ON CONFLICT (kind, key) WHERE status = 'pending' AND key IS NOT NULL DO NOTHING",
    )
    .bind::<Text, _>(job.kind())
    .bind::<Text, _>(job.key())
    .bind::<Jsonb, _>(job.payload())
    .bind::<Timestamptz, _>(Utc::now() - every)
    .execute(conn)
    .await?;
    Ok(n == 1)
}

/// Cancels the pending jobs of `kind` under `key`; returns how many.
pub async fn cancel(conn: &mut AsyncPgConnection, kind: &str, key: &str) -> Result<usize> {
    diesel::update(
        jobs::table
            .filter(jobs::status.eq("pending"))
            .filter(jobs::kind.eq(kind))
            .filter(jobs::key.eq(key)),
    )
    .set((jobs::status.eq("cancelled"), jobs::updated_at.eq(now)))
    .execute(conn)
    .await
    .map_err(Into::into)
}

type Running<'a> = diesel::dsl::Filter<
    diesel::dsl::Find<jobs::table, i64>,
    diesel::dsl::Eq<jobs::status, &'a str>,
>;
type Owned<'a> = diesel::dsl::Filter<
    Running<'a>,
    diesel::dsl::IsNotDistinctFrom<jobs::locked_until, Option<DateTime<Utc>>>,
>;

/// The job as claimed, while its claim holds: still running under the same lease.
fn owned(job: &Claimed) -> Owned<'static> {
    jobs::table
        .find(job.id)
        .filter(jobs::status.eq("running"))
        .filter(jobs::locked_until.is_not_distinct_from(job.locked_until))
}

/// Marks a claimed job done; false (changing nothing) when its lease was lost to another
/// worker.
pub async fn finish(conn: &mut AsyncPgConnection, job: &Claimed) -> Result<bool> {
    let n = diesel::update(owned(job))
        .set((
            jobs::status.eq("done"),
            jobs::locked_until.eq(None::<DateTime<Utc>>),
            jobs::updated_at.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok(n == 1)
}

/// Records a failed attempt: the job runs again at `retry_at`, or fails for good when it
/// has no attempts left, or is cancelled when a job of its kind and key was queued while it
/// ran (that one does its work); false (changing nothing) when its lease was lost.
pub async fn fail(
    conn: &mut AsyncPgConnection,
    job: &Claimed,
    error: &str,
    retry_at: DateTime<Utc>,
) -> Result<bool> {
    use diesel::sql_types::{Nullable, Text};
    let n = diesel::sql_query(
        "UPDATE jobs SET status = CASE \
             WHEN attempts >= max_attempts THEN 'failed' \
             WHEN key IS NOT NULL AND EXISTS (SELECT 1 FROM jobs j \
               WHERE j.kind = jobs.kind AND j.key = jobs.key AND j.status = 'pending') THEN 'cancelled' \
             ELSE 'pending' END, \
           run_at = $3, locked_until = NULL, last_error = $4, updated_at = now() \
         WHERE id = $1 AND status = 'running' AND locked_until IS NOT DISTINCT FROM $2",
    )
    .bind::<BigInt, _>(job.id)
    .bind::<Nullable<Timestamptz>, _>(job.locked_until)
    .bind::<Timestamptz, _>(retry_at)
    .bind::<Text, _>(error)
    .execute(conn)
    .await;
    let n = match n {
        // A job of its kind and key was queued between the check and the update: that one
        // does the work.
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => {
            diesel::update(owned(job))
                .set((
                    jobs::status.eq("cancelled"),
                    jobs::locked_until.eq(None::<DateTime<Utc>>),
                    jobs::last_error.eq(error),
                    jobs::updated_at.eq(now),
                ))
                .execute(conn)
                .await?
        }
        other => other?,
    };
    Ok(n == 1)
}

/// The queue at a glance, for metrics.
#[derive(Debug, Clone, Copy, QueryableByName)]
pub struct QueueStats {
    /// Jobs due and waiting for a worker.
    #[diesel(sql_type = BigInt)]
    pub due: i64,
    /// Jobs waiting for their time (reminders, retries).
    #[diesel(sql_type = BigInt)]
    pub scheduled: i64,
    /// Jobs that failed for good.
    #[diesel(sql_type = BigInt)]
    pub failed: i64,
    /// How long the oldest due job has waited, in seconds (0 when none).
    #[diesel(sql_type = diesel::sql_types::Double)]
    pub oldest_due_seconds: f64,
}

/// Counts the queue's jobs by state (the partial indexes of pending jobs keep it cheap).
pub async fn queue_stats(conn: &mut AsyncPgConnection) -> Result<QueueStats> {
    diesel::sql_query(
        "SELECT count(*) FILTER (WHERE status = 'pending' AND run_at <= now()) AS due, \
           count(*) FILTER (WHERE status = 'pending' AND run_at > now()) AS scheduled, \
           count(*) FILTER (WHERE status = 'failed') AS failed, \
           COALESCE(EXTRACT(EPOCH FROM now() - min(run_at) \
             FILTER (WHERE status = 'pending' AND run_at <= now())), 0)::float8 \
             AS oldest_due_seconds \
         FROM jobs WHERE status IN ('pending', 'failed')",
    )
    .get_result(conn)
    .await
    .map_err(Into::into)
}
