//! Group commit on the send path: many sends at once share transactions, and every
//! guarantee of a lone send holds: gap-free sequences with commit order equal to sequence
//! order, nothing lost or doubled, idempotency across batches, and a failing send isolated
//! from the sends of its batch.

use crate::{
    events::{client, group, send},
    helpers::*,
};
use epop::pb::{self, conversation_service_client::ConversationServiceClient, event::Kind};
use futures::future::join_all;
use std::{collections::HashSet, time::Duration};
use tonic::{Code, transport::Channel};

async fn app() -> TestApp {
    app_batching(256).await
}

pub(crate) async fn app_batching(max: usize) -> TestApp {
    TestApp::spawn_with(|c| {
        c.send_batch_max = max;
        c.write_rate_limit = "off".parse().unwrap();
        c.auth_rate_limit = "off".parse().unwrap();
        c.store.db_pool_size = 8;
    })
    .await
}

/// A group of `n` new users; their tokens (the first created it) and its id.
pub(crate) async fn crowd(app: &TestApp, prefix: &str, n: usize) -> (Vec<String>, String) {
    let mut ids = Vec::new();
    let mut tokens = Vec::new();
    for i in 0..n {
        let (id, token) = user(app, &format!("{prefix}{i}")).await;
        ids.push(id);
        tokens.push(token);
    }
    let others: Vec<&str> = ids[1..].iter().map(String::as_str).collect();
    let g = group(app, &tokens[0], &others).await;
    (tokens, g)
}

fn keyed(g: &str, text: &str, key: &str) -> pb::SendMessageRequest {
    pb::SendMessageRequest {
        idempotency_key: key.into(),
        ..send(g, text)
    }
}

/// `req` sent by `token` through `c` (clones share its connection: many sends at once go
/// over one connection, as a client's do; hundreds of connections opened at once by one
/// task were sometimes reset under the whole suite's load).
async fn send_over(
    c: &ConversationServiceClient<Channel>,
    token: &str,
    req: pb::SendMessageRequest,
) -> Result<pb::Message, tonic::Status> {
    c.clone()
        .send_message(authed(req, token))
        .await
        .map(|r| r.into_inner())
}

pub(crate) async fn send_as(
    app: &TestApp,
    token: &str,
    req: pb::SendMessageRequest,
) -> Result<pb::Message, tonic::Status> {
    send_over(&client(app).await, token, req).await
}

/// Checks conversation `g` on the database: messages 1..=n without gaps or doubles, one
/// event each, the event log gap-free, created_at never going back as seq grows (commit
/// order is sequence order: a batch's time is its transaction's start, after the previous
/// batch committed); answers how many transactions wrote them.
async fn check_log(db: &str, g: &str, n: i64) -> i64 {
    check_log_with(db, g, n, true).await
}

async fn check_log_with(db: &str, g: &str, n: i64, batched: bool) -> i64 {
    let q = |sql: &str| sql.replace("$G", &format!("'{g}'"));
    let count = |sql: &str| {
        let sql = q(sql);
        async move { db_count(db, &sql).await }
    };
    assert_eq!(
        count("SELECT count(*) AS n FROM messages WHERE conversation_id = $G").await,
        n
    );
    assert_eq!(
        count("SELECT count(DISTINCT seq) AS n FROM messages WHERE conversation_id = $G AND seq BETWEEN 1 AND (SELECT last_seq FROM conversations WHERE id = $G)").await,
        n
    );
    assert_eq!(
        count("SELECT last_seq AS n FROM conversations WHERE id = $G").await,
        n
    );
    assert_eq!(
        count("SELECT count(*) AS n FROM conversation_events WHERE conversation_id = $G AND message_id IS NOT NULL").await,
        n
    );
    assert_eq!(
        count(
            "SELECT count(*) - max(seq) AS n FROM conversation_events WHERE conversation_id = $G"
        )
        .await,
        0,
        "the event log has a gap"
    );
    // (A lone send's time is its transaction's start, before it waited for the lock: no
    // order to check there.)
    if batched {
        assert_eq!(
            count("SELECT count(*) AS n FROM (SELECT created_at < lag(created_at) OVER (ORDER BY seq) AS back FROM messages WHERE conversation_id = $G) t WHERE back").await,
            0,
            "a later sequence position committed earlier"
        );
    }
    count("SELECT count(DISTINCT created_at) AS n FROM messages WHERE conversation_id = $G").await
}

#[tokio::test(flavor = "multi_thread")]
async fn many_senders_into_one_conversation_share_commits_without_gaps_or_doubles() {
    many_senders_into_one_conversation(256).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_group_commit_off_many_senders_still_get_gap_free_sequences() {
    many_senders_into_one_conversation(1).await;
}

async fn many_senders_into_one_conversation(batch_max: usize) {
    let app = app_batching(batch_max).await;
    let (tokens, g) = crowd(&app, "one", 8).await;
    let mut stream = client(&app)
        .await
        .stream_events(authed(pb::StreamEventsRequest::default(), &tokens[1]))
        .await
        .unwrap()
        .into_inner();
    let per_user = 40;
    let n = (tokens.len() * per_user) as i64;
    // A member's stream, read while the sends go on (as a client does), gets each message
    // once, in sequence order.
    let live = tokio::spawn(async move {
        let mut got = Vec::new();
        while (got.len() as i64) < n {
            let e = stream
                .message()
                .await
                .unwrap()
                .expect("the stream stays open");
            match e.kind {
                Some(Kind::MessageCreated(m)) => got.push(m.seq),
                Some(Kind::Resync(r)) => panic!("told to resync: {}", r.reason),
                _ => {}
            }
        }
        got
    });
    let (c, g_ref) = (&client(&app).await, &g);
    let sends = tokens
        .iter()
        .flat_map(|t| (0..per_user).map(move |i| send_over(c, t, send(g_ref, &format!("m{i}")))));
    let sent: Vec<pb::Message> = join_all(sends)
        .await
        .into_iter()
        .map(|r| r.expect("every send succeeds"))
        .collect();
    let mut seqs: Vec<i64> = sent.iter().map(|m| m.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=n).collect::<Vec<_>>());
    let ids: HashSet<&str> = sent.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids.len() as i64, n);
    let transactions = check_log_with(&app.db_name, &g, n, batch_max > 1).await;
    if batch_max > 1 {
        assert!(
            transactions < n,
            "{n} concurrent sends took {transactions} transactions: none were shared"
        );
    }
    let got = tokio::time::timeout(Duration::from_secs(20), live)
        .await
        .expect("every message arrives live")
        .expect("the stream's reader");
    assert_eq!(got, (1..=n).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread")]
async fn sends_into_many_conversations_at_once_keep_each_sequence_gap_free() {
    let app = app().await;
    let mut groups = Vec::new();
    for i in 0..10 {
        groups.push(crowd(&app, &format!("many{i}x"), 3).await);
    }
    let per_group = 30;
    let c = &client(&app).await;
    let sends = groups.iter().flat_map(|(tokens, g)| {
        (0..per_group).map(move |i| send_over(c, &tokens[i % tokens.len()], send(g, "hi")))
    });
    for r in join_all(sends).await {
        r.expect("every send succeeds");
    }
    let mut transactions = 0;
    for (_, g) in &groups {
        transactions += check_log(&app.db_name, g, per_group as i64).await;
    }
    let total = (groups.len() * per_group) as i64;
    let distinct = db_count(
        &app.db_name,
        "SELECT count(DISTINCT created_at) AS n FROM messages",
    )
    .await;
    assert!(
        distinct < total,
        "no batch spanned conversations ({distinct} of {total})"
    );
    assert!(transactions >= groups.len() as i64);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_retried_in_the_same_and_in_later_batches_answers_the_first_message() {
    let app = app().await;
    let (tokens, g) = crowd(&app, "key", 3).await;
    let ann = &tokens[0];
    // The same key at once (one batch, or several) and spread over time (later batches),
    // racing with other senders' messages.
    let retries = (0..40).map(|i| {
        let app = &app;
        let g = g.clone();
        async move {
            tokio::time::sleep(Duration::from_millis((i % 8) * 15)).await;
            send_as(app, ann, keyed(&g, "once", "retry-key")).await
        }
    });
    let others = (0..40).map(|i| send_as(&app, &tokens[1 + i % 2], send(&g, "other")));
    let (retried, other) = futures::join!(join_all(retries), join_all(others));
    let ids: HashSet<String> = retried.into_iter().map(|r| r.unwrap().id).collect();
    assert_eq!(ids.len(), 1, "one message for one key: {ids:?}");
    for r in other {
        r.unwrap();
    }
    // One row for the key, and no position consumed by a retry.
    check_log(&app.db_name, &g, 41).await;
    // Later still: the same answer; in another conversation: refused, naming the field.
    let again = send_as(&app, ann, keyed(&g, "once", "retry-key"))
        .await
        .unwrap();
    assert!(ids.contains(&again.id));
    let bob_id = my_id(&app, &tokens[1]).await;
    let h = group(&app, ann, &[&bob_id]).await;
    let err = send_as(&app, ann, keyed(&h, "once", "retry-key"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        violations(&err)
            .iter()
            .any(|v| v.contains("idempotency_key")),
        "{err:?}"
    );
    // Two keys used twice each within one burst: two messages.
    let burst = ["k1", "k2", "k1", "k2"].map(|k| send_as(&app, ann, keyed(&g, k, k)));
    let burst: HashSet<String> = join_all(burst)
        .await
        .into_iter()
        .map(|r| r.unwrap().id)
        .collect();
    assert_eq!(burst.len(), 2);
    check_log(&app.db_name, &g, 43).await;
}

/// Makes the database refuse every message whose text is `text`: when it is inserted, or
/// (`at_commit`) only when its transaction commits, as a deferred constraint would.
async fn refuse(db: &str, text: &str, at_commit: bool) {
    db_sql(
        db,
        &format!(
            "CREATE FUNCTION refuse_text() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF NEW.body_text = '{text}' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$"
        ),
    )
    .await;
    let trigger = if at_commit {
        "CREATE CONSTRAINT TRIGGER refuse_text AFTER INSERT ON messages DEFERRABLE INITIALLY DEFERRED"
    } else {
        "CREATE TRIGGER refuse_text BEFORE INSERT ON messages"
    };
    db_sql(
        db,
        &format!("{trigger} FOR EACH ROW EXECUTE FUNCTION refuse_text()"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_send_fails_alone_and_its_batch_mates_commit() {
    let app = app().await;
    let (tokens, g) = crowd(&app, "iso", 4).await;
    let (_, outsider) = user(&app, "isooutsider").await;
    // A send the database itself refuses, whatever batch it lands in.
    refuse(&app.db_name, "poison", false).await;
    for round in 0..3 {
        let good = (0..30).map(|i| send_as(&app, &tokens[i % 4], send(&g, "fine")));
        let poison = send_as(&app, &tokens[0], send(&g, "poison"));
        let stranger = send_as(&app, &outsider, send(&g, "let me in"));
        let (good, poison, stranger) = futures::join!(join_all(good), poison, stranger);
        for r in good {
            r.expect("a batch-mate of a failing send commits");
        }
        assert_eq!(poison.unwrap_err().code(), Code::Internal);
        assert_eq!(stranger.unwrap_err().code(), Code::NotFound);
        check_log(&app.db_name, &g, 30 * (round + 1)).await;
    }
    assert_eq!(
        db_count(
            &app.db_name,
            "SELECT count(*) AS n FROM messages WHERE body_text IN ('poison', 'let me in')"
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_send_refused_at_commit_fails_alone_and_its_batch_mates_commit() {
    // Small batches, so that the sends around the refused one fill several.
    let app = app_batching(8).await;
    let (tokens, g) = crowd(&app, "late", 4).await;
    // A send the database refuses only when its transaction commits (a deferred check).
    refuse(&app.db_name, "late poison", true).await;
    for round in 0..3 {
        let good = (0..40).map(|i| send_as(&app, &tokens[i % 4], send(&g, "fine")));
        let poison = async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            send_as(&app, &tokens[1], send(&g, "late poison")).await
        };
        let (good, poison) = futures::join!(join_all(good), poison);
        for r in good {
            r.expect("a batch-mate of a send refused at commit commits");
        }
        assert_eq!(poison.unwrap_err().code(), Code::Internal);
        check_log(&app.db_name, &g, 40 * (round + 1)).await;
    }
    assert_eq!(
        db_count(
            &app.db_name,
            "SELECT count(*) AS n FROM messages WHERE body_text = 'late poison'"
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn batched_sends_stay_searchable_while_the_search_index_merges_in_small_steps() {
    let app = app().await;
    let (tokens, g) = crowd(&app, "find", 4).await;
    // The index merges its pending list at 64 kB, inside a send's transaction but briefly.
    assert!(
        db_text(
            &app.db_name,
            "SELECT array_to_string(reloptions, ',') AS v FROM pg_class \
             WHERE relname = 'messages_search_idx'"
        )
        .await
        .contains("gin_pending_list_limit=64"),
    );
    // Far more than 64 kB of index entries: the list is merged several times meanwhile.
    let filler = (0..40)
        .map(|w| format!("filler{w}"))
        .collect::<Vec<_>>()
        .join(" ");
    let c = &client(&app).await;
    let sends = (0..400).map(|i| {
        send_over(
            c,
            &tokens[i % 4],
            send(&g, &format!("marker{i:04} {filler}")),
        )
    });
    for r in join_all(sends).await {
        r.expect("sent");
    }
    check_log(&app.db_name, &g, 400).await;
    let mut c = c.clone();
    for i in [0, 199, 399] {
        let found = c
            .search_messages(authed(
                pb::SearchMessagesRequest {
                    query: format!("marker{i:04}"),
                    ..Default::default()
                },
                &tokens[0],
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(found.messages.len(), 1, "marker{i:04}");
        assert!(
            found.messages[0]
                .text
                .starts_with(&format!("marker{i:04} "))
        );
    }
}
