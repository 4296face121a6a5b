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

/// `/health`'s status code and word. Never loaded: 503 `unavailable` (credentialed requests
/// get 503, so take this replica out of rotation). Loaded but the feed is down, its copy
/// missing or stale, or the rate limits counted per replica because Redis is unreachable: 200
/// `degraded` (it serves from its last copy; keep it in rotation, alert on it). Else 200 `ok`.
fn health(loaded: bool, feed_up: bool, stale: bool, limits_degraded: bool) -> (u16, &'static str) {
    if !loaded {
        (503, "unavailable")
    } else if !feed_up || stale || limits_degraded {
        (200, "degraded")
    } else {
        (200, "ok")
    }
}

/// Seconds since the blacklist copy was last confirmed; -1 before the first load.
fn sync_age(shared: &Shared) -> i64 {
    match shared.blacklist.synced_at() {
        0 => -1,
        synced_at => unix_now() - synced_at,
    }
}

/// The replica's state as `/health` says it, also for the public `/health` (which shows the
/// word only, not the details).
pub(crate) fn readiness(shared: &Shared) -> (u16, &'static str) {
    let stale = !(0..=STALE_AFTER_SECS).contains(&sync_age(shared));
    let now = u64::try_from(unix_now()).unwrap_or(0);
    let blacklist = &shared.blacklist;
    health(
        blacklist.loaded(),
        blacklist.feed_up(),
        stale,
        shared.limiter.degraded(now),
    )
}

pub struct Admin(Arc<Shared>);

pub fn service(shared: Arc<Shared>) -> Service<HttpServer<Admin>> {
    Service::new("gateway admin".into(), HttpServer::new_app(Admin(shared)))
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let shared = &self.0;
        let age = sync_age(shared);
        let blacklist = &shared.blacklist;
        let (loaded, feed_up) = (blacklist.loaded(), blacklist.feed_up());
        let metrics = &shared.metrics;
        metrics.blacklist_entries.set(blacklist.len() as i64);
        metrics.blacklist_sync_age.set(age as f64);
        metrics.blacklist_feed_up.set(i64::from(feed_up));
        let now = u64::try_from(unix_now()).unwrap_or(0);
        let limits_degraded = shared.limiter.degraded(now);
        metrics.ratelimit_degraded.set(i64::from(limits_degraded));
        metrics
            .ratelimit_counters
            .set(shared.limiter.counters() as i64);
        let (status, content_type, body) = match session.req_header().uri.path() {
            "/metrics" => (200, "text/plain; version=0.0.4", metrics.render()),
            "/health" => {
                let stale = !(0..=STALE_AFTER_SECS).contains(&age);
                let (status, state) = health(loaded, feed_up, stale, limits_degraded);
                let body = serde_json::json!({
                    "status": state,
                    "blacklist": {
                        "loaded": loaded,
                        "feed_up": feed_up,
                        "entries": blacklist.len(),
                        "last_sync_age_seconds": age,
                        "stale": stale,
                    },
                    "jwks_keys": shared.jwks.current().len(),
                    "rate_limits": { "degraded": limits_degraded },
                });
                (status, "application/json", body.to_string().into_bytes())
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

#[cfg(test)]
mod tests {
    use super::health;

    #[test]
    fn health_says_unavailable_before_a_load_and_degraded_when_behind() {
        assert_eq!(health(false, false, true, false), (503, "unavailable"));
        assert_eq!(health(false, true, false, false), (503, "unavailable"));
        assert_eq!(health(true, false, false, false), (200, "degraded"));
        assert_eq!(health(true, true, true, false), (200, "degraded"));
        assert_eq!(health(true, true, false, true), (200, "degraded"));
        assert_eq!(health(true, true, false, false), (200, "ok"));
    }
}
