//! The admin endpoint (not public): `/metrics` and `/health`, with the blacklist's freshness.

use crate::{Shared, unix_now};
use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::{HttpServer, ServeHttp};
use pingora::protocols::http::ServerSession;
use pingora::services::listening::Service;
use std::sync::Arc;

/// The blacklist copy is called stale when not confirmed for this long.
const STALE_AFTER_SECS: i64 = 30;

pub struct Admin(Arc<Shared>);

pub fn service(shared: Arc<Shared>) -> Service<HttpServer<Admin>> {
    Service::new("gateway admin".into(), HttpServer::new_app(Admin(shared)))
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let shared = &self.0;
        let synced_at = shared.blacklist.synced_at();
        let age = if synced_at == 0 {
            -1
        } else {
            unix_now() - synced_at
        };
        shared
            .metrics
            .blacklist_entries
            .set(shared.blacklist.len() as i64);
        shared.metrics.blacklist_sync_age.set(age as f64);
        let (status, content_type, body) = match session.req_header().uri.path() {
            "/metrics" => (200, "text/plain; version=0.0.4", shared.metrics.render()),
            "/health" => {
                let stale = !(0..=STALE_AFTER_SECS).contains(&age);
                let body = serde_json::json!({
                    "status": if stale { "degraded" } else { "ok" },
                    "blacklist": {
                        "entries": shared.blacklist.len(),
                        "last_sync_age_seconds": age,
                        "stale": stale,
                    },
                    "jwks_keys": shared.jwks.current().len(),
                });
                (200, "application/json", body.to_string().into_bytes())
            }
            _ => (404, "text/plain", b"not found".to_vec()),
        };
        Response::builder()
            .status(status)
            .header("content-type", content_type)
            .header("content-length", body.len())
            .body(body)
            .unwrap_or_default()
    }
}
