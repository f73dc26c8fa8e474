//! Web Push (issue 37) against a fake push service that decrypts every push with a
//! third-party RFC 8291 implementation (Python's `http_ece`) and verifies its VAPID token
//! (tests/push/fake_push.py): a mention is pushed once with its text; a user who is looking,
//! has muted the conversation or is in their quiet hours gets none; a gone subscription is
//! removed; a busy service is retried after its `Retry-After`; a restart between enqueue and
//! send, or two instances, still push exactly once.

use crate::{
    events::{client, group, open, redis_url, send},
    helpers::*,
    notifications::{direct, inbox_client, mentioning},
};
use epop::pb;
use serde_json::Value;
use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::Duration,
};

/// The fake push service, stopped on drop.
pub(crate) struct FakePush {
    child: Child,
    pub base: String,
}

impl Drop for FakePush {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl FakePush {
    pub(crate) fn start() -> Self {
        let python = std::env::var("EPOP_TEST_PYTHON").unwrap_or_else(|_| {
            let home = std::env::var("HOME").unwrap_or_default();
            format!("{home}/.cache/epop/push-venv/bin/python")
        });
        let mut child = Command::new(&python)
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/push/fake_push.py"
            ))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {python} (scripts/test installs it): {e}"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("listening ")
            .expect("the fake's port");
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// A browser's subscription: (id at the fake, endpoint, p256dh, auth).
    pub(crate) async fn subscribe(&self) -> (String, String, String, String) {
        let v: Value = reqwest::Client::new()
            .post(format!("{}/subscribe", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let s = |k: &str| v[k].as_str().unwrap().to_owned();
        (s("id"), s("endpoint"), s("p256dh"), s("auth"))
    }

    /// The next `times` pushes to subscription `id` are answered `status`.
    pub(crate) async fn answer(&self, id: &str, status: u16, retry_after: Option<u64>, times: u32) {
        let body =
            serde_json::json!({"status": status, "retry_after": retry_after, "times": times});
        let r = reqwest::Client::new()
            .post(format!("{}/control/{id}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }

    /// What it received: delivered pushes, pushes answered with an error status, and
    /// pushes it could not verify or decrypt.
    pub(crate) async fn received(&self) -> (Vec<Value>, Vec<Value>, Vec<Value>) {
        let v: Value = reqwest::Client::new()
            .get(format!("{}/received", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let list = |k: &str| v[k].as_array().cloned().unwrap_or_default();
        (list("delivered"), list("answered"), list("errors"))
    }
}

/// Registers subscription `endpoint` (with its keys) as a device of `token`'s user.
async fn register(app: &TestApp, token: &str, sub: &(String, String, String, String)) -> String {
    inbox_client(app)
        .await
        .register_push_device(authed(
            pb::RegisterPushDeviceRequest {
                platform: pb::PushPlatform::Web.into(),
                address: sub.1.clone(),
                p256dh: sub.2.clone(),
                auth: sub.3.clone(),
                name: "Firefox".into(),
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner()
        .id
}

/// Waits until every push job has run to its end (none pending, running or retrying), and
/// at least `at_least` push jobs were queued: the positive signal that nothing more is sent.
pub(crate) async fn push_jobs_done(app: &TestApp, at_least: i64) {
    for _ in 0..300 {
        let all = db_count(
            &app.db_name,
            "SELECT count(*) AS n FROM jobs WHERE kind = 'push'",
        )
        .await;
        let open = db_count(
            &app.db_name,
            "SELECT count(*) AS n FROM jobs WHERE kind IN ('push', 'notify_conversation') \
             AND status IN ('pending', 'running')",
        )
        .await;
        if all >= at_least && open == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the push jobs did not finish");
}

/// The fake listens on plain http at 127.0.0.1, which only this setting accepts.
fn quick(c: &mut epop::config::Config) {
    c.push.push_delay = Duration::from_millis(300);
    c.push.push_allow_insecure = true;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mention_is_pushed_once_encrypted_for_the_browser_and_signed_for_the_service() {
    let fake = FakePush::start();
    let app = TestApp::spawn_with(quick).await;
    let (_, ann) = user(&app, "ann").await;
    let (bob_id, bob) = user(&app, "bob").await;
    let sub = fake.subscribe().await;
    register(&app, &bob, &sub).await;
    let g = group(&app, &ann, &[&bob_id]).await;
    // Being added was pushed: drain it first.
    push_jobs_done(&app, 1).await;
    client(&app)
        .await
        .send_message(authed(mentioning(&g, "ship it ", &bob_id), &ann))
        .await
        .unwrap();
    push_jobs_done(&app, 2).await;
    let (delivered, answered, errors) = fake.received().await;
    assert!(errors.is_empty(), "{errors:?}");
    assert!(answered.is_empty());
    assert_eq!(delivered.len(), 2, "{delivered:?}");
    let push = &delivered[1];
    let payload = &push["payload"];
    assert_eq!(payload["kind"], "mention");
    assert_eq!(payload["title"], "Live");
    assert!(
        payload["body"]
            .as_str()
            .unwrap()
            .starts_with("ann: ship it"),
        "{payload}"
    );
    assert_eq!(payload["conversation_id"], g.as_str());
    assert_eq!(payload["count"], 1);
    // Signed with the key clients subscribe with, for the service's origin.
    let config = inbox_client(&app)
        .await
        .get_push_config(authed(pb::GetPushConfigRequest {}, &bob))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(push["vapid_key"], config.vapid_public_key.as_str());
    assert_eq!(push["aud"], fake.base.as_str());
    assert_eq!(push["urgency"], "high");
    assert_eq!(push["topic"], g.replace('-', "").as_str());
    assert_eq!(push["ttl"], "3600");
    let devices = inbox_client(&app)
        .await
        .list_push_devices(authed(pb::ListPushDevicesRequest {}, &bob))
        .await
        .unwrap()
        .into_inner()
        .devices;
    assert!(devices[0].last_sent_time.is_some());

    // Without previews, the push carries no text.
    inbox_client(&app)
        .await
        .update_notification_settings(authed(
            pb::UpdateNotificationSettingsRequest {
                previews: false,
                ..Default::default()
            },
            &bob,
        ))
        .await
        .unwrap();
    client(&app)
        .await
        .send_message(authed(mentioning(&g, "secret plans ", &bob_id), &ann))
        .await
        .unwrap();
    push_jobs_done(&app, 3).await;
    let (delivered, ..) = fake.received().await;
    assert_eq!(delivered.len(), 3);
    assert_eq!(delivered[2]["payload"]["body"], "New notification");
    assert!(!delivered[2].to_string().contains("secret"));
}

#[tokio::test(flavor = "multi_thread")]
async fn nobody_looking_muted_or_in_quiet_hours_is_pushed_and_the_inbox_still_records() {
    let fake = FakePush::start();
    let app = TestApp::spawn_with(quick).await;
    let (_, ann) = user(&app, "ann").await;
    let (bob_id, bob) = user(&app, "bob").await;
    let (carl_id, carl) = user(&app, "carl").await;
    let (dave_id, dave) = user(&app, "dave").await;
    let (erin_id, erin) = user(&app, "erin").await;
    let mut subs = Vec::new();
    for token in [&bob, &carl, &dave, &erin] {
        let sub = fake.subscribe().await;
        register(&app, token, &sub).await;
        subs.push(sub.0);
    }
    // Bob is looking: his stream is open and he reads at once.
    let mut bob_stream = open(&app, &bob, "").await;
    let g = group(&app, &ann, &[&bob_id, &carl_id, &dave_id, &erin_id]).await;
    // Carl muted the conversation; Dave is in his quiet hours (around now, in his zone).
    let mut svc = inbox_client(&app).await;
    svc.mute(authed(
        pb::MuteRequest {
            target_id: g.clone(),
            until: None,
        },
        &carl,
    ))
    .await
    .unwrap();
    let now = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Tokyo);
    let minute = (chrono::Timelike::hour(&now) * 60 + chrono::Timelike::minute(&now)) as i32;
    svc.update_notification_settings(authed(
        pb::UpdateNotificationSettingsRequest {
            previews: true,
            time_zone: "Asia/Tokyo".into(),
            quiet_hours: Some(pb::QuietHours {
                start_minute: (minute + 1440 - 60) % 1440,
                end_minute: (minute + 60) % 1440,
            }),
            ..Default::default()
        },
        &dave,
    ))
    .await
    .unwrap();
    // Someone else's conversation cannot be muted: NOT_FOUND.
    let (_, eve) = user(&app, "eve").await;
    let err = svc
        .mute(authed(
            pb::MuteRequest {
                target_id: g.clone(),
                until: None,
            },
            &eve,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    // Being added was pushed to all four: drain it, then count from here.
    push_jobs_done(&app, 4).await;
    let before = fake.received().await.0.len();

    let mut m = crate::events::send(&g, "all hands ");
    m.content = mentioning(&g, "all hands ", "all").content;
    let sent = client(&app)
        .await
        .send_message(authed(m, &ann))
        .await
        .unwrap()
        .into_inner();
    // Being added came first; then the mention, live.
    let added = crate::notifications::notified(&mut bob_stream).await;
    assert_eq!(added.kind, pb::NotificationKind::AddedToConversation as i32);
    let n = crate::notifications::notified(&mut bob_stream).await;
    assert_eq!(n.kind, pb::NotificationKind::Mention as i32);
    client(&app)
        .await
        .mark_read(authed(
            pb::MarkReadRequest {
                conversation_id: g.clone(),
                seq: sent.seq,
            },
            &bob,
        ))
        .await
        .unwrap();
    push_jobs_done(&app, 8).await;
    let (delivered, _, errors) = fake.received().await;
    assert!(errors.is_empty(), "{errors:?}");
    // Only Erin (not looking, not muted, not quiet) was pushed.
    let new: Vec<&Value> = delivered[before..].iter().collect();
    assert_eq!(new.len(), 1, "{new:?}");
    assert_eq!(new[0]["id"], subs[3].as_str());
    // The inbox still records for everyone.
    for token in [&carl, &dave, &erin] {
        let (items, unread) = crate::notifications::inbox(&app, token).await;
        assert_eq!(unread, 2, "{items:?}");
    }
    let metrics = reqwest::get(format!("{}/metrics", app.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for reason in ["online", "muted", "quiet_hours"] {
        assert!(
            metrics.contains(&format!(
                "epop_push_suppressed_total{{reason=\"{reason}\"}}"
            )),
            "{reason}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gone_subscription_is_removed_and_a_busy_service_is_retried_after_its_retry_after() {
    let fake = FakePush::start();
    let app = TestApp::spawn_with(quick).await;
    let (_, ann) = user(&app, "ann").await;
    let (bob_id, bob) = user(&app, "bob").await;
    let (carl_id, carl) = user(&app, "carl").await;
    let gone = fake.subscribe().await;
    let busy = fake.subscribe().await;
    register(&app, &bob, &gone).await;
    register(&app, &carl, &busy).await;
    fake.answer(&gone.0, 410, None, 100).await;
    fake.answer(&busy.0, 429, Some(1), 1).await;
    let d = direct(&app, &ann, &bob_id).await;
    let d2 = direct(&app, &ann, &carl_id).await;
    client(&app)
        .await
        .send_message(authed(send(&d, "hello"), &ann))
        .await
        .unwrap();
    client(&app)
        .await
        .send_message(authed(send(&d2, "hello"), &ann))
        .await
        .unwrap();
    push_jobs_done(&app, 2).await;
    let (delivered, answered, errors) = fake.received().await;
    assert!(errors.is_empty(), "{errors:?}");
    // The gone one was tried once and removed.
    let to_gone: Vec<&Value> = answered
        .iter()
        .filter(|a| a["id"] == gone.0.as_str())
        .collect();
    assert_eq!(to_gone.len(), 1);
    let devices = inbox_client(&app)
        .await
        .list_push_devices(authed(pb::ListPushDevicesRequest {}, &bob))
        .await
        .unwrap()
        .into_inner()
        .devices;
    assert!(devices.is_empty(), "{devices:?}");
    // The busy one was told 429 with Retry-After: 1, and delivered after that: not sooner,
    // nor after the 5 s a failure without the header backs off.
    let refused = answered
        .iter()
        .find(|a| a["id"] == busy.0.as_str())
        .unwrap();
    assert_eq!(refused["status"], 429);
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0]["id"], busy.0.as_str());
    let waited = delivered[0]["at"].as_f64().unwrap() - refused["at"].as_f64().unwrap();
    assert!((0.9..4.0).contains(&waited), "retried after {waited} s");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_between_enqueue_and_send_and_a_second_instance_still_push_exactly_once() {
    let fake = FakePush::start();
    let slow = |c: &mut epop::config::Config| {
        c.push.push_delay = Duration::from_secs(2);
        c.push.push_allow_insecure = true;
    };
    let (a, b) = two_instances_with(&redis_url(), slow).await;
    let (_, ann) = user(&a, "ann").await;
    let (bob_id, bob) = user(&a, "bob").await;
    let sub = fake.subscribe().await;
    register(&a, &bob, &sub).await;
    let d = direct(&a, &ann, &bob_id).await;
    client(&a)
        .await
        .send_message(authed(send(&d, "before the restart"), &ann))
        .await
        .unwrap();
    // Queued, not sent yet: both instances stop before it is due.
    for _ in 0..50 {
        let queued = db_count(
            &a.db_name,
            "SELECT count(*) AS n FROM jobs WHERE kind = 'push'",
        )
        .await;
        if queued == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(fake.received().await.0.is_empty());
    let (db_name, dir_a) = a.stop().await;
    let (_, dir_b) = b.stop().await;
    // Two instances again on the same database: the one push is sent once.
    let dir = tempfile::tempdir().unwrap();
    let channel = format!("epop:test:{}", uuid::Uuid::new_v4());
    let mut apps = Vec::new();
    for _ in 0..2 {
        let mut cfg = config(&db_name, dir.path());
        slow(&mut cfg);
        cfg.redis_url = Some(redis_url().into());
        cfg.redis_channel = channel.clone();
        cfg.jwt_secret = Some(SHARED_SECRET.to_owned().into());
        apps.push(TestApp::start(cfg, db_name.clone()).await);
    }
    push_jobs_done(&apps[0], 1).await;
    let (delivered, answered, errors) = fake.received().await;
    assert!(
        errors.is_empty() && answered.is_empty(),
        "{errors:?} {answered:?}"
    );
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0]["payload"]["body"], "ann: before the restart");
    drop((dir_a, dir_b));
}
