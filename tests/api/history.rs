//! What a replay may serve: never a deleted or replaced message body, never an event from
//! before the member (re)joined, and only from cursors this server signed for the caller.
//! And presence goes only to people who share a conversation with its subject.

use crate::{
    events::{client, created_text, group, next, open, send},
    helpers::*,
};
use epop::pb::{self, event::Kind};
use std::time::Duration;
use tonic::Code;

fn texts_of(events: &[pb::Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(Kind::MessageCreated(m) | Kind::MessageUpdated(m) | Kind::MessageDeleted(m)) => {
                Some(m.text.clone())
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replay_never_serves_deleted_or_edited_away_text() {
    let app = TestApp::spawn().await;
    let (_, ann) = user(&app, "ann").await;
    let (bob_id, bob) = user(&app, "bob").await;
    let g = group(&app, &ann, &[&bob_id]).await;
    let mut c = client(&app).await;
    // Bob's earliest position: right after the event that added him.
    let mut stream = open(&app, &bob, "").await;
    c.send_message(authed(send(&g, "hello"), &ann))
        .await
        .unwrap();
    let first = next(&mut stream).await;
    drop(stream);

    let secret = c
        .send_message(authed(send(&g, "the secret"), &ann))
        .await
        .unwrap()
        .into_inner();
    let draft = c
        .send_message(authed(send(&g, "first draft"), &ann))
        .await
        .unwrap()
        .into_inner();
    c.update_message(authed(
        pb::UpdateMessageRequest {
            conversation_id: g.clone(),
            message_id: draft.id.clone(),
            content: send(&g, "final words").content,
        },
        &ann,
    ))
    .await
    .unwrap();
    c.delete_message(authed(
        pb::DeleteMessageRequest {
            conversation_id: g.clone(),
            message_id: secret.id.clone(),
        },
        &ann,
    ))
    .await
    .unwrap();

    // Bob resumes from his earliest cursor: four events, none with the old text.
    let mut resumed = open(&app, &bob, &first.cursor).await;
    let mut replay = vec![];
    for _ in 0..4 {
        replay.push(next(&mut resumed).await);
    }
    let texts = texts_of(&replay);
    assert_eq!(texts, ["", "final words", "final words", ""], "{replay:?}");
    assert!(matches!(replay[3].kind, Some(Kind::MessageDeleted(_))));

    // A forged cursor (the unsigned form, position 0) is refused, on gRPC and over REST.
    use base64::Engine;
    let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
        [
            uuid::Uuid::parse_str(&g).unwrap().as_bytes().as_slice(),
            &0i64.to_be_bytes(),
        ]
        .concat(),
    );
    let refused = client(&app)
        .await
        .stream_events(authed(
            pb::StreamEventsRequest {
                resume_cursor: forged.clone(),
            },
            &bob,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(violations(&refused), ["resume_cursor"]);
    let rest = reqwest::Client::new()
        .get(format!("{}/api/events", app.url()))
        .bearer_auth(&bob)
        .header("last-event-id", &forged)
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), 400);
    // Ann's own cursor is not Bob's.
    let mut ann_stream = open(&app, &ann, "").await;
    c.send_message(authed(send(&g, "more"), &ann))
        .await
        .unwrap();
    let anns = next(&mut ann_stream).await.cursor;
    let refused = client(&app)
        .await
        .stream_events(authed(
            pb::StreamEventsRequest {
                resume_cursor: anns,
            },
            &bob,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_who_left_and_came_back_replays_nothing_from_while_they_were_out() {
    let app = TestApp::spawn().await;
    let (_, ann) = user(&app, "ann").await;
    let (carol_id, carol) = user(&app, "carol").await;
    let g = group(&app, &ann, &[&carol_id]).await;
    let mut c = client(&app).await;
    let mut stream = open(&app, &carol, "").await;
    c.send_message(authed(send(&g, "before"), &ann))
        .await
        .unwrap();
    let old = next(&mut stream).await.cursor;
    drop(stream);
    client(&app)
        .await
        .leave_conversation(authed(
            pb::LeaveConversationRequest {
                conversation_id: g.clone(),
            },
            &carol,
        ))
        .await
        .unwrap();
    c.send_message(authed(send(&g, "while carol was out"), &ann))
        .await
        .unwrap();
    c.add_conversation_members(authed(
        pb::AddConversationMembersRequest {
            conversation_id: g.clone(),
            user_ids: vec![carol_id.clone()],
        },
        &ann,
    ))
    .await
    .unwrap();
    c.send_message(authed(send(&g, "after"), &ann))
        .await
        .unwrap();

    // Her signed, older cursor is clamped at the event that added her back.
    let mut resumed = open(&app, &carol, &old).await;
    let added = next(&mut resumed).await;
    assert!(
        matches!(added.kind, Some(Kind::MembershipChanged(ref m)) if m.added_user_ids == [carol_id.clone()]),
        "{added:?}"
    );
    assert_eq!(created_text(&next(&mut resumed).await), "after");
}

#[tokio::test(flavor = "multi_thread")]
async fn presence_reaches_only_people_who_share_a_conversation() {
    let app = TestApp::spawn().await;
    let (ann_id, ann) = user(&app, "ann").await;
    let (bob_id, bob) = user(&app, "bob").await;
    let (_, eve) = user(&app, "eve").await;
    group(&app, &ann, &[&bob_id]).await;
    let mut bob_stream = open(&app, &bob, "").await;
    let mut eve_stream = open(&app, &eve, "").await;
    let _ann_stream = open(&app, &ann, "").await;
    // Bob, who shares a group with Ann, sees her come online...
    loop {
        let e = tokio::time::timeout(Duration::from_secs(5), bob_stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if matches!(e.kind, Some(Kind::Presence(ref p)) if p.user_id == ann_id && p.online) {
            break;
        }
    }
    // ... and Eve does not: her next event is the marker that follows, not Ann's presence.
    let mut projects = pb::project_service_client::ProjectServiceClient::new(app.channel().await);
    let p = projects
        .create_project(authed(
            pb::CreateProjectRequest {
                name: "Eve's".into(),
                ..Default::default()
            },
            &eve,
        ))
        .await
        .unwrap()
        .into_inner();
    projects
        .update_project(authed(
            pb::UpdateProjectRequest {
                id: p.id.clone(),
                name: Some("Marker".into()),
                ..Default::default()
            },
            &eve,
        ))
        .await
        .unwrap();
    loop {
        let e = tokio::time::timeout(Duration::from_secs(5), eve_stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        match e.kind {
            Some(Kind::Presence(p)) => panic!("Eve learnt {p:?}"),
            Some(Kind::ProjectChanged(ref c)) if c.name == "Marker" => break,
            _ => {}
        }
    }
}
