//! `rt-load chat`: the chat features under load, in one run. Every user's stream is open on
//! the receiving instance; operations go to the sending instance at `rate` per second into
//! the groups of 10, in three phases of `seconds` each:
//!
//! 1. `messages`: plain messages only (the baseline);
//! 2. `mix`: one operation in four a reply in the thread of the group's root, one in four a
//!    reaction to that root, the rest plain messages;
//! 3. `storm`: plain messages, and from its second second on every member of the group of
//!    200 reacts to one message of it within one second (200 reactions, each delivered to
//!    200 streams).
//!
//! Per phase: send->receive p50/p99 of messages and replies (their latency is what the storm
//! may hurt), of reaction events, and of the AddReaction calls; deliveries lost.

use super::{
    State, authed, connect,
    latency::{each_event, percentile},
    text_message,
};
use epop::pb::{self, conversation_service_client::ConversationServiceClient, event::Kind};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tonic::transport::Channel;

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Where operations are sent.
    #[arg(long)]
    send_url: String,
    /// Where every user's stream is open.
    #[arg(long)]
    recv_url: String,
    #[arg(long)]
    pub state: std::path::PathBuf,
    /// Operations per second in each phase.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Seconds per phase.
    #[arg(long, default_value_t = 10)]
    seconds: u32,
}

/// What the streams saw: when each message and reaction was due, and every delivery.
#[derive(Default)]
struct Seen {
    /// Message text -> (due, expected deliveries).
    messages: HashMap<String, (Instant, u32)>,
    /// (reactor's user id, message id) -> (due, expected deliveries).
    reactions: HashMap<(String, String), (Instant, u32)>,
    message_latency: Vec<u32>,
    reaction_latency: Vec<u32>,
    call_latency: Vec<u32>,
}

type Shared = Arc<Mutex<Seen>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Seen> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u128::from(u32::MAX)) as u32
}

/// One stream per user on `url`, each delivery timed against what `seen` expects.
async fn open_streams(url: &str, state: &State, seen: &Shared) -> anyhow::Result<()> {
    let seen = seen.clone();
    let on_event = move |event: pb::Event| {
        let now = Instant::now();
        let mut s = lock(&seen);
        match event.kind {
            Some(Kind::MessageCreated(m)) => {
                if let Some((due, _)) = s.messages.get(&m.text).copied() {
                    s.message_latency.push(micros(now - due));
                }
            }
            Some(Kind::ReactionChanged(r)) => {
                if let Some((due, _)) = s.reactions.get(&(r.user_id, r.message_id)).copied() {
                    s.reaction_latency.push(micros(now - due));
                }
            }
            _ => {}
        }
    };
    each_event(url, state, on_event, || {}).await
}

/// Runs the three phases and prints a line for each.
pub async fn run(args: &Args, state: &State) -> anyhow::Result<()> {
    let seen: Shared = Arc::default();
    open_streams(&args.recv_url, state, &seen).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut senders = Vec::new();
    for _ in 0..4 {
        senders.push(ConversationServiceClient::new(
            connect(&args.send_url).await?,
        ));
    }
    println!(
        "{} streams on {}; {} operations/s for {} s per phase on {}",
        state.users.len(),
        args.recv_url,
        args.rate,
        args.seconds,
        args.send_url
    );
    println!(
        "{:>9} {:>9} {:>8} {:>8} {:>10} {:>8} {:>8} {:>9} {:>9} {:>6}",
        "phase",
        "messages",
        "p50 ms",
        "p99 ms",
        "reactions",
        "p50 ms",
        "p99 ms",
        "call p50",
        "call p99",
        "lost"
    );
    for phase in ["messages", "mix", "storm"] {
        *lock(&seen) = Seen::default();
        let expected = run_phase(phase, args, state, &senders, &seen).await?;
        // Stragglers: at most 5 s.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got = {
                let s = lock(&seen);
                (s.message_latency.len() + s.reaction_latency.len()) as u64
            };
            if got >= expected || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut guard = lock(&seen);
        let s = &mut *guard;
        for v in [
            &mut s.message_latency,
            &mut s.reaction_latency,
            &mut s.call_latency,
        ] {
            v.sort_unstable();
        }
        let ms = |v: &[u32], p| percentile(v, p).as_secs_f64() * 1e3;
        let got = (s.message_latency.len() + s.reaction_latency.len()) as u64;
        println!(
            "{phase:>9} {:>9} {:>8.1} {:>8.1} {:>10} {:>8.1} {:>8.1} {:>9.1} {:>9.1} {:>6}",
            s.message_latency.len(),
            ms(&s.message_latency, 0.50),
            ms(&s.message_latency, 0.99),
            s.reaction_latency.len(),
            ms(&s.reaction_latency, 0.50),
            ms(&s.reaction_latency, 0.99),
            ms(&s.call_latency, 0.50),
            ms(&s.call_latency, 0.99),
            expected.saturating_sub(got)
        );
    }
    Ok(())
}

/// Sends one phase's operations; answers how many deliveries they should make.
async fn run_phase(
    phase: &str,
    args: &Args,
    state: &State,
    senders: &[ConversationServiceClient<Channel>],
    seen: &Shared,
) -> anyhow::Result<u64> {
    let mut client = senders[0].clone();
    let token = |i: usize| state.users[i].1.as_str();
    // The roots of the mix's threads and reactions (one per group), and the storm's message.
    let mut roots = Vec::new();
    if phase == "mix" {
        for (g, members) in &state.groups {
            let root = client
                .send_message(authed(text_message(g, "root"), token(members[0])))
                .await?
                .into_inner();
            roots.push(root.id);
        }
    }
    let storm = if phase == "storm" {
        let (big, members) = &state.big;
        let m = client
            .send_message(authed(text_message(big, "storm"), token(members[0])))
            .await?;
        Some(m.into_inner().id)
    } else {
        None
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = Instant::now();
    let mut tasks = Vec::new();
    let mut expected = 0u64;
    // Scheduled before the background operations, which pace themselves.
    if let Some(message) = storm {
        // Every member of the big group reacts within one second.
        let (big, members) = &state.big;
        let begin = start + Duration::from_secs(1);
        for (k, who) in members.iter().enumerate() {
            let at = begin + Duration::from_secs_f64(k as f64 / members.len() as f64);
            let key = (state.users[*who].0.clone(), message.clone());
            lock(seen).reactions.insert(key, (at, members.len() as u32));
            expected += members.len() as u64;
            let c = senders[k % senders.len()].clone();
            let (big, message, who) = (big.clone(), message.clone(), token(*who).to_owned());
            let seen = seen.clone();
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep_until(at.into()).await;
                let _ = react(c, seen, big, message, who, at).await;
            }));
        }
    }
    let n = (args.rate * args.seconds) as usize;
    let groups = state.groups.len();
    for i in 0..n {
        let at = start + Duration::from_secs_f64(i as f64 / f64::from(args.rate));
        tokio::time::sleep_until(at.into()).await;
        let (g, members) = &state.groups[i % groups];
        let round = i / groups;
        let mut c = senders[i % senders.len()].clone();
        // Each group cycles through the kinds, so its reactions come from different members.
        let kind = if phase == "mix" { (i + round) % 4 } else { 0 };
        if kind == 3 {
            // A reaction by the next member (each reacts at most once per root).
            let who = members[(round / 4) % members.len()];
            let key = (state.users[who].0.clone(), roots[i % groups].clone());
            lock(seen)
                .reactions
                .insert(key.clone(), (at, members.len() as u32));
            expected += members.len() as u64;
            tasks.push(react(
                c,
                seen.clone(),
                g.clone(),
                key.1,
                token(who).to_owned(),
                at,
            ));
            continue;
        }
        let text = format!("chat {phase} {i}");
        lock(seen)
            .messages
            .insert(text.clone(), (at, members.len() as u32));
        expected += members.len() as u64;
        let mut request = text_message(g, &text);
        if kind == 2 {
            request.thread_root_id = roots[i % groups].clone();
        }
        let request = authed(request, token(members[i % members.len()]));
        tasks.push(tokio::spawn(async move {
            let _ = c.send_message(request).await;
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(expected)
}

/// Adds a 👍 to `message` as `token`'s user at `at`, recording the call's latency.
fn react(
    mut client: ConversationServiceClient<Channel>,
    seen: Shared,
    conversation: String,
    message: String,
    token: String,
    at: Instant,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let request = pb::AddReactionRequest {
            conversation_id: conversation,
            message_id: message,
            emoji: "👍".into(),
        };
        if client.add_reaction(authed(request, &token)).await.is_ok() {
            lock(&seen).call_latency.push(micros(at.elapsed()));
        }
    })
}
