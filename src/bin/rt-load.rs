//! Load generator for real-time delivery (tonic client), driven by `benches/realtime.sh`.
//!
//! - `setup`: creates the users and conversations (groups of 10 over all users, plus one
//!   group of 200) through the API and writes their ids and tokens to a state file.
//! - `latency`: opens one event stream per user on the receiving instance, sends messages on
//!   the sending instance at fixed rates (open loop: each send starts at its scheduled
//!   moment, and latency counts from that moment), and reports per rate the send→receive
//!   latency p50/p99 over every delivery, lost and duplicated deliveries, and the highest
//!   delivered rate whose p99 stays under 50 ms.
//! - `throughput`: closed-loop sends by N concurrent clients for a fixed time: messages/s.
//! - `soak`: mixed traffic for minutes (see `rt_load/soak.rs`), for `benches/soak.sh`.

#[path = "rt_load/batches.rs"]
mod batches;
#[path = "rt_load/soak.rs"]
mod soak;

use clap::{Parser, Subcommand};
use epop::{
    grpc::convert::json_to_struct,
    pb::{
        self, admin_service_client::AdminServiceClient, auth_service_client::AuthServiceClient,
        conversation_service_client::ConversationServiceClient, event::Kind,
    },
};
use futures::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};
use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};
use tonic::{Request, transport::Channel};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Creates users and conversations; writes the state file.
    Setup {
        #[arg(long)]
        url: String,
        #[arg(long, default_value = "admin@epop.local")]
        admin_email: String,
        #[arg(long)]
        admin_password: String,
        #[arg(long, default_value_t = 1000)]
        users: usize,
        #[arg(long, default_value_t = 10)]
        group_size: usize,
        #[arg(long, default_value_t = 200)]
        big_group: usize,
        #[arg(long)]
        state: PathBuf,
    },
    /// Send→receive latency at fixed send rates.
    Latency {
        /// Where messages are sent.
        #[arg(long)]
        send_url: String,
        /// Where every user's stream is open.
        #[arg(long)]
        recv_url: String,
        #[arg(long)]
        state: PathBuf,
        /// Messages sent per second, one phase each, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "25,50,100,200,400")]
        rates: Vec<u32>,
        /// Seconds per phase.
        #[arg(long, default_value_t = 10)]
        seconds: u32,
        /// One message in this many goes to the big group (the rest to the groups of 10).
        #[arg(long, default_value_t = 10)]
        big_every: usize,
    },
    /// Closed-loop send throughput.
    Throughput {
        #[arg(long)]
        url: String,
        #[arg(long)]
        state: PathBuf,
        #[arg(long, default_value_t = 16)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Mixed traffic for a fixed time, with open streams.
    Soak(soak::Args),
}

/// What `setup` made.
#[derive(Serialize, Deserialize)]
struct State {
    /// Every user's id and access token.
    users: Vec<(String, String)>,
    /// The groups of 10: id and member indexes.
    groups: Vec<(String, Vec<usize>)>,
    /// The big group.
    big: (String, Vec<usize>),
}

/// Streams per HTTP/2 connection (the server allows 200 at once on one).
const PER_CONNECTION: usize = 150;
/// Concurrent calls while setting up.
const SETUP_CONCURRENCY: usize = 8;
/// The latency the delivered-rate figure is judged by.
const P99_TARGET: Duration = Duration::from_millis(50);

fn authed<T>(message: T, token: &str) -> Request<T> {
    let mut r = Request::new(message);
    if let Ok(v) = format!("Bearer {token}").parse() {
        r.metadata_mut().insert("authorization", v);
    }
    r
}

async fn connect(url: &str) -> anyhow::Result<Channel> {
    Ok(Channel::from_shared(url.to_owned())?.connect().await?)
}

fn text_message(conversation: &str, text: &str) -> pb::SendMessageRequest {
    let doc = serde_json::json!({"type": "doc", "content": [
        {"type": "paragraph", "content": [{"type": "text", "text": text}]}]});
    pb::SendMessageRequest {
        conversation_id: conversation.to_owned(),
        content: Some(json_to_struct(&doc)),
        ..Default::default()
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::Setup {
            url,
            admin_email,
            admin_password,
            users,
            group_size,
            big_group,
            state,
        } => {
            let s = setup(
                &url,
                &admin_email,
                &admin_password,
                users,
                group_size,
                big_group,
            )
            .await?;
            std::fs::write(&state, serde_json::to_vec(&s)?)?;
            Ok(())
        }
        Command::Latency {
            send_url,
            recv_url,
            state,
            rates,
            seconds,
            big_every,
        } => {
            let s: State = serde_json::from_slice(&std::fs::read(state)?)?;
            latency(&send_url, &recv_url, &s, &rates, seconds, big_every.max(1)).await
        }
        Command::Throughput {
            url,
            state,
            clients,
            seconds,
        } => {
            let s: State = serde_json::from_slice(&std::fs::read(state)?)?;
            throughput(&url, &s, clients, Duration::from_secs(seconds)).await
        }
        Command::Soak(args) => {
            let s: State = serde_json::from_slice(&std::fs::read(&args.state)?)?;
            soak::run(&args, &s).await
        }
    }
}

async fn login(channel: &Channel, email: &str, password: &str) -> anyhow::Result<String> {
    let reply = AuthServiceClient::new(channel.clone())
        .login(pb::LoginRequest {
            email: email.to_owned(),
            password: password.to_owned(),
            return_refresh_token: false,
        })
        .await?;
    Ok(reply.into_inner().access_token)
}

async fn setup(
    url: &str,
    admin_email: &str,
    admin_password: &str,
    users: usize,
    group_size: usize,
    big_group: usize,
) -> anyhow::Result<State> {
    let channel = connect(url).await?;
    let admin = login(&channel, admin_email, admin_password).await?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let password = "bench-password-of-a-user";
    let started = Instant::now();
    let made: Vec<(String, String)> = stream::iter(0..users)
        .map(|i| {
            let (channel, admin, run) = (channel.clone(), admin.clone(), run.clone());
            async move {
                let email = format!("bench-{i}-{}@example.com", &run[..8]);
                let user = AdminServiceClient::new(channel.clone())
                    .create_user(authed(
                        pb::CreateUserRequest {
                            email: email.clone(),
                            password: password.into(),
                            ..Default::default()
                        },
                        &admin,
                    ))
                    .await?
                    .into_inner();
                let token = login(&channel, &email, password).await?;
                anyhow::Ok((user.id, token))
            }
        })
        .buffered(SETUP_CONCURRENCY)
        .try_collect()
        .await?;
    eprintln!("{users} users in {:.1?}", started.elapsed());
    let create = |members: Vec<usize>, title: String| {
        let (channel, made) = (channel.clone(), &made);
        async move {
            let creator = &made[members[0]].1;
            let conversation = ConversationServiceClient::new(channel)
                .create_conversation(authed(
                    pb::CreateConversationRequest {
                        kind: pb::ConversationKind::Group.into(),
                        title,
                        member_ids: members[1..].iter().map(|m| made[*m].0.clone()).collect(),
                    },
                    creator,
                ))
                .await?
                .into_inner();
            anyhow::Ok((conversation.id, members))
        }
    };
    let chunks: Vec<Vec<usize>> = (0..users)
        .collect::<Vec<_>>()
        .chunks(group_size.max(2))
        .filter(|c| c.len() >= 2)
        .map(<[usize]>::to_vec)
        .collect();
    let groups: Vec<(String, Vec<usize>)> = stream::iter(chunks.into_iter().enumerate())
        .map(|(k, members)| create(members, format!("bench ten {k}")))
        .buffered(SETUP_CONCURRENCY)
        .try_collect()
        .await?;
    let big = create((0..big_group.min(users)).collect(), "bench big".into()).await?;
    eprintln!(
        "{} groups of {group_size} and one of {big_group}",
        groups.len()
    );
    Ok(State {
        users: made,
        groups,
        big,
    })
}

/// Deliveries of the messages of a latency run, by message number.
struct Recorder {
    clock: Instant,
    /// When each message was due to be sent, in µs since `clock`.
    due: Vec<AtomicU64>,
    expected: Vec<AtomicU32>,
    received: Vec<AtomicU32>,
    /// (message number, latency in µs) of every delivery.
    samples: Mutex<Vec<(u32, u32)>>,
    resyncs: AtomicU32,
    ended: AtomicU32,
}

impl Recorder {
    fn delivered(&self, text: &str) {
        let Some(n) = text
            .strip_prefix("bench ")
            .and_then(|t| t.parse::<usize>().ok())
        else {
            return;
        };
        let Some(due) = self.due.get(n) else { return };
        let now = self.clock.elapsed().as_micros() as u64;
        let latency = now.saturating_sub(due.load(Relaxed)) as u32;
        self.received[n].fetch_add(1, Relaxed);
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        samples.push((n as u32, latency));
    }
}

/// Opens one stream per user on `url`; each feeds `recorder`.
async fn open_streams(url: &str, state: &State, recorder: &Arc<Recorder>) -> anyhow::Result<()> {
    let mut channel = None;
    for (i, (_, token)) in state.users.iter().enumerate() {
        if i % PER_CONNECTION == 0 {
            channel = Some(connect(url).await?);
        }
        let mut client = ConversationServiceClient::new(channel.clone().expect("set above"));
        let mut events = client
            .stream_events(authed(pb::StreamEventsRequest::default(), token))
            .await?
            .into_inner();
        let recorder = recorder.clone();
        tokio::spawn(async move {
            while let Ok(Some(event)) = events.message().await {
                match event.kind {
                    Some(Kind::MessageCreated(m)) => recorder.delivered(&m.text),
                    Some(Kind::Resync(_)) => {
                        recorder.resyncs.fetch_add(1, Relaxed);
                    }
                    _ => {}
                }
            }
            recorder.ended.fetch_add(1, Relaxed);
        });
    }
    Ok(())
}

fn percentile(sorted: &[u32], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    Duration::from_micros(u64::from(sorted[i]))
}

async fn latency(
    send_url: &str,
    recv_url: &str,
    state: &State,
    rates: &[u32],
    seconds: u32,
    big_every: usize,
) -> anyhow::Result<()> {
    let total: usize = rates.iter().map(|r| (r * seconds) as usize).sum();
    let recorder = Arc::new(Recorder {
        clock: Instant::now(),
        due: (0..total).map(|_| AtomicU64::new(u64::MAX)).collect(),
        expected: (0..total).map(|_| AtomicU32::new(0)).collect(),
        received: (0..total).map(|_| AtomicU32::new(0)).collect(),
        samples: Mutex::new(Vec::new()),
        resyncs: AtomicU32::new(0),
        ended: AtomicU32::new(0),
    });
    open_streams(recv_url, state, &recorder).await?;
    // Let the presence announcements of the new streams settle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let senders: Vec<ConversationServiceClient<Channel>> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(ConversationServiceClient::new(connect(send_url).await?));
        }
        v
    };
    let failed = Arc::new(AtomicU32::new(0));
    println!(
        "{} streams on {recv_url}; sends on {send_url}; {} groups of {} + 1 of {} (1 message in {big_every} to it); {seconds} s per rate",
        state.users.len(),
        state.groups.len(),
        state.groups.first().map_or(0, |g| g.1.len()),
        state.big.1.len()
    );
    println!(
        "{:>10} {:>16} {:>9} {:>9} {:>9} {:>6} {:>6} {:>7}",
        "sends/s", "deliveries/s", "p50 ms", "p99 ms", "max ms", "lost", "dups", "errors"
    );
    let mut best: Option<f64> = None;
    let mut next = 0usize;
    let mut batch_lines = Vec::new();
    for &rate in rates {
        let batches_before = batches::Batches::scrape(send_url).await?;
        let n = (rate * seconds) as usize;
        let first = next;
        let start = Instant::now();
        for i in 0..n {
            let at = start + Duration::from_secs_f64(i as f64 / f64::from(rate));
            tokio::time::sleep_until(at.into()).await;
            let id = first + i;
            let (conversation, members) = if i % big_every == big_every - 1 {
                &state.big
            } else {
                &state.groups[i % state.groups.len()]
            };
            let sender = &state.users[members[i % members.len()]].1;
            recorder.expected[id].store(members.len() as u32, Relaxed);
            recorder.due[id].store(
                at.duration_since(recorder.clock).as_micros() as u64,
                Relaxed,
            );
            let mut client = senders[i % senders.len()].clone();
            let request = authed(text_message(conversation, &format!("bench {id}")), sender);
            let failed = failed.clone();
            tokio::spawn(async move {
                if client.send_message(request).await.is_err() {
                    failed.fetch_add(1, Relaxed);
                }
            });
        }
        next += n;
        // Wait for the stragglers (at most 5 s).
        let expected: u64 = (first..next)
            .map(|i| u64::from(recorder.expected[i].load(Relaxed)))
            .sum();
        let count = || -> u64 {
            (first..next)
                .map(|i| u64::from(recorder.received[i].load(Relaxed)))
                .sum()
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while count() < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (mut lost, mut dups) = (0u64, 0u64);
        for i in first..next {
            let (e, r) = (
                recorder.expected[i].load(Relaxed),
                recorder.received[i].load(Relaxed),
            );
            lost += u64::from(e.saturating_sub(r));
            dups += u64::from(r.saturating_sub(e));
        }
        let mut lat: Vec<u32> = {
            let samples = recorder.samples.lock().unwrap_or_else(|p| p.into_inner());
            samples
                .iter()
                .filter(|(m, _)| (first..next).contains(&(*m as usize)))
                .map(|(_, l)| *l)
                .collect()
        };
        lat.sort_unstable();
        let delivered = lat.len() as f64 / f64::from(seconds);
        let (p50, p99) = (percentile(&lat, 0.50), percentile(&lat, 0.99));
        let max = lat.last().map_or(0, |l| *l);
        println!(
            "{rate:>10} {delivered:>16.0} {:>9.1} {:>9.1} {:>9.1} {lost:>6} {dups:>6} {:>7}",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            f64::from(max) / 1e3,
            failed.swap(0, Relaxed)
        );
        let batched = batches::Batches::scrape(send_url).await?;
        batch_lines.push(format!(
            "{rate:>10} sends/s: {}",
            batched.since(&batches_before).line()
        ));
        if p99 < P99_TARGET && lost == 0 {
            best = Some(best.map_or(delivered, |b: f64| b.max(delivered)));
        }
        if p99 > P99_TARGET * 10 {
            println!("stopping: p99 is past {:?}", P99_TARGET * 10);
            break;
        }
    }
    println!("transactions of the sends (the server's epop_send_batch_size):");
    for line in batch_lines {
        println!("{line}");
    }
    println!(
        "streams told to resync: {}; streams ended: {}",
        recorder.resyncs.load(Relaxed),
        recorder.ended.load(Relaxed)
    );
    match best {
        Some(b) => println!(
            "highest delivered rate with p99 < {} ms and nothing lost: {b:.0} deliveries/s",
            P99_TARGET.as_millis()
        ),
        None => println!(
            "no rate kept p99 under {} ms with nothing lost",
            P99_TARGET.as_millis()
        ),
    }
    Ok(())
}

async fn throughput(
    url: &str,
    state: &State,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<()> {
    let mut channels = Vec::new();
    for _ in 0..clients.div_ceil(8) {
        channels.push(connect(url).await?);
    }
    let sent = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let batches_before = batches::Batches::scrape(url).await?;
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let mut client = ConversationServiceClient::new(channels[c % channels.len()].clone());
        let (sent, failed) = (sent.clone(), failed.clone());
        let work: Vec<(String, String)> = state
            .groups
            .iter()
            .map(|(id, members)| {
                (
                    id.clone(),
                    state.users[members[c % members.len()]].1.clone(),
                )
            })
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut i = c;
            while Instant::now() < deadline {
                let (conversation, token) = &work[rand::random_range(0..work.len())];
                let request = authed(text_message(conversation, &format!("load {i}")), token);
                match client.send_message(request).await {
                    Ok(_) => sent.fetch_add(1, Relaxed),
                    Err(_) => failed.fetch_add(1, Relaxed),
                };
                i += clients;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let secs = start.elapsed().as_secs_f64();
    let batched = batches::Batches::scrape(url).await?.since(&batches_before);
    println!(
        "{:.1} messages/s ({} sent, {} failed, {clients} clients, {secs:.1} s; {})",
        sent.load(Relaxed) as f64 / secs,
        sent.load(Relaxed),
        failed.load(Relaxed),
        batched.line()
    );
    Ok(())
}
