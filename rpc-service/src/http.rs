//! Serving: health, metrics, request metrics and logs, graceful stop.

use crate::RpcError;
use crate::db::Database;
use crate::identity::{self, Gatekeeper};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};
use serde_json::json;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower_service::Service;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

/// Per-request metrics of one service: `<service>_http_requests_total{route,method,status}` and
/// `<service>_http_request_duration_seconds{route,method}`. Routes are templates, never raw paths.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl HttpMetrics {
    pub fn register(registry: &Registry, service: &str) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                format!("{service}_http_requests_total"),
                "HTTP requests by route template, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                format!("{service}_http_request_duration_seconds"),
                "HTTP request latency by route template and method",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["route", "method"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Self { requests, duration })
    }

    fn observe(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        self.requests
            .with_label_values(&[route, method, status_label(status)])
            .inc();
        self.duration
            .with_label_values(&[route, method])
            .observe(elapsed.as_secs_f64());
    }
}

fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        201 => "201",
        204 => "204",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        409 => "409",
        413 => "413",
        422 => "422",
        429 => "429",
        500 => "500",
        503 => "503",
        s if s < 300 => "2xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}

/// Wraps `routes` with request metrics and one log line per request (no raw path, no headers
/// but the request id). `template` maps a raw path to its route template.
pub fn observed<F>(
    routes: F,
    metrics: HttpMetrics,
    template: fn(&str) -> &'static str,
) -> impl Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible> + Clone
where
    F: Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
{
    let log = warp::log::custom(move |info| {
        let route = template(info.path());
        let method = info.method().as_str();
        let status = info.status().as_u16();
        metrics.observe(route, method, status, info.elapsed());
        let request_id = info
            .request_headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        let micros = info.elapsed().as_micros() as u64;
        // Probes and scrapes that succeed (every gateway checks every replica's /health
        // each second) are debug lines; everything else, failed probes included, info.
        if status == 200 && matches!(route, "/health" | "/health/live" | "/metrics") {
            tracing::debug!(request_id, method, route, status, micros, "request");
        } else {
            tracing::info!(request_id, method, route, status, micros, "request");
        }
    });
    routes.with(log).map(Reply::into_response)
}

/// `GET /health` (database reachable: readiness), `GET /health/live` (the process answers:
/// liveness, which a database outage must not fail, or every replica would be restarted
/// for nothing) and `GET /metrics` (Prometheus text of `registry`).
pub fn operational(
    db: Database,
    registry: Registry,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let health = warp::path!("health")
        .and(warp::get())
        .then(move || {
            let db = db.clone();
            async move {
                if db.ping().await {
                    warp::reply::with_status(
                        warp::reply::json(&json!({"status": "ok"})),
                        StatusCode::OK,
                    )
                } else {
                    warp::reply::with_status(
                        warp::reply::json(
                            &json!({"status": "degraded", "database": "unreachable"}),
                        ),
                        StatusCode::SERVICE_UNAVAILABLE,
                    )
                }
            }
        })
        .map(Reply::into_response);
    let live = warp::path!("health" / "live")
        .and(warp::get())
        .map(|| warp::reply::json(&json!({"status": "alive"})).into_response());
    let metrics = warp::path!("metrics").and(warp::get()).map(move || {
        let text = TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap_or_default();
        warp::reply::with_header(text, "content-type", "text/plain; version=0.0.4").into_response()
    });
    health.or(live).unify().or(metrics).unify()
}

/// Serves `routes` on `listener` until `shutdown` resolves, then finishes in-flight requests.
///
/// warp's own loop, with one step before routing: the body is read (at most
/// [`identity::MAX_BODY_BYTES`], else 413) and the [`Gatekeeper`] gives its verdict on the
/// request's assertion, which [`identity::principal`] reads.
pub async fn serve<F>(
    routes: F,
    gatekeeper: Arc<Gatekeeper>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) where
    F: Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let routes = warp::service(routes.clone());
        let gatekeeper = gatekeeper.clone();
        let service = hyper::service::service_fn(move |request| {
            let (routes, gatekeeper) = (routes.clone(), gatekeeper.clone());
            async move { Ok::<_, Infallible>(admit(routes, &gatekeeper, request).await) }
        });
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Reads the body, puts the gatekeeper's verdict in the request and routes it.
async fn admit<S>(
    mut routes: S,
    gatekeeper: &Gatekeeper,
    request: http::Request<hyper::body::Incoming>,
) -> warp::reply::Response
where
    S: Service<
            http::Request<Full<bytes::Bytes>>,
            Response = warp::reply::Response,
            Error = Infallible,
        >,
{
    let (mut parts, body) = request.into_parts();
    let body = match Limited::new(body, identity::MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => {
            return RpcError::payload_too_large().into_response();
        }
        // The client went away while sending: nobody reads this answer.
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    let now = chrono::Utc::now().timestamp();
    let verified = gatekeeper.check(&parts, &body, now);
    parts.extensions.insert(verified);
    let request = http::Request::from_parts(parts, Full::new(body));
    match routes.call(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// warp's answer to a failed accept: a connection error is the client's, anything else
/// (EMFILE...) is waited out for a second.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
