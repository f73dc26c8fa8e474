//! The real-time event stream: live delivery, typing and presence, and resume from a cursor
//! with every missed event exactly once, in order, then live again with no gap or duplicate.

use crate::helpers::*;
use epop::{
    grpc::convert::json_to_struct,
    pb::{self, conversation_service_client::ConversationServiceClient, event::Kind},
};
use serde_json::json;
use std::time::Duration;
use tonic::{Streaming, transport::Channel};

pub(crate) async fn client(app: &TestApp) -> ConversationServiceClient<Channel> {
    ConversationServiceClient::new(app.channel().await)
}

pub(crate) fn send(conversation: &str, t: &str) -> pb::SendMessageRequest {
    pb::SendMessageRequest {
        conversation_id: conversation.into(),
        content: Some(json_to_struct(
            &json!({"type":"doc","content":[{"type":"paragraph","content":[{"type":"text","text":t}]}]}),
        )),
        ..Default::default()
    }
}

pub(crate) async fn open(app: &TestApp, token: &str, cursor: &str) -> Streaming<pb::Event> {
    try_open(app, token, cursor).await.unwrap()
}

/// Opens an event stream, or answers why not.
pub(crate) async fn try_open(
    app: &TestApp,
    token: &str,
    cursor: &str,
) -> Result<Streaming<pb::Event>, tonic::Status> {
    client(app)
        .await
        .stream_events(authed(
            pb::StreamEventsRequest {
                resume_cursor: cursor.into(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

/// The next event of any kind, within 5 s.
pub(crate) async fn any_event(stream: &mut Streaming<pb::Event>) -> pb::Event {
    tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("an event within 5 s")
        .unwrap()
        .expect("the stream is open")
}

/// A typing indicator in `conversation`.
pub(crate) fn typing(conversation: &str) -> pb::SendTypingRequest {
    pb::SendTypingRequest {
        conversation_id: conversation.into(),
    }
}

/// The next event that is not a heartbeat, about presence, or about the inbox (which
/// tests/api/notifications.rs reads with `any_event`).
pub(crate) async fn next(stream: &mut Streaming<pb::Event>) -> pb::Event {
    loop {
        let e = any_event(stream).await;
        if !matches!(
            e.kind,
            Some(
                Kind::Heartbeat(_)
                    | Kind::Presence(_)
                    | Kind::PresenceSnapshot(_)
                    | Kind::Notification(_)
                    | Kind::NotificationsRead(_)
            )
        ) {
            return e;
        }
    }
}

pub(crate) fn created_text(e: &pb::Event) -> String {
    match &e.kind {
        Some(Kind::MessageCreated(m)) => m.text.clone(),
        other => panic!("expected a new message, got {other:?}"),
    }
}

/// Ann and Bob (their tokens) in a new group (its id).
pub(crate) async fn ann_and_bob_in_a_group(app: &TestApp) -> (String, String, String) {
    let (_, ann) = user(app, "ann").await;
    let (bob_id, bob) = user(app, "bob").await;
    let g = group(app, &ann, &[&bob_id]).await;
    (ann, bob, g)
}

pub(crate) async fn group(app: &TestApp, token: &str, members: &[&str]) -> String {
    client(app)
        .await
        .create_conversation(authed(
            pb::CreateConversationRequest {
                kind: pb::ConversationKind::Group.into(),
                title: "Live".into(),
                member_ids: members.iter().map(|m| m.to_string()).collect(),
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner()
        .id
}

#[tokio::test(flavor = "multi_thread")]
async fn members_receive_messages_membership_and_typing_live() {
    let app = TestApp::spawn().await;
    let (_, ann) = user(&app, "ann").await;
    let (bob_id, bob) = user(&app, "bob").await;
    let (_, eve) = user(&app, "eve").await;
    let mut bob_stream = open(&app, &bob, "").await;
    let mut eve_stream = open(&app, &eve, "").await;
    let g = group(&app, &ann, &[&bob_id]).await;
    let joined = next(&mut bob_stream).await;
    assert!(
        matches!(joined.kind, Some(Kind::MembershipChanged(ref m)) if m.added_user_ids.contains(&bob_id))
    );
    let mut c = client(&app).await;
    c.send_message(authed(send(&g, "hello bob"), &ann))
        .await
        .unwrap();
    let e = next(&mut bob_stream).await;
    assert_eq!(created_text(&e), "hello bob");
    assert!(!e.cursor.is_empty());
    c.send_typing(authed(typing(&g), &ann)).await.unwrap();
    assert!(
        matches!(next(&mut bob_stream).await.kind, Some(Kind::Typing(ref t)) if t.conversation_id == g)
    );
    // Eve is not a member: she sees none of it (her next event is her own new conversation).
    let eve_group = group(&app, &eve, &[]).await;
    let first = next(&mut eve_stream).await;
    assert!(
        matches!(first.kind, Some(Kind::MembershipChanged(ref m)) if m.conversation.as_ref().unwrap().id == eve_group)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resumed_stream_gets_every_missed_event_once_in_order_then_live() {
    let app = TestApp::spawn().await;
    let (_, ann) = user(&app, "ann").await;
    let (bob_id, bob) = user(&app, "bob").await;
    let g = group(&app, &ann, &[&bob_id]).await;
    let mut c = client(&app).await;
    let mut stream = open(&app, &bob, "").await;
    c.send_message(authed(send(&g, "m1"), &ann)).await.unwrap();
    let seen = next(&mut stream).await;
    assert_eq!(created_text(&seen), "m1");
    drop(stream);

    // While Bob is away: three messages and an edit.
    let mut sent = vec![];
    for t in ["m2", "m3", "m4"] {
        sent.push(
            c.send_message(authed(send(&g, t), &ann))
                .await
                .unwrap()
                .into_inner(),
        );
    }
    c.update_message(authed(
        pb::UpdateMessageRequest {
            conversation_id: g.clone(),
            message_id: sent[0].id.clone(),
            content: send(&g, "m2!").content,
        },
        &ann,
    ))
    .await
    .unwrap();

    let mut resumed = open(&app, &bob, &seen.cursor).await;
    let texts: Vec<String> = [
        created_text(&next(&mut resumed).await),
        created_text(&next(&mut resumed).await),
        created_text(&next(&mut resumed).await),
    ]
    .into();
    // A replay serves each message as it is now: the created event carries the edit.
    assert_eq!(texts, ["m2!", "m3", "m4"]);
    assert!(
        matches!(next(&mut resumed).await.kind, Some(Kind::MessageUpdated(ref m)) if m.text == "m2!")
    );
    // The switch to live has no gap and no duplicate.
    c.send_message(authed(send(&g, "m5"), &ann)).await.unwrap();
    let live = next(&mut resumed).await;
    assert_eq!(created_text(&live), "m5");
    c.send_message(authed(send(&g, "m6"), &ann)).await.unwrap();
    assert_eq!(created_text(&next(&mut resumed).await), "m6");

    // Resuming from the same old cursor again replays the same events: the log is the truth.
    let mut again = open(&app, &bob, &seen.cursor).await;
    assert_eq!(created_text(&next(&mut again).await), "m2!");
    let bad = client(&app)
        .await
        .stream_events(authed(
            pb::StreamEventsRequest {
                resume_cursor: "garbage!".into(),
            },
            &bob,
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&bad), ["resume_cursor"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn presence_follows_open_streams() {
    let app = TestApp::spawn().await;
    let (_, ann) = user(&app, "ann").await;
    let (carol_id, carol) = user(&app, "carol").await;
    // Presence goes to the people who share a conversation with its subject.
    group(&app, &ann, &[&carol_id]).await;
    let mut ann_stream = open(&app, &ann, "").await;
    let carol_stream = open(&app, &carol, "").await;
    let online = loop {
        let e = tokio::time::timeout(Duration::from_secs(5), ann_stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Some(Kind::Presence(p)) = e.kind
            && p.user_id == carol_id
        {
            break p.online;
        }
    };
    assert!(online);
    drop(carol_stream);
    let offline = loop {
        let e = tokio::time::timeout(Duration::from_secs(10), ann_stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Some(Kind::Presence(p)) = e.kind
            && p.user_id == carol_id
        {
            break !p.online;
        }
    };
    assert!(offline, "offline after the grace period");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rest_event_stream_resumes_from_last_event_id() {
    let app = TestApp::spawn().await;
    let (ann, bob, g) = ann_and_bob_in_a_group(&app).await;
    let mut c = client(&app).await;
    let mut stream = open(&app, &bob, "").await;
    c.send_message(authed(send(&g, "first"), &ann))
        .await
        .unwrap();
    let cursor = next(&mut stream).await.cursor;
    drop(stream);
    c.send_message(authed(send(&g, "missed"), &ann))
        .await
        .unwrap();
    let mut r = reqwest::Client::new()
        .get(format!("{}/api/events", app.url()))
        .bearer_auth(&bob)
        .header("last-event-id", &cursor)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut text = String::new();
    while !text.contains("missed") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), r.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(!text.contains("\"first\""), "only what was missed: {text}");
    assert!(text.contains("\nid: "), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn project_members_see_their_board_change_live() {
    use pb::{
        project_service_client::ProjectServiceClient, task_service_client::TaskServiceClient,
    };
    let app = TestApp::spawn().await;
    let (_, ann) = user(&app, "ann").await;
    let (bob_id, bob) = user(&app, "bob").await;
    let (_, eve) = user(&app, "eve").await;
    let mut projects = ProjectServiceClient::new(app.channel().await);
    let p = projects
        .create_project(authed(
            pb::CreateProjectRequest {
                name: "Board".into(),
                description: String::new(),
            },
            &ann,
        ))
        .await
        .unwrap()
        .into_inner();
    projects
        .add_project_member(authed(
            pb::AddProjectMemberRequest {
                project_id: p.id.clone(),
                user_id: bob_id,
                role: pb::ProjectRole::Viewer.into(),
            },
            &ann,
        ))
        .await
        .unwrap();
    let mut bob_stream = open(&app, &bob, "").await;
    let mut eve_stream = open(&app, &eve, "").await;
    let mut tasks = TaskServiceClient::new(app.channel().await);
    let t = tasks
        .create_task(authed(
            pb::CreateTaskRequest {
                project_id: p.id.clone(),
                title: "Card".into(),
                ..Default::default()
            },
            &ann,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(
        matches!(next(&mut bob_stream).await.kind, Some(Kind::TaskChanged(ref c)) if c.id == t.id && c.title == "Card")
    );
    tasks
        .update_task(authed(
            pb::UpdateTaskRequest {
                id: t.id.clone(),
                status: Some(pb::TaskStatus::Done.into()),
                ..Default::default()
            },
            &ann,
        ))
        .await
        .unwrap();
    assert!(
        matches!(next(&mut bob_stream).await.kind, Some(Kind::TaskChanged(ref c)) if c.status == pb::TaskStatus::Done as i32)
    );
    tasks
        .delete_task(authed(pb::DeleteTaskRequest { id: t.id.clone() }, &ann))
        .await
        .unwrap();
    assert!(
        matches!(next(&mut bob_stream).await.kind, Some(Kind::TaskDeleted(ref d)) if d.task_id == t.id)
    );
    projects
        .update_project(authed(
            pb::UpdateProjectRequest {
                id: p.id.clone(),
                name: Some("Renamed".into()),
                ..Default::default()
            },
            &ann,
        ))
        .await
        .unwrap();
    assert!(
        matches!(next(&mut bob_stream).await.kind, Some(Kind::ProjectChanged(ref c)) if c.name == "Renamed")
    );
    // Eve is not a member: nothing of this reaches her.
    let quiet = tokio::time::timeout(Duration::from_millis(500), next(&mut eve_stream)).await;
    assert!(quiet.is_err(), "an outsider got {quiet:?}");
}

/// The Redis server of the multi-instance tests.
pub(crate) fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_behind_redis_deliver_each_others_events_in_order() {
    let (a, b) = two_instances(&redis_url()).await;
    let (ann, bob, g) = ann_and_bob_in_a_group(&a).await;
    let mut on_b = open(&b, &bob, "").await;
    // Let B's subscription settle: its first event is the group it was just added to... which
    // happened before the stream opened, so send a marker and wait for it.
    let mut c = client(&a).await;
    c.send_message(authed(send(&g, "marker"), &ann))
        .await
        .unwrap();
    assert_eq!(created_text(&next(&mut on_b).await), "marker");
    for i in 0..20 {
        c.send_message(authed(send(&g, &format!("from A {i}")), &ann))
            .await
            .unwrap();
    }
    for i in 0..20 {
        assert_eq!(
            created_text(&next(&mut on_b).await),
            format!("from A {i}"),
            "in order across instances"
        );
    }
    c.send_typing(authed(typing(&g), &ann)).await.unwrap();
    assert!(matches!(next(&mut on_b).await.kind, Some(Kind::Typing(_))));
}

/// Two instances behind one Redis, Ann and Bob in group `g`, Bob's stream open on B and
/// known to be live: it received Ann's first message, sent on A.
struct Across {
    /// The instances, kept running for the test.
    _servers: (TestApp, TestApp),
    ann: String,
    g: String,
    on_b: Streaming<pb::Event>,
    c: ConversationServiceClient<Channel>,
}

impl Across {
    async fn start(redis_url: &str) -> Self {
        let (a, b) = two_instances(redis_url).await;
        let (ann, bob, g) = ann_and_bob_in_a_group(&a).await;
        let mut on_b = open(&b, &bob, "").await;
        let mut c = client(&a).await;
        c.send_message(authed(send(&g, "before"), &ann))
            .await
            .unwrap();
        assert_eq!(created_text(&next(&mut on_b).await), "before");
        Self {
            _servers: (a, b),
            ann,
            g,
            on_b,
            c,
        }
    }
}

/// A redis-server of the test's own, on a free port, that can be stopped and restarted.
pub(crate) struct OwnRedis {
    pub(crate) port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
    extra: Vec<String>,
}

impl OwnRedis {
    pub(crate) fn start() -> Self {
        Self::start_with(&[])
    }

    /// One started with `extra` arguments too (e.g. cluster mode).
    pub(crate) fn start_with(extra: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = Self {
            port,
            dir: tempfile::tempdir().unwrap(),
            child: None,
            extra: extra.iter().map(|a| a.to_string()).collect(),
        };
        r.restart();
        r
    }

    pub(crate) fn restart(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(&self.extra)
            .current_dir(self.dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test and .ci/run make sure)");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start");
    }

    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_restart_loses_nothing_and_delivery_resumes_on_its_own() {
    let mut redis = OwnRedis::start();
    let mut t = Across::start(&redis.url()).await;

    // Redis goes away; sends keep succeeding (the log is the truth), publishes fail.
    redis.kill();
    for i in 0..5 {
        t.c.send_message(authed(send(&t.g, &format!("during {i}")), &t.ann))
            .await
            .unwrap();
    }
    redis.restart();
    // B resubscribes by itself and re-reads the log: nothing is lost, nothing repeats.
    for i in 0..5 {
        let e = tokio::time::timeout(Duration::from_secs(15), next(&mut t.on_b))
            .await
            .expect("delivery resumes");
        assert_eq!(created_text(&e), format!("during {i}"));
    }
    t.c.send_message(authed(send(&t.g, "after"), &t.ann))
        .await
        .unwrap();
    let e = tokio::time::timeout(Duration::from_secs(15), next(&mut t.on_b))
        .await
        .expect("live again");
    assert_eq!(created_text(&e), "after");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_whose_publish_failed_still_arrives_without_a_later_send() {
    let redis = OwnRedis::start();
    let mut t = Across::start(&redis.url()).await;

    // Redis holds writes longer than a reply may take: A's PUBLISH times out. Then the
    // connections that are not subscriptions are cut (the held PUBLISH dies with them) and
    // Redis goes on: B's subscription never dropped, so no resubscription re-reads the log.
    let mut admin = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let command = async |conn: &mut redis::aio::MultiplexedConnection, args: &[&str]| {
        redis::cmd(args[0])
            .arg(&args[1..])
            .query_async::<redis::Value>(conn)
            .await
            .unwrap();
    };
    command(&mut admin, &["CLIENT", "PAUSE", "5000", "WRITE"]).await;
    t.c.send_message(authed(send(&t.g, "while paused"), &t.ann))
        .await
        .expect("a send commits without Redis");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let kill = ["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"];
    command(&mut admin, &kill).await;
    command(&mut admin, &["CLIENT", "UNPAUSE"]).await;
    // The conversation stays quiet: the message must come anyway, once.
    let e = tokio::time::timeout(Duration::from_secs(10), next(&mut t.on_b))
        .await
        .expect("the message arrives without another send");
    assert_eq!(created_text(&e), "while paused");
    t.c.send_message(authed(send(&t.g, "after"), &t.ann))
        .await
        .unwrap();
    assert_eq!(
        created_text(&next(&mut t.on_b).await),
        "after",
        "no duplicate"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subscriber_whose_instance_is_killed_resumes_on_another_with_nothing_lost_or_repeated() {
    let redis = OwnRedis::start();
    let url = redis.url();
    let a = TestApp::spawn_with(|c| {
        c.redis_url = Some(url.clone().into());
        c.jwt_secret = Some(SHARED_SECRET.to_owned().into());
    })
    .await;
    // Instance B is a real process, so it can die by SIGKILL.
    let (mut b, b_url, _b_dir) = spawn_process(&a.db_name, &[("REDIS_URL", &url)]).await;
    let ch_b = Channel::from_shared(b_url)
        .unwrap()
        .connect()
        .await
        .unwrap();

    let (_, ann) = user(&a, "ann").await;
    let (bob_id, bob) = user(&a, "bob").await;
    let g = group(&a, &ann, &[&bob_id]).await;
    let mut on_b = ConversationServiceClient::new(ch_b)
        .stream_events(authed(pb::StreamEventsRequest::default(), &bob))
        .await
        .unwrap()
        .into_inner();

    // A steady sender on A.
    let sender = {
        let (ch, g, ann) = (a.channel().await, g.clone(), ann.clone());
        tokio::spawn(async move {
            let mut c = ConversationServiceClient::new(ch);
            for i in 0..60 {
                c.send_message(authed(send(&g, &format!("n{i}")), &ann))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    // Read from B until about a third has arrived, then B dies mid-load.
    let mut got: Vec<String> = vec![];
    let mut cursor = String::new();
    while got.len() < 20 {
        let e = next(&mut on_b).await;
        if let Some(Kind::MessageCreated(m)) = &e.kind {
            got.push(m.text.clone());
            cursor = e.cursor.clone();
        }
    }
    b.kill().unwrap();
    b.wait().unwrap();
    // The stream on B ends; Bob reconnects to A with his last cursor.
    let mut on_a = open(&a, &bob, &cursor).await;
    sender.await.unwrap();
    while got.len() < 60 {
        let e = next(&mut on_a).await;
        if let Some(Kind::MessageCreated(m)) = &e.kind {
            got.push(m.text.clone());
        }
    }
    let expected: Vec<String> = (0..60).map(|i| format!("n{i}")).collect();
    assert_eq!(got, expected, "0 lost, 0 duplicated, in order");
    let extra = tokio::time::timeout(Duration::from_millis(300), next(&mut on_a)).await;
    assert!(extra.is_err(), "nothing more: {extra:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn members_without_a_stream_get_one_batched_email_digest() {
    let app = TestApp::spawn_with(|c| c.digest_delay = Duration::from_secs(1)).await;
    let (_, ann) = user(&app, "ann").await;
    let (bob_id, _) = user(&app, "bob").await;
    let (carol_id, carol) = user(&app, "carol").await;
    let g = group(&app, &ann, &[&bob_id, &carol_id]).await;
    let _carol_is_online = open(&app, &carol, "").await;
    let mut c = client(&app).await;
    for t in ["one", "two", "three"] {
        c.send_message(authed(send(&g, t), &ann)).await.unwrap();
    }
    let emails = app.wait_for_emails(1).await;
    assert!(emails[0].contains("To: bob@example.com"), "{}", emails[0]);
    assert!(
        emails[0].contains("Subject: 3 unread messages in EPOP"),
        "{}",
        emails[0]
    );
    for t in ["one", "two", "three"] {
        assert!(emails[0].contains(&format!("ann: {t}")), "{}", emails[0]);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        app.email_count(),
        1,
        "one email for the batch; none for Carol, who is online"
    );
    c.send_message(authed(send(&g, "four"), &ann))
        .await
        .unwrap();
    let emails = app.wait_for_emails(2).await;
    assert!(
        emails[1].contains("ann: four") && !emails[1].contains("ann: one"),
        "{}",
        emails[1]
    );
}
