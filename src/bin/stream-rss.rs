//! Load generator: memory per idle event stream. Opens N streams (default 10,000) for one
//! signed-in user against a running server, then N more (`--rounds`), and prints the
//! server's RSS (settled: the median of five readings) before and after each round.
//!
//! `cargo run --release --bin stream-rss -- --url http://127.0.0.1:8080 --pid <server pid>
//!  --email admin@epop.local --password ... [--streams 10000]`

use clap::Parser;
use epop::pb::{self, conversation_service_client::ConversationServiceClient};
use std::time::Duration;
use tonic::transport::Channel;

#[derive(Parser)]
struct Args {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The server's process id (its RSS is read from /proc).
    #[arg(long)]
    pid: u32,
    /// Who signs in.
    #[arg(long, default_value = "admin@epop.local")]
    email: String,
    /// Their password.
    #[arg(long)]
    password: String,
    /// How many streams to open.
    #[arg(long, default_value_t = 10_000)]
    streams: usize,
    /// How many times to open that many more.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Streams per HTTP/2 connection (the server allows 200 at once on one).
    #[arg(long, default_value_t = 150)]
    per_connection: usize,
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let first = Channel::from_shared(args.url.clone())?.connect().await?;
    let token = pb::auth_service_client::AuthServiceClient::new(first)
        .login(pb::LoginRequest {
            email: args.email.clone(),
            password: args.password.clone(),
            return_refresh_token: false,
        })
        .await?
        .into_inner()
        .access_token;
    let mut streams = Vec::with_capacity(args.streams * args.rounds);
    let mut before = settled_rss(args.pid).await;
    // Each round opens `streams` more on top of those already open: the first counts the
    // allocator's own warm-up, the later ones what one more idle stream costs.
    for round in 1..=args.rounds {
        let mut channel = None;
        for i in 0..args.streams {
            if i % args.per_connection == 0 {
                channel = Some(Channel::from_shared(args.url.clone())?.connect().await?);
            }
            let mut client = ConversationServiceClient::new(channel.clone().expect("set above"));
            let mut request = tonic::Request::new(pb::StreamEventsRequest::default());
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse()?);
            streams.push(client.stream_events(request).await?.into_inner());
        }
        let after = settled_rss(args.pid).await;
        let per = (after.saturating_sub(before)) as f64 * 1024.0 / args.streams as f64;
        println!(
            "round {round}: {} -> {} idle streams: server RSS {before} KiB -> {after} KiB, {per:.0} bytes per stream",
            streams.len() - args.streams,
            streams.len()
        );
        before = after;
    }
    drop(streams);
    Ok(())
}

/// The server's RSS once it settled: the median of five readings a second apart, after 3 s.
async fn settled_rss(pid: u32) -> u64 {
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut samples = Vec::new();
    for _ in 0..5 {
        samples.push(rss_kib(pid));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    samples.sort_unstable();
    samples[2]
}
