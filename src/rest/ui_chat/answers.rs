//! Answers in progress on the ui-chat route, recorded part by part so that a client that
//! went away (a reload, a dropped network) can rejoin one: replayed from its first part, then
//! followed live to its end. In this process without Redis; with Redis in a stream per answer
//! (`XADD` / `XREAD BLOCK`), so a client rejoins on any instance. An answer that ended is no
//! longer here: it is in the saved chat.

use bb8_redis::{RedisConnectionManager, bb8};
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

/// The Redis side: a pool for writes, the client for each follower's own connection.
#[derive(Debug)]
pub struct Shared {
    pool: bb8::Pool<RedisConnectionManager>,
    client: redis::Client,
    prefix: String,
    /// How long an answer may run (the record's lifetime while it does).
    ttl: Duration,
}

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
        /// The stream's key.
        key: String,
        /// Its store.
        shared: Option<Arc<Shared>>,
    },
}

impl Answers {
    /// Answers recorded in the Redis at `url` under `prefix`, living at most `ttl`.
    pub async fn redis(url: &str, prefix: &str, ttl: Duration) -> anyhow::Result<Self> {
        let pool = bb8::Pool::builder()
            .max_size(4)
            .connection_timeout(REDIS_TIMEOUT)
            .build(RedisConnectionManager::new(url)?)
            .await?;
        Ok(Self::Redis(Arc::new(Shared {
            pool,
            client: redis::Client::open(url)?,
            prefix: prefix.to_owned(),
            ttl: ttl + ENDED_TTL,
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
                let key = format!("{}{key}", shared.prefix);
                let mut pipe = redis::pipe();
                pipe.del(&key).ignore();
                let ok = shared.run(&pipe).await;
                Recorder::Redis {
                    key,
                    shared: ok.then(|| shared.clone()),
                }
            }
        }
    }

    /// The answer `key` from its first part to its end, or `None` when none is in progress.
    pub async fn rejoin(&self, key: &str) -> Option<BoxStream<'static, Arc<str>>> {
        match self {
            Self::Local(answers) => {
                let mut rx = lock(answers).get(key)?.clone();
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
                Some(stream.boxed())
            }
            Self::Redis(shared) => shared.clone().rejoin(key).await,
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
    /// Runs `pipe` on a pooled connection; false (logged) when Redis failed.
    async fn run(&self, pipe: &redis::Pipeline) -> bool {
        let result = async {
            let mut conn = self.pool.get().await.map_err(|e| e.to_string())?;
            tokio::time::timeout(REDIS_TIMEOUT, pipe.query_async::<()>(&mut *conn))
                .await
                .map_err(|_| "timed out".to_owned())?
                .map_err(|e| e.to_string())
        }
        .await;
        if let Err(e) = &result {
            tracing::warn!(error = %e, "recording an AI answer in redis failed: it cannot be rejoined");
        }
        result.is_ok()
    }

    async fn rejoin(self: Arc<Self>, key: &str) -> Option<BoxStream<'static, Arc<str>>> {
        let key = format!("{}{key}", self.prefix);
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT));
        // A connection of its own: XREAD BLOCK holds it.
        let mut conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "cannot reach redis to rejoin an answer"))
            .ok()?;
        let so_far: redis::streams::StreamRangeReply = conn.xrange_all(&key).await.ok()?;
        let (mut last, mut parts, ended) = entries(so_far.ids);
        if last.is_none() || ended {
            return None;
        }
        let stream = async_stream::stream! {
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
