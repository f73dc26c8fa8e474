//! The accept loop, with the transport limits that `axum::serve` cannot set: a timeout for
//! reading HTTP/1 request headers (slowloris), HTTP/2 keepalive pings (dead peers are
//! dropped), a cap on open connections (past it, new ones wait in the kernel's backlog), and
//! graceful shutdown (stop accepting, let open connections finish their calls), and TLS when
//! configured (the handshake runs in the connection's task, bounded by the header timeout).

use axum::{Router, body::Body};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto::Builder, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use std::{sync::Arc, time::Duration};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

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
        .max_concurrent_streams(limits.http2_max_streams);
    let builder = Arc::new(builder);
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
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
        let service = TowerToHyperService::new(router.clone().map_request(
            move |req: http::Request<Incoming>| {
                let mut req = req.map(Body::new);
                req.extensions_mut()
                    .insert(crate::ratelimit::ClientAddr(peer));
                req
            },
        ));
        let (builder, watcher, tls) = (builder.clone(), graceful.watcher(), tls.clone());
        let handshake_timeout = limits.header_read_timeout;
        connections.spawn(async move {
            let ended = match tls {
                None => {
                    let c = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
                    watcher.watch(c.into_owned()).await
                }
                Some(tls) => {
                    let accepted =
                        tokio::time::timeout(handshake_timeout, tls.acceptor().accept(tcp)).await;
                    match accepted {
                        Ok(Ok(stream)) => {
                            let io = TokioIo::new(stream);
                            let c = builder.serve_connection_with_upgrades(io, service);
                            watcher.watch(c.into_owned()).await
                        }
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
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "connections still open after the grace period are closed"
        );
    }
    connections.shutdown().await;
}
