//! How the server reaches Redis: one server, through a bb8 pool of connections, or a Redis
//! Cluster, through one cluster connection (redis-rs' `cluster_async`), which routes each
//! command to the master of its key's slot, follows MOVED answers and finds the new master
//! after a failover. `REDIS_URL` names the server, or one or more nodes of a cluster
//! separated by commas. Which of the two it is, is asked of Redis (`INFO cluster`) at the
//! first use, so a server still starts while Redis is out of reach.
//!
//! In a cluster a command or a pipeline may only touch keys of one slot: the keys used
//! together carry one hash tag (`{...}`), see the users of [`Redis::get`].

use bb8_redis::RedisConnectionManager;
use redis::{
    RedisFuture, RedisResult, Value,
    aio::{ConnectionLike, MultiplexedConnection},
    cluster::{ClusterClient, ClusterClientBuilder},
    cluster_async::ClusterConnection,
};
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};
use tokio::sync::Mutex;

/// A script whose body begins with `now`, the moment in ms of Redis' own clock (so that
/// instances' clocks need not agree).
pub fn script_at_redis_time(body: &str) -> redis::Script {
    redis::Script::new(&format!(
        "local t = redis.call('TIME')\nlocal now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n{body}"
    ))
}

/// A Redis server or cluster; cheap to clone.
#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

struct Inner {
    seeds: Vec<String>,
    connections: u32,
    wait: Duration,
    link: Mutex<Option<Link>>,
    /// Whether `link` holds a link (read without the lock).
    linked: AtomicBool,
    /// Whether a background connection is under way.
    connecting: AtomicBool,
}

#[derive(Clone)]
enum Link {
    Single(bb8::Pool<RedisConnectionManager>),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("seeds", &self.inner.seeds.len())
            .finish_non_exhaustive()
    }
}

/// A connection taken for a few commands.
pub enum Conn {
    /// From the pool of a single server.
    Pooled(bb8::PooledConnection<'static, RedisConnectionManager>),
    /// A connection of its own to a single server (a blocking read holds it).
    Own(MultiplexedConnection),
    /// The cluster connection (routing each command by its key).
    Cluster(ClusterConnection),
}

impl Redis {
    /// The Redis at `url` (one URL, or a cluster's nodes separated by commas), with at most
    /// `connections` pooled connections to a single server, each command waiting at most
    /// `wait` to connect. Fails on a URL Redis' client does not accept.
    pub fn new(url: &str, connections: u32, wait: Duration) -> anyhow::Result<Self> {
        let seeds = seeds(url);
        anyhow::ensure!(!seeds.is_empty(), "REDIS_URL names no Redis");
        for seed in &seeds {
            redis::Client::open(seed.as_str())
                .map_err(|e| anyhow::anyhow!("REDIS_URL is not a valid Redis URL: {e}"))?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                seeds,
                connections,
                wait,
                link: Mutex::new(None),
                linked: AtomicBool::new(false),
                connecting: AtomicBool::new(false),
            }),
        })
    }

    /// The link, made at the first use (or the first after a [`reset`](Self::reset)).
    async fn link(&self) -> RedisResult<Link> {
        let mut link = self.inner.link.lock().await;
        if let Some(l) = &*link {
            return Ok(l.clone());
        }
        let made = if self.is_cluster_node().await? {
            Link::Cluster(self.cluster(None)?.get_async_connection().await?)
        } else {
            let pool = bb8::Pool::builder()
                .max_size(self.inner.connections)
                .connection_timeout(self.inner.wait)
                .build(RedisConnectionManager::new(self.inner.seeds[0].as_str())?)
                .await?;
            Link::Single(pool)
        };
        *link = Some(made.clone());
        self.inner.linked.store(true, Ordering::Release);
        Ok(made)
    }

    /// True once connected (and not reset since).
    pub fn is_linked(&self) -> bool {
        self.inner.linked.load(Ordering::Acquire)
    }

    /// Connects in the background unless connected or connecting: for callers whose own
    /// deadline is shorter than a cluster's first connection.
    pub fn connect_in_background(&self) {
        if self.is_linked() || self.inner.connecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.link().await {
                tracing::warn!(error = %e, "cannot connect to Redis");
            }
            this.inner.connecting.store(false, Ordering::Release);
        });
    }

    /// After a failure: a cluster connection is dropped, so that the next command connects
    /// afresh and learns where the slots are now. (A cluster connection refreshes its view
    /// when a node answers MOVED, but keeps waiting for a master that died: it learns of
    /// the replica promoted in its place only from a new view.) A single server's pool
    /// replaces its broken connections by itself.
    pub async fn reset(&self) {
        let mut link = self.inner.link.lock().await;
        if matches!(&*link, Some(Link::Cluster(_))) {
            *link = None;
            self.inner.linked.store(false, Ordering::Release);
        }
    }

    /// Whether the first node that answers runs in cluster mode.
    async fn is_cluster_node(&self) -> RedisResult<bool> {
        let mut last = None;
        for seed in &self.inner.seeds {
            let answer = async {
                let mut conn = self.own_connection(seed).await?;
                redis::cmd("INFO")
                    .arg("cluster")
                    .query_async::<String>(&mut conn)
                    .await
            };
            match answer.await {
                Ok(info) => return Ok(info.contains("cluster_enabled:1")),
                // INFO refused (an ACL, a managed service that renamed it): a cluster
                // answers it, so this is a single server.
                Err(e)
                    if matches!(
                        e.kind(),
                        redis::ErrorKind::Server(
                            redis::ServerErrorKind::ResponseError | redis::ServerErrorKind::NoPerm
                        )
                    ) =>
                {
                    return Ok(false);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| (redis::ErrorKind::Io, "no Redis node").into()))
    }

    async fn own_connection(&self, url: &str) -> RedisResult<MultiplexedConnection> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.inner.wait))
            .set_response_timeout(Some(self.inner.wait));
        redis::Client::open(url)?
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// A client of the cluster, over RESP3 with `push` receiving its pushes when given
    /// (sharded pub/sub).
    fn cluster(&self, push: Option<PushSender>) -> RedisResult<ClusterClient> {
        let mut builder = ClusterClientBuilder::new(self.inner.seeds.clone())
            .connection_timeout(self.inner.wait)
            .response_timeout(self.inner.wait.max(Duration::from_secs(2)));
        if let Some(push) = push {
            builder = builder
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(push);
        }
        builder.build()
    }

    /// True when Redis is a cluster (asked once; an error while it cannot be reached).
    pub async fn is_cluster(&self) -> RedisResult<bool> {
        Ok(matches!(self.link().await?, Link::Cluster(_)))
    }

    /// A connection for a few commands: pooled for a single server, the shared cluster
    /// connection for a cluster.
    pub async fn get(&self) -> RedisResult<Conn> {
        match self.link().await? {
            Link::Single(pool) => pool
                .get_owned()
                .await
                .map(Conn::Pooled)
                .map_err(|e| match e {
                    bb8::RunError::User(e) => e,
                    bb8::RunError::TimedOut => {
                        (redis::ErrorKind::Io, "timed out waiting for a connection").into()
                    }
                }),
            Link::Cluster(conn) => Ok(Conn::Cluster(conn)),
        }
    }

    /// A connection of its own, for a blocking read (`XREAD BLOCK`) that would hold up
    /// every other command on a shared one.
    pub async fn dedicated(&self) -> RedisResult<Conn> {
        match self.link().await? {
            Link::Single(_) => Ok(Conn::Own(self.own_connection(&self.inner.seeds[0]).await?)),
            Link::Cluster(_) => Ok(Conn::Cluster(
                self.cluster(None)?.get_async_connection().await?,
            )),
        }
    }

    /// A cluster connection of its own whose pushes (sharded pub/sub messages, and a
    /// `Disconnection` when a node's connection drops) go to `push`.
    pub async fn subscriber(&self, push: PushSender) -> RedisResult<ClusterConnection> {
        self.cluster(Some(push))?.get_async_connection().await
    }

    /// A pub/sub connection to the single server.
    pub async fn pubsub(&self) -> RedisResult<redis::aio::PubSub> {
        redis::Client::open(self.inner.seeds[0].as_str())?
            .get_async_pubsub()
            .await
    }
}

/// Where a subscriber's pushes go.
pub type PushSender = tokio::sync::mpsc::UnboundedSender<redis::PushInfo>;

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Pooled(c) => c.req_packed_command(cmd),
            Self::Own(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Pooled(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Own(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Pooled(c) => c.get_db(),
            Self::Own(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// The URLs in `url`: several when it lists them separated by commas, each a `redis://` or
/// `rediss://` URL; else `url` itself (a comma may be part of a password).
fn seeds(url: &str) -> Vec<String> {
    let parts: Vec<String> = url
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if parts.len() > 1
        && parts
            .iter()
            .all(|p| p.starts_with("redis://") || p.starts_with("rediss://"))
    {
        parts
    } else {
        vec![url.trim().to_owned()]
    }
}

/// The cluster hash slot of `key` (CRC16 of its hash tag, or of the whole key), as Redis
/// computes it.
pub fn slot(key: &str) -> u16 {
    let tagged = key
        .split_once('{')
        .and_then(|(_, rest)| rest.split_once('}'))
        .map(|(tag, _)| tag)
        .filter(|tag| !tag.is_empty());
    let hashed = tagged.unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(hashed.as_bytes()) % 16384
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_urls_are_a_clusters_nodes_and_a_comma_in_a_password_is_not() {
        assert_eq!(
            seeds("redis://a:1, rediss://b:2"),
            ["redis://a:1", "rediss://b:2"]
        );
        assert_eq!(seeds("redis://:pa,ss@h:6379"), ["redis://:pa,ss@h:6379"]);
    }

    #[test]
    fn slots_are_those_redis_computes() {
        // From the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(slot("123456789"), 0x31C3);
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("{user1000}.following"), slot("{user1000}.followers"));
        // An empty tag does not count: the whole key is hashed.
        assert_eq!(
            slot("{}foo"),
            crc16::State::<crc16::XMODEM>::calculate(b"{}foo") % 16384
        );
        assert_ne!(slot("{}foo"), slot("foo"));
    }
}
