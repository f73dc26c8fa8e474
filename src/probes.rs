//! What operators and load balancers read: `/healthz` (the process answers), `/readyz` and
//! `grpc.health.v1` (kept in step with the database, and failing from the start of a
//! shutdown), and `/metrics` (Prometheus, with the pool and the job queue sampled at each
//! scrape), on the public port or, with `EPOP_METRICS_LISTEN`, on a listener of its own.

use crate::{db, grpc};
use axum::{
    Router,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};
use tokio_util::sync::CancellationToken;

const HEALTH_INTERVAL: Duration = Duration::from_secs(1);

/// The probe routes: `ready` says whether this server takes calls; `pool` is sampled for
/// `/metrics`, served here unless `metrics` is false (it has a listener of its own).
pub fn routes(ready: Arc<AtomicBool>, pool: db::Pool, metrics: bool) -> Router {
    let probes = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.load(Ordering::Relaxed);
                async move {
                    if ready {
                        (StatusCode::OK, "ready").into_response()
                    } else {
                        let why = "not ready: database unavailable or shutting down";
                        (StatusCode::SERVICE_UNAVAILABLE, why).into_response()
                    }
                }
            }),
        );
    if metrics {
        probes.merge(metrics_routes(pool))
    } else {
        probes
    }
}

/// `/metrics` alone, for the metrics listener.
pub fn metrics_routes(pool: db::Pool) -> Router {
    Router::new().route("/metrics", get(move || metrics_page(pool.clone())))
}

/// Samples what is read rather than counted (the pool, the job queue), then renders every
/// series in the Prometheus text format.
async fn metrics_page(pool: db::Pool) -> Response {
    let state = pool.state();
    let stats = &state.statistics;
    metrics::gauge!("epop_db_pool_connections").set(f64::from(state.connections));
    metrics::gauge!("epop_db_pool_idle_connections").set(f64::from(state.idle_connections));
    metrics::gauge!("epop_db_pool_max_connections").set(f64::from(pool.config().max_size));
    metrics::gauge!("epop_db_pool_pending_gets").set(stats.pending_gets() as f64);
    metrics::counter!("epop_db_pool_waited_gets_total").absolute(stats.get_waited);
    metrics::counter!("epop_db_pool_timed_out_gets_total").absolute(stats.get_timed_out);
    metrics::gauge!("epop_db_pool_wait_seconds_total").set(stats.get_wait_time.as_secs_f64());
    let queue = async {
        let mut conn = pool.get().await?;
        db::jobs::queue_stats(&mut conn).await
    };
    match queue.await {
        Ok(q) => {
            metrics::gauge!("epop_jobs_due").set(q.due as f64);
            metrics::gauge!("epop_jobs_scheduled").set(q.scheduled as f64);
            metrics::gauge!("epop_jobs_failed").set(q.failed as f64);
            metrics::gauge!("epop_jobs_oldest_due_seconds").set(q.oldest_due_seconds);
        }
        Err(e) => tracing::warn!(error = %e, "job queue not sampled for /metrics"),
    }
    (
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::handle().render(),
    )
        .into_response()
}

/// Keeps `grpc.health.v1` and `/readyz` in step with the database: SERVING only while a
/// trivial query succeeds, and never again once shutdown starts.
pub async fn watch_health(
    pool: db::Pool,
    reporter: tonic_health::server::HealthReporter,
    ready: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let mut last = ready.load(Ordering::Relaxed);
    loop {
        tokio::select! {
            // Shutting down: not ready from now on.
            () = stop.cancelled() => {
                set_status(&reporter, &ready, false).await;
                tracing::info!("shutting down: NOT_SERVING");
                return;
            }
            () = tokio::time::sleep(HEALTH_INTERVAL) => {}
        }
        let up = db::ping(&pool).await;
        if up != last {
            report_health(&reporter, &ready, up).await;
            last = up;
        }
    }
}

pub async fn report_health(
    reporter: &tonic_health::server::HealthReporter,
    ready: &AtomicBool,
    up: bool,
) {
    set_status(reporter, ready, up).await;
    if up {
        tracing::info!("database reachable: SERVING");
    } else {
        tracing::warn!("database unreachable: NOT_SERVING");
    }
}

async fn set_status(reporter: &tonic_health::server::HealthReporter, ready: &AtomicBool, up: bool) {
    use tonic_health::ServingStatus;
    ready.store(up, Ordering::Relaxed);
    let status = if up {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    reporter.set_service_status("", status).await;
    for name in grpc::SERVICE_NAMES {
        reporter.set_service_status(name, status).await;
    }
}

/// `epop health`: succeeds when `url` (a probe such as `/readyz`) answers 2xx within
/// `timeout`. For container healthchecks, so images need no curl.
pub async fn check(url: &str, timeout: std::time::Duration) -> anyhow::Result<()> {
    use hyper_util::{client::legacy::Client, rt::TokioExecutor};
    let uri: http::Uri = url
        .parse()
        .map_err(|e| anyhow::anyhow!("not a URL: {url}: {e}"))?;
    let client =
        Client::builder(TokioExecutor::new()).build_http::<http_body_util::Empty<bytes::Bytes>>();
    let response = tokio::time::timeout(timeout, client.get(uri))
        .await
        .map_err(|_| anyhow::anyhow!("{url} did not answer within {timeout:?}"))?
        .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    if !response.status().is_success() {
        anyhow::bail!("{url} answered {}", response.status());
    }
    Ok(())
}
