//! Load generator: the same unary RPC over native gRPC and over the REST edge, on one
//! server, in one run. Prints both throughputs and the REST/gRPC ratio.
//!
//! `cargo bench --bench rest_vs_grpc` (env: `BENCH_SECONDS`, default 10 per phase;
//! `BENCH_CONCURRENCY`, default 32). The server runs in process on its embedded PostgreSQL in
//! a temporary data directory; client and server share the machine, as they share its cores.

use epop::{app::App, config::Config, pb};
use std::{
    os::unix::fs::PermissionsExt,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use tonic::transport::Channel;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `call` from `concurrency` tasks for `seconds`; returns completed calls per second.
async fn drive<F, Fut>(concurrency: u64, seconds: u64, call: F) -> f64
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // Warm-up: connections, pools, caches.
    for _ in 0..200 {
        assert!(call().await, "warm-up call failed");
    }
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (call, done, stop) = (call.clone(), done.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    assert!(call().await, "call failed under load");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn authed<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

#[tokio::main]
async fn main() {
    let seconds = env_or("BENCH_SECONDS", 10);
    let concurrency = env_or("BENCH_CONCURRENCY", 32);
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut config = Config::with_defaults(dir.path().join("data"), None);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.admin_password = Some("bench-admin-password".to_owned().into());
    let app = App::build(config).await.expect("server builds");
    let base = format!("http://{}", app.local_addr());
    let stop = app.stop_token();
    let server = tokio::spawn(app.run_until_stopped());

    let channel = Channel::from_shared(base.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let token = pb::auth_service_client::AuthServiceClient::new(channel.clone())
        .login(pb::LoginRequest {
            email: "admin@epop.local".into(),
            password: "bench-admin-password".into(),
            return_refresh_token: false,
        })
        .await
        .unwrap()
        .into_inner()
        .access_token;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency as usize)
        .build()
        .unwrap();

    println!("unary RPC throughput, {concurrency} concurrent callers, {seconds} s per phase");
    println!(
        "{:<44} {:>12} {:>12} {:>8}",
        "rpc", "gRPC req/s", "REST req/s", "REST/gRPC"
    );

    // Authenticated, reads the database (two queries).
    let (ch, t) = (channel.clone(), token.clone());
    let grpc = drive(concurrency, seconds, move || {
        let mut c = pb::user_service_client::UserServiceClient::new(ch.clone());
        let t = t.clone();
        async move { c.get_me(authed(pb::GetMeRequest {}, &t)).await.is_ok() }
    })
    .await;
    let (h, t, url) = (http.clone(), token.clone(), format!("{base}/api/users/me"));
    let rest = drive(concurrency, seconds, move || {
        let req = h.get(&url).bearer_auth(&t);
        async move { req.send().await.is_ok_and(|r| r.status().is_success()) }
    })
    .await;
    println!(
        "{:<44} {grpc:>12.0} {rest:>12.0} {:>7.0}%",
        "UserService.GetMe (GET /api/users/me)",
        100.0 * rest / grpc
    );

    // Public, no database: the protocol and edge overhead alone.
    let ch = channel.clone();
    let grpc = drive(concurrency, seconds, move || {
        let mut c = pb::auth_service_client::AuthServiceClient::new(ch.clone());
        async move { c.logout(pb::LogoutRequest::default()).await.is_ok() }
    })
    .await;
    let (h, url) = (http.clone(), format!("{base}/api/auth/logout"));
    let rest = drive(concurrency, seconds, move || {
        let req = h.post(&url).body("{}");
        async move { req.send().await.is_ok_and(|r| r.status().is_success()) }
    })
    .await;
    println!(
        "{:<44} {grpc:>12.0} {rest:>12.0} {:>7.0}%",
        "AuthService.Logout (POST /api/auth/logout)",
        100.0 * rest / grpc
    );

    stop.cancel();
    server.await.unwrap().unwrap();
}
