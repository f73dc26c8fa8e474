//! Private chats: an answer streamed to its caller piece by piece, saved with its question
//! in the caller's chat (which only they can list, read and continue).

use super::{Context, answer_error, context_turn, fit, record_usage};
use crate::{
    ai::Piece,
    auth::Caller,
    db::{self, ai::Turns},
    domain::{
        Page, PageSize, PageToken,
        ai::{
            Chat, ChatRole, Counted, MAX_CHAT_CHARS, MAX_CHAT_TURNS, PROMPT_TURNS, SavedTurn, Turn,
            Usage, title_of,
        },
    },
    error::{Error, Result},
    service::State,
};
use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use futures::{StreamExt, stream::BoxStream};
use uuid::Uuid;

/// What to answer.
#[derive(Debug, Clone)]
pub struct ChatInput {
    /// The new turns; the last is the question.
    pub turns: Vec<Turn>,
    /// The model asked for (empty: the default).
    pub model: String,
    /// The saved chat to continue.
    pub chat_id: Option<Uuid>,
    /// Start the chat `chat_id` when the caller has none of that id (a client-chosen id).
    pub start_if_missing: bool,
    /// Context to add.
    pub context: Option<Context>,
}

/// A piece of an answer as its caller gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatChunk {
    /// Text to append.
    pub delta: String,
    /// On the last chunk: why it ended and the tokens used.
    pub finish: Option<(String, Option<Usage>)>,
    /// The chat it is saved in.
    pub chat_id: Uuid,
    /// The model.
    pub model: String,
}

/// Streams the answer to `input`. Errors before the first piece are the call's error; later
/// ones end the stream. Dropping the stream drops the provider's request.
pub async fn chat(
    state: &State,
    caller: &Caller,
    input: ChatInput,
) -> Result<BoxStream<'static, Result<ChatChunk>>> {
    let ai = &state.ai;
    let provider = ai.provider()?.clone();
    let model = provider.model(&input.model).ok_or_else(|| {
        Error::invalid(
            "model",
            "is not offered here: leave it empty for the default",
        )
    })?;
    match input.turns.last() {
        Some(t) if t.role == ChatRole::User => {}
        _ => {
            return Err(Error::invalid(
                "messages",
                "must end with the question (role USER)",
            ));
        }
    }
    let slot = ai.limits.admit_shared(caller.user_id.0).await?;
    // A saved chat is the history: of the request's turns only the last (the question) is
    // new, and it is stored once. Only the newest turns are read; the prompt keeps what fits.
    let mut conn = state.pool.get().await?;
    let saved = match input.chat_id {
        Some(id) => {
            let found =
                db::ai::chat_of(&mut conn, caller.user_id.0, id, Turns::Newest(PROMPT_TURNS))
                    .await?;
            match found {
                Some((chat, _)) => Some((chat, db::ai::chat_size(&mut conn, id).await?)),
                None if input.start_if_missing => None,
                None => return Err(Error::NotFound("chat")),
            }
        }
        None => None,
    };
    let new_id = input.chat_id.filter(|_| input.start_if_missing);
    drop(conn);
    let new: &[Turn] = match &saved {
        Some(_) => &input.turns[input.turns.len() - 1..],
        None => &input.turns,
    };
    let (held_turns, held_chars) = saved.as_ref().map_or((0, 0), |(_, size)| *size);
    let new_chars: i64 = new.iter().map(|t| t.content.chars().count() as i64).sum();
    if held_turns + new.len() as i64 + 1 > MAX_CHAT_TURNS || held_chars + new_chars > MAX_CHAT_CHARS
    {
        return Err(Error::FailedPrecondition(format!(
            "the chat is full (at most {MAX_CHAT_TURNS} turns and {MAX_CHAT_CHARS} characters): start a new one"
        )));
    }
    let saved = saved.map(|(chat, _)| chat);
    let mut turns: Vec<Turn> = saved
        .iter()
        .flat_map(|c| &c.turns)
        .map(|t| Turn {
            role: t.role,
            content: t.content.clone(),
        })
        .collect();
    turns.extend(new.iter().cloned());
    let mut prompt = fit(turns, ai.max_prompt_chars)?;
    let used: usize = prompt.iter().map(|t| t.content.chars().count()).sum();
    if let Some(context) = input.context {
        let budget = ai.max_prompt_chars.saturating_sub(used);
        if let Some(t) = context_turn(state, caller, context, budget).await? {
            prompt.insert(0, t);
        }
    }
    let question = &input.turns[input.turns.len() - 1].content;
    let new_turns: Vec<SavedTurn> = new
        .iter()
        .map(|t| SavedTurn {
            role: t.role,
            content: t.content.clone(),
            model: None,
            finish_reason: None,
            usage: None,
            created_at: Utc::now(),
        })
        .collect();
    let mut conn = state.pool.get().await?;
    let chat_id = conn
        .transaction::<_, Error, _>(async |conn| {
            let id = match &saved {
                Some(c) => c.id,
                None => {
                    let title = title_of(question);
                    db::ai::create_chat(conn, new_id, caller.user_id.0, &title, &model)
                        .await?
                        .id
                }
            };
            db::ai::append(conn, id, &new_turns, &model).await?;
            Ok(id)
        })
        .await?;
    drop(conn);

    let state = state.clone();
    let user = caller.user_id.0;
    let timeout = ai.answer_timeout;
    let end = tokio::time::Instant::now() + timeout;
    let mut upstream = provider.stream(model.clone(), prompt);
    // The first piece decides the call's status: a provider that fails before it answered
    // anything fails the call (over REST an HTTP error, not a 200 with the error inside).
    let first = tokio::time::timeout_at(end, upstream.next())
        .await
        .map_err(|_| super::too_long(timeout))?;
    if let Some(Err(e)) = first {
        let counted = Counted::CutOff { chars: 0 };
        record_usage(&state, user, Usage::default(), counted).await;
        return Err(answer_error(e));
    }
    let upstream = futures::stream::iter(first).chain(upstream);
    let answer_model = model.clone();
    let chunk = move |delta: String, finish| ChatChunk {
        delta,
        finish,
        chat_id,
        model: model.clone(),
    };
    let answer = async_stream::try_stream! {
        let _slot = slot;
        let mut upstream = upstream;
        let mut text = String::new();
        // Counts the answer as cut off unless it finishes: when it fails, times out, or its
        // client goes away (which drops this stream, and the guard with it).
        let mut unfinished = CutOff { state: state.clone(), user, chars: 0, finished: false };
        loop {
            let piece = tokio::time::timeout_at(end, upstream.next())
                .await
                .map_err(|_| super::too_long(timeout))?;
            match piece {
                None => break,
                Some(Err(e)) => Err(answer_error(e))?,
                Some(Ok(Piece::Delta(d))) => {
                    text.push_str(&d);
                    unfinished.chars += d.chars().count();
                    yield chunk(d, None);
                }
                Some(Ok(Piece::Finish { reason, usage })) => {
                    unfinished.finished = true;
                    save_answer(&state, user, chat_id, &answer_model, &text, &reason, usage).await?;
                    yield chunk(String::new(), Some((reason, usage)));
                    break;
                }
            }
        }
    };
    Ok(answer.boxed())
}

/// An answer being streamed: dropped before it finished, it records the request as cut off
/// with the tokens of what it streamed, estimated.
struct CutOff {
    state: State,
    user: Uuid,
    chars: usize,
    finished: bool,
}

impl Drop for CutOff {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let (state, user) = (self.state.clone(), self.user);
        let counted = Counted::CutOff { chars: self.chars };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                record_usage(&state, user, Usage::default(), counted).await;
            });
        }
    }
}

/// Saves an answer in its chat and counts its usage.
async fn save_answer(
    state: &State,
    user: Uuid,
    chat: Uuid,
    model: &str,
    text: &str,
    reason: &str,
    usage: Option<Usage>,
) -> Result<()> {
    let turn = SavedTurn {
        role: ChatRole::Assistant,
        content: text.to_owned(),
        model: Some(model.to_owned()),
        finish_reason: Some(reason.to_owned()),
        usage,
        created_at: Utc::now(),
    };
    let mut conn = state.pool.get().await?;
    db::ai::append(&mut conn, chat, &[turn], model).await?;
    drop(conn);
    record_usage(state, user, usage.unwrap_or_default(), Counted::Finished).await;
    Ok(())
}

/// One of the caller's chats with a page of its turns (oldest first), and the token of the
/// next page (empty after the last).
pub async fn get_chat(
    state: &State,
    caller: &Caller,
    id: Uuid,
    size: PageSize,
    token: PageToken<i64>,
) -> Result<(Chat, String)> {
    let mut conn = state.pool.get().await?;
    let page = Turns::After {
        after: token.0,
        limit: size.0 + 1,
    };
    let (mut chat, ids) = db::ai::chat_of(&mut conn, caller.user_id.0, id, page)
        .await?
        .ok_or(Error::NotFound("chat"))?;
    let more = chat.turns.len() as i64 > size.0;
    let next = if more {
        chat.turns.truncate(size.0 as usize);
        PageToken::<i64>::encode(&ids[size.0 as usize - 1])
    } else {
        String::new()
    };
    Ok((chat, next))
}

/// A page of the caller's chats, most recently active first.
pub async fn list_chats(
    state: &State,
    caller: &Caller,
    size: PageSize,
    token: PageToken<(DateTime<Utc>, Uuid)>,
) -> Result<Page<Chat>> {
    let mut conn = state.pool.get().await?;
    let rows = db::ai::list_chats(&mut conn, caller.user_id.0, token.0, size.0 + 1).await?;
    Ok(Page::from_rows(rows, size, |c| (c.updated_at, c.id)))
}
