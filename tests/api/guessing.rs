//! Password guessing spread over many addresses: failed sign-ins are bounded per account
//! across addresses and per address across accounts, IPv6 addresses count per /64, an office
//! behind one address signs in freely, and the limits hold while Redis is unreachable.

use crate::{events::OwnRedis, helpers::*};
use epop::pb;
use tonic::Code;

/// Signs in to `email` as client `from` (forwarded by the trusted proxy, this test).
async fn login_from(
    app: &TestApp,
    email: &str,
    password: &str,
    from: &str,
) -> Result<pb::LoginResponse, tonic::Status> {
    let mut req = tonic::Request::new(pb::LoginRequest {
        email: email.into(),
        password: password.into(),
        return_refresh_token: true,
    });
    req.metadata_mut()
        .insert("x-forwarded-for", from.parse().unwrap());
    app.auth().await.login(req).await.map(|r| r.into_inner())
}

/// Behind a trusted proxy (the test's own loopback address), with the default limits.
async fn behind_proxy() -> TestApp {
    TestApp::spawn_with(|c| c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()]).await
}

/// The codes of wrong-password sign-ins to `email` from each of `addresses`, in order.
async fn guesses(app: &TestApp, email: &str, addresses: &[String]) -> Vec<tonic::Status> {
    let mut out = vec![];
    for from in addresses {
        out.push(
            login_from(app, email, "a-wrong-password", from)
                .await
                .unwrap_err(),
        );
    }
    out
}

fn count(statuses: &[tonic::Status], code: Code) -> usize {
    statuses.iter().filter(|s| s.code() == code).count()
}

/// The codes and messages, to show when an assertion fails.
fn said(statuses: &[tonic::Status]) -> Vec<String> {
    statuses
        .iter()
        .map(|s| format!("{:?}: {}", s.code(), s.message()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn thirty_wrong_passwords_for_one_account_from_thirty_addresses_are_throttled() {
    let app = behind_proxy().await;
    for who in ["victim", "bob"] {
        let email = format!("{who}@example.com");
        app.create_user(&email, "user-password-1", pb::Role::User)
            .await;
    }
    let addresses: Vec<String> = (1..=30).map(|i| format!("198.51.100.{i}")).collect();
    let got = guesses(&app, "victim@example.com", &addresses).await;
    // The default per-account limit: 20 failures in 15 minutes, from anywhere.
    assert_eq!(count(&got, Code::Unauthenticated), 20, "{:?}", said(&got));
    assert_eq!(count(&got, Code::ResourceExhausted), 10);
    let last = got.last().unwrap();
    assert!(
        last.message().contains("this account"),
        "{}",
        last.message()
    );
    // The owner, from a fresh address, is told when to retry (within the window).
    let e = login_from(&app, "victim@example.com", "user-password-1", "203.0.113.9")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    let wait: u64 = e
        .metadata()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((800..=900).contains(&wait), "{wait}");
    // Other accounts are not affected.
    login_from(&app, "bob@example.com", "user-password-1", "198.51.100.99")
        .await
        .expect("another account signs in");
}

#[tokio::test(flavor = "multi_thread")]
async fn thirty_wrong_passwords_from_one_ipv6_64_count_as_one_address() {
    let app = TestApp::spawn_with(|c| {
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        c.auth_rate_limit = "20/1m".parse().unwrap();
    })
    .await;
    let addresses: Vec<String> = (1..=30).map(|i| format!("2001:db8:7:9::{i:x}")).collect();
    let got = guesses(&app, ADMIN_EMAIL, &addresses).await;
    // The lockout per account and address (5 in 15 minutes) sees one address...
    assert_eq!(count(&got, Code::Unauthenticated), 5, "{:?}", said(&got));
    assert_eq!(count(&got, Code::ResourceExhausted), 25);
    // ...and so does the limit on all sign-in calls per address (20 a minute here).
    assert!(
        got.iter().any(|s| s.message().contains("from this address")
            && s.message().contains("too many attempts")),
        "{:?}",
        said(&got)
    );
    // The owner, from another /64, is not locked out.
    login_from(&app, ADMIN_EMAIL, ADMIN_PASSWORD, "2001:db8:7:a::1")
        .await
        .expect("another /64 is another address");
}

#[tokio::test(flavor = "multi_thread")]
async fn sixty_users_signing_in_from_one_address_in_a_minute_all_succeed() {
    // The default limits, every client on one address (an office behind NAT at 9:00).
    let app = TestApp::spawn().await;
    app.create_user("u0@example.com", "user-password-1", pb::Role::User)
        .await;
    // 59 more users with the same password (its hash copied: hashing 60 takes long).
    db_sql(
        &app.db_name,
        "INSERT INTO users (email, display_name, password_hash, role_id) \
         SELECT 'u' || i || '@example.com', 'U' || i, u.password_hash, u.role_id \
         FROM users u, generate_series(1, 59) AS i WHERE u.email = 'u0@example.com'",
    )
    .await;
    let mut auth = app.auth().await;
    let (mut signed_in, mut refreshed) = (0, 0);
    for i in 0..60 {
        // A typo first, for every fifth of them.
        if i % 5 == 0 {
            let typo = pb::LoginRequest {
                email: format!("u{i}@example.com"),
                password: "user-password-x".into(),
                return_refresh_token: true,
            };
            assert_eq!(
                auth.login(typo).await.unwrap_err().code(),
                Code::Unauthenticated
            );
        }
        let s = auth
            .login(pb::LoginRequest {
                email: format!("u{i}@example.com"),
                password: "user-password-1".into(),
                return_refresh_token: true,
            })
            .await
            .unwrap_or_else(|e| panic!("user {i} signs in: {e:?}"))
            .into_inner();
        signed_in += 1;
        auth.refresh(pb::RefreshRequest {
            refresh_token: s.refresh_token,
            return_refresh_token: true,
        })
        .await
        .unwrap_or_else(|e| panic!("user {i} refreshes: {e:?}"));
        refreshed += 1;
    }
    assert_eq!((signed_in, refreshed), (60, 60));
}

#[tokio::test(flavor = "multi_thread")]
async fn with_redis_unreachable_failed_sign_ins_are_still_counted() {
    let mut redis = OwnRedis::start();
    let app = TestApp::spawn_with(|c| {
        c.redis_url = Some(redis.url().into());
        c.redis_channel = format!("epop:test:{}", uuid::Uuid::new_v4());
        c.auth_rate_limit = "off".parse().unwrap();
    })
    .await;
    redis.kill();
    let started = std::time::Instant::now();
    let mut auth = app.auth().await;
    let mut codes = vec![];
    for _ in 0..8 {
        let wrong = pb::LoginRequest {
            email: ADMIN_EMAIL.into(),
            password: "a-wrong-password".into(),
            return_refresh_token: false,
        };
        codes.push(auth.login(wrong).await.unwrap_err().code());
    }
    // The lockout (5 per account and address) holds on this instance's own counts.
    assert_eq!(
        codes,
        [
            vec![Code::Unauthenticated; 5],
            vec![Code::ResourceExhausted; 3]
        ]
        .concat()
    );
    let right = pb::LoginRequest {
        email: ADMIN_EMAIL.into(),
        password: ADMIN_PASSWORD.into(),
        return_refresh_token: false,
    };
    let e = auth.login(right).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "even the right password");
    // And Redis being gone does not make each sign-in wait for it.
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
}
