//! `rt-load latency`: one event stream per user on the receiving instance, messages sent on
//! the sending instance at fixed rates (open loop), send->receive latency per rate over every
//! delivery, lost and duplicated deliveries, the server's batch sizes, and the highest
//! delivered rate whose p99 stays under 50 ms.

use super::{State, authed, batches, connect, stages, text_message};
use epop::pb::{self, conversation_service_client::ConversationServiceClient, event::Kind};
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};
use tonic::transport::Channel;

/// Streams per HTTP/2 connection (the server allows 200 at once on one).
const PER_CONNECTION: usize = 150;
/// The latency the delivered-rate figure is judged by.
const P99_TARGET: Duration = Duration::from_millis(50);

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

/// Opens one stream per user on `url` (`PER_CONNECTION` to an HTTP/2 connection) and hands
/// every event to `on_event`, and the end of each stream to `on_end`.
pub async fn each_event(
    url: &str,
    state: &State,
    on_event: impl Fn(pb::Event) + Clone + Send + 'static,
    on_end: impl Fn() + Clone + Send + 'static,
) -> anyhow::Result<()> {
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
        let (on_event, on_end) = (on_event.clone(), on_end.clone());
        tokio::spawn(async move {
            while let Ok(Some(event)) = events.message().await {
                on_event(event);
            }
            on_end();
        });
    }
    Ok(())
}

/// Opens one stream per user on `url`; each feeds `recorder`.
async fn open_streams(url: &str, state: &State, recorder: &Arc<Recorder>) -> anyhow::Result<()> {
    let (r, ended) = (recorder.clone(), recorder.clone());
    let on_event = move |event: pb::Event| match event.kind {
        Some(Kind::MessageCreated(m)) => r.delivered(&m.text),
        Some(Kind::Resync(_)) => {
            r.resyncs.fetch_add(1, Relaxed);
        }
        _ => {}
    };
    let on_end = move || {
        ended.ended.fetch_add(1, Relaxed);
    };
    each_event(url, state, on_event, on_end).await
}

pub fn percentile(sorted: &[u32], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    Duration::from_micros(u64::from(sorted[i]))
}

pub async fn latency(
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
    let mut stage_lines = Vec::new();
    for &rate in rates {
        let batches_before = batches::Batches::scrape(send_url).await?;
        let stages_before = stages::Stages::scrape(send_url, recv_url).await?;
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
        let mean = lat.iter().map(|l| f64::from(*l)).sum::<f64>() / lat.len().max(1) as f64;
        let staged = stages::Stages::scrape(send_url, recv_url).await?;
        stage_lines.push(format!(
            "{rate:>10} sends/s: mean {:5.2} ms = {}",
            mean / 1e3,
            staged.since(&stages_before)
        ));
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
    println!(
        "where the time went, in ms (means; from the servers' histograms: the send's wait for the writer, the writer's transaction, from the transaction's first statement to its arrival on B through Redis, then to the stream's encoder; the rest of the mean is the client's send and the stream's transport):"
    );
    for line in stage_lines {
        println!("{line}");
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
