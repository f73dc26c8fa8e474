//! Request bodies: nobody makes the server hold memory for long, strangers least of all.
//! - A body is read only after its caller is authenticated from the headers (the auth layer,
//!   the HTTP edges): a refused caller's body is drained up to [`STRANGER_DRAIN`] bytes so the
//!   answer can be read, else the connection is closed.
//! - Public calls (sign-in, health, reflection) take at most [`STRANGER_LIMIT`] bytes.
//! - Every body has a read deadline ([`Timed`], set per request by the accept loop).
//! - The bytes buffered for requests in flight share a budget ([`Intake`]): a request that
//!   does not fit waits for room within its deadline, then is refused. Strangers (public calls)
//!   have a budget of their own, so they cannot take an authenticated caller's room.

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    time::{Instant, Sleep},
};
use tokio_util::sync::PollSemaphore;

/// How much of a refused (unauthenticated) caller's body is read so that the client sees the
/// answer; past it the connection is closed instead.
pub const STRANGER_DRAIN: usize = 64 << 10;

/// How long a refused caller's body is drained for, at most.
pub const STRANGER_DRAIN_TIME: Duration = Duration::from_secs(5);

/// The largest request of a public call (sign-in and the like are a few hundred bytes).
pub const STRANGER_LIMIT: usize = 64 << 10;

/// Why a body was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Larger than the limit (said by its Content-Length, or seen while reading).
    TooLarge,
    /// Not received within the deadline, or the client broke off.
    NotReceived,
    /// The buffer budget stayed full for the whole deadline.
    Busy,
}

impl Refused {
    /// The label of `epop_request_body_refusals_total`.
    fn label(self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::NotReceived => "not_received",
            Self::Busy => "busy",
        }
    }
}

/// A buffered body and its share of the budget, given back when this is dropped.
#[derive(Debug)]
pub struct Collected {
    /// The body's bytes.
    pub bytes: Bytes,
    /// The budget held for them.
    pub held: Held,
}

/// Budget held for buffered bytes (none for an empty body), shown as the gauge
/// `epop_request_bytes_buffered`.
#[derive(Debug, Default)]
pub struct Held(Option<OwnedSemaphorePermit>);

impl Held {
    fn add(&mut self, p: OwnedSemaphorePermit) {
        metrics::gauge!("epop_request_bytes_buffered").increment(p.num_permits() as f64);
        match &mut self.0 {
            Some(held) => held.merge(p),
            None => self.0 = Some(p),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            metrics::gauge!("epop_request_bytes_buffered").decrement(p.num_permits() as f64);
        }
    }
}

/// The budgets for buffered request bytes, and the read deadline of a body.
#[derive(Debug, Clone)]
pub struct Intake {
    members: Arc<Semaphore>,
    strangers: Arc<Semaphore>,
    /// The bytes in each budget.
    sizes: (usize, usize),
    /// How long a request's body may take to arrive.
    pub deadline: Duration,
}

impl Intake {
    /// Budgets of `bytes` for authenticated callers and an eighth of it for strangers.
    pub fn new(bytes: usize, deadline: Duration) -> Self {
        let members = bytes.clamp(1, Semaphore::MAX_PERMITS);
        let strangers = (members / 8).max(STRANGER_LIMIT);
        Self {
            members: Arc::new(Semaphore::new(members)),
            strangers: Arc::new(Semaphore::new(strangers)),
            sizes: (members, strangers),
            deadline,
        }
    }

    fn budget(&self, stranger: bool) -> (&Arc<Semaphore>, usize) {
        if stranger {
            (&self.strangers, self.sizes.1)
        } else {
            (&self.members, self.sizes.0)
        }
    }

    /// The bytes now held for requests in flight.
    pub fn buffered(&self) -> usize {
        (self.sizes.0 - self.members.available_permits())
            + (self.sizes.1 - self.strangers.available_permits())
    }

    /// Reads `body` whole, at most `limit` bytes (a larger Content-Length is refused before
    /// reading; past the limit, reading stops), within the deadline, holding budget for what
    /// it read.
    pub async fn collect(
        &self,
        headers: &http::HeaderMap,
        body: &mut Body,
        limit: usize,
        stranger: bool,
    ) -> Result<Collected, Refused> {
        let result = self.collect_within(headers, body, limit, stranger).await;
        if let Err(r) = result {
            metrics::counter!("epop_request_body_refusals_total", "reason" => r.label())
                .increment(1);
        }
        result
    }

    async fn collect_within(
        &self,
        headers: &http::HeaderMap,
        body: &mut Body,
        limit: usize,
        stranger: bool,
    ) -> Result<Collected, Refused> {
        if declared_length(headers).is_some_and(|n| n > limit as u64) {
            return Err(Refused::TooLarge);
        }
        let (budget, size) = self.budget(stranger);
        let mut waiting = false;
        let read = async {
            let mut kept = BytesMut::new();
            let mut held = Held::default();
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else {
                    return Err(Refused::NotReceived);
                };
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                if kept.len() + data.len() > limit {
                    return Err(Refused::TooLarge);
                }
                let n = u32::try_from(data.len().min(size)).unwrap_or(u32::MAX);
                if n > 0 {
                    waiting = true;
                    let permit = budget.clone().acquire_many_owned(n).await;
                    waiting = false;
                    held.add(permit.map_err(|_| Refused::Busy)?);
                }
                kept.extend_from_slice(&data);
            }
            Ok(Collected {
                bytes: kept.freeze(),
                held,
            })
        };
        let outcome = tokio::time::timeout(self.deadline, read).await;
        match outcome {
            Ok(result) => result,
            Err(_) if waiting => Err(Refused::Busy),
            Err(_) => Err(Refused::NotReceived),
        }
    }

    /// `body`, holding budget for the bytes that pass through it until it is dropped (the
    /// reader buffers them until it has a whole message), waiting for room when there is none.
    pub fn metered(&self, body: Body, stranger: bool) -> Body {
        let (budget, size) = self.budget(stranger);
        Body::new(Metered {
            body,
            budget: PollSemaphore::new(budget.clone()),
            size,
            waiting: None,
            held: Held::default(),
            until: Instant::now() + self.deadline,
            timer: None,
        })
    }

    /// A body already buffered, holding `held` until it is dropped.
    pub fn holding(bytes: Bytes, held: Held) -> Body {
        Body::new(Metered {
            body: Body::from(bytes),
            budget: PollSemaphore::new(Arc::new(Semaphore::new(0))),
            size: 0,
            waiting: None,
            held,
            until: Instant::now(),
            timer: None,
        })
    }
}

/// The Content-Length of a request, when it has a valid one.
pub fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Reads and discards at most `max` bytes of `body` within `within`: true if it ended, false
/// if it was longer, slower, or broken (then the connection should be closed).
pub async fn drain(body: &mut Body, max: usize, within: Duration) -> bool {
    let read = async {
        let mut seen = 0usize;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return false };
            if let Some(data) = frame.data_ref() {
                seen += data.len();
                if seen > max {
                    return false;
                }
            }
        }
        true
    };
    tokio::time::timeout(within, read).await.unwrap_or(false)
}

/// A request body that holds budget for the bytes it has passed on.
struct Metered {
    body: Body,
    budget: PollSemaphore,
    size: usize,
    /// A frame waiting for room in the budget.
    waiting: Option<Frame<Bytes>>,
    held: Held,
    /// The body's deadline, which bounds a wait for room too (the body is not read then).
    until: Instant,
    timer: Option<Pin<Box<Sleep>>>,
}

impl http_body::Body for Metered {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let frame = match this.waiting.take() {
            Some(frame) => frame,
            None => match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                other => return Poll::Ready(other),
            },
        };
        let n = frame.data_ref().map_or(0, |d| d.len().min(this.size));
        if n > 0 {
            let n = u32::try_from(n).unwrap_or(u32::MAX);
            match this.budget.poll_acquire_many(cx, n) {
                Poll::Ready(Some(permit)) => this.held.add(permit),
                // Closed: never, the budget lives as long as the server.
                Poll::Ready(None) => {}
                Poll::Pending => {
                    this.waiting = Some(frame);
                    let until = this.until;
                    let timer = this
                        .timer
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
                    ready!(timer.as_mut().poll(cx));
                    this.waiting = None;
                    metrics::counter!("epop_request_body_refusals_total", "reason" => "busy")
                        .increment(1);
                    return Poll::Ready(Some(Err(axum::Error::new(
                        "no room to receive the request body in time",
                    ))));
                }
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.waiting.is_none() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body with a read deadline: past it, reading fails (and the connection of an
/// unfinished HTTP/1 body is closed). The timer starts only if the body is not there at once.
pub struct Timed<B> {
    body: B,
    until: Instant,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> Timed<B> {
    /// `body`, to be read within `deadline` from now.
    pub fn new(body: B, deadline: Duration) -> Self {
        Self {
            body,
            until: Instant::now() + deadline,
            timer: None,
        }
    }
}

impl<B> http_body::Body for Timed<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(axum::Error::new)));
        }
        let until = this.until;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
        ready!(timer.as_mut().poll(cx));
        metrics::counter!("epop_request_body_refusals_total", "reason" => "deadline").increment(1);
        Poll::Ready(Some(Err(axum::Error::new(
            "the request body was not received within its deadline",
        ))))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests;
