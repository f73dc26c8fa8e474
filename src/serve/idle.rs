//! A connection's calls in flight, so that a connection with none for a while can be closed
//! (an HTTP/2 connection stays open as long as its pings are answered; HTTP/1's idle
//! keep-alive is bounded by the header-read timeout as well). A call lasts until its response
//! body ends or is dropped: an open event stream keeps its connection busy.

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};
use tokio::sync::watch;

/// Counts one connection's calls in flight.
#[derive(Debug, Clone)]
pub struct Calls(watch::Sender<usize>);

impl Calls {
    /// A connection with no call yet.
    pub fn new() -> Self {
        Self(watch::Sender::new(0))
    }

    /// Marks a call started; it ends when the guard (carried by its response body) drops.
    pub fn start(&self) -> CallGuard {
        self.0.send_modify(|n| *n += 1);
        CallGuard(self.0.clone())
    }

    /// Resolves once the connection has had no call in flight for `quiet`.
    pub async fn idle_for(&self, quiet: Duration) {
        let mut calls = self.0.subscribe();
        loop {
            if calls.wait_for(|n| *n == 0).await.is_err() {
                return std::future::pending().await;
            }
            if tokio::time::timeout(quiet, calls.changed()).await.is_err() {
                return;
            }
        }
    }
}

/// One call in flight.
#[derive(Debug)]
pub struct CallGuard(watch::Sender<usize>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

/// A response body that holds its call's guard until it ends or is dropped.
pub struct Tracked {
    body: axum::body::Body,
    guard: Option<CallGuard>,
}

impl Tracked {
    /// `body`, counted as a call until it ends.
    pub fn new(body: axum::body::Body, guard: CallGuard) -> Self {
        Self {
            body,
            guard: Some(guard),
        }
    }
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
