//! Queries of the AI assistant: private chats and their turns, usage per user and day, and
//! the claim that keeps one answer at a time per conversation.

use crate::{
    db::schema::{ai_chat_turns, ai_chats, ai_usage, conversations},
    domain::ai::{Chat, ChatRole, Counted, DailyUsage, SavedTurn, Usage},
    error::Result,
};
use chrono::{DateTime, NaiveDate, Utc};
use diesel::{dsl::now, prelude::*, upsert::excluded};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

type ChatRow = (Uuid, String, String, DateTime<Utc>, DateTime<Utc>);

fn chat((id, title, model, created_at, updated_at): ChatRow) -> Chat {
    Chat {
        id,
        title,
        model,
        created_at,
        updated_at,
        turns: Vec::new(),
    }
}

const CHAT_COLUMNS: (
    ai_chats::id,
    ai_chats::title,
    ai_chats::model,
    ai_chats::created_at,
    ai_chats::updated_at,
) = (
    ai_chats::id,
    ai_chats::title,
    ai_chats::model,
    ai_chats::created_at,
    ai_chats::updated_at,
);

/// Starts a chat of `user` (with the id `id` when given: ALREADY_EXISTS if it is taken).
pub async fn create_chat(
    conn: &mut AsyncPgConnection,
    id: Option<Uuid>,
    user: Uuid,
    title: &str,
    model: &str,
) -> Result<Chat> {
    diesel::insert_into(ai_chats::table)
        .values((
            ai_chats::id.eq(id.unwrap_or_else(Uuid::new_v4)),
            ai_chats::user_id.eq(user),
            ai_chats::title.eq(title),
            ai_chats::model.eq(model),
        ))
        .returning(CHAT_COLUMNS)
        .get_result(conn)
        .await
        .map(chat)
        .map_err(|e| crate::error::on_unique(e, "ai_chats_pkey", "chat_id is taken"))
}

/// Which turns of a chat to load.
#[derive(Debug, Clone, Copy)]
pub enum Turns {
    /// The newest `n` (what a prompt needs), oldest first.
    Newest(i64),
    /// A page of at most `limit`, oldest first, after the turn `after` (its id).
    After {
        /// The last turn id of the previous page.
        after: Option<i64>,
        /// The page's size.
        limit: i64,
    },
}

/// The chat `id` of `user` with the `which` turns (and each turn's id); `None` for anyone
/// else's.
pub async fn chat_of(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    id: Uuid,
    which: Turns,
) -> Result<Option<(Chat, Vec<i64>)>> {
    let Some(row) = ai_chats::table
        .find(id)
        .filter(ai_chats::user_id.eq(user))
        .select(CHAT_COLUMNS)
        .first::<ChatRow>(conn)
        .await
        .optional()?
    else {
        return Ok(None);
    };
    let mut c = chat(row);
    type TurnRow = (
        i64,
        String,
        String,
        Option<String>,
        Option<String>,
        Option<i64>,
        Option<i64>,
        DateTime<Utc>,
    );
    let q = ai_chat_turns::table
        .filter(ai_chat_turns::chat_id.eq(id))
        .select((
            ai_chat_turns::id,
            ai_chat_turns::role,
            ai_chat_turns::content,
            ai_chat_turns::model,
            ai_chat_turns::finish_reason,
            ai_chat_turns::prompt_tokens,
            ai_chat_turns::completion_tokens,
            ai_chat_turns::created_at,
        ))
        .into_boxed();
    let mut turns: Vec<TurnRow> = match which {
        Turns::Newest(n) => {
            q.order(ai_chat_turns::id.desc())
                .limit(n)
                .load(conn)
                .await?
        }
        Turns::After { after, limit } => {
            q.filter(ai_chat_turns::id.gt(after.unwrap_or(0)))
                .order(ai_chat_turns::id)
                .limit(limit)
                .load(conn)
                .await?
        }
    };
    turns.sort_by_key(|t| t.0);
    let ids = turns.iter().map(|t| t.0).collect();
    c.turns = turns
        .into_iter()
        .map(
            |(_, role, content, model, finish_reason, p, q, created_at)| SavedTurn {
                role: ChatRole::from_stored(&role),
                content,
                model,
                finish_reason,
                usage: p.zip(q).map(|(prompt_tokens, completion_tokens)| Usage {
                    prompt_tokens,
                    completion_tokens,
                }),
                created_at,
            },
        )
        .collect();
    Ok(Some((c, ids)))
}

/// How many turns chat `id` holds, and how many characters.
pub async fn chat_size(conn: &mut AsyncPgConnection, id: Uuid) -> Result<(i64, i64)> {
    use diesel::dsl::{count_star, sql};
    ai_chat_turns::table
        .filter(ai_chat_turns::chat_id.eq(id))
        .select((
            count_star(),
            sql::<diesel::sql_types::BigInt>("coalesce(sum(char_length(content)), 0)::bigint"),
        ))
        .first(conn)
        .await
        .map_err(Into::into)
}

/// Appends turns to a chat and marks it active (with the model of its latest answer).
pub async fn append(
    conn: &mut AsyncPgConnection,
    chat: Uuid,
    turns: &[SavedTurn],
    model: &str,
) -> Result<()> {
    let rows: Vec<_> = turns
        .iter()
        .map(|t| {
            (
                ai_chat_turns::chat_id.eq(chat),
                ai_chat_turns::role.eq(t.role.as_str()),
                ai_chat_turns::content.eq(&t.content),
                ai_chat_turns::model.eq(t.model.as_deref()),
                ai_chat_turns::finish_reason.eq(t.finish_reason.as_deref()),
                ai_chat_turns::prompt_tokens.eq(t.usage.map(|u| u.prompt_tokens)),
                ai_chat_turns::completion_tokens.eq(t.usage.map(|u| u.completion_tokens)),
            )
        })
        .collect();
    diesel::insert_into(ai_chat_turns::table)
        .values(rows)
        .execute(conn)
        .await?;
    diesel::update(ai_chats::table.find(chat))
        .set((ai_chats::updated_at.eq(now), ai_chats::model.eq(model)))
        .execute(conn)
        .await?;
    Ok(())
}

/// A page of `user`'s chats, most recently active first, after `after` (its update time
/// and id).
pub async fn list_chats(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<Chat>> {
    let mut q = ai_chats::table
        .filter(ai_chats::user_id.eq(user))
        .into_boxed();
    if let Some((at, id)) = after {
        q = q.filter(
            ai_chats::updated_at
                .lt(at)
                .or(ai_chats::updated_at.eq(at).and(ai_chats::id.lt(id))),
        );
    }
    q.order((ai_chats::updated_at.desc(), ai_chats::id.desc()))
        .limit(limit)
        .select(CHAT_COLUMNS)
        .load::<ChatRow>(conn)
        .await
        .map(|rows| rows.into_iter().map(chat).collect())
        .map_err(Into::into)
}

/// Adds one answer's usage to `user`'s count of today (UTC).
pub async fn add_usage(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    usage: Usage,
    counted: Counted,
) -> Result<()> {
    let cut_off = i64::from(matches!(counted, Counted::CutOff { .. }));
    diesel::insert_into(ai_usage::table)
        .values((
            ai_usage::user_id.eq(user),
            ai_usage::day.eq(Utc::now().date_naive()),
            ai_usage::requests.eq(1),
            ai_usage::prompt_tokens.eq(usage.prompt_tokens),
            ai_usage::completion_tokens.eq(usage.completion_tokens),
            ai_usage::cut_off.eq(cut_off),
            ai_usage::estimated_completion_tokens.eq(counted.estimated_tokens()),
        ))
        .on_conflict((ai_usage::user_id, ai_usage::day))
        .do_update()
        .set((
            ai_usage::requests.eq(ai_usage::requests + 1),
            ai_usage::prompt_tokens.eq(ai_usage::prompt_tokens + excluded(ai_usage::prompt_tokens)),
            ai_usage::completion_tokens
                .eq(ai_usage::completion_tokens + excluded(ai_usage::completion_tokens)),
            ai_usage::cut_off.eq(ai_usage::cut_off + excluded(ai_usage::cut_off)),
            ai_usage::estimated_completion_tokens.eq(ai_usage::estimated_completion_tokens
                + excluded(ai_usage::estimated_completion_tokens)),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Usage rows between two days (inclusive), of one user or all, newest day first.
pub async fn usage(
    conn: &mut AsyncPgConnection,
    user: Option<Uuid>,
    from: NaiveDate,
    to: NaiveDate,
    limit: i64,
) -> Result<Vec<DailyUsage>> {
    let mut q = ai_usage::table
        .filter(ai_usage::day.between(from, to))
        .into_boxed();
    if let Some(u) = user {
        q = q.filter(ai_usage::user_id.eq(u));
    }
    type Row = (Uuid, NaiveDate, i64, i64, i64, i64, i64);
    let rows: Vec<Row> = q
        .order((ai_usage::day.desc(), ai_usage::user_id))
        .limit(limit)
        .select((
            ai_usage::user_id,
            ai_usage::day,
            ai_usage::requests,
            ai_usage::prompt_tokens,
            ai_usage::completion_tokens,
            ai_usage::cut_off,
            ai_usage::estimated_completion_tokens,
        ))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(
            |(user_id, day, requests, p, c, cut_off, estimated)| DailyUsage {
                user_id,
                day,
                requests,
                usage: Usage {
                    prompt_tokens: p,
                    completion_tokens: c,
                },
                cut_off,
                estimated_completion_tokens: estimated,
            },
        )
        .collect())
}

/// Claims the conversation for one answer until `until`; false while another answer holds
/// it (a claim past its time has lapsed).
pub async fn claim_assistant(
    conn: &mut AsyncPgConnection,
    conversation: Uuid,
    until: DateTime<Utc>,
) -> Result<bool> {
    let n = diesel::update(
        conversations::table.find(conversation).filter(
            conversations::assistant_busy_until
                .is_null()
                .or(conversations::assistant_busy_until.lt(now)),
        ),
    )
    .set(conversations::assistant_busy_until.eq(until))
    .execute(conn)
    .await?;
    Ok(n == 1)
}

/// Releases the conversation's claim.
pub async fn release_assistant(conn: &mut AsyncPgConnection, conversation: Uuid) -> Result<()> {
    diesel::update(conversations::table.find(conversation))
        .set(conversations::assistant_busy_until.eq(None::<DateTime<Utc>>))
        .execute(conn)
        .await?;
    Ok(())
}
