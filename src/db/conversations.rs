//! Queries on `conversations` and `conversation_members`.

pub use crate::domain::conversations::Conversation;
use crate::{
    db::schema::{conversation_members, conversations},
    domain::UserId,
    error::Result,
};
use chrono::{DateTime, Utc};
use diesel::{
    dsl::{now, sql},
    prelude::*,
    sql_types::{Array, BigInt, Timestamptz, Uuid as SqlUuid},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

type Row = (
    Uuid,
    bool,
    Option<String>,
    i64,
    Option<DateTime<Utc>>,
    DateTime<Utc>,
);

#[derive(QueryableByName)]
struct Unread {
    #[diesel(sql_type = SqlUuid)]
    conversation_id: Uuid,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn activity() -> diesel::expression::SqlLiteral<Timestamptz> {
    sql::<Timestamptz>("coalesce(conversations.last_message_at, conversations.created_at)")
}

/// Creates a conversation without members; `None` when a direct one with this key exists.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    is_group: bool,
    title: Option<&str>,
    direct_key: Option<&str>,
) -> Result<Option<Uuid>> {
    let id: Option<Uuid> = diesel::insert_into(conversations::table)
        .values((
            conversations::is_group.eq(is_group),
            conversations::title.eq(title),
            conversations::direct_key.eq(direct_key),
        ))
        .on_conflict_do_nothing()
        .returning(conversations::id)
        .get_result(conn)
        .await
        .optional()?;
    Ok(id)
}

/// The direct conversation with this key.
pub async fn find_direct(conn: &mut AsyncPgConnection, key: &str) -> Result<Option<Uuid>> {
    conversations::table
        .filter(conversations::direct_key.eq(key))
        .select(conversations::id)
        .first(conn)
        .await
        .optional()
        .map_err(Into::into)
}

/// Adds members whose view starts at event `joined_event_seq` (those already in are left
/// as they are).
pub async fn add_members(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    users: &[UserId],
    joined_event_seq: i64,
) -> Result<()> {
    let rows: Vec<_> = users
        .iter()
        .map(|u| {
            (
                conversation_members::conversation_id.eq(id),
                conversation_members::user_id.eq(u.0),
                conversation_members::joined_event_seq.eq(joined_event_seq),
            )
        })
        .collect();
    diesel::insert_into(conversation_members::table)
        .values(rows)
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}

/// Which of `users` are members already.
pub async fn existing_members(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    users: &[UserId],
) -> Result<Vec<Uuid>> {
    let ids: Vec<Uuid> = users.iter().map(|u| u.0).collect();
    conversation_members::table
        .filter(conversation_members::conversation_id.eq(id))
        .filter(conversation_members::user_id.eq_any(ids))
        .select(conversation_members::user_id)
        .load(conn)
        .await
        .map_err(Into::into)
}

/// Removes a member; false when they were not one.
pub async fn remove_member(conn: &mut AsyncPgConnection, id: Uuid, user: UserId) -> Result<bool> {
    let n = diesel::delete(
        conversation_members::table
            .filter(conversation_members::conversation_id.eq(id))
            .filter(conversation_members::user_id.eq(user.0)),
    )
    .execute(conn)
    .await?;
    Ok(n == 1)
}

/// Renames a group.
pub async fn rename(conn: &mut AsyncPgConnection, id: Uuid, title: &str) -> Result<()> {
    diesel::update(conversations::table.find(id))
        .set((
            conversations::title.eq(title),
            conversations::updated_at.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Whether the conversation is a group, when `user` is a member of it.
pub async fn membership(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    user: UserId,
) -> Result<Option<bool>> {
    conversations::table
        .inner_join(conversation_members::table)
        .filter(conversations::id.eq(id))
        .filter(conversation_members::user_id.eq(user.0))
        .select(conversations::is_group)
        .first(conn)
        .await
        .optional()
        .map_err(Into::into)
}

/// Everyone who shares a conversation with `user` (not `user`).
pub async fn contacts(conn: &mut AsyncPgConnection, user: UserId) -> Result<Vec<Uuid>> {
    #[derive(QueryableByName)]
    struct Contact {
        #[diesel(sql_type = SqlUuid)]
        user_id: Uuid,
    }
    let rows: Vec<Contact> = diesel::sql_query(
        "SELECT DISTINCT other.user_id FROM conversation_members me \
         JOIN conversation_members other ON other.conversation_id = me.conversation_id \
         WHERE me.user_id = $1 AND other.user_id <> $1",
    )
    .bind::<SqlUuid, _>(user.0)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.user_id).collect())
}

/// Up to `limit` of the viewer's conversations, newest activity first, after (time, id).
pub async fn list(
    conn: &mut AsyncPgConnection,
    viewer: UserId,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<Conversation>> {
    let mut q = conversations::table
        .inner_join(conversation_members::table)
        .filter(conversation_members::user_id.eq(viewer.0))
        .select((
            conversations::id,
            conversations::is_group,
            conversations::title,
            conversations::last_seq,
            conversations::last_message_at,
            conversations::created_at,
        ))
        .into_boxed();
    if let Some((t, id)) = after {
        q = q.filter(
            activity()
                .lt(t)
                .or(activity().eq(t).and(conversations::id.lt(id))),
        );
    }
    let rows: Vec<Row> = q
        .order((activity().desc(), conversations::id.desc()))
        .limit(limit)
        .load(conn)
        .await?;
    complete(conn, rows, viewer).await
}

/// One conversation as `viewer` sees it (who must be a member).
pub async fn get(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    viewer: UserId,
) -> Result<Option<Conversation>> {
    let row: Option<Row> = conversations::table
        .find(id)
        .select((
            conversations::id,
            conversations::is_group,
            conversations::title,
            conversations::last_seq,
            conversations::last_message_at,
            conversations::created_at,
        ))
        .first(conn)
        .await
        .optional()?;
    match row {
        Some(r) => Ok(complete(conn, vec![r], viewer).await?.pop()),
        None => Ok(None),
    }
}

async fn complete(
    conn: &mut AsyncPgConnection,
    rows: Vec<Row>,
    viewer: UserId,
) -> Result<Vec<Conversation>> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
    let members: Vec<(Uuid, Uuid, i64)> = conversation_members::table
        .filter(conversation_members::conversation_id.eq_any(&ids))
        .order((
            conversation_members::conversation_id,
            conversation_members::user_id,
        ))
        .select((
            conversation_members::conversation_id,
            conversation_members::user_id,
            conversation_members::last_read_seq,
        ))
        .load(conn)
        .await?;
    // Every unread count of the page in one query.
    let unread: Vec<Unread> = diesel::sql_query(
        "SELECT m.conversation_id, count(*) AS n FROM messages m \
         JOIN conversation_members cm ON cm.conversation_id = m.conversation_id AND cm.user_id = $2 \
         WHERE m.conversation_id = ANY($1) AND m.seq > cm.last_read_seq AND m.sender_id <> $2 \
         AND m.deleted_at IS NULL AND m.in_conversation GROUP BY m.conversation_id",
    )
    .bind::<Array<SqlUuid>, _>(&ids)
    .bind::<SqlUuid, _>(viewer.0)
    .load(conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, is_group, title, last_seq, last_message_at, created_at) in rows {
        let last_read_seq = members
            .iter()
            .find(|(c, u, _)| *c == id && *u == viewer.0)
            .map_or(0, |(_, _, r)| *r);
        let unread_count = unread
            .iter()
            .find(|u| u.conversation_id == id)
            .map_or(0, |u| u.n);
        out.push(Conversation {
            id,
            is_group,
            title,
            member_ids: members
                .iter()
                .filter(|(c, _, _)| *c == id)
                .map(|(_, u, _)| UserId(*u))
                .collect(),
            last_seq,
            last_read_seq,
            unread_count,
            created_at,
            last_activity_at: last_message_at.unwrap_or(created_at),
        });
    }
    Ok(out)
}

/// Locks the conversation's row for the transaction (before any member row: the order
/// batched sends take them in, so that neither waits on the other crosswise).
pub async fn lock(conn: &mut AsyncPgConnection, id: Uuid) -> Result<()> {
    conversations::table
        .find(id)
        .select(conversations::id)
        .for_update()
        .first::<Uuid>(conn)
        .await
        .optional()?;
    Ok(())
}

/// Moves the member's read position forward to `seq` (never back, never past the end);
/// returns the new position.
pub async fn mark_read(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    user: UserId,
    seq: i64,
) -> Result<i64> {
    diesel::sql_query(
        "UPDATE conversation_members m SET last_read_seq = GREATEST(m.last_read_seq, LEAST($3, c.last_seq)) \
         FROM conversations c WHERE c.id = m.conversation_id AND m.conversation_id = $1 AND m.user_id = $2",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .bind::<diesel::sql_types::Uuid, _>(user.0)
    .bind::<diesel::sql_types::BigInt, _>(seq)
    .execute(conn)
    .await?;
    conversation_members::table
        .filter(conversation_members::conversation_id.eq(id))
        .filter(conversation_members::user_id.eq(user.0))
        .select(conversation_members::last_read_seq)
        .first(conn)
        .await
        .map_err(Into::into)
}
