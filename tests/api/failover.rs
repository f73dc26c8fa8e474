//! PostgreSQL failover without losing an acknowledged message. The suite starts a primary
//! and a synchronous streaming standby of its own (`pg_basebackup`,
//! `synchronous_standby_names`), and the server on a `DATABASE_URL` naming both hosts with
//! `target_session_attrs=read-write`. Under a closed-loop send load the primary is killed (as
//! a crash: `pg_ctl stop -m immediate`) and the standby promoted: every send the server
//! acknowledged is stored exactly once, sends fail only with codes a client retries
//! (UNAVAILABLE), the retries with the same idempotency key never write twice, and sends
//! resume soon after the promotion.

use crate::{
    events::{ann_and_bob_in_a_group, client, send},
    helpers::*,
    pg_cluster::Cluster,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};
use tonic::Code;

/// Closed-loop senders.
const SENDERS: usize = 8;
/// The longest sends may be refused after the promotion.
const RESUME_WITHIN: Duration = Duration::from_secs(10);

/// A primary and its synchronous standby, stopped on drop.
struct Replicated {
    primary: Cluster,
    standby: Cluster,
    _dir: tempfile::TempDir,
}

impl Replicated {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let primary = Cluster::new(dir.path().join("primary"));
        primary.init();
        std::fs::write(
            primary.pgdata.join("pg_hba.conf"),
            "local all all trust\nhost all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n",
        )
        .unwrap();
        primary.start("-c wal_level=replica -c max_wal_senders=4");
        let standby = Cluster::new(dir.path().join("standby"));
        let port = primary.port.to_string();
        standby.run(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-D",
                &standby.data(),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            ],
        );
        standby.start("");
        // Only once the standby streams may commits wait for it.
        let mut conn = connect(&primary.url("127.0.0.1", "")).await;
        conn.batch_execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            .await
            .unwrap();
        conn.batch_execute("SELECT pg_reload_conf()").await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while count(
            &mut conn,
            "SELECT count(*) AS n FROM pg_stat_replication WHERE sync_state = 'sync'",
        )
        .await
            != 1
        {
            assert!(
                Instant::now() < deadline,
                "the standby never became synchronous"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self {
            primary,
            standby,
            _dir: dir,
        }
    }

    /// The URL naming both, as libpq's failover list.
    fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write",
            self.primary.port, self.standby.port
        )
    }
}

async fn connect(url: &str) -> AsyncPgConnection {
    AsyncPgConnection::establish(url).await.expect(url)
}

async fn count(conn: &mut AsyncPgConnection, sql: &str) -> i64 {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::sql_query(sql)
        .get_result::<N>(conn)
        .await
        .expect(sql)
        .n
}

/// What the load saw: each acknowledged idempotency key with its message id, the refusals
/// by code, and when sends succeeded.
#[derive(Default)]
struct Seen {
    acked: HashMap<String, String>,
    refused: HashMap<Code, usize>,
    successes: Vec<Instant>,
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failover_to_a_synchronous_standby_loses_no_acknowledged_send_and_stores_none_twice() {
    let pg = Replicated::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config("unused", dir.path());
    cfg.store.database_url = Some(pg.url().into());
    cfg.write_rate_limit = "off".parse().unwrap();
    let app = TestApp::start_elsewhere(cfg).await;
    let (ann, _bob, g) = ann_and_bob_in_a_group(&app).await;

    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let unretryable = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for s in 0..SENDERS {
        let mut c = client(&app).await;
        let (ann, g, seen, stop, unretryable) = (
            ann.clone(),
            g.clone(),
            seen.clone(),
            stop.clone(),
            unretryable.clone(),
        );
        load.push(tokio::spawn(async move {
            let mut i = 0;
            while !AtomicBool::load(&stop, Ordering::Relaxed) {
                let key = format!("s{s}-{i}");
                i += 1;
                // A send is retried with its key until it is acknowledged.
                loop {
                    let mut req = send(&g, &key);
                    req.idempotency_key = key.clone();
                    match c.send_message(authed(req, &ann)).await {
                        Ok(r) => {
                            let id = r.into_inner().id;
                            let mut seen = seen.lock().unwrap();
                            seen.acked.insert(key.clone(), id);
                            seen.successes.push(Instant::now());
                            break;
                        }
                        Err(e) if e.code() == Code::Unavailable => {
                            *seen.lock().unwrap().refused.entry(e.code()).or_default() += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Err(e) => {
                            eprintln!("a send failed as a client cannot retry: {e:?}");
                            unretryable.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            }
        }));
    }
    let acked = || seen.lock().unwrap().acked.len();
    let wait_for = async |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while acked() < n {
            assert!(Instant::now() < deadline, "the load stalled at {}", acked());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    wait_for(200).await;

    let killed = Instant::now();
    pg.primary.kill();
    let before = acked();
    // The time an operator's (or a managed service's) failover takes to decide.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let promoted = Instant::now();
    pg.standby
        .run("pg_ctl", &["promote", "-w", "-D", &pg.standby.data()]);
    let deadline = promoted + RESUME_WITHIN;
    let resumed = loop {
        let first = seen
            .lock()
            .unwrap()
            .successes
            .iter()
            .copied()
            .find(|t| *t > promoted);
        if let Some(t) = first {
            break t;
        }
        assert!(Instant::now() < deadline, "sends did not resume");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    wait_for(acked() + 200).await;
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    eprintln!(
        "failover: {before} sends acknowledged before the kill, {} in all; sends resumed {:?} after the kill, {:?} after the promotion; refused while failing over: {:?}",
        seen.acked.len(),
        resumed - killed,
        resumed - promoted,
        seen.refused,
    );
    assert_eq!(
        AtomicUsize::load(&unretryable, Ordering::Relaxed),
        0,
        "every failure was UNAVAILABLE"
    );
    assert!(
        before > 0 && seen.acked.len() >= before + 200,
        "the load ran on both sides of the failover"
    );

    // The new primary has each acknowledged send once, under its key, with the id the
    // sender was given, and one event for each, with gap-free sequence numbers.
    let mut conn = connect(&pg.standby.url("127.0.0.1", "")).await;
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        key: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        id: String,
    }
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT idempotency_key AS key, id::text AS id FROM messages WHERE idempotency_key IS NOT NULL",
    )
    .load(&mut conn)
    .await
    .unwrap();
    let stored: HashMap<String, String> = rows.into_iter().map(|r| (r.key, r.id)).collect();
    for (key, id) in &seen.acked {
        assert_eq!(
            stored.get(key),
            Some(id),
            "acknowledged send {key} is stored"
        );
    }
    assert_eq!(
        stored.len(),
        seen.acked.len(),
        "no send stored that was not acknowledged"
    );
    let messages = stored.len() as i64;
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM messages WHERE idempotency_key IS NOT NULL"
        )
        .await,
        messages,
        "no key stored twice"
    );
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM conversation_events e JOIN messages m ON m.id = e.message_id \
             WHERE m.idempotency_key IS NOT NULL"
        )
        .await,
        messages,
        "one event per stored send"
    );
    assert_eq!(
        count(
            &mut conn,
            &format!(
                "SELECT max(seq) - count(*) AS n FROM conversation_events WHERE conversation_id = '{g}'"
            )
        )
        .await,
        0,
        "the conversation's sequence numbers are gap-free"
    );
    app.stop().await;
}
