//! Redis over TLS (`rediss://`): two instances fan events out through a TLS-only
//! redis-server whose certificate comes from a throwaway CA (trusted through
//! `SSL_CERT_FILE`); an instance that does not trust the CA refuses Redis' certificate.

use crate::{
    events::{group, send},
    helpers::*,
    test_ca::{free_port, test_ca},
};
use epop::pb::{self, conversation_service_client::ConversationServiceClient, event::Kind};
use std::{process::Command, time::Duration};
use tonic::transport::Channel;

#[tokio::test(flavor = "multi_thread")]
async fn instances_fan_out_through_a_tls_only_redis_whose_certificate_they_check() {
    let dir = tempfile::tempdir().unwrap();
    test_ca(dir.path(), "DNS:localhost,IP:127.0.0.1");
    let port = free_port();
    let p = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
    let mut redis = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .args([
            "--tls-cert-file",
            &p("cert.pem"),
            "--tls-key-file",
            &p("key.pem"),
        ])
        .args([
            "--tls-ca-cert-file",
            &p("ca.pem"),
            "--tls-auth-clients",
            "no",
        ])
        .args(["--save", "", "--appendonly", "no"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server is installed");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = format!("rediss://127.0.0.1:{port}");
    let db_name = format!("epop_test_{}", uuid::Uuid::new_v4().simple());
    admin_sql(&format!("CREATE DATABASE {db_name}")).await;

    // Without the CA: the server keeps serving (Redis is best effort) but refuses Redis'
    // certificate, and says so.
    let log = tempfile::NamedTempFile::new().unwrap();
    let (mut untrusted, _, _u_dir) = spawn_process_logging(
        &db_name,
        &[
            ("REDIS_URL", url.as_str()),
            ("SSL_CERT_FILE", &p("cert.csr")),
        ],
        log.reopen().unwrap(),
    )
    .await;
    let mut refused = false;
    for _ in 0..100 {
        if std::fs::read_to_string(log.path())
            .unwrap()
            .contains("UnknownIssuer")
        {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = untrusted.kill();
    let _ = untrusted.wait();
    assert!(refused, "an untrusted certificate was not refused");

    let env = [("REDIS_URL", url.as_str()), ("SSL_CERT_FILE", &p("ca.pem"))];
    let (mut a, a_url, _a_dir) = spawn_process(&db_name, &env).await;
    let (mut b, b_url, _b_dir) = spawn_process(&db_name, &env).await;
    let channel =
        |u: String| async move { Channel::from_shared(u).unwrap().connect().await.unwrap() };
    let (ch_a, ch_b) = (channel(a_url).await, channel(b_url).await);
    // Users and their group, made through a third instance (no Redis needed for that) that
    // signs with the processes' key.
    let mut cfg = config(&db_name, &dir.path().join("setup"));
    cfg.jwt_secret = Some(SHARED_SECRET.to_owned().into());
    let setup = TestApp::start(cfg, db_name.clone()).await;
    let (_, ann) = user(&setup, "ann").await;
    let (bob_id, bob) = user(&setup, "bob").await;
    let g = group(&setup, &ann, &[&bob_id]).await;
    let mut stream = ConversationServiceClient::new(ch_b)
        .stream_events(authed(pb::StreamEventsRequest::default(), &bob))
        .await
        .unwrap()
        .into_inner();
    ConversationServiceClient::new(ch_a)
        .send_message(authed(send(&g, "over tls"), &ann))
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let e = stream.message().await.unwrap().unwrap();
            if let Some(Kind::MessageCreated(m)) = e.kind {
                return m.text;
            }
        }
    })
    .await
    .expect("the message crossed instances through Redis over TLS");
    assert_eq!(got, "over tls");
    for c in [&mut a, &mut b] {
        let _ = c.kill();
        let _ = c.wait();
    }
    let _ = redis.kill();
    let _ = redis.wait();
    // Dropping the setup instance drops the database.
    drop(setup);
}
