//! Where a delivery's time goes, from the servers' own histograms (`/metrics`), read before
//! and after a phase: on the sending instance, how long sends waited for the writer and how
//! long its transactions took (BEGIN to COMMIT's answer); on the streams' instance, how long
//! after the transaction's first statement an event arrived from Redis, and how long it then
//! took to reach its stream's encoder. Means over the phase.

use http_body_util::{BodyExt, Empty};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};

/// The `_sum` and `_count` of the series this report reads, at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stages {
    queue: (f64, f64),
    commit: (f64, f64),
    lag: (f64, f64),
    handoff: (f64, f64),
}

/// `(sum, count)` of the series of `metric` whose labels contain `labels`.
fn read(text: &str, metric: &str, labels: &str) -> (f64, f64) {
    let mut out = (0.0, 0.0);
    for line in text.lines() {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some(rest) = name.strip_prefix(metric) else {
            continue;
        };
        if !rest.contains(labels) {
            continue;
        }
        let value: f64 = value.parse().unwrap_or(0.0);
        if rest.starts_with("_sum") {
            out.0 = value;
        } else if rest.starts_with("_count") {
            out.1 = value;
        }
    }
    out
}

async fn metrics(base: &str) -> anyhow::Result<String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let response = client.get(format!("{base}/metrics").parse()?).await?;
    let body = response.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

impl Stages {
    /// Reads the sending instance at `send` and the streams' instance at `recv`.
    pub async fn scrape(send: &str, recv: &str) -> anyhow::Result<Self> {
        let (a, b) = (metrics(send).await?, metrics(recv).await?);
        let writer = "writer=\"epop-sends\"";
        Ok(Self {
            queue: read(
                &a,
                "epop_batch_stage_seconds",
                &format!("{writer},stage=\"queue\""),
            ),
            commit: read(
                &a,
                "epop_batch_stage_seconds",
                &format!("{writer},stage=\"commit\""),
            ),
            lag: read(&b, "epop_broker_lag_seconds", ""),
            handoff: read(&b, "epop_stream_handoff_seconds", ""),
        })
    }

    /// The means between `before` and this, in milliseconds, as one line.
    pub fn since(&self, before: &Self) -> String {
        let mean = |now: (f64, f64), was: (f64, f64)| {
            let n = now.1 - was.1;
            if n > 0.0 {
                format!("{:5.2}", (now.0 - was.0) / n * 1e3)
            } else {
                "    -".into()
            }
        };
        format!(
            "queue {} | transaction {} | first statement -> B from Redis {} | B -> stream {}",
            mean(self.queue, before.queue),
            mean(self.commit, before.commit),
            mean(self.lag, before.lag),
            mean(self.handoff, before.handoff),
        )
    }
}
