//! Queries on threads: replies of a root, summaries of roots, and who follows which thread
//! with their read position in it (`thread_follows`).

use crate::{
    db::messages::MessageRow,
    db::schema::{conversation_members, messages, thread_follows},
    domain::conversations::Message,
    domain::threads::{Followed, ThreadSummary},
    error::Result,
};
use chrono::{DateTime, Utc};
use diesel::{
    QueryableByName,
    prelude::*,
    sql_types::{Array, BigInt, Bool, Nullable, Timestamptz, Uuid as SqlUuid},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::collections::HashMap;
use uuid::Uuid;

/// Makes `user` follow thread `root`, having read it up to `read_to`. One who follows it
/// already keeps their position, unless `advance` moves it forward (never back).
pub async fn follow(
    conn: &mut AsyncPgConnection,
    conversation: Uuid,
    root: Uuid,
    user: Uuid,
    read_to: i64,
    advance: bool,
) -> Result<()> {
    diesel::sql_query(
        "INSERT INTO thread_follows (root_id, user_id, conversation_id, last_read_seq) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (root_id, user_id) DO UPDATE \
         SET last_read_seq = CASE WHEN $5 THEN GREATEST(thread_follows.last_read_seq, $4) \
                                  ELSE thread_follows.last_read_seq END",
    )
    .bind::<SqlUuid, _>(root)
    .bind::<SqlUuid, _>(user)
    .bind::<SqlUuid, _>(conversation)
    .bind::<BigInt, _>(read_to)
    .bind::<Bool, _>(advance)
    .execute(conn)
    .await?;
    Ok(())
}

/// The sequence number of the newest reply of `root` (0 without replies).
pub async fn last_reply_seq(conn: &mut AsyncPgConnection, root: Uuid) -> Result<i64> {
    let last: Option<i64> = messages::table
        .filter(messages::thread_root_id.eq(root))
        .select(diesel::dsl::max(messages::seq))
        .get_result(conn)
        .await?;
    Ok(last.unwrap_or(0))
}

/// Makes each of `users` follow thread `root` with their read position, unless they follow
/// it already (one statement).
pub async fn follow_many(
    conn: &mut AsyncPgConnection,
    conversation: Uuid,
    root: Uuid,
    users: &[(Uuid, i64)],
) -> Result<()> {
    if users.is_empty() {
        return Ok(());
    }
    let (ids, reads): (Vec<Uuid>, Vec<i64>) = users.iter().copied().unzip();
    diesel::sql_query(
        "INSERT INTO thread_follows (root_id, user_id, conversation_id, last_read_seq) \
         SELECT $1, u, $2, r FROM unnest($3::uuid[], $4::int8[]) AS v(u, r) \
         ON CONFLICT (root_id, user_id) DO NOTHING",
    )
    .bind::<SqlUuid, _>(root)
    .bind::<SqlUuid, _>(conversation)
    .bind::<Array<SqlUuid>, _>(ids)
    .bind::<Array<BigInt>, _>(reads)
    .execute(conn)
    .await?;
    Ok(())
}

/// `user` stops following thread `root`.
pub async fn unfollow(conn: &mut AsyncPgConnection, root: Uuid, user: Uuid) -> Result<()> {
    diesel::delete(thread_follows::table.find((root, user)))
        .execute(conn)
        .await?;
    Ok(())
}

/// The replies of `root` after sequence `after`, ascending, at most `limit`.
pub async fn replies(
    conn: &mut AsyncPgConnection,
    root: Uuid,
    after: i64,
    limit: i64,
) -> Result<Vec<Message>> {
    let rows: Vec<MessageRow> = messages::table
        .filter(messages::thread_root_id.eq(root))
        .filter(messages::seq.gt(after))
        .order(messages::seq.asc())
        .limit(limit)
        .select(MessageRow::as_select())
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(Message::from).collect())
}

#[derive(QueryableByName)]
struct SummaryRow {
    #[diesel(sql_type = SqlUuid)]
    root: Uuid,
    #[diesel(sql_type = BigInt)]
    replies: i64,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    last_reply_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Array<SqlUuid>)]
    participants: Vec<Uuid>,
    #[diesel(sql_type = Bool)]
    following: bool,
    #[diesel(sql_type = BigInt)]
    unread: i64,
}

/// The threads of those of `roots` that have replies or that `viewer` follows, as `viewer`
/// sees them.
pub async fn summaries(
    conn: &mut AsyncPgConnection,
    viewer: Uuid,
    roots: &[Uuid],
) -> Result<HashMap<Uuid, ThreadSummary>> {
    if roots.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<SummaryRow> = diesel::sql_query(
        "SELECT r.root, \
           count(m.id) AS replies, max(m.created_at) AS last_reply_at, \
           COALESCE(array_agg(DISTINCT m.sender_id) FILTER (WHERE m.id IS NOT NULL), '{}') AS participants, \
           (f.user_id IS NOT NULL) AS following, \
           count(m.id) FILTER (WHERE f.user_id IS NOT NULL AND m.sender_id <> $2 \
             AND m.seq > f.last_read_seq) AS unread \
         FROM unnest($1::uuid[]) AS r(root) \
         LEFT JOIN messages m ON m.thread_root_id = r.root AND m.deleted_at IS NULL \
         LEFT JOIN thread_follows f ON f.root_id = r.root AND f.user_id = $2 \
         GROUP BY r.root, f.user_id, f.last_read_seq \
         HAVING count(m.id) > 0 OR f.user_id IS NOT NULL",
    )
    .bind::<Array<SqlUuid>, _>(roots)
    .bind::<SqlUuid, _>(viewer)
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let summary = ThreadSummary {
                reply_count: r.replies,
                last_reply_at: r.last_reply_at,
                participants: r.participants,
                following: r.following,
                unread: r.unread,
            };
            (r.root, summary)
        })
        .collect())
}

/// Moves `user`'s read position in thread `root` to `seq` (never back); false when they do
/// not follow it.
pub async fn mark_read(
    conn: &mut AsyncPgConnection,
    root: Uuid,
    user: Uuid,
    seq: i64,
) -> Result<bool> {
    let n = diesel::sql_query(
        "UPDATE thread_follows SET last_read_seq = GREATEST(last_read_seq, $3) \
         WHERE root_id = $1 AND user_id = $2",
    )
    .bind::<SqlUuid, _>(root)
    .bind::<SqlUuid, _>(user)
    .bind::<BigInt, _>(seq)
    .execute(conn)
    .await?;
    Ok(n == 1)
}

/// The roots of the threads `user` follows in conversations they are still a member of,
/// with the newest reply time (or the root's time), at most `limit`.
pub async fn followed(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    limit: i64,
) -> Result<Vec<Followed>> {
    let rows: Vec<MessageRow> = thread_follows::table
        .inner_join(messages::table.on(messages::id.eq(thread_follows::root_id)))
        .inner_join(
            conversation_members::table.on(conversation_members::conversation_id
                .eq(thread_follows::conversation_id)
                .and(conversation_members::user_id.eq(thread_follows::user_id))),
        )
        .filter(thread_follows::user_id.eq(user))
        .order(thread_follows::created_at.desc())
        .limit(limit)
        .select(MessageRow::as_select())
        .load(conn)
        .await?;
    let roots: Vec<Message> = rows.into_iter().map(Message::from).collect();
    let ids: Vec<Uuid> = roots.iter().map(|m| m.id).collect();
    let mut summaries = summaries(conn, user, &ids).await?;
    Ok(roots
        .into_iter()
        .filter_map(|root| {
            let summary = summaries.remove(&root.id)?;
            Some(Followed { root, summary })
        })
        .collect())
}
