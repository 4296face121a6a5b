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

/// What `/health` reports, read once per request.
struct State {
    loaded: bool,
    feed_up: bool,
    /// Seconds since the blacklist copy was last confirmed; -1 before the first load.
    sync_age: i64,
    limits_degraded: bool,
}

impl State {
    fn read(shared: &Shared) -> Self {
        let blacklist = &shared.blacklist;
        let sync_age = match blacklist.synced_at() {
            0 => -1,
            synced_at => unix_now() - synced_at,
        };
        let now = u64::try_from(unix_now()).unwrap_or(0);
        Self {
            loaded: blacklist.loaded(),
            feed_up: blacklist.feed_up(),
            sync_age,
            limits_degraded: shared.limiter.degraded(now),
        }
    }

    fn stale(&self) -> bool {
        !(0..=STALE_AFTER_SECS).contains(&self.sync_age)
    }

    fn health(&self) -> (u16, &'static str) {
        health(
            self.loaded,
            self.feed_up,
            self.stale(),
            self.limits_degraded,
        )
    }
}

/// The replica's state word and code, for the public `/health` (the admin one adds the
/// details).
pub(crate) fn readiness(shared: &Shared) -> (u16, &'static str) {
    State::read(shared).health()
}

pub struct Admin(Arc<Shared>);

pub fn service(shared: Arc<Shared>) -> Service<HttpServer<Admin>> {
    Service::new("gateway admin".into(), HttpServer::new_app(Admin(shared)))
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let shared = &self.0;
        let state = State::read(shared);
        let blacklist = &shared.blacklist;
        let metrics = &shared.metrics;
        metrics.blacklist_entries.set(blacklist.len() as i64);
        metrics.blacklist_sync_age.set(state.sync_age as f64);
        metrics.blacklist_feed_up.set(i64::from(state.feed_up));
        metrics
            .ratelimit_degraded
            .set(i64::from(state.limits_degraded));
        metrics
            .ratelimit_counters
            .set(shared.limiter.counters() as i64);
        for pool in [&shared.upstreams.auth_service, &shared.upstreams.registry] {
            let replicas = pool.replicas();
            let healthy = replicas.iter().filter(|(_, up)| *up).count();
            let upstream = pool.upstream().audience();
            let gauge = |state| {
                metrics
                    .upstream_replicas
                    .with_label_values(&[upstream, state])
            };
            gauge("healthy").set(healthy as i64);
            gauge("unhealthy").set((replicas.len() - healthy) as i64);
        }
        let (status, content_type, body) = match session.req_header().uri.path() {
            "/metrics" => (200, "text/plain; version=0.0.4", metrics.render()),
            "/health" => {
                let (status, word) = state.health();
                let body = serde_json::json!({
                    "status": word,
                    "blacklist": {
                        "loaded": state.loaded,
                        "feed_up": state.feed_up,
                        "entries": blacklist.len(),
                        "last_sync_age_seconds": state.sync_age,
                        "stale": state.stale(),
                    },
                    "jwks_keys": shared.jwks.current().len(),
                    "rate_limits": { "degraded": state.limits_degraded },
                });
                (status, "application/json", body.to_string().into_bytes())
            }
            // Liveness: the process answers. Not `/health`, which is 503 until the blacklist
            // is loaded (a Redis outage at start must not get every replica restarted).
            "/health/live" => (200, "application/json", br#"{"status":"alive"}"#.to_vec()),
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
    use super::{STALE_AFTER_SECS, State, health};

    #[test]
    fn a_copy_is_stale_before_its_first_sync_and_after_thirty_seconds() {
        let at = |sync_age| State {
            loaded: true,
            feed_up: true,
            sync_age,
            limits_degraded: false,
        };
        assert!(at(-1).stale(), "never synced");
        assert!(!at(0).stale());
        assert!(!at(STALE_AFTER_SECS).stale());
        assert!(at(STALE_AFTER_SECS + 1).stale());
        assert_eq!(at(STALE_AFTER_SECS + 1).health(), (200, "degraded"));
        assert_eq!(at(STALE_AFTER_SECS).health(), (200, "ok"));
    }

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
