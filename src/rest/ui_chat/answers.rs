//! Answers in progress on the ui-chat route, recorded part by part so that a client that
//! went away (a reload, a dropped network) can rejoin one: replayed from its first part, then
//! followed live to its end. In this process without Redis; with Redis in a stream per answer
//! (`XADD` / `XREAD BLOCK`) and a pointer from the chat to its newest answer, so a client
//! rejoins on any instance and two answers of one chat never mix. An answer that ended is no
//! longer here: it is in the saved chat.

use crate::redis_link::Redis;
use futures::{StreamExt, stream::BoxStream};
use redis::AsyncCommands;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::sync::watch;

/// How long Redis keeps a finished answer's record (a rejoin racing its end still ends).
const ENDED_TTL: Duration = Duration::from_secs(30);
/// How long one `XREAD` waits before it checks that the answer still exists.
const BLOCK: Duration = Duration::from_secs(2);
/// Redis calls' own deadline (above [`BLOCK`]).
const REDIS_TIMEOUT: Duration = Duration::from_secs(5);
/// The most clients one instance follows in Redis at once (each holds a connection).
const MAX_FOLLOWERS: usize = 64;
/// The field of a stream entry that carries a part, and the one that marks the end.
const PART: &str = "p";
const END: &str = "end";

/// Where answers in progress are recorded.
#[derive(Clone, Debug)]
pub enum Answers {
    /// In this process.
    Local(Arc<Mutex<HashMap<String, watch::Receiver<Progress>>>>),
    /// In Redis, shared by every instance.
    Redis(Arc<Shared>),
}

impl Default for Answers {
    fn default() -> Self {
        Self::Local(Arc::default())
    }
}

/// The Redis side: writes, and each follower's own connection.
#[derive(Debug)]
pub struct Shared {
    redis: Redis,
    prefix: String,
    /// How long an answer may run (the record's lifetime while it does).
    ttl: Duration,
    /// Room for followers.
    followers: Arc<tokio::sync::Semaphore>,
}

/// Too many clients are rejoining answers on this instance.
#[derive(Debug)]
pub struct Busy;

/// An answer so far.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    parts: Vec<Arc<str>>,
    ended: bool,
}

/// Records one answer; dropping it ends the record.
pub enum Recorder {
    /// In this process.
    Local {
        /// The record's key.
        key: String,
        /// The record.
        tx: watch::Sender<Progress>,
        /// Where the record is listed.
        answers: Arc<Mutex<HashMap<String, watch::Receiver<Progress>>>>,
    },
    /// In Redis (`None` once a write failed: the answer goes on, unrecorded).
    Redis {
        /// This answer's stream.
        key: String,
        /// Its store.
        shared: Option<Arc<Shared>>,
    },
}

impl Answers {
    /// Answers recorded in the Redis at `url` under `prefix`, living at most `ttl`.
    pub async fn redis(url: &str, prefix: &str, ttl: Duration) -> anyhow::Result<Self> {
        Ok(Self::Redis(Arc::new(Shared {
            redis: Redis::new(url, 4, REDIS_TIMEOUT)?,
            prefix: prefix.to_owned(),
            ttl: ttl + ENDED_TTL,
            followers: Arc::new(tokio::sync::Semaphore::new(MAX_FOLLOWERS)),
        })))
    }

    /// Starts the record of the answer `key` (replacing an earlier one of the same key).
    pub async fn begin(&self, key: &str) -> Recorder {
        match self {
            Self::Local(answers) => {
                let (tx, rx) = watch::channel(Progress::default());
                lock(answers).insert(key.to_owned(), rx);
                Recorder::Local {
                    key: key.to_owned(),
                    tx,
                    answers: answers.clone(),
                }
            }
            Self::Redis(shared) => {
                // The chat points at its newest answer's own stream (one hash tag: one
                // slot of a Redis Cluster, read together by a follower).
                let pointer = shared.pointer(key);
                let stream = format!("{pointer}:{}", uuid::Uuid::new_v4());
                let mut pipe = redis::pipe();
                pipe.set_ex(&pointer, &stream, shared.ttl.as_secs())
                    .ignore();
                let ok = shared.run(&pipe).await;
                Recorder::Redis {
                    key: stream,
                    shared: ok.then(|| shared.clone()),
                }
            }
        }
    }

    /// The answer `key` from its first part to its end, or `None` when none is in progress;
    /// [`Busy`] when this instance follows too many already.
    pub async fn rejoin(&self, key: &str) -> Result<Option<BoxStream<'static, Arc<str>>>, Busy> {
        match self {
            Self::Local(answers) => {
                let Some(mut rx) = lock(answers).get(key).cloned() else {
                    return Ok(None);
                };
                let stream = async_stream::stream! {
                    let mut sent = 0;
                    loop {
                        let (new, ended) = {
                            let p = rx.borrow_and_update();
                            (p.parts[sent..].to_vec(), p.ended)
                        };
                        sent += new.len();
                        for part in new {
                            yield part;
                        }
                        if ended || rx.changed().await.is_err() {
                            return;
                        }
                    }
                };
                Ok(Some(stream.boxed()))
            }
            Self::Redis(shared) => {
                let room = shared
                    .followers
                    .clone()
                    .try_acquire_owned()
                    .map_err(|_| Busy)?;
                Ok(shared.clone().rejoin(key, room).await)
            }
        }
    }
}

impl Recorder {
    /// Adds `part` to the record.
    pub async fn push(&mut self, part: &str) {
        match self {
            Self::Local { tx, .. } => tx.send_modify(|p| p.parts.push(part.into())),
            Self::Redis { key, shared } => {
                let Some(s) = shared else { return };
                let mut pipe = redis::pipe();
                pipe.xadd(&*key, "*", &[(PART, part)])
                    .ignore()
                    .expire(&*key, s.ttl.as_secs() as i64)
                    .ignore();
                if !s.run(&pipe).await {
                    // Unrecorded from here: followers must not wait for an end never written.
                    let mut gone = redis::pipe();
                    gone.del(&*key).ignore();
                    s.run(&gone).await;
                    *shared = None;
                }
            }
        }
    }

    /// Ends the record: followers finish, and the answer is no longer rejoinable.
    pub async fn end(mut self) {
        if let Self::Redis { key, shared } = &mut self
            && let Some(s) = shared.take()
        {
            let mut pipe = redis::pipe();
            pipe.xadd(&*key, "*", &[(END, "1")])
                .ignore()
                .expire(&*key, ENDED_TTL.as_secs() as i64)
                .ignore();
            s.run(&pipe).await;
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Self::Local { key, tx, answers } = self {
            tx.send_modify(|p| p.ended = true);
            let mut answers = lock(answers);
            // Only this record's own entry: a later answer of the same chat replaced it.
            if answers
                .get(key)
                .is_some_and(|rx| rx.same_channel(&tx.subscribe()))
            {
                answers.remove(key);
            }
        }
    }
}

impl Shared {
    /// The key that points at chat `key`'s newest answer.
    fn pointer(&self, key: &str) -> String {
        format!("{{{}{key}}}", self.prefix)
    }

    /// Runs `pipe`; false (logged) when Redis failed.
    async fn run(&self, pipe: &redis::Pipeline) -> bool {
        let result = async {
            let mut conn = self.redis.get().await.map_err(|e| e.to_string())?;
            tokio::time::timeout(REDIS_TIMEOUT, pipe.query_async::<()>(&mut conn))
                .await
                .map_err(|_| "timed out".to_owned())?
                .map_err(|e| e.to_string())
        }
        .await;
        if let Err(e) = &result {
            self.redis.reset().await;
            tracing::warn!(error = %e, "recording an AI answer in redis failed: it cannot be rejoined");
        }
        result.is_ok()
    }

    async fn rejoin(
        self: Arc<Self>,
        key: &str,
        room: tokio::sync::OwnedSemaphorePermit,
    ) -> Option<BoxStream<'static, Arc<str>>> {
        let pointer = self.pointer(key);
        // A connection of its own: XREAD BLOCK holds it.
        let mut conn = self
            .redis
            .dedicated()
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "cannot reach redis to rejoin an answer"))
            .ok()?;
        let key: String = conn.get::<_, Option<String>>(&pointer).await.ok()??;
        let so_far: redis::streams::StreamRangeReply = conn.xrange_all(&key).await.ok()?;
        let (mut last, mut parts, ended) = entries(so_far.ids);
        if last.is_none() || ended {
            return None;
        }
        let stream = async_stream::stream! {
            let _room = room;
            let end = tokio::time::Instant::now() + self.ttl;
            loop {
                for part in parts.drain(..) {
                    yield part;
                }
                if tokio::time::Instant::now() >= end {
                    return;
                }
                let options = redis::streams::StreamReadOptions::default()
                    .block(BLOCK.as_millis() as usize);
                let after = last.clone().unwrap_or_else(|| "0".to_owned());
                let read: redis::RedisResult<Option<redis::streams::StreamReadReply>> =
                    conn.xread_options(&[&key], &[&after], &options).await;
                match read {
                    Ok(Some(reply)) => {
                        let ids = reply.keys.into_iter().flat_map(|k| k.ids).collect();
                        let (newest, more, ended) = entries(ids);
                        parts = more;
                        last = newest.or(last);
                        if ended {
                            for part in parts.drain(..) {
                                yield part;
                            }
                            return;
                        }
                    }
                    // Nothing new: go on while the record exists (its writer may have died).
                    Ok(None) => {
                        let exists: bool = conn.exists(&key).await.unwrap_or(false);
                        if !exists {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "following an AI answer in redis failed");
                        return;
                    }
                }
            }
        };
        Some(stream.boxed())
    }
}

/// The newest id of `ids`, their parts, and whether the end is among them.
fn entries(ids: Vec<redis::streams::StreamId>) -> (Option<String>, Vec<Arc<str>>, bool) {
    let mut parts = Vec::with_capacity(ids.len());
    let mut ended = false;
    let last = ids.last().map(|e| e.id.clone());
    for entry in ids {
        if entry.map.contains_key(END) {
            ended = true;
        } else if let Some(part) = entry.get::<String>(PART) {
            parts.push(part.into());
        }
    }
    (last, parts, ended)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
