//! `rt-load soak`: mixed traffic for a fixed time against one server, for `benches/soak.sh`:
//! open event streams, and closed-loop workers cycling through sends, history reads,
//! profile reads and typing notices of users in their groups; a line every interval with
//! the calls, errors (by code) and events received so far.

use super::{State, authed, connect, text_message};
use epop::pb::{
    self, conversation_service_client::ConversationServiceClient,
    user_service_client::UserServiceClient,
};
use futures::StreamExt;
use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

#[derive(Default)]
struct Counts {
    calls: AtomicU64,
    events: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Counts {
    fn record<T>(&self, result: Result<T, tonic::Status>) {
        self.calls.fetch_add(1, Relaxed);
        if let Err(s) = result {
            let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
            *errors.entry(format!("{:?}", s.code())).or_default() += 1;
        }
    }

    fn line(&self, since: Instant) -> String {
        let errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        format!(
            "t={:>4}s calls={} events={} errors={:?}",
            since.elapsed().as_secs(),
            self.calls.load(Relaxed),
            self.events.load(Relaxed),
            *errors
        )
    }
}

/// `rt-load soak`'s arguments.
#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    url: String,
    /// The state file of `rt-load setup`.
    #[arg(long)]
    pub state: std::path::PathBuf,
    #[arg(long, default_value_t = 16)]
    clients: usize,
    #[arg(long, default_value_t = 100)]
    streams: usize,
    #[arg(long, default_value_t = 300)]
    seconds: u64,
    /// Seconds between progress lines.
    #[arg(long, default_value_t = 30)]
    every: u64,
}

/// Runs the soak; answers an error if any call failed.
pub async fn run(args: &Args, state: &State) -> anyhow::Result<()> {
    let (url, clients, streams) = (args.url.as_str(), args.clients, args.streams);
    let duration = Duration::from_secs(args.seconds);
    let every = Duration::from_secs(args.every);
    let counts = Arc::new(Counts::default());
    // Each user's group: the one they send to and read.
    let mut group_of = vec![None; state.users.len()];
    for (id, members) in &state.groups {
        for m in members {
            group_of[*m] = Some(id.clone());
        }
    }
    let channel = connect(url).await?;
    let mut open = Vec::new();
    for (_, token) in state.users.iter().take(streams) {
        let mut client = ConversationServiceClient::new(channel.clone());
        let mut events = client
            .stream_events(authed(pb::StreamEventsRequest::default(), token))
            .await?
            .into_inner();
        let counts = counts.clone();
        open.push(tokio::spawn(async move {
            while let Some(Ok(_)) = events.next().await {
                counts.events.fetch_add(1, Relaxed);
            }
        }));
    }
    let start = Instant::now();
    let mut workers = Vec::new();
    for w in 0..clients {
        let (channel, counts) = (channel.clone(), counts.clone());
        let users: Vec<(String, String)> = state
            .users
            .iter()
            .zip(&group_of)
            .filter_map(|((_, token), g)| Some((token.clone(), g.clone()?)))
            .skip(w)
            .step_by(clients)
            .collect();
        workers.push(tokio::spawn(async move {
            let mut conversations = ConversationServiceClient::new(channel.clone());
            let mut me = UserServiceClient::new(channel);
            let mut n = 0usize;
            while start.elapsed() < duration && !users.is_empty() {
                let (token, group) = &users[n % users.len()];
                let text = format!("soak {w} {n}");
                match n % 5 {
                    0 | 1 => counts.record(
                        conversations
                            .send_message(authed(text_message(group, &text), token))
                            .await,
                    ),
                    2 => counts.record(
                        conversations
                            .list_messages(authed(
                                pb::ListMessagesRequest {
                                    conversation_id: group.clone(),
                                    page_size: 20,
                                    ..Default::default()
                                },
                                token,
                            ))
                            .await,
                    ),
                    3 => counts.record(me.get_me(authed(pb::GetMeRequest {}, token)).await),
                    _ => counts.record(
                        conversations
                            .send_typing(authed(
                                pb::SendTypingRequest {
                                    conversation_id: group.clone(),
                                },
                                token,
                            ))
                            .await,
                    ),
                }
                n += 1;
            }
        }));
    }
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    while start.elapsed() < duration {
        tick.tick().await;
        println!("{}", counts.line(start));
    }
    for w in workers {
        w.await?;
    }
    for s in open {
        s.abort();
    }
    println!("final {}", counts.line(start));
    let failed: u64 = counts
        .errors
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .sum();
    anyhow::ensure!(failed == 0, "{failed} calls failed");
    Ok(())
}
