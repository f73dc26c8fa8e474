//! A real browser (headless Chromium through playwright-core) on another origin uses the REST
//! edge with nothing but standard APIs: fetch with a bearer token, then `EventSource` on
//! `/api/events` authenticated by its cookie; the server goes away mid-stream and the
//! browser's own reconnect (with `Last-Event-ID`) resumes with nothing missed or repeated.
//! Needs Debian's `chromium` and playwright-core under `$EPOP_BROWSER_NODE_PATH` (default
//! `~/.cache/epop/browser/node_modules`); `scripts/test` installs both when missing.

use crate::{
    events::{client, group, send},
    helpers::*,
};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};

type Output = Lines<BufReader<tokio::process::ChildStdout>>;

/// Reads the driver's lines until one satisfies `done`; answers all of them.
async fn until(out: &mut Output, done: impl Fn(&str) -> bool) -> Vec<String> {
    let mut seen = vec![];
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = out.next_line().await.expect("the driver's output") {
            let hit = done(&line);
            seen.push(line);
            if hit {
                return true;
            }
        }
        false
    })
    .await;
    assert!(matches!(found, Ok(true)), "the browser said: {seen:?}");
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_on_another_origin_uses_rest_and_event_source_and_resumes_after_a_cut() {
    // The page's own origin: a small server on another port.
    let page = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let page_port = page.local_addr().unwrap().port();
    let html = include_str!("../browser/page.html");
    let site = axum::Router::new().route(
        "/",
        axum::routing::get(move || async move { axum::response::Html(html) }),
    );
    tokio::spawn(async move { axum::serve(page, site).await });
    let origin = format!("http://localhost:{page_port}");

    let cors = vec![origin.clone()];
    let quick = |c: &mut epop::config::Config| {
        c.cors_origins = cors.clone();
        c.shutdown_grace = Duration::from_secs(1);
    };
    let a = TestApp::spawn_with(quick).await;
    let (_, ann) = user(&a, "ann").await;
    let (bob_id, _) = user(&a, "bob").await;
    let g = group(&a, &ann, &[&bob_id]).await;
    let api_port = a.addr.port();

    let modules = std::env::var("EPOP_BROWSER_NODE_PATH").unwrap_or_else(|_| {
        format!(
            "{}/.cache/epop/browser/node_modules",
            std::env::var("HOME").unwrap()
        )
    });
    let url = format!(
        "{origin}/?api=http://localhost:{api_port}&email=bob@example.com&password=user-password-1"
    );
    let mut driver = tokio::process::Command::new("node")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/browser/drive.cjs"
        ))
        .arg(&url)
        .env("NODE_PATH", modules)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node is installed");
    let mut out = BufReader::new(driver.stdout.take().unwrap()).lines();

    let start = until(&mut out, |l| l == "open").await;
    assert!(
        start.iter().any(|l| l == "me 200 bob@example.com"),
        "{start:?}"
    );
    assert!(start.iter().any(|l| l == "session 200"), "{start:?}");
    let mut c = client(&a).await;
    c.send_message(authed(send(&g, "m1"), &ann)).await.unwrap();
    let first = until(&mut out, |l| l == "message m1").await;

    // Another instance on the same database and key takes a message while the browser's
    // server is gone; then the server comes back on its port.
    let (db, dir) = {
        let mut cfg = config(&a.db_name, &a.data_dir);
        quick(&mut cfg);
        let b = TestApp::start(cfg, a.db_name.clone()).await;
        let (db, dir) = a.stop().await;
        client(&b)
            .await
            .send_message(authed(send(&g, "m2"), &ann))
            .await
            .unwrap();
        // Stopped, it keeps the database for the restarted server (which drops it).
        b.stop().await;
        (db, dir)
    };
    let mut cfg = config(&db, dir.as_ref().unwrap().path());
    quick(&mut cfg);
    cfg.listen = format!("127.0.0.1:{api_port}").parse().unwrap();
    let restarted = TestApp::start(cfg, db).await;
    let resumed = until(&mut out, |l| l == "message m2").await;
    assert!(
        resumed.iter().any(|l| l == "open"),
        "reconnected: {resumed:?}"
    );
    client(&restarted)
        .await
        .send_message(authed(send(&g, "m3"), &ann))
        .await
        .unwrap();
    let live = until(&mut out, |l| l == "message m3").await;
    let all: Vec<&String> = start
        .iter()
        .chain(&first)
        .chain(&resumed)
        .chain(&live)
        .filter(|l| l.starts_with("message "))
        .collect();
    assert_eq!(
        all,
        ["message m1", "message m2", "message m3"],
        "once each, in order"
    );
    driver.stdin.take().unwrap().shutdown().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), driver.wait()).await;
}
