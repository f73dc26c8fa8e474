//! When the database fails under the server, through a TCP proxy between the two: a COMMIT
//! whose answer is lost (the proxy lets COMMIT run and cuts the connection before its answer
//! comes back) never stores a send twice, keyless ones included, nor loses one acknowledged;
//! while the database is unreachable sends fail at once and none is written after its
//! caller gave up; terminated backends fail no call and leave readiness alone.

use crate::{
    events::{ann_and_bob_in_a_group, client, send},
    helpers::*,
};
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tonic::Code;

/// What PostgreSQL answers to a COMMIT: CommandComplete ('C', length 11, "COMMIT\0").
const COMMIT_DONE: &[u8] = b"C\x00\x00\x00\x0bCOMMIT\x00";

/// A proxy to the test PostgreSQL server that, while it has cuts left, drops a connection
/// the moment the server's answer to a COMMIT arrives, instead of passing it on; and that
/// can play a database that is down (every connection cut, new ones refused).
pub(crate) struct PgProxy {
    /// Where it listens.
    pub(crate) port: u16,
    /// Cuts still to make.
    pub(crate) cuts_left: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
    /// Cancelled to cut every open connection.
    cut_all: Arc<Mutex<CancellationToken>>,
}

impl PgProxy {
    pub(crate) async fn start() -> Self {
        let upstream = reqwest::Url::parse(&database_url("postgres")).unwrap();
        let target = format!(
            "{}:{}",
            upstream.host_str().unwrap(),
            upstream.port().unwrap_or(5432)
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Self {
            port: listener.local_addr().unwrap().port(),
            cuts_left: Arc::default(),
            down: Arc::default(),
            cut_all: Arc::default(),
        };
        let (cuts, down, cut_all) = (
            proxy.cuts_left.clone(),
            proxy.down.clone(),
            proxy.cut_all.clone(),
        );
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if down.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                    continue;
                };
                let cut = cut_all.lock().unwrap().clone();
                let cuts = cuts.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        () = relay(client, server, cuts) => {}
                        () = cut.cancelled() => {}
                    }
                });
            }
        });
        proxy
    }

    /// Plays a database that is down (or back up).
    pub(crate) fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            let mut cut = self.cut_all.lock().unwrap();
            cut.cancel();
            *cut = CancellationToken::new();
        }
    }

    /// The URL of database `name` through this proxy (without TLS, which it could not read).
    pub(crate) fn url(&self, name: &str) -> String {
        let mut url = reqwest::Url::parse(&database_url(name)).unwrap();
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(self.port)).unwrap();
        url.set_query(Some("sslmode=disable"));
        url.to_string()
    }

    /// A server on a fresh database reached through this proxy.
    pub(crate) async fn app(&self) -> TestApp {
        let db_name = format!("epop_test_{}", uuid::Uuid::new_v4().simple());
        admin_sql(&format!("CREATE DATABASE {db_name}")).await;
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(&db_name, dir.path());
        cfg.store.database_url = Some(self.url(&db_name).into());
        cfg.write_rate_limit = "off".parse().unwrap();
        TestApp::start(cfg, db_name).await
    }
}

/// Relays one connection both ways, cutting it at a COMMIT's answer while cuts are left.
async fn relay(
    client: tokio::net::TcpStream,
    server: tokio::net::TcpStream,
    cuts: Arc<AtomicUsize>,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    // The end of what came before, so that a tag split across reads is seen.
    let mut tail: Vec<u8> = vec![];
    loop {
        let n = match server_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut seen = std::mem::take(&mut tail);
        seen.extend_from_slice(&buf[..n]);
        let commit = seen.windows(COMMIT_DONE.len()).any(|w| w == COMMIT_DONE);
        if commit
            && cuts
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| c.checked_sub(1))
                .is_ok()
        {
            break;
        }
        if client_write.write_all(&buf[..n]).await.is_err() {
            break;
        }
        tail = seen[seen.len().saturating_sub(COMMIT_DONE.len())..].to_vec();
    }
    up.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_commit_answer_never_stores_a_keyless_send_twice_nor_loses_an_acknowledged_one() {
    let cutter = PgProxy::start().await;
    let app = cutter.app().await;
    let db_name = app.db_name.clone();
    let (ann, _, g) = ann_and_bob_in_a_group(&app).await;

    // Ten COMMIT answers lost while eight clients send keyless messages.
    cutter.cuts_left.store(10, Ordering::SeqCst);
    let mut senders = vec![];
    for t in 0..8 {
        let (ann, g, mut c) = (ann.clone(), g.clone(), client(&app).await);
        senders.push(tokio::spawn(async move {
            let mut acknowledged = vec![];
            for i in 0..40 {
                let text = format!("t{t}-{i}");
                // No idempotency key.
                if c.send_message(authed(send(&g, &text), &ann)).await.is_ok() {
                    acknowledged.push(text);
                }
            }
            acknowledged
        }));
    }
    let mut acknowledged = vec![];
    for s in senders {
        acknowledged.extend(s.await.unwrap());
    }
    let cuts = 10 - cutter.cuts_left.swap(0, Ordering::SeqCst);
    assert!(cuts > 0, "the proxy cut no COMMIT answer");

    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        body_text: String,
    }
    use diesel_async::{AsyncConnection, RunQueryDsl};
    let mut conn = diesel_async::AsyncPgConnection::establish(&database_url(&db_name))
        .await
        .unwrap();
    let rows: Vec<Row> = diesel::sql_query(format!(
        "SELECT body_text FROM messages WHERE conversation_id = '{g}'"
    ))
    .load(&mut conn)
    .await
    .unwrap();
    let mut stored: HashMap<String, usize> = HashMap::new();
    for r in rows {
        *stored.entry(r.body_text).or_default() += 1;
    }
    let twice: Vec<&String> = stored
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(t, _)| t)
        .collect();
    eprintln!(
        "{cuts} COMMIT answers cut; {} of 320 sends acknowledged, {} stored, {} twice",
        acknowledged.len(),
        stored.len(),
        twice.len()
    );
    assert!(twice.is_empty(), "stored twice: {twice:?}");
    for text in &acknowledged {
        assert!(stored.contains_key(text), "acknowledged but lost: {text}");
    }
    // The log agrees: one event per stored message, sequences without gaps.
    let gaps = db_count(
        &db_name,
        &format!("SELECT (max(seq) - count(*)) AS n FROM messages WHERE conversation_id = '{g}'"),
    )
    .await;
    assert_eq!(gaps, 0);
}

/// Sends `text` to `g` as `token` with a client deadline of `deadline`: the outcome's code
/// and how long it took.
async fn timed_send(
    app: &TestApp,
    token: &str,
    g: &str,
    text: &str,
    deadline: Duration,
) -> (Code, Duration) {
    let mut req = authed(send(g, text), token);
    req.set_timeout(deadline);
    let t = Instant::now();
    let code = match client(app).await.send_message(req).await {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    };
    (code, t.elapsed())
}

/// `n` sends at once whose callers give up after 300 ms (texts `gave-up-<i>`): their outcomes.
async fn gave_up(app: &TestApp, token: &str, g: &str, n: usize) -> Vec<(Code, Duration)> {
    let sends = (0..n).map(|i| {
        let text = format!("gave-up-{i}");
        async move { timed_send(app, token, g, &text, Duration::from_millis(300)).await }
    });
    futures::future::join_all(sends).await
}

#[tokio::test(flavor = "multi_thread")]
async fn while_the_database_is_down_sends_fail_at_once_and_none_is_written_after_its_caller_gave_up()
 {
    let proxy = PgProxy::start().await;
    let app = proxy.app().await;
    let (ann, _, g) = ann_and_bob_in_a_group(&app).await;
    timed_send(&app, &ann, &g, "before", Duration::from_secs(5)).await;

    proxy.set_down(true);
    // Sends one after another: each answered UNAVAILABLE, the first within the writer's
    // connection wait, the next ones at once.
    let mut answers = vec![];
    for i in 0..10 {
        answers
            .push(timed_send(&app, &ann, &g, &format!("down-{i}"), Duration::from_secs(5)).await);
    }
    // Callers that give up after 300 ms, many at once.
    let impatient = gave_up(&app, &ann, &g, 16).await;
    proxy.set_down(false);
    eprintln!("while down: {answers:?}; impatient: {impatient:?}");
    for (i, (code, took)) in answers.iter().enumerate() {
        assert_eq!(*code, Code::Unavailable, "send {i}");
        let bound = if i == 0 {
            Duration::from_millis(2500)
        } else {
            Duration::from_millis(1500)
        };
        assert!(*took < bound, "send {i} took {took:?}");
    }
    for (code, _) in &impatient {
        assert!(
            matches!(code, Code::Unavailable | Code::DeadlineExceeded),
            "{code:?}"
        );
    }
    // Service resumes by itself once the database is back.
    let back = Instant::now();
    loop {
        let (code, _) = timed_send(&app, &ann, &g, "after", Duration::from_secs(5)).await;
        if code == Code::Ok {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(10), "still {code:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "sends work again {:?} after the database came back",
        back.elapsed()
    );
    // Nothing refused while down, and nothing whose caller gave up, was written later.
    let late = db_count(
        &app.db_name,
        "SELECT count(*) AS n FROM messages WHERE body_text LIKE 'down-%' OR body_text LIKE 'gave-up-%'",
    )
    .await;
    assert_eq!(late, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn terminated_backends_fail_no_call_and_readiness_stays_up() {
    let app = TestApp::spawn_with(|c| c.write_rate_limit = "off".parse().unwrap()).await;
    let (ann, _, g) = ann_and_bob_in_a_group(&app).await;
    // Every pooled connection in use once, and the writer's.
    let gets = (0..16).map(|_| app.get_me(&ann));
    for r in futures::future::join_all(gets).await {
        r.unwrap();
    }
    timed_send(&app, &ann, &g, "before", Duration::from_secs(5)).await;
    admin_sql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = '{}' AND pid <> pg_backend_pid()",
        app.db_name
    ))
    .await;
    // Readiness, polled through the next three seconds, and calls of every kind.
    let http = reqwest::Client::new();
    let ready = async {
        let mut not_ready = 0;
        for _ in 0..30 {
            let r = http
                .get(format!("{}/readyz", app.url()))
                .send()
                .await
                .unwrap();
            not_ready += usize::from(r.status() != 200);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        not_ready
    };
    let calls = async {
        let mut failed = vec![];
        for i in 0..10 {
            let gets = futures::future::join_all((0..4).map(|_| app.get_me(&ann))).await;
            failed.extend(gets.into_iter().filter_map(|r| r.err()).map(|s| s.code()));
            let (code, _) =
                timed_send(&app, &ann, &g, &format!("m{i}"), Duration::from_secs(5)).await;
            if code != Code::Ok {
                failed.push(code);
            }
        }
        failed
    };
    let (not_ready, failed) = tokio::join!(ready, calls);
    assert!(failed.is_empty(), "calls failed: {failed:?}");
    assert_eq!(not_ready, 0, "/readyz said not ready");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_send_whose_caller_gave_up_while_it_waited_is_never_written() {
    use diesel_async::{AsyncConnection, SimpleAsyncConnection};
    let app = TestApp::spawn_with(|c| c.write_rate_limit = "off".parse().unwrap()).await;
    let (ann, _, g) = ann_and_bob_in_a_group(&app).await;
    // The conversation's row locked by a transaction of the test's own: the writer's next
    // batch waits for it, and the sends after it wait in the queue.
    let mut lock = diesel_async::AsyncPgConnection::establish(&database_url(&app.db_name))
        .await
        .unwrap();
    lock.batch_execute(&format!(
        "BEGIN; SELECT 1 FROM conversations WHERE id = '{g}' FOR UPDATE"
    ))
    .await
    .unwrap();
    let held = {
        let (app_url, ann, g) = (app.url(), ann.clone(), g.clone());
        tokio::spawn(async move {
            let channel = tonic::transport::Channel::from_shared(app_url)
                .unwrap()
                .connect()
                .await
                .unwrap();
            let mut req = authed(send(&g, "held"), &ann);
            req.set_timeout(Duration::from_secs(10));
            epop::pb::conversation_service_client::ConversationServiceClient::new(channel)
                .send_message(req)
                .await
                .map(|_| ())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let impatient = gave_up(&app, &ann, &g, 8).await;
    for (code, _) in &impatient {
        assert!(
            matches!(code, Code::DeadlineExceeded | Code::Cancelled),
            "{code:?}"
        );
    }
    lock.batch_execute("COMMIT").await.unwrap();
    held.await
        .unwrap()
        .expect("the send that waited for the lock");
    let (code, _) = timed_send(&app, &ann, &g, "after", Duration::from_secs(5)).await;
    assert_eq!(code, Code::Ok);
    let late = db_count(
        &app.db_name,
        "SELECT count(*) AS n FROM messages WHERE body_text LIKE 'gave-up-%'",
    )
    .await;
    assert_eq!(late, 0, "sends written after their callers gave up");
}
