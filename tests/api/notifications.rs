//! Notifications (issue 37): direct messages, mentions, replies in followed threads, tasks
//! and being added become notifications for the people concerned, once, live on their
//! streams (on every instance) and in their inbox; reading them, or the messages, clears
//! them on every device; preferences and the admin's default decide the channels.

use crate::{
    events::{any_event, client, group, open, redis_url, send},
    helpers::*,
};
use epop::pb::{
    self, event::Kind, notification_service_client::NotificationServiceClient,
    project_service_client::ProjectServiceClient, task_service_client::TaskServiceClient,
};
use serde_json::json;
use tonic::{Code, transport::Channel};

pub(crate) async fn inbox_client(app: &TestApp) -> NotificationServiceClient<Channel> {
    NotificationServiceClient::new(app.channel().await)
}

/// The caller's inbox: (kind, body) newest first, and the unread count.
pub(crate) async fn inbox(app: &TestApp, token: &str) -> (Vec<(i32, String)>, i64) {
    let r = inbox_client(app)
        .await
        .list_notifications(authed(pb::ListNotificationsRequest::default(), token))
        .await
        .unwrap()
        .into_inner();
    (
        r.notifications
            .into_iter()
            .map(|n| (n.kind, n.body))
            .collect(),
        r.unread_count,
    )
}

/// The next notification on `stream`.
pub(crate) async fn notified(stream: &mut tonic::Streaming<pb::Event>) -> pb::Notification {
    loop {
        if let Some(Kind::Notification(n)) = any_event(stream).await.kind {
            return n;
        }
    }
}

async fn read_told(stream: &mut tonic::Streaming<pb::Event>) -> pb::NotificationsRead {
    loop {
        if let Some(Kind::NotificationsRead(r)) = any_event(stream).await.kind {
            return r;
        }
    }
}

/// A message of `c` mentioning user `id` after `text`.
pub(crate) fn mentioning(c: &str, text: &str, id: &str) -> pb::SendMessageRequest {
    let doc = json!({"type":"doc","content":[{"type":"paragraph","content":[
        {"type":"text","text": text},
        {"type":"mention","attrs":{"id": id, "label": id}}
    ]}]});
    pb::SendMessageRequest {
        content: Some(epop::grpc::convert::json_to_struct(&doc)),
        ..send(c, "x")
    }
}

pub(crate) async fn direct(app: &TestApp, token: &str, other: &str) -> String {
    client(app)
        .await
        .create_conversation(authed(
            pb::CreateConversationRequest {
                kind: pb::ConversationKind::Direct.into(),
                title: String::new(),
                member_ids: vec![other.into()],
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner()
        .id
}

/// Project "Apollo" of `owner`, with `member` added to it.
async fn apollo_with(app: &TestApp, owner: &str, member: &str) -> pb::Project {
    let mut projects = ProjectServiceClient::new(app.channel().await);
    let p = projects
        .create_project(authed(
            pb::CreateProjectRequest {
                name: "Apollo".into(),
                ..Default::default()
            },
            owner,
        ))
        .await
        .unwrap()
        .into_inner();
    projects
        .add_project_member(authed(
            pb::AddProjectMemberRequest {
                project_id: p.id.clone(),
                user_id: member.into(),
                role: pb::ProjectRole::Member.into(),
            },
            owner,
        ))
        .await
        .unwrap();
    p
}

/// Task "Launch" of project `p`, assigned to `assignee` by `token`'s user.
async fn launch(
    tasks: &mut TaskServiceClient<Channel>,
    p: &pb::Project,
    assignee: &str,
    token: &str,
) -> pb::Task {
    tasks
        .create_task(authed(
            pb::CreateTaskRequest {
                project_id: p.id.clone(),
                title: "Launch".into(),
                assignee_id: assignee.into(),
                ..Default::default()
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner()
}

/// Renames task `id` to `title`, as `token`'s user.
fn retitle(id: &str, title: &str, token: &str) -> tonic::Request<pb::UpdateTaskRequest> {
    authed(
        pb::UpdateTaskRequest {
            id: id.into(),
            title: Some(title.into()),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["title".into()],
            }),
            ..Default::default()
        },
        token,
    )
}

const DIRECT: i32 = pb::NotificationKind::DirectMessage as i32;
const MENTION: i32 = pb::NotificationKind::Mention as i32;
const REPLY: i32 = pb::NotificationKind::ThreadReply as i32;

#[tokio::test(flavor = "multi_thread")]
async fn direct_messages_mentions_and_replies_notify_the_right_people_once_live_and_in_the_inbox() {
    let app = TestApp::spawn().await;
    let (ann_id, ann) = user(&app, "ann").await;
    let (bob_id, bob) = user(&app, "bob").await;
    let (carl_id, carl) = user(&app, "carl").await;
    let mut bob_stream = open(&app, &bob, "").await;
    let mut carl_stream = open(&app, &carl, "").await;
    let mut ann_stream = open(&app, &ann, "").await;

    // A direct message notifies the other member, live and in the inbox.
    let d = direct(&app, &ann, &bob_id).await;
    client(&app)
        .await
        .send_message(authed(send(&d, "lunch?"), &ann))
        .await
        .unwrap();
    let n = notified(&mut bob_stream).await;
    assert_eq!(n.kind, DIRECT);
    assert_eq!(n.body, "ann: lunch?");
    assert_eq!(n.conversation_id, d);
    assert_eq!(n.actor_id, ann_id);

    // In a group, a plain message notifies nobody; a mention notifies whom it names (once,
    // as a mention).
    let g = group(&app, &ann, &[&bob_id, &carl_id]).await;
    // Being added is a notification too.
    assert_eq!(
        notified(&mut bob_stream).await.kind,
        pb::NotificationKind::AddedToConversation as i32
    );
    assert_eq!(
        notified(&mut carl_stream).await.kind,
        pb::NotificationKind::AddedToConversation as i32
    );
    let root = client(&app)
        .await
        .send_message(authed(send(&g, "plain news"), &ann))
        .await
        .unwrap()
        .into_inner();
    client(&app)
        .await
        .send_message(authed(mentioning(&g, "look ", &carl_id), &ann))
        .await
        .unwrap();
    let n = notified(&mut carl_stream).await;
    assert_eq!((n.kind, n.title.as_str()), (MENTION, "Live"));
    assert!(n.body.starts_with("ann: look"), "{}", n.body);

    // A reply notifies the thread's followers (the root's sender), not the replier.
    let reply = pb::SendMessageRequest {
        thread_root_id: root.id.clone(),
        ..send(&g, "agreed")
    };
    client(&app)
        .await
        .send_message(authed(reply, &bob))
        .await
        .unwrap();
    let n = notified(&mut ann_stream).await;
    assert_eq!((n.kind, n.body.as_str()), (REPLY, "bob: agreed"));

    // Nothing else reached Bob's stream: his next notification is the next direct message.
    client(&app)
        .await
        .send_message(authed(send(&d, "again"), &ann))
        .await
        .unwrap();
    assert_eq!(notified(&mut bob_stream).await.body, "ann: again");
    let (bob_inbox, unread) = inbox(&app, &bob).await;
    assert_eq!(
        bob_inbox,
        vec![
            (DIRECT, "ann: again".to_owned()),
            (
                pb::NotificationKind::AddedToConversation as i32,
                "ann added you to Live".to_owned()
            ),
            (DIRECT, "ann: lunch?".to_owned()),
        ]
    );
    assert_eq!(unread, 3);
    let (carl_inbox, _) = inbox(&app, &carl).await;
    assert_eq!(
        carl_inbox.len(),
        2,
        "added, then the mention: {carl_inbox:?}"
    );
    // Paging: one at a time, newest first, to the end.
    let page = inbox_client(&app)
        .await
        .list_notifications(authed(
            pb::ListNotificationsRequest {
                page_size: 2,
                ..Default::default()
            },
            &bob,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.notifications.len(), 2);
    let rest = inbox_client(&app)
        .await
        .list_notifications(authed(
            pb::ListNotificationsRequest {
                page_size: 2,
                page_token: page.next_page_token,
                ..Default::default()
            },
            &bob,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.notifications.len(), 1);
    assert!(rest.next_page_token.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn reading_the_messages_or_the_inbox_clears_notifications_on_every_device_and_instance() {
    let (app, other_instance) = two_instances(&redis_url()).await;
    let (_, ann) = user(&app, "ann").await;
    let (bob_id, bob) = user(&app, "bob").await;
    let mut laptop = open(&app, &bob, "").await;
    let mut phone = open(&other_instance, &bob, "").await;
    let d = direct(&app, &ann, &bob_id).await;
    let m = client(&app)
        .await
        .send_message(authed(send(&d, "one"), &ann))
        .await
        .unwrap()
        .into_inner();
    // Made on one instance, live on both.
    let on_laptop = notified(&mut laptop).await;
    let on_phone = notified(&mut phone).await;
    assert_eq!(on_laptop.id, on_phone.id);

    // Reading the conversation on the phone clears it on both devices.
    client(&other_instance)
        .await
        .mark_read(authed(
            pb::MarkReadRequest {
                conversation_id: d.clone(),
                seq: m.seq,
            },
            &bob,
        ))
        .await
        .unwrap();
    for stream in [&mut laptop, &mut phone] {
        let r = read_told(stream).await;
        assert_eq!(r.notification_ids, vec![on_laptop.id.clone()]);
        assert_eq!(r.unread_count, 0);
    }
    assert_eq!(inbox(&app, &bob).await.1, 0);

    // Mark all read from the inbox.
    for text in ["two", "three"] {
        client(&app)
            .await
            .send_message(authed(send(&d, text), &ann))
            .await
            .unwrap();
        notified(&mut laptop).await;
    }
    assert_eq!(inbox(&app, &bob).await.1, 2);
    let left = inbox_client(&app)
        .await
        .mark_notifications_read(authed(
            pb::MarkNotificationsReadRequest {
                all: true,
                ..Default::default()
            },
            &bob,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(left.unread_count, 0);
    let r = read_told(&mut phone).await;
    assert!(r.all);
    // What was read a month ago leaves the inbox at the next mark.
    db_sql(
        &app.db_name,
        "UPDATE notifications SET read_at = now() - interval '31 days'",
    )
    .await;
    client(&app)
        .await
        .send_message(authed(send(&d, "four"), &ann))
        .await
        .unwrap();
    notified(&mut laptop).await;
    assert_eq!(inbox(&app, &bob).await.0.len(), 4);
    let old = "SELECT count(*) AS n FROM notifications WHERE read_at < now() - interval '30 days'";
    assert_eq!(db_count(&app.db_name, old).await, 3);
    let one = inbox(&app, &bob).await;
    assert_eq!(one.1, 1);
    inbox_client(&app)
        .await
        .mark_notifications_read(authed(
            pb::MarkNotificationsReadRequest {
                all: true,
                ..Default::default()
            },
            &bob,
        ))
        .await
        .unwrap();
    let (left, _) = inbox(&app, &bob).await;
    assert_eq!(left, vec![(DIRECT, "ann: four".to_owned())]);
    // Someone else's notification (or a made-up id) is not theirs to mark.
    let (_, eve) = user(&app, "eve").await;
    let bad = inbox_client(&app)
        .await
        .mark_notifications_read(authed(
            pb::MarkNotificationsReadRequest {
                notification_ids: vec!["nope".into()],
                all: false,
            },
            &eve,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(violations(&bad), vec!["notification_ids[0]"]);
    let untouched = inbox_client(&app)
        .await
        .mark_notifications_read(authed(
            pb::MarkNotificationsReadRequest {
                notification_ids: vec![on_laptop.id.clone()],
                all: false,
            },
            &eve,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(untouched.unread_count, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn tasks_and_projects_notify_the_assignee_and_the_added_member_but_not_their_own_changes() {
    let app = TestApp::spawn().await;
    let (_, ann) = user(&app, "ann").await;
    let (bob_id, bob) = user(&app, "bob").await;
    let mut bob_stream = open(&app, &bob, "").await;
    let p = apollo_with(&app, &ann, &bob_id).await;
    let n = notified(&mut bob_stream).await;
    assert_eq!(n.kind, pb::NotificationKind::AddedToProject as i32);
    assert_eq!(
        (n.title.as_str(), n.body.as_str()),
        ("Apollo", "ann added you to Apollo")
    );

    let mut tasks = TaskServiceClient::new(app.channel().await);
    let t = launch(&mut tasks, &p, &bob_id, &ann).await;
    let n = notified(&mut bob_stream).await;
    assert_eq!(n.kind, pb::NotificationKind::TaskAssigned as i32);
    assert_eq!(
        (n.task_id.as_str(), n.project_id.as_str()),
        (t.id.as_str(), p.id.as_str())
    );
    // Bob's own change tells him nothing; Ann's does.
    let mine = retitle(&t.id, "Launch now", &bob);
    tasks.update_task(mine).await.unwrap();
    let hers = retitle(&t.id, "Launch today", &ann);
    tasks.update_task(hers).await.unwrap();
    let n = notified(&mut bob_stream).await;
    assert_eq!(n.kind, pb::NotificationKind::TaskChanged as i32);
    assert_eq!(n.title, "Launch today");
    assert_eq!(inbox(&app, &bob).await.1, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn preferences_choose_the_channels_and_the_admin_sets_the_default_for_new_users() {
    let app = TestApp::spawn().await;
    let (_, ann) = user(&app, "ann").await;
    let (bob_id, bob) = user(&app, "bob").await;
    let mut svc = inbox_client(&app).await;
    let s = svc
        .get_notification_settings(authed(pb::GetNotificationSettingsRequest {}, &bob))
        .await
        .unwrap()
        .into_inner();
    assert!(s.is_default);
    assert_eq!(s.channels.len(), 8);
    assert_eq!(s.time_zone, "UTC");

    // Bob turns direct messages out of the app.
    let off = pb::KindChannels {
        kind: DIRECT,
        in_app: false,
        email: false,
        push: false,
    };
    let s = svc
        .update_notification_settings(authed(
            pb::UpdateNotificationSettingsRequest {
                channels: vec![off],
                previews: false,
                time_zone: "Europe/Berlin".into(),
                quiet_hours: Some(pb::QuietHours {
                    start_minute: 22 * 60,
                    end_minute: 7 * 60,
                }),
            },
            &bob,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!s.is_default);
    assert_eq!(s.time_zone, "Europe/Berlin");
    let mine = s.channels.iter().find(|c| c.kind == DIRECT).unwrap();
    assert!(!mine.in_app);
    let mut stream = open(&app, &bob, "").await;
    let d = direct(&app, &ann, &bob_id).await;
    client(&app)
        .await
        .send_message(authed(send(&d, "hidden"), &ann))
        .await
        .unwrap();
    client(&app)
        .await
        .send_message(authed(mentioning(&d, "shown ", &bob_id), &ann))
        .await
        .unwrap();
    // The mention is the first notification Bob sees: the direct message made none.
    let n = notified(&mut stream).await;
    assert_eq!(n.kind, MENTION);
    assert_eq!(inbox(&app, &bob).await.0.len(), 1);

    // Bad input names its field.
    let bad = svc
        .update_notification_settings(authed(
            pb::UpdateNotificationSettingsRequest {
                time_zone: "Mars/Olympus".into(),
                ..Default::default()
            },
            &bob,
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&bad), vec!["time_zone"]);
    let bad = svc
        .update_notification_settings(authed(
            pb::UpdateNotificationSettingsRequest {
                quiet_hours: Some(pb::QuietHours {
                    start_minute: 0,
                    end_minute: 1440,
                }),
                ..Default::default()
            },
            &bob,
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&bad), vec!["quiet_hours.end_minute"]);

    // Only admins set the default; users who never chose follow it.
    let quiet_mentions = pb::UpdateNotificationDefaultsRequest {
        channels: vec![pb::KindChannels {
            kind: MENTION,
            in_app: true,
            email: false,
            push: false,
        }],
        previews: false,
    };
    let denied = svc
        .update_notification_defaults(authed(quiet_mentions.clone(), &ann))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let admin = app.admin_token().await;
    svc.update_notification_defaults(authed(quiet_mentions, &admin))
        .await
        .unwrap();
    let (_, carl) = user(&app, "carl").await;
    let s = svc
        .get_notification_settings(authed(pb::GetNotificationSettingsRequest {}, &carl))
        .await
        .unwrap()
        .into_inner();
    assert!(s.is_default && !s.previews);
    assert!(!s.channels.iter().find(|c| c.kind == MENTION).unwrap().push);
    // Bob chose his own: the default does not change his.
    let s = svc
        .get_notification_settings(authed(pb::GetNotificationSettingsRequest {}, &bob))
        .await
        .unwrap()
        .into_inner();
    assert!(s.channels.iter().find(|c| c.kind == MENTION).unwrap().push);
    assert_eq!(
        db_count(
            &app.db_name,
            "SELECT count(*) AS n FROM audit_log WHERE action = 'notification_defaults_changed'"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn notifications_wanted_by_email_reach_someone_away_in_one_digest_and_muted_ones_do_not() {
    let app = TestApp::spawn_with(|c| c.digest_delay = std::time::Duration::from_millis(200)).await;
    let (_, ann) = user(&app, "ann").await;
    let (bob_id, bob) = user(&app, "bob").await;
    let p = apollo_with(&app, &ann, &bob_id).await;
    let mut tasks = TaskServiceClient::new(app.channel().await);
    let t = launch(&mut tasks, &p, &bob_id, &ann).await;
    // Both in one email (Bob has no stream open).
    let mail = app.wait_for_emails(1).await.remove(0);
    assert!(mail.contains("Notifications for you:"), "{mail}");
    assert!(mail.contains("Apollo: ann added you to Apollo"), "{mail}");
    assert!(
        mail.contains("Launch: ann assigned this task to you"),
        "{mail}"
    );

    // Muted, the project's next notification stays in the inbox only.
    inbox_client(&app)
        .await
        .mute(authed(
            pb::MuteRequest {
                target_id: p.id.clone(),
                until: None,
            },
            &bob,
        ))
        .await
        .unwrap();
    let hers = retitle(&t.id, "Launch today", &ann);
    tasks.update_task(hers).await.unwrap();
    // The digest job ran to its end: nothing more was sent.
    for _ in 0..100 {
        let open = db_count(
            &app.db_name,
            "SELECT count(*) AS n FROM jobs WHERE kind = 'message_digest' AND status IN ('pending', 'running')",
        )
        .await;
        let all = db_count(
            &app.db_name,
            "SELECT count(*) AS n FROM jobs WHERE kind = 'message_digest'",
        )
        .await;
        if open == 0 && all == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        db_count(
            &app.db_name,
            "SELECT count(*) AS n FROM jobs WHERE kind = 'message_digest' AND status = 'done'"
        )
        .await,
        2
    );
    assert_eq!(app.email_count(), 1);
    assert_eq!(inbox(&app, &bob).await.1, 3);
}
