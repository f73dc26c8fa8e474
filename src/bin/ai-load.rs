//! Load generator for streamed AI answers, driven by `benches/ai.sh`.
//!
//! - `fake`: an OpenAI-compatible provider that streams `tokens` deltas, one every `every`
//!   ms; each delta carries the wall-clock time it was written (`t<i>@<unix ns>`).
//! - `run`: `streams` concurrent answers for `seconds` (each stream asks again when its
//!   answer ends) over `grpc` (AiService.Chat), `sse` (POST /api/ai/chat) or `direct` (the
//!   fake itself, SSE: the baseline without EPOP), and reports how long each delta took from
//!   the fake's write to the client's read: p50/p99, and deltas per second.

use axum::{Router, body::Body, response::IntoResponse, routing::post};
use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use epop::pb::{self, ai_service_client::AiServiceClient};
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};
use tonic::{Request, transport::Channel};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Grpc,
    Sse,
    Direct,
}

#[derive(Subcommand)]
enum Command {
    /// Serves the fake provider.
    Fake {
        #[arg(long)]
        port: u16,
        #[arg(long, default_value_t = 200)]
        tokens: usize,
        #[arg(long, default_value_t = 2)]
        every: u64,
    },
    /// Streams answers and measures the added latency.
    Run {
        /// The EPOP server (or, in `direct` mode, the fake's base: `http://host:port`).
        #[arg(long)]
        url: String,
        /// An access token (EPOP modes).
        #[arg(long, default_value = "")]
        token: String,
        #[arg(long, value_enum)]
        mode: Mode,
        #[arg(long, default_value_t = 1)]
        streams: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

async fn fake(port: u16, tokens: usize, every: Duration) -> anyhow::Result<()> {
    let answer = move || async move {
        let stream = async_stream::stream! {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            for i in 0..tokens {
                tick.tick().await;
                let c = serde_json::json!({
                    "id": "f", "object": "chat.completion.chunk", "created": 1, "model": "fake",
                    "choices": [{"index": 0, "delta": {"content": format!("t{i}@{} ", now_ns())}, "finish_reason": null}],
                });
                yield Ok::<_, std::io::Error>(Bytes::from(format!("data: {c}\n\n")));
            }
            let end = serde_json::json!({
                "id": "f", "object": "chat.completion.chunk", "created": 1, "model": "fake",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            });
            yield Ok(Bytes::from(format!("data: {end}\n\ndata: [DONE]\n\n")));
        };
        (
            [("content-type", "text/event-stream")],
            Body::from_stream(stream),
        )
            .into_response()
    };
    let app = Router::new().route("/v1/chat/completions", post(answer));
    use axum::serve::ListenerExt;
    // Each delta leaves at once, as a provider's would (no Nagle delay).
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await?
        .tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
    axum::serve(listener, app).await?;
    Ok(())
}

/// Records the delay of every delta found in `text`.
fn record(text: &str, into: &Mutex<Vec<u64>>) -> usize {
    let at = now_ns();
    let mut n = 0;
    let mut found = Vec::new();
    for part in text.split('@').skip(1) {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(sent) = digits.parse::<u128>() {
            found.push(at.saturating_sub(sent) as u64);
            n += 1;
        }
    }
    into.lock().unwrap_or_else(|e| e.into_inner()).extend(found);
    n
}

async fn grpc_answers(url: String, token: String, until: Instant, lat: Arc<Mutex<Vec<u64>>>) {
    let Ok(channel) = Channel::from_shared(url).map(|c| c.connect_lazy()) else {
        return;
    };
    let mut client = AiServiceClient::new(channel);
    while Instant::now() < until {
        let mut r = Request::new(pb::ChatRequest {
            messages: vec![pb::ChatMessage {
                role: pb::ChatRole::User.into(),
                content: "go".into(),
            }],
            ..Default::default()
        });
        if let Ok(v) = format!("Bearer {token}").parse() {
            r.metadata_mut().insert("authorization", v);
        }
        let Ok(stream) = client.chat(r).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let mut stream = stream.into_inner();
        while let Some(Ok(c)) = stream.next().await {
            record(&c.delta, &lat);
        }
    }
}

async fn sse_answers(
    url: String,
    token: String,
    path: &str,
    until: Instant,
    lat: Arc<Mutex<Vec<u64>>>,
) {
    use hyper_util::{
        client::legacy::{Client, connect::HttpConnector},
        rt::TokioExecutor,
    };
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let body = r#"{"model":"","messages":[{"role":"CHAT_ROLE_USER","content":"go"}]}"#;
    while Instant::now() < until {
        let mut req = http::Request::post(format!("{url}{path}"))
            .header("content-type", "application/json")
            .header("accept", "text/event-stream");
        if !token.is_empty() {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let Ok(req) = req.body(Full::new(Bytes::from_static(body.as_bytes()))) else {
            return;
        };
        let Ok(resp) = client.request(req).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let mut body = resp.into_body();
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                record(&String::from_utf8_lossy(data), &lat);
            }
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1e6
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::Fake {
            port,
            tokens,
            every,
        } => fake(port, tokens, Duration::from_millis(every)).await,
        Command::Run {
            url,
            token,
            mode,
            streams,
            seconds,
        } => {
            let lat = Arc::new(Mutex::new(Vec::new()));
            let started = Instant::now();
            let until = started + Duration::from_secs(seconds);
            let tasks: Vec<_> = (0..streams)
                .map(|_| {
                    let (url, token, lat) = (url.clone(), token.clone(), lat.clone());
                    tokio::spawn(async move {
                        match mode {
                            Mode::Grpc => grpc_answers(url, token, until, lat).await,
                            Mode::Sse => sse_answers(url, token, "/api/ai/chat", until, lat).await,
                            Mode::Direct => {
                                sse_answers(url, token, "/v1/chat/completions", until, lat).await
                            }
                        }
                    })
                })
                .collect();
            for t in tasks {
                let _ = t.await;
            }
            let elapsed = started.elapsed().as_secs_f64();
            let mut l = lat.lock().unwrap_or_else(|e| e.into_inner()).clone();
            l.sort_unstable();
            println!(
                "deltas {} ({:.0}/s) p50 {:.3} ms p99 {:.3} ms",
                l.len(),
                l.len() as f64 / elapsed,
                percentile(&l, 0.5),
                percentile(&l, 0.99)
            );
            Ok(())
        }
    }
}
