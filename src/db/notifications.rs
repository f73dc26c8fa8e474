//! Queries on `notifications` (each user's inbox) and `notification_marks` (how far each
//! conversation's events were turned into notifications).

use crate::{
    db::schema::{notification_marks, notifications},
    domain::notifications::{Kind, NewNotification, Notification},
    error::{Error, Result},
};
use chrono::{DateTime, Utc};
use diesel::{dsl::now, prelude::*};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = notifications, check_for_backend(diesel::pg::Pg))]
struct Row {
    id: Uuid,
    user_id: Uuid,
    kind: String,
    topic: Uuid,
    conversation_id: Option<Uuid>,
    message_id: Option<Uuid>,
    project_id: Option<Uuid>,
    task_id: Option<Uuid>,
    actor_id: Option<Uuid>,
    title: String,
    body: String,
    created_at: DateTime<Utc>,
    read_at: Option<DateTime<Utc>>,
}

impl TryFrom<Row> for Notification {
    type Error = Error;
    fn try_from(r: Row) -> Result<Self> {
        let kind = Kind::from_stored(&r.kind)
            .ok_or_else(|| Error::internal(format!("unknown notification kind {}", r.kind)))?;
        Ok(Notification {
            id: r.id,
            user_id: r.user_id,
            kind,
            topic: r.topic,
            conversation_id: r.conversation_id,
            message_id: r.message_id,
            project_id: r.project_id,
            task_id: r.task_id,
            actor_id: r.actor_id,
            title: r.title,
            body: r.body,
            created_at: r.created_at,
            read_at: r.read_at,
        })
    }
}

fn parse(rows: Vec<Row>) -> Result<Vec<Notification>> {
    rows.into_iter().map(Notification::try_from).collect()
}

/// Stores `new` (each with whether it shows in the inbox); a message's notification of one
/// kind for one user is stored once, so a job that runs again adds nothing. Answers those
/// stored now.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    new: &[(NewNotification, bool)],
) -> Result<Vec<Notification>> {
    if new.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<_> = new
        .iter()
        .map(|(n, in_app)| {
            (
                notifications::user_id.eq(n.user_id),
                notifications::kind.eq(n.kind.as_str()),
                notifications::topic.eq(n.topic),
                notifications::conversation_id.eq(n.conversation_id),
                notifications::message_id.eq(n.message.map(|m| m.0)),
                notifications::message_seq.eq(n.message.map(|m| m.1)),
                notifications::project_id.eq(n.project_id),
                notifications::task_id.eq(n.task_id),
                notifications::actor_id.eq(n.actor_id),
                notifications::title.eq(&n.title),
                notifications::body.eq(&n.body),
                notifications::in_app.eq(*in_app),
            )
        })
        .collect();
    let rows: Vec<Row> = diesel::insert_into(notifications::table)
        .values(rows)
        .on_conflict_do_nothing()
        .returning(Row::as_returning())
        .get_results(conn)
        .await?;
    parse(rows)
}

/// A page of `user`'s inbox, newest first, after `after` (a page's last created time and id).
pub async fn list(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    unread_only: bool,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<Notification>> {
    let mut q = notifications::table
        .filter(notifications::user_id.eq(user))
        .filter(notifications::in_app)
        .order((notifications::created_at.desc(), notifications::id.desc()))
        .limit(limit)
        .select(Row::as_select())
        .into_boxed();
    if unread_only {
        q = q.filter(notifications::read_at.is_null());
    }
    if let Some((at, id)) = after {
        q = q.filter(
            notifications::created_at
                .lt(at)
                .or(notifications::created_at
                    .eq(at)
                    .and(notifications::id.lt(id))),
        );
    }
    parse(q.load(conn).await?)
}

/// How many of `user`'s inbox notifications are unread.
pub async fn unread(conn: &mut AsyncPgConnection, user: Uuid) -> Result<i64> {
    Ok(notifications::table
        .filter(notifications::user_id.eq(user))
        .filter(notifications::read_at.is_null())
        .filter(notifications::in_app)
        .count()
        .get_result(conn)
        .await?)
}

/// Marks `ids` of `user` read (all of theirs when `None`); answers those it changed.
pub async fn mark_read(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    ids: Option<&[Uuid]>,
) -> Result<Vec<Uuid>> {
    let mut q = diesel::update(notifications::table)
        .filter(notifications::user_id.eq(user))
        .filter(notifications::read_at.is_null())
        .into_boxed();
    if let Some(ids) = ids {
        q = q.filter(notifications::id.eq_any(ids));
    }
    Ok(q.set(notifications::read_at.eq(now))
        .returning(notifications::id)
        .get_results(conn)
        .await?)
}

/// Marks read what the messages of `conversation` up to `seq` caused for `user` (they read
/// them); answers those it changed.
pub async fn mark_read_up_to(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    conversation: Uuid,
    seq: i64,
) -> Result<Vec<Uuid>> {
    Ok(diesel::update(notifications::table)
        .filter(notifications::user_id.eq(user))
        .filter(notifications::conversation_id.eq(conversation))
        .filter(notifications::message_seq.le(seq))
        .filter(notifications::read_at.is_null())
        .set(notifications::read_at.eq(now))
        .returning(notifications::id)
        .get_results(conn)
        .await?)
}

/// `user`'s notifications of `topic` the push step has not dealt with, oldest first, each
/// with whether it was read meanwhile; locked until the caller's transaction ends (a job
/// that runs twice at once deals with each once).
pub async fn unpushed(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    topic: Uuid,
) -> Result<Vec<(Notification, bool)>> {
    let rows: Vec<Row> = notifications::table
        .filter(notifications::user_id.eq(user))
        .filter(notifications::topic.eq(topic))
        .filter(notifications::pushed_at.is_null())
        .order((notifications::created_at, notifications::id))
        .select(Row::as_select())
        .for_update()
        .load(conn)
        .await?;
    parse(rows).map(|ns| {
        ns.into_iter()
            .map(|n| {
                let read = n.read_at.is_some();
                (n, read)
            })
            .collect()
    })
}

/// Records that the push step dealt with `ids`.
pub async fn set_pushed(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> Result<()> {
    diesel::update(notifications::table.filter(notifications::id.eq_any(ids)))
        .set(notifications::pushed_at.eq(now))
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes what the message `message` caused (it was deleted).
pub async fn purge_message(conn: &mut AsyncPgConnection, message: Uuid) -> Result<()> {
    diesel::delete(notifications::table.filter(notifications::message_id.eq(message)))
        .execute(conn)
        .await?;
    Ok(())
}

/// How far `conversation`'s events were turned into notifications, locked until the
/// caller's transaction ends: one job at a time turns them. A conversation without a mark
/// starts at its first event; `None` when the conversation is gone.
pub async fn lock_mark(conn: &mut AsyncPgConnection, conversation: Uuid) -> Result<Option<i64>> {
    use diesel::sql_types::Uuid as SqlUuid;
    diesel::sql_query(
        "INSERT INTO notification_marks (conversation_id, seq) \
         SELECT id, 0 FROM conversations WHERE id = $1 \
         ON CONFLICT (conversation_id) DO NOTHING",
    )
    .bind::<SqlUuid, _>(conversation)
    .execute(conn)
    .await?;
    Ok(notification_marks::table
        .find(conversation)
        .select(notification_marks::seq)
        .for_update()
        .get_result(conn)
        .await
        .optional()?)
}

/// Moves `conversation`'s mark to `seq`.
pub async fn set_mark(conn: &mut AsyncPgConnection, conversation: Uuid, seq: i64) -> Result<()> {
    diesel::update(notification_marks::table.find(conversation))
        .set(notification_marks::seq.eq(seq))
        .execute(conn)
        .await?;
    Ok(())
}

/// Gives the notifications of an edited message its new text (`sender: text`).
pub async fn rewrite(conn: &mut AsyncPgConnection, message: Uuid, snippet: &str) -> Result<()> {
    use diesel::sql_types::{Text, Uuid as SqlUuid};
    diesel::sql_query(
        "UPDATE notifications SET body = split_part(body, ': ', 1) || ': ' || $2 \
         WHERE message_id = $1",
    )
    .bind::<SqlUuid, _>(message)
    .bind::<Text, _>(snippet)
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes `user`'s unread, unpushed notifications of `kind` about `task` (a newer one
/// replaces them).
pub async fn drop_unread(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    task: Uuid,
    kind: &str,
) -> Result<()> {
    diesel::delete(
        notifications::table
            .filter(notifications::user_id.eq(user))
            .filter(notifications::task_id.eq(task))
            .filter(notifications::kind.eq(kind))
            .filter(notifications::read_at.is_null())
            .filter(notifications::pushed_at.is_null()),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes `user`'s notifications read before `before` (their deliveries go with them).
pub async fn prune_read(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    before: DateTime<Utc>,
) -> Result<usize> {
    Ok(diesel::delete(
        notifications::table
            .filter(notifications::user_id.eq(user))
            .filter(notifications::read_at.lt(before)),
    )
    .execute(conn)
    .await?)
}
