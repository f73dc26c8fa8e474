//! `reads`: closed-loop MarkRead by N clients for a fixed time, while one member sends into
//! the same conversations at a fixed rate (so read positions move and read receipts are
//! written): marks/s, p50/p99 per call, and how the server grouped the marks
//! (`epop_read_batch_size`). `--big` puts every client in the group of 200 (the fan-in of
//! read receipts on one conversation); otherwise each client marks in the groups of 10.

use super::{State, authed, batches::Batches, connect, latency::percentile, text_message};
use epop::pb::{self, conversation_service_client::ConversationServiceClient};
use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    url: String,
    #[arg(long)]
    pub state: std::path::PathBuf,
    #[arg(long, default_value_t = 64)]
    clients: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Messages sent per second into the conversations marked.
    #[arg(long, default_value_t = 100)]
    send_rate: u32,
    /// Every client in the group of 200 rather than in the groups of 10.
    #[arg(long)]
    big: bool,
}

pub async fn run(args: &Args, state: &State) -> anyhow::Result<()> {
    let channel = connect(&args.url).await?;
    // (conversation, the sender's index, the member indexes that mark)
    let targets: Vec<(String, usize, Vec<usize>)> = if args.big {
        let (id, members) = &state.big;
        vec![(id.clone(), members[0], members[1..].to_vec())]
    } else {
        state
            .groups
            .iter()
            .map(|(id, m)| (id.clone(), m[0], m[1..].to_vec()))
            .collect()
    };
    let before = Batches::scrape_named(&args.url, "epop_read_batch_size").await?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.seconds);
    let sender = {
        let (targets, users) = (targets.clone(), state.users.clone());
        let mut client = ConversationServiceClient::new(channel.clone());
        let every = Duration::from_secs_f64(1.0 / f64::from(args.send_rate.max(1)));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            let mut i = 0usize;
            while Instant::now() < deadline {
                tick.tick().await;
                let (conversation, from, _) = &targets[i % targets.len()];
                let request = authed(text_message(conversation, "read me"), &users[*from].1);
                let _ = client.send_message(request).await;
                i += 1;
            }
        })
    };
    let failed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let mut client = ConversationServiceClient::new(channel.clone());
        let failed = failed.clone();
        // Client c is one member of each target (distinct members of the big group).
        let work: Vec<(String, String)> = targets
            .iter()
            .map(|(id, _, m)| (id.clone(), state.users[m[c % m.len()]].1.clone()))
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut took = Vec::new();
            while Instant::now() < deadline {
                let (conversation, token) = &work[rand::random_range(0..work.len())];
                let request = pb::MarkReadRequest {
                    conversation_id: conversation.clone(),
                    seq: i64::MAX,
                };
                let at = Instant::now();
                match client.mark_read(authed(request, token)).await {
                    Ok(_) => took.push(u32::try_from(at.elapsed().as_micros()).unwrap_or(u32::MAX)),
                    Err(_) => {
                        failed.fetch_add(1, Relaxed);
                    }
                }
            }
            took
        }));
    }
    let mut took = Vec::new();
    for t in tasks {
        took.extend(t.await?);
    }
    sender.await?;
    let secs = start.elapsed().as_secs_f64();
    took.sort_unstable();
    let batched = Batches::scrape_named(&args.url, "epop_read_batch_size")
        .await?
        .since(&before);
    println!(
        "{:.1} marks/s ({} marked, {} failed, {} clients, {secs:.1} s, p50 {:.2?}, p99 {:.2?}; {})",
        took.len() as f64 / secs,
        took.len(),
        failed.load(Relaxed),
        args.clients,
        percentile(&took, 0.50),
        percentile(&took, 0.99),
        batched.line_of("marks"),
    );
    Ok(())
}
