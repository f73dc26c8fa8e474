//! Group commit of read positions: many MarkReads at once share transactions, and every
//! guarantee of a lone one holds: positions only move forward and never past the end,
//! each caller gets its own unread count, read receipts take gap-free event positions and
//! arrive once in order, and a failing mark fails alone.

use crate::{
    events::client,
    group_commit::{crowd, send_as},
    helpers::*,
};
use epop::pb::{self, event::Kind};
use futures::future::join_all;
use std::time::Duration;
use tonic::Code;

async fn app_reading(max: usize) -> TestApp {
    TestApp::spawn_with(|c| {
        c.read_batch_max = max;
        c.write_rate_limit = "off".parse().unwrap();
        c.auth_rate_limit = "off".parse().unwrap();
        c.store.db_pool_size = 8;
    })
    .await
}

async fn mark(app: &TestApp, token: &str, g: &str, seq: i64) -> Result<i64, tonic::Status> {
    client(app)
        .await
        .mark_read(authed(
            pb::MarkReadRequest {
                conversation_id: g.into(),
                seq,
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().unread_count)
}

async fn say(app: &TestApp, token: &str, g: &str, n: usize) {
    for i in 0..n {
        send_as(app, token, crate::events::send(g, &format!("m{i}")))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn many_members_marking_one_conversation_at_once_share_commits_and_keep_receipts_in_order() {
    many_members_marking(256).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_read_batching_off_concurrent_marks_keep_the_same_guarantees() {
    many_members_marking(1).await;
}

async fn many_members_marking(batch_max: usize) {
    let app = app_reading(batch_max).await;
    let (tokens, g) = crowd(&app, "rd", 12).await;
    say(&app, &tokens[0], &g, 5).await;
    let mut stream = client(&app)
        .await
        .stream_events(authed(pb::StreamEventsRequest::default(), &tokens[0]))
        .await
        .unwrap()
        .into_inner();
    // Every other member marks 1..=5 (and past the end) at once: 66 concurrent calls.
    let marks = tokens[1..].iter().flat_map(|t| {
        let (app, g) = (&app, &g);
        (1..=6).map(move |k| async move { (k, mark(app, t, g, k).await) })
    });
    for (k, r) in join_all(marks).await {
        let unread = r.expect("every member's mark succeeds");
        assert!(
            unread <= (5 - k).max(0),
            "marked {k} of 5, then {unread} unread"
        );
    }
    let q = |sql: &str| sql.replace("$G", &format!("'{g}'"));
    let count = |sql: &str| {
        let sql = q(sql);
        let db = app.db_name.clone();
        async move { db_count(&db, &sql).await }
    };
    assert_eq!(
        count("SELECT count(*) AS n FROM conversation_members WHERE conversation_id = $G AND last_read_seq = 5").await,
        12,
        "every member read to the end (the sender by sending), never past it"
    );
    let receipts = count("SELECT count(*) AS n FROM conversation_events WHERE conversation_id = $G AND body->>'kind' = 'read_receipt'").await;
    assert!(
        (11..=55).contains(&receipts),
        "{receipts} receipts for 11 readers"
    );
    assert_eq!(
        count(
            "SELECT count(*) - max(seq) AS n FROM conversation_events WHERE conversation_id = $G"
        )
        .await,
        0,
        "the event log has a gap"
    );
    assert_eq!(
        count("SELECT count(*) AS n FROM (SELECT (body->>'seq')::int8 <= lag((body->>'seq')::int8) OVER (PARTITION BY body->>'user_id' ORDER BY seq) AS back FROM conversation_events WHERE conversation_id = $G AND body->>'kind' = 'read_receipt') t WHERE back").await,
        0,
        "a reader's receipts went back or repeated"
    );
    if batch_max > 1 {
        let transactions = count("SELECT count(DISTINCT created_at) AS n FROM conversation_events WHERE conversation_id = $G AND body->>'kind' = 'read_receipt'").await;
        assert!(
            transactions < receipts,
            "{receipts} receipts took {transactions} transactions: none were shared"
        );
    }
    // The sender's stream gets each receipt once, in the log's order.
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while (got.len() as i64) < receipts {
            let e = stream.message().await.unwrap().unwrap();
            if let Some(Kind::ReadReceipt(r)) = e.kind {
                got.push((r.user_id, r.seq));
            }
        }
    })
    .await
    .expect("every receipt arrives live");
    let mut per_reader: std::collections::HashMap<String, i64> = Default::default();
    for (user, seq) in &got {
        let last = per_reader.entry(user.clone()).or_default();
        assert!(
            seq > last,
            "{user}'s receipts arrived out of order: {got:?}"
        );
        *last = *seq;
    }
    assert_eq!(per_reader.len(), 11);
    assert!(per_reader.values().all(|s| *s == 5));
    // Marking back answers the unread count at the position kept, and writes nothing.
    assert_eq!(mark(&app, &tokens[1], &g, 2).await.unwrap(), 0);
    say(&app, &tokens[0], &g, 2).await;
    assert_eq!(mark(&app, &tokens[1], &g, 6).await.unwrap(), 1);
    assert_eq!(
        count("SELECT count(*) AS n FROM conversation_events WHERE conversation_id = $G AND body->>'kind' = 'read_receipt'").await,
        receipts + 1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_mark_fails_alone_and_its_batch_mates_commit() {
    let app = app_reading(256).await;
    let (tokens, g) = crowd(&app, "rdiso", 8).await;
    let (_, outsider) = user(&app, "rdisooutsider").await;
    let poisoned = my_id(&app, &tokens[7]).await;
    // The database refuses every read receipt of one member, whatever batch it lands in.
    db_sql(
        &app.db_name,
        &format!(
            "CREATE FUNCTION refuse_receipt() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF NEW.body->>'user_id' = '{poisoned}' THEN RAISE EXCEPTION 'poisoned'; END IF; RETURN NEW; END $$"
        ),
    )
    .await;
    db_sql(
        &app.db_name,
        "CREATE TRIGGER refuse_receipt BEFORE INSERT ON conversation_events FOR EACH ROW EXECUTE FUNCTION refuse_receipt()",
    )
    .await;
    let missing = uuid::Uuid::new_v4().to_string();
    for round in 1..=3 {
        say(&app, &tokens[0], &g, 1).await;
        let good = (0..30).map(|i| mark(&app, &tokens[1 + i % 6], &g, round));
        let (good, poison, stranger, nowhere, negative) = futures::join!(
            join_all(good),
            mark(&app, &tokens[7], &g, round),
            mark(&app, &outsider, &g, round),
            mark(&app, &tokens[1], &missing, round),
            mark(&app, &tokens[2], &g, -1),
        );
        for r in good {
            assert_eq!(r.expect("a batch-mate of a failing mark commits"), 0);
        }
        assert_eq!(poison.unwrap_err().code(), Code::Internal);
        assert_eq!(stranger.unwrap_err().code(), Code::NotFound);
        assert_eq!(nowhere.unwrap_err().code(), Code::NotFound);
        let negative = negative.unwrap_err();
        assert_eq!(negative.code(), Code::InvalidArgument);
        assert!(violations(&negative).iter().any(|v| v.contains("seq")));
        let sql = format!(
            "SELECT count(*) AS n FROM conversation_members WHERE conversation_id = '{g}' AND last_read_seq = {round}"
        );
        assert_eq!(
            db_count(&app.db_name, &sql).await,
            7,
            "the sender and six readers at {round}; the poisoned reader did not move"
        );
    }
}
