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
//! - `reads`: closed-loop MarkRead by N clients while messages arrive (see `rt_load/reads.rs`).
//! - `soak`: mixed traffic for minutes (see `rt_load/soak.rs`), for `benches/soak.sh`.
//! - `chat`: messages, then threads and reactions mixed in, then a reaction storm, with
//!   their latencies (see `rt_load/chat.rs`).

#[path = "rt_load/batches.rs"]
mod batches;
#[path = "rt_load/chat.rs"]
mod chat;
#[path = "rt_load/latency.rs"]
mod latency;
#[path = "rt_load/reads.rs"]
mod reads;
#[path = "rt_load/soak.rs"]
mod soak;
#[path = "rt_load/stages.rs"]
mod stages;

use clap::{Parser, Subcommand};
use epop::{
    grpc::convert::json_to_struct,
    pb::{
        self, admin_service_client::AdminServiceClient, auth_service_client::AuthServiceClient,
        conversation_service_client::ConversationServiceClient,
    },
};
use futures::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};
use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
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
    /// Closed-loop MarkRead while messages arrive.
    Reads(reads::Args),
    /// Mixed traffic for a fixed time, with open streams.
    Soak(soak::Args),
    /// Threads, reactions and a reaction storm against plain messages.
    Chat(chat::Args),
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

/// Concurrent calls while setting up.
const SETUP_CONCURRENCY: usize = 8;

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
            latency::latency(&send_url, &recv_url, &s, &rates, seconds, big_every.max(1)).await
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
        Command::Reads(args) => {
            let s: State = serde_json::from_slice(&std::fs::read(&args.state)?)?;
            reads::run(&args, &s).await
        }
        Command::Soak(args) => {
            let s: State = serde_json::from_slice(&std::fs::read(&args.state)?)?;
            soak::run(&args, &s).await
        }
        Command::Chat(args) => {
            let s: State = serde_json::from_slice(&std::fs::read(&args.state)?)?;
            chat::run(&args, &s).await
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
