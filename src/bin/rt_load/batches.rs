//! How the server grouped writes into transactions: its `epop_send_batch_size` (or
//! `epop_read_batch_size`) histogram (from `/metrics` on the same port), read before and
//! after a phase.

use http_body_util::{BodyExt, Empty};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};

/// The histogram at one moment: cumulative counts per upper bound, the sum and the count.
#[derive(Debug, Clone, Default)]
pub struct Batches {
    buckets: Vec<(f64, f64)>,
    sum: f64,
    count: f64,
}

impl Batches {
    /// Reads the send batch histogram of the server at `base` (empty when it does not batch).
    pub async fn scrape(base: &str) -> anyhow::Result<Self> {
        Self::scrape_named(base, "epop_send_batch_size").await
    }

    /// Reads the histogram `metric` of the server at `base`.
    pub async fn scrape_named(base: &str, metric: &str) -> anyhow::Result<Self> {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
        let response = client.get(format!("{base}/metrics").parse()?).await?;
        let body = response.into_body().collect().await?.to_bytes();
        let mut b = Self::default();
        for line in String::from_utf8_lossy(&body).lines() {
            let Some((name, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let value: f64 = value.parse().unwrap_or(0.0);
            let Some(part) = name.strip_prefix(metric) else {
                continue;
            };
            if let Some(le) = part
                .strip_prefix("_bucket{le=\"")
                .and_then(|r| r.strip_suffix("\"}"))
            {
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse()?
                };
                b.buckets.push((le, value));
            } else if part == "_sum" {
                b.sum = value;
            } else if part == "_count" {
                b.count = value;
            }
        }
        Ok(b)
    }

    /// What happened between `before` and this.
    pub fn since(&self, before: &Self) -> Self {
        let was = |le: f64| {
            before
                .buckets
                .iter()
                .find(|(l, _)| *l == le)
                .map_or(0.0, |(_, n)| *n)
        };
        Self {
            buckets: self
                .buckets
                .iter()
                .map(|&(le, n)| (le, n - was(le)))
                .collect(),
            sum: self.sum - before.sum,
            count: self.count - before.count,
        }
    }

    /// The smallest bucket bound holding quantile `q` of the batches.
    fn quantile(&self, q: f64) -> f64 {
        let want = q * self.count;
        self.buckets
            .iter()
            .find(|(_, n)| *n >= want)
            .map_or(f64::NAN, |(le, _)| *le)
    }

    /// `batches N, mean M sends, p50 <= A, p99 <= B`, or `no batches`.
    pub fn line(&self) -> String {
        self.line_of("sends")
    }

    /// The same, naming what was batched.
    pub fn line_of(&self, what: &str) -> String {
        if self.count < 1.0 {
            return "no batches (group commit off)".into();
        }
        format!(
            "{:.0} batches, mean {:.1} {what}, p50 <= {}, p99 <= {}, max bucket <= {}",
            self.count,
            self.sum / self.count,
            self.quantile(0.5),
            self.quantile(0.99),
            self.quantile(1.0),
        )
    }
}
