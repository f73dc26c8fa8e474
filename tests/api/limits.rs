//! Rate limits: per client address on sign-in (every protocol answers the same way, with
//! `retry-after`, and recovers), `X-Forwarded-For` believed only from trusted proxies, and
//! per user on sends.

use crate::{
    events::{client, group, redis_url, send},
    helpers::*,
    protocol::grpc_web_frame,
};
use epop::pb;
use std::time::Duration;
use tonic::Code;

fn attempt(email: &str, password: &str) -> pb::LoginRequest {
    pb::LoginRequest {
        email: email.into(),
        password: password.into(),
        return_refresh_token: false,
    }
}

/// The error a sign-in gets.
async fn login_err(app: &TestApp, req: impl tonic::IntoRequest<pb::LoginRequest>) -> tonic::Status {
    app.auth().await.login(req).await.unwrap_err()
}

fn wrong(email: &str) -> pb::LoginRequest {
    attempt(email, "a-wrong-password")
}

fn retry_after(status: &tonic::Status) -> u64 {
    status
        .metadata()
        .get("retry-after")
        .expect("retry-after")
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_passwords_trip_the_address_limit_on_every_protocol_then_it_recovers() {
    let app = TestApp::spawn_with(|c| c.auth_rate_limit = "3/3s".parse().unwrap()).await;
    for _ in 0..3 {
        let e = login_err(&app, wrong(ADMIN_EMAIL)).await;
        assert_eq!(e.code(), Code::Unauthenticated);
    }
    // gRPC: refused before the password is even checked, with when to retry.
    let e = login_err(&app, wrong(ADMIN_EMAIL)).await;
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!((1..=3).contains(&retry_after(&e)), "{e:?}");
    // The right password is refused too while the address is limited.
    let right = attempt(ADMIN_EMAIL, ADMIN_PASSWORD);
    let e = login_err(&app, right.clone()).await;
    assert_eq!(e.code(), Code::ResourceExhausted);

    // REST: 429 with Retry-After.
    let http = reqwest::Client::builder().http1_only().build().unwrap();
    let r = http
        .post(format!("{}/api/auth/login", app.url()))
        .json(&serde_json::json!({"email": ADMIN_EMAIL, "password": "a-wrong-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let secs: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3).contains(&secs));
    assert!(r.text().await.unwrap().contains("too many attempts"));

    // gRPC-Web over HTTP/1.1: RESOURCE_EXHAUSTED (8) and retry-after in the headers.
    let r = http
        .post(format!("{}/epop.v1.AuthService/Login", app.url()))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(grpc_web_frame(&wrong(ADMIN_EMAIL)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["grpc-status"], "8");
    assert!(r.headers().contains_key("retry-after"));

    // It recovers: one attempt back after a second, so the right password works again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let ok = app.auth().await.login(right).await.expect("recovered");
    assert!(!ok.into_inner().access_token.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_for_is_ignored_from_untrusted_peers_and_believed_from_trusted_ones() {
    let spoof = |app: &TestApp, from: &'static str| {
        let url = format!("{}/api/auth/login", app.url());
        async move {
            reqwest::Client::new()
                .post(url)
                .header("x-forwarded-for", from)
                .json(&serde_json::json!({"email": ADMIN_EMAIL, "password": "a-wrong-password"}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // Untrusted peer: every "address" is the peer's; the third attempt is refused.
    let app = TestApp::spawn_with(|c| c.auth_rate_limit = "2/1m".parse().unwrap()).await;
    assert_eq!(spoof(&app, "1.1.1.1").await, 401);
    assert_eq!(spoof(&app, "2.2.2.2").await, 401);
    assert_eq!(spoof(&app, "3.3.3.3").await, 429);
    drop(app);

    // Behind a trusted proxy (this test's loopback peer): each forwarded address counts alone.
    let app = TestApp::spawn_with(|c| {
        c.auth_rate_limit = "2/1m".parse().unwrap();
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    for _ in 0..2 {
        assert_eq!(spoof(&app, "1.1.1.1").await, 401);
    }
    assert_eq!(spoof(&app, "1.1.1.1").await, 429);
    assert_eq!(
        spoof(&app, "2.2.2.2").await,
        401,
        "another client behind the proxy"
    );
    // The gRPC path reads the same header from the same proxy.
    let mut req = tonic::Request::new(wrong(ADMIN_EMAIL));
    req.metadata_mut()
        .insert("x-forwarded-for", "1.1.1.1".parse().unwrap());
    let e = login_err(&app, req).await;
    assert_eq!(e.code(), Code::ResourceExhausted);
}

#[tokio::test(flavor = "multi_thread")]
async fn sends_are_limited_per_user() {
    let app = TestApp::spawn_with(|c| c.write_rate_limit = "3/1m".parse().unwrap()).await;
    let (_, ann) = user(&app, "ann").await;
    let (bob_id, bob) = user(&app, "bob").await;
    let g = group(&app, &ann, &[&bob_id]).await;
    let mut c = client(&app).await;
    for i in 0..3 {
        c.send_message(authed(send(&g, &format!("m{i}")), &ann))
            .await
            .expect("within the limit");
    }
    let e = c
        .send_message(authed(send(&g, "one too many"), &ann))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(retry_after(&e) >= 1);
    // Another user is not affected.
    c.send_message(authed(send(&g, "bob's"), &bob))
        .await
        .expect("bob has his own budget");
    let count = db_count(&app.db_name, "SELECT count(*) AS n FROM messages").await;
    assert_eq!(count, 4, "the refused send stored nothing");
}

/// Signs in to the admin account over gRPC as client `from` (forwarded by the trusted proxy).
async fn login_from(app: &TestApp, from: &str, password: &str) -> Result<(), tonic::Status> {
    let mut req = tonic::Request::new(attempt(ADMIN_EMAIL, password));
    req.metadata_mut()
        .insert("x-forwarded-for", from.parse().unwrap());
    app.auth().await.login(req).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_passwords_lock_the_account_from_that_address_only_and_the_lock_ends() {
    let app = TestApp::spawn_with(|c| {
        c.auth_rate_limit = "off".parse().unwrap();
        c.login_lockout = "3/3s".parse().unwrap();
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    for _ in 0..3 {
        let e = login_from(&app, "1.1.1.1", "a-wrong-password")
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
    }
    let e = login_from(&app, "1.1.1.1", ADMIN_PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::ResourceExhausted,
        "locked, even with the right password"
    );
    let wait = retry_after(&e);
    assert!((1..=3).contains(&wait), "{e:?}");
    login_from(&app, "2.2.2.2", ADMIN_PASSWORD)
        .await
        .expect("the account's owner, elsewhere, is not locked out");
    tokio::time::sleep(Duration::from_millis(wait * 1000 + 200)).await;
    login_from(&app, "1.1.1.1", ADMIN_PASSWORD)
        .await
        .expect("the lock ends by itself");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_redis_failed_sign_ins_on_one_instance_count_on_the_other() {
    let (a, b) = two_instances_with(&redis_url(), |c| {
        c.auth_rate_limit = "off".parse().unwrap();
        c.login_lockout = "3/1m".parse().unwrap();
    })
    .await;
    for _ in 0..3 {
        let e = login_err(&a, wrong(ADMIN_EMAIL)).await;
        assert_eq!(e.code(), Code::Unauthenticated);
    }
    let right = attempt(ADMIN_EMAIL, ADMIN_PASSWORD);
    let e = login_err(&b, right).await;
    assert_eq!(e.code(), Code::ResourceExhausted);
}

/// Four wrong passwords answered as such, then two refused by the limit.
fn four_then_refused() -> Vec<Code> {
    [
        vec![Code::Unauthenticated; 4],
        vec![Code::ResourceExhausted; 2],
    ]
    .concat()
}

#[tokio::test(flavor = "multi_thread")]
async fn with_redis_the_address_limit_holds_across_three_instances() {
    let apps = instances(&redis_url(), 3, |c| {
        c.auth_rate_limit = "4/1m".parse().unwrap();
    })
    .await;
    // Sign-in attempts spread over the instances, as a load balancer would: the fifth from
    // this address is refused, whichever instance gets it (each alone has seen at most two).
    let mut codes = vec![];
    for i in 0..6 {
        codes.push(
            login_err(&apps[i % 3], wrong("nobody@example.com"))
                .await
                .code(),
        );
    }
    assert_eq!(codes, four_then_refused());
}

#[tokio::test(flavor = "multi_thread")]
async fn with_redis_the_per_user_limit_holds_across_three_instances() {
    let apps = instances(&redis_url(), 3, |c| {
        c.write_rate_limit = "4/1m".parse().unwrap();
    })
    .await;
    let (_, ann) = user(&apps[0], "ann").await;
    let (bob_id, _) = user(&apps[1], "bob").await;
    let g = group(&apps[0], &ann, &[&bob_id]).await;
    let mut codes = vec![];
    for i in 0..6 {
        let sent = client(&apps[i % 3])
            .await
            .send_message(authed(send(&g, &format!("m{i}")), &ann))
            .await;
        codes.push(sent.err().map(|e| e.code()));
    }
    assert_eq!(
        codes,
        [vec![None; 4], vec![Some(Code::ResourceExhausted); 2]].concat(),
        "four sends per minute across the instances"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_redis_unreachable_each_instance_still_limits_on_its_own() {
    let mut redis = crate::events::OwnRedis::start();
    let app = TestApp::spawn_with(|c| {
        c.redis_url = Some(redis.url().into());
        c.redis_channel = format!("epop:test:{}", uuid::Uuid::new_v4());
        c.auth_rate_limit = "3/1m".parse().unwrap();
    })
    .await;
    redis.kill();
    let started = std::time::Instant::now();
    let mut codes = vec![];
    for _ in 0..4 {
        codes.push(login_err(&app, wrong("nobody@example.com")).await.code());
    }
    assert_eq!(
        codes,
        [
            vec![Code::Unauthenticated; 3],
            vec![Code::ResourceExhausted]
        ]
        .concat()
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "Redis gone costs no wait: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_redis_the_address_limit_holds_after_redis_forgets_its_scripts() {
    // A restarted Redis, or a replica promoted in a master's place, has no scripts loaded:
    // the limit's script is loaded again, not given up on (each instance then deciding alone).
    let redis = crate::events::OwnRedis::start();
    let apps = instances(&redis.url(), 2, |c| {
        c.auth_rate_limit = "4/1m".parse().unwrap();
    })
    .await;
    let mut codes = vec![];
    for i in 0..6 {
        if i == 2 {
            let mut conn = redis::Client::open(redis.url())
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            redis::cmd("SCRIPT")
                .arg("FLUSH")
                .query_async::<()>(&mut conn)
                .await
                .unwrap();
        }
        codes.push(
            login_err(&apps[i % 2], wrong("nobody@example.com"))
                .await
                .code(),
        );
    }
    assert_eq!(codes, four_then_refused());
}
