//! The accept loop, with the transport limits that `axum::serve` cannot set: a timeout for
//! reading HTTP/1 request headers (slowloris), HTTP/2 keepalive pings (dead peers are
//! dropped), closing connections without a call in flight for the idle timeout, a cap on open
//! connections (past it, new ones wait in the kernel's backlog), graceful shutdown (stop
//! accepting, let open connections finish their calls), a read deadline on every request
//! body (`intake::Timed`), and TLS when configured (the handshake runs in the connection's
//! task, bounded by the header timeout).

mod idle;

use axum::{Router, body::Body};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto::Builder,
    service::TowerToHyperService,
};
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
    sync::Semaphore,
};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// HTTP/2 flow-control windows: per stream and per connection.
const H2_STREAM_WINDOW: u32 = 256 << 10;
const H2_CONNECTION_WINDOW: u32 = 512 << 10;

/// Transport limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a client may take to send an HTTP/1 request's headers.
    pub header_read_timeout: Duration,
    /// How often an idle HTTP/2 connection is pinged.
    pub keepalive_interval: Duration,
    /// How long a ping may go unanswered before the connection is closed.
    pub keepalive_timeout: Duration,
    /// The most connections open at once.
    pub max_connections: usize,
    /// The most concurrent HTTP/2 streams (calls) on one connection.
    pub http2_max_streams: u32,
    /// How long a connection may stay open without a call in flight.
    pub idle_timeout: Duration,
    /// How long a request's body may take to arrive.
    pub body_read_timeout: Duration,
    /// The same for an upload to the local file URLs.
    pub upload_read_timeout: Duration,
}

/// Serves `router` on `listener` until `stop`; then stops accepting, lets open connections
/// finish their calls for up to `grace`, and closes those still open (event streams never
/// finish by themselves: their clients reconnect elsewhere and resume).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stop: CancellationToken,
    grace: Duration,
    tls: Option<crate::tls::Tls>,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.keepalive_interval)
        .keep_alive_timeout(limits.keepalive_timeout)
        // What a peer may send before anything reads it (hyper's default is 1 MiB): bounded
        // low, as a connection may not have authenticated yet.
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .max_concurrent_streams(limits.http2_max_streams);
    let builder = Arc::new(builder);
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let place = tokio::select! {
            () = stop.cancelled() => break,
            place = open.clone().acquire_owned() => match place {
                Ok(place) => place,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // E.g. out of file descriptors: wait instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Without TCP_NODELAY, the small frames of a reply (headers, message, trailers) wait
        // on the peer's delayed ACK: tens of milliseconds per call.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        let connection = Connection {
            builder: builder.clone(),
            router: router.clone(),
            peer,
            limits,
            stop: stop.clone(),
        };
        let tls = tls.clone();
        connections.spawn(async move {
            let ended = match tls {
                None => connection.serve(tcp).await,
                Some(tls) => {
                    let accepted = tokio::time::timeout(
                        limits.header_read_timeout,
                        tls.acceptor().accept(tcp),
                    )
                    .await;
                    match accepted {
                        Ok(Ok(stream)) => connection.serve(stream).await,
                        Ok(Err(e)) => Err(e.into()),
                        Err(_) => Err("the TLS handshake timed out".into()),
                    }
                }
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(place);
        });
    }
    drop(listener);
    let finished = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, finished).await.is_err() {
        tracing::warn!(
            open = connections.len(),
            "connections still open after the grace period are closed"
        );
    }
    connections.shutdown().await;
}

/// One accepted connection and what serving it needs.
struct Connection {
    builder: Arc<Builder<TokioExecutor>>,
    router: Router,
    peer: SocketAddr,
    limits: Limits,
    stop: CancellationToken,
}

impl Connection {
    /// Serves the connection's calls until it closes; closes it gracefully (HTTP/2 GOAWAY,
    /// or after the current HTTP/1 response) at shutdown or once idle for the idle timeout.
    async fn serve(
        self,
        io: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let calls = idle::Calls::new();
        let (router, peer, counted) = (self.router, self.peer, calls.clone());
        let limits = self.limits;
        let service = tower::service_fn(move |req: http::Request<Incoming>| {
            let deadline = if req
                .uri()
                .path()
                .starts_with(crate::storage::LOCAL_FILES_PREFIX)
            {
                limits.upload_read_timeout
            } else {
                limits.body_read_timeout
            };
            let mut req = req.map(|b| Body::new(crate::intake::Timed::new(b, deadline)));
            req.extensions_mut()
                .insert(crate::ratelimit::ClientAddr(peer));
            let guard = counted.start();
            let call = router.clone().oneshot(req);
            async move {
                let response = call.await?;
                Ok::<_, std::convert::Infallible>(
                    response.map(|body| Body::new(idle::Tracked::new(body, guard))),
                )
            }
        });
        let service = TowerToHyperService::new(service);
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), service);
        let mut conn = std::pin::pin!(conn);
        let idle = calls.idle_for(self.limits.idle_timeout);
        let mut idle = std::pin::pin!(idle);
        let mut closing = false;
        loop {
            tokio::select! {
                ended = conn.as_mut() => return ended,
                () = self.stop.cancelled(), if !closing => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                () = idle.as_mut(), if !closing => {
                    tracing::debug!(%peer, "closing an idle connection");
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}
