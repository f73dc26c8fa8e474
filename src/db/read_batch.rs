//! Group commit of read positions (MarkRead): every mark of a batch in the caller's one
//! transaction, in three round trips whatever the batch's size (BEGIN with the conversations
//! locked in id order and their members' read positions; the moved positions, the read
//! receipts and the conversations' event positions written, one statement each, with every
//! caller's unread count; COMMIT). Receipts take their event positions per conversation
//! under its row lock, in the batch's order: gap-free, commit order equal to event order.

use crate::{
    db::{
        events::{Event, EventBody},
        schema::{conversation_events, conversation_members, conversations},
    },
    domain::UserId,
    error::{Error, Result},
};
use chrono::{DateTime, Utc};
use diesel::{
    IntoSql,
    dsl::now,
    prelude::*,
    sql_types::{Array, BigInt, Timestamptz, Uuid as SqlUuid},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::collections::HashMap;
use uuid::Uuid;

/// One MarkRead waiting for its batch; validated already (`seq` not negative).
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    /// The conversation.
    pub conversation: Uuid,
    /// Whose read position moves.
    pub user: UserId,
    /// Up to where they read (past the end: the end).
    pub seq: i64,
}

/// What became of one mark of a batch.
#[derive(Debug, Clone)]
pub enum Marked {
    /// The position is where it is now (moved or not), with the caller's unread count.
    Read {
        /// Messages of others after the position, not deleted.
        unread: i64,
        /// The read receipt written when the position moved, and who it goes to.
        receipt: Option<Box<(Event, Vec<Uuid>)>>,
    },
    /// The user is no member (or the conversation does not exist): nothing written.
    NotMember,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Writes `batch` in the caller's transaction; one outcome per mark, in order. Positions
/// only move forward, never past the conversation's last message; a mark that moves
/// nothing writes nothing.
pub async fn mark_all(conn: &AsyncPgConnection, batch: &[Mark]) -> Result<Vec<Marked>> {
    let mut ids: Vec<Uuid> = batch.iter().map(|m| m.conversation).collect();
    ids.sort_unstable();
    ids.dedup();
    let (locked, members) = {
        let (mut c0, mut c1) = (conn, conn);
        // Sent together, executed in order: the locks (in id order, as sends take them),
        // then the read positions they guard.
        let lock = conversations::table
            .filter(conversations::id.eq_any(&ids))
            .order(conversations::id)
            .select((
                conversations::id,
                conversations::last_seq,
                conversations::last_event_seq,
                now.into_sql::<Timestamptz>(),
            ))
            .for_update()
            .load::<(Uuid, i64, i64, DateTime<Utc>)>(&mut c0);
        let members = conversation_members::table
            .filter(conversation_members::conversation_id.eq_any(&ids))
            .select((
                conversation_members::conversation_id,
                conversation_members::user_id,
                conversation_members::last_read_seq,
            ))
            .load::<(Uuid, Uuid, i64)>(&mut c1);
        futures::try_join!(lock, members)?
    };
    let mut ends: HashMap<Uuid, (i64, i64, DateTime<Utc>)> = locked
        .into_iter()
        .map(|(id, seq, event_seq, at)| (id, (seq, event_seq, at)))
        .collect();
    let mut recipients: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    let mut reads: HashMap<(Uuid, Uuid), i64> = HashMap::new();
    for (conversation, user, read) in members {
        recipients.entry(conversation).or_default().push(user);
        reads.insert((conversation, user), read);
    }

    // Each mark in order: where its position ends, and the receipt when it moved.
    let mut placed: Vec<Option<(i64, Option<Event>)>> = Vec::with_capacity(batch.len());
    let mut moved: HashMap<(Uuid, Uuid), i64> = HashMap::new();
    let mut receipts: Vec<Event> = Vec::new();
    for m in batch {
        let pair = (m.conversation, m.user.0);
        let (Some(read), Some(end)) = (reads.get_mut(&pair), ends.get_mut(&m.conversation)) else {
            placed.push(None);
            continue;
        };
        let to = (*read).max(m.seq.min(end.0));
        let receipt = (to > *read).then(|| {
            *read = to;
            moved.insert(pair, to);
            end.1 += 1;
            Event {
                conversation_id: m.conversation,
                seq: end.1,
                body: EventBody::ReadReceipt {
                    user_id: m.user.0,
                    seq: to,
                },
                created_at: end.2,
            }
        });
        receipts.extend(receipt.clone());
        placed.push(Some((to, receipt)));
    }

    let counted: Vec<(Uuid, Uuid, i64)> = batch
        .iter()
        .zip(&placed)
        .filter_map(|(m, p)| Some((m.conversation, m.user.0, p.as_ref()?.0)))
        .collect();
    let counts = write(conn, &moved, &receipts, &ends, &counted).await?;
    let mut counts = counts.into_iter();
    Ok(placed
        .into_iter()
        .zip(batch)
        .map(|(p, m)| match p {
            None => Marked::NotMember,
            Some((_, receipt)) => Marked::Read {
                unread: counts.next().unwrap_or(0),
                receipt: receipt.map(|e| {
                    let to = recipients.get(&m.conversation).cloned().unwrap_or_default();
                    Box::new((e, to))
                }),
            },
        })
        .collect())
}

/// The batch's writes and counts, sent together: the moved read positions, the receipts
/// (one insert) and the conversations' event positions, then the unread count after each
/// of `counted` (conversation, user, position), in its order.
async fn write(
    c: &AsyncPgConnection,
    moved: &HashMap<(Uuid, Uuid), i64>,
    receipts: &[Event],
    ends: &HashMap<Uuid, (i64, i64, DateTime<Utc>)>,
    counted: &[(Uuid, Uuid, i64)],
) -> Result<Vec<i64>> {
    let count = {
        let mut c = c;
        let (cs, (us, ps)): (Vec<Uuid>, (Vec<Uuid>, Vec<i64>)) =
            counted.iter().map(|&(c, u, p)| (c, (u, p))).unzip();
        diesel::sql_query(
            "SELECT (SELECT count(*) FROM messages m WHERE m.conversation_id = v.c \
             AND m.seq > v.p AND m.sender_id <> v.u AND m.deleted_at IS NULL AND m.in_conversation) AS n \
             FROM unnest($1::uuid[], $2::uuid[], $3::int8[]) WITH ORDINALITY AS v(c, u, p, i) \
             ORDER BY v.i",
        )
        .bind::<Array<SqlUuid>, _>(cs)
        .bind::<Array<SqlUuid>, _>(us)
        .bind::<Array<BigInt>, _>(ps)
        .load::<Count>(&mut c)
    };
    if receipts.is_empty() {
        let counts = count.await?;
        return Ok(counts.into_iter().map(|r| r.n).collect());
    }
    let (read_cs, (read_us, read_ps)): (Vec<Uuid>, (Vec<Uuid>, Vec<i64>)) =
        moved.iter().map(|(&(c, u), &p)| (c, (u, p))).unzip();
    let mut c0 = c;
    let update_reads = diesel::sql_query(
        "UPDATE conversation_members m SET last_read_seq = v.p \
         FROM unnest($1::uuid[], $2::uuid[], $3::int8[]) AS v(c, u, p) \
         WHERE m.conversation_id = v.c AND m.user_id = v.u",
    )
    .bind::<Array<SqlUuid>, _>(read_cs)
    .bind::<Array<SqlUuid>, _>(read_us)
    .bind::<Array<BigInt>, _>(read_ps)
    .execute(&mut c0);
    let mut touched: Vec<Uuid> = receipts.iter().map(|e| e.conversation_id).collect();
    touched.sort_unstable();
    touched.dedup();
    let event_seqs: Vec<i64> = touched.iter().map(|id| ends[id].1).collect();
    let mut c1 = c;
    let update_events = diesel::sql_query(
        "UPDATE conversations c SET last_event_seq = v.s \
         FROM unnest($1::uuid[], $2::int8[]) AS v(id, s) WHERE c.id = v.id",
    )
    .bind::<Array<SqlUuid>, _>(touched)
    .bind::<Array<BigInt>, _>(event_seqs)
    .execute(&mut c1);
    let rows = receipts
        .iter()
        .map(|e| {
            let body = serde_json::to_value(&e.body)
                .map_err(|err| Error::internal(format!("event body: {err}")))?;
            Ok((
                conversation_events::conversation_id.eq(e.conversation_id),
                conversation_events::seq.eq(e.seq),
                conversation_events::body.eq(body),
                conversation_events::created_at.eq(e.created_at),
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut c2 = c;
    let insert = diesel::insert_into(conversation_events::table)
        .values(rows)
        .execute(&mut c2);
    let (_, _, _, counts) = futures::try_join!(update_reads, update_events, insert, count)?;
    Ok(counts.into_iter().map(|r| r.n).collect())
}
