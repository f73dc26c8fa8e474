//! Replays follow each conversation's sequence, not clocks.

use crate::{
    events::{ann_and_bob_in_a_group, client, created_text, next, open, send},
    helpers::*,
};

#[tokio::test(flavor = "multi_thread")]
async fn a_resume_replays_in_sequence_order_even_when_commit_times_disagree() {
    let app = TestApp::spawn().await;
    let (ann, bob, g) = ann_and_bob_in_a_group(&app).await;
    let mut c = client(&app).await;
    let mut stream = open(&app, &bob, "").await;
    c.send_message(authed(send(&g, "marker"), &ann))
        .await
        .unwrap();
    let marker = next(&mut stream).await;
    assert_eq!(created_text(&marker), "marker");
    drop(stream);
    for t in ["one", "two"] {
        c.send_message(authed(send(&g, t), &ann)).await.unwrap();
    }
    // A transaction that started earlier can take the conversation's lock later: its
    // timestamp is older than its predecessor's. Make "two" look older than "one".
    db_sql(
        &app.db_name,
        "UPDATE conversation_events SET created_at = created_at - interval '1 hour' \
         WHERE seq = (SELECT max(seq) FROM conversation_events)",
    )
    .await;
    let mut resumed = open(&app, &bob, &marker.cursor).await;
    assert_eq!(created_text(&next(&mut resumed).await), "one");
    assert_eq!(created_text(&next(&mut resumed).await), "two");
}
