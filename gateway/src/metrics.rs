//! The gateway's metrics (CONTRACT §9), in its own registry, served on the admin port.

use crate::connections::{Cap, ConnectionMetrics};
use crate::ratelimit::{RouteClass, SharedCounter, StoreError};
use crate::reason::Reason;
use crate::routes::Upstream;
use async_trait::async_trait;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::collections::{HashMap, HashSet};

/// What `gateway_auth_outcomes_total` counts besides `ok`: the refusals of the credential,
/// cross-site and permission steps (other refusals are in `gateway_requests_total` only).
pub const AUTH_REFUSALS: [Reason; 8] = [
    Reason::MissingToken,
    Reason::InvalidToken,
    Reason::ExpiredToken,
    Reason::RevokedToken,
    Reason::TokenNotAcceptedHere,
    Reason::InsufficientPermissions,
    Reason::CsrfFailed,
    Reason::BlacklistUnavailable,
];
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `gateway_token_verifications_total`'s series, resolved once (valid, invalid, expired,
/// unknown key).
pub struct Verifications([IntCounter; 4]);

impl Verifications {
    /// Counts one verification by its result.
    pub fn count(&self, result: &Result<auth_token::Claims, auth_token::VerifyError>) {
        use auth_token::VerifyError;
        let at = match result {
            Ok(_) => 0,
            Err(VerifyError::Invalid) => 1,
            Err(VerifyError::Expired) => 2,
            Err(VerifyError::UnknownKey(_)) => 3,
        };
        self.0[at].inc();
    }
}

/// Distinct operator ids given their own label value; later ones share `other`, so a flood
/// of ids cannot grow the series without bound.
const OPERATOR_LABELS: usize = 500;

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    pub auth: IntCounterVec,
    pub upstream_errors: IntCounterVec,
    pub blacklist_entries: IntGauge,
    pub blacklist_sync_age: Gauge,
    /// Rate-limit decisions by route class and outcome (`allowed`, `limited`).
    pub ratelimit_decisions: IntCounterVec,
    /// Refusals by operator (bounded, see [`Metrics::operator_label`]) and class.
    pub ratelimit_limited: IntCounterVec,
    /// 1 while the shared counters are unreachable and each replica counts its share.
    pub ratelimit_degraded: IntGauge,
    /// Counters held in memory.
    pub ratelimit_counters: IntGauge,
    /// Redis calls made by the gateway, by operation.
    pub redis_duration: HistogramVec,
    pub redis_errors: IntCounterVec,
    operators: Mutex<HashSet<i64>>,
    /// 1 while the feed is followed with a whole fast copy behind it, else 0.
    pub blacklist_feed_up: IntGauge,
    /// Feed failures by kind (`redis`, `closed`, `not_loaded`).
    pub blacklist_feed_errors: IntCounterVec,
    /// From auth-service publishing a change to this gateway applying it.
    pub blacklist_propagation: Histogram,
    /// Downstream connections open now.
    pub connections_open: IntGauge,
    /// Connections refused past a cap, by cap (`replica`, `network`).
    pub connections_refused: IntCounterVec,
    /// Requests by proxy service: how the kernel spreads connections over the listeners.
    service_requests: IntCounterVec,
    /// `gateway_service_connections_open{service}`: how the kernel split the connections.
    service_connections: IntGaugeVec,
    /// `gateway_auth_outcomes_total{outcome="ok"}`, resolved once.
    pub auth_ok: IntCounter,
    /// `gateway_token_verifications_total{outcome}`: the signature checks run.
    pub verifications: Verifications,
    /// The served certificate's `notAfter` as a Unix time (0 without TLS).
    pub tls_not_after: IntGauge,
    /// Looks at the certificate files by outcome (`loaded`, `unchanged`, `failed`).
    pub tls_reloads: IntCounterVec,
    /// TLS handshakes that failed or timed out.
    pub tls_handshake_failures: IntCounter,
    /// Usage batches sent to auth-service, by outcome (`taken`, `failed`: kept to send again,
    /// `refused`: dropped).
    pub usage_flushes: IntCounterVec,
    /// Usage rows not yet taken by auth-service (what this replica would lose if it died).
    pub usage_pending_rows: IntGauge,
    /// Usage rows dropped: the queue past its bound, or a batch auth-service refused.
    pub usage_lost_rows: IntCounter,
    /// Age of the oldest usage batch not yet taken (0: none waiting).
    pub usage_flush_lag: Gauge,
    /// Each upstream's replicas known, by state (`healthy`, `unhealthy`: failed its last
    /// health check), read when scraped.
    pub upstream_replicas: IntGaugeVec,
    /// `gateway_ratelimit_decisions_total` by class (in [`RouteClass::ALL`]'s order), allowed
    /// and limited, resolved once.
    decisions: Vec<[IntCounter; 2]>,
}

impl Metrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "gateway_requests_total",
                "Requests by route template, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "gateway_request_duration_seconds",
                "Time from request to last response byte, by route template",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5,
            ]),
            &["route"],
        )?;
        let auth = IntCounterVec::new(
            Opts::new(
                "gateway_auth_outcomes_total",
                "Credential and permission decisions by outcome (ok or a reason code)",
            ),
            &["outcome"],
        )?;
        let verifications = IntCounterVec::new(
            Opts::new(
                "gateway_token_verifications_total",
                "Tokens checked against the signing keys (form and signature), by outcome \
                 (valid, invalid, expired, unknown_key): those neither verified nor refused \
                 before under the same keys (the others are decided from memory)",
            ),
            &["outcome"],
        )?;
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "gateway_upstream_errors_total",
                "Failed upstream calls by upstream and reason",
            ),
            &["upstream", "reason"],
        )?;
        // Every series exists from the start at 0, so dashboards and alerts see a rate of 0
        // (not "no data") until the first failure.
        for upstream in [Upstream::AuthService, Upstream::Registry] {
            for reason in [Reason::UpstreamUnavailable, Reason::UpstreamTimeout] {
                upstream_errors.with_label_values(&[upstream.audience(), reason.code()]);
            }
        }
        let blacklist_entries = IntGauge::new(
            "gateway_blacklist_entries",
            "Entries in the in-memory blacklist",
        )?;
        let blacklist_sync_age = Gauge::new(
            "gateway_blacklist_last_sync_age_seconds",
            "Seconds since the blacklist copy was last confirmed current",
        )?;
        let ratelimit_decisions = IntCounterVec::new(
            Opts::new(
                "gateway_ratelimit_decisions_total",
                "Rate-limit decisions by route class and outcome (allowed, limited)",
            ),
            &["class", "outcome"],
        )?;
        let ratelimit_limited = IntCounterVec::new(
            Opts::new(
                "gateway_ratelimit_limited_total",
                "Requests refused with 429, by operator (none: not an operator's credential; \
                 other: past the label bound) and route class",
            ),
            &["operator", "class"],
        )?;
        let ratelimit_degraded = IntGauge::new(
            "gateway_ratelimit_degraded",
            "1 while the shared rate-limit counters are unreachable (per-replica shares)",
        )?;
        let ratelimit_counters = IntGauge::new(
            "gateway_ratelimit_counters",
            "Rate-limit counters held in memory",
        )?;
        let redis_duration = HistogramVec::new(
            HistogramOpts::new(
                "gateway_redis_duration_seconds",
                "Redis calls made by the gateway, by operation",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
            &["op"],
        )?;
        let redis_errors = IntCounterVec::new(
            Opts::new(
                "gateway_redis_errors_total",
                "Failed or timed-out Redis calls, by operation",
            ),
            &["op"],
        )?;
        let blacklist_feed_up = IntGauge::new(
            "gateway_blacklist_feed_up",
            "1 while the blacklist feed is followed and its fast copy is whole, else 0",
        )?;
        let blacklist_feed_errors = IntCounterVec::new(
            Opts::new(
                "gateway_blacklist_feed_errors_total",
                "Blacklist feed failures by kind (redis, closed, not_loaded)",
            ),
            &["kind"],
        )?;
        let blacklist_propagation = Histogram::with_opts(
            HistogramOpts::new(
                "gateway_blacklist_propagation_seconds",
                "Time from auth-service publishing a blacklist change to this gateway applying it",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )?;
        let connections_open = IntGauge::new(
            "gateway_connections_open",
            "Downstream connections open (kept-alive idle ones included)",
        )?;
        let connections_refused = IntCounterVec::new(
            Opts::new(
                "gateway_connections_refused_total",
                "Downstream connections refused with 503 too_many_connections, by cap \
                 (replica, network)",
            ),
            &["cap"],
        )?;
        let service_requests = IntCounterVec::new(
            Opts::new(
                "gateway_service_requests_total",
                "Requests by proxy service (one thread and one listener each)",
            ),
            &["service"],
        )?;
        registry.register(Box::new(service_requests.clone()))?;
        let service_connections = IntGaugeVec::new(
            Opts::new(
                "gateway_service_connections_open",
                "Downstream connections open by proxy service (the kernel's split of them)",
            ),
            &["service"],
        )?;
        registry.register(Box::new(service_connections.clone()))?;
        let tls_not_after = IntGauge::new(
            "gateway_tls_certificate_not_after_seconds",
            "Unix time at which the served TLS certificate expires (0: no TLS listener)",
        )?;
        let tls_reloads = IntCounterVec::new(
            Opts::new(
                "gateway_tls_reloads_total",
                "Looks at the TLS certificate files, by outcome (loaded, unchanged, failed: \
                 the previous certificate is still served)",
            ),
            &["outcome"],
        )?;
        for outcome in ["loaded", "unchanged", "failed"] {
            tls_reloads.with_label_values(&[outcome]);
        }
        let tls_handshake_failures = IntCounter::new(
            "gateway_tls_handshake_failures_total",
            "Connections of the HTTPS port that ended without a completed TLS handshake \
             (old protocol, no common suite, not TLS, timed out, closed before it, or a bad \
             PROXY header)",
        )?;
        registry.register(Box::new(tls_handshake_failures.clone()))?;
        let usage_flushes = IntCounterVec::new(
            Opts::new(
                "gateway_usage_flushes_total",
                "Usage batches sent to auth-service, by outcome (taken; failed: kept and sent \
                 again; refused: dropped)",
            ),
            &["outcome"],
        )?;
        for outcome in ["taken", "failed", "refused"] {
            usage_flushes.with_label_values(&[outcome]);
        }
        let usage_pending_rows = IntGauge::new(
            "gateway_usage_pending_rows",
            "Usage rows counted but not yet taken by auth-service (lost if this replica dies)",
        )?;
        let usage_lost_rows = IntCounter::new(
            "gateway_usage_lost_rows_total",
            "Usage rows dropped: the waiting queue past its bound, or a batch auth-service \
             refused",
        )?;
        let usage_flush_lag = Gauge::new(
            "gateway_usage_flush_lag_seconds",
            "Age of the oldest usage batch auth-service has not taken yet (0: none waiting)",
        )?;
        registry.register(Box::new(usage_flushes.clone()))?;
        registry.register(Box::new(usage_pending_rows.clone()))?;
        registry.register(Box::new(usage_lost_rows.clone()))?;
        registry.register(Box::new(usage_flush_lag.clone()))?;
        let upstream_replicas = IntGaugeVec::new(
            Opts::new(
                "gateway_upstream_replicas",
                "Replicas of each upstream known to this gateway, by health (healthy, unhealthy)",
            ),
            &["upstream", "state"],
        )?;
        registry.register(Box::new(upstream_replicas.clone()))?;
        registry.register(Box::new(tls_not_after.clone()))?;
        registry.register(Box::new(tls_reloads.clone()))?;
        registry.register(Box::new(connections_open.clone()))?;
        registry.register(Box::new(connections_refused.clone()))?;
        for cap in [Cap::Replica, Cap::Network] {
            connections_refused.with_label_values(&[cap.as_str()]);
        }
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(auth.clone()))?;
        registry.register(Box::new(verifications.clone()))?;
        registry.register(Box::new(upstream_errors.clone()))?;
        registry.register(Box::new(blacklist_entries.clone()))?;
        registry.register(Box::new(blacklist_sync_age.clone()))?;
        registry.register(Box::new(ratelimit_decisions.clone()))?;
        registry.register(Box::new(ratelimit_limited.clone()))?;
        registry.register(Box::new(ratelimit_degraded.clone()))?;
        registry.register(Box::new(ratelimit_counters.clone()))?;
        registry.register(Box::new(redis_duration.clone()))?;
        registry.register(Box::new(redis_errors.clone()))?;
        registry.register(Box::new(blacklist_feed_up.clone()))?;
        registry.register(Box::new(blacklist_feed_errors.clone()))?;
        registry.register(Box::new(blacklist_propagation.clone()))?;
        for kind in ["redis", "closed", "not_loaded"] {
            blacklist_feed_errors.with_label_values(&[kind]);
        }
        // Pre-create the bounded label sets so dashboards see zeros, not gaps.
        auth.with_label_values(&["ok"]);
        for reason in AUTH_REFUSALS {
            auth.with_label_values(&[reason.code()]);
        }
        for class in RouteClass::ALL {
            for outcome in ["allowed", "limited"] {
                ratelimit_decisions.with_label_values(&[class.as_str(), outcome]);
            }
        }
        redis_duration.with_label_values(&[RATELIMIT_LEASE]);
        redis_errors.with_label_values(&[RATELIMIT_LEASE]);
        Ok(Self {
            registry,
            requests,
            duration,
            auth: auth.clone(),
            upstream_errors,
            blacklist_entries,
            blacklist_sync_age,
            ratelimit_decisions: ratelimit_decisions.clone(),
            ratelimit_limited,
            ratelimit_degraded,
            ratelimit_counters,
            redis_duration,
            redis_errors,
            operators: Mutex::new(HashSet::new()),
            blacklist_feed_up,
            blacklist_feed_errors,
            blacklist_propagation,
            connections_open,
            connections_refused,
            service_requests,
            service_connections,
            auth_ok: auth.with_label_values(&["ok"]),
            verifications: Verifications(
                ["valid", "invalid", "expired", "unknown_key"]
                    .map(|outcome| verifications.with_label_values(&[outcome])),
            ),
            tls_not_after,
            tls_reloads,
            tls_handshake_failures,
            usage_flushes,
            usage_pending_rows,
            usage_lost_rows,
            usage_flush_lag,
            upstream_replicas,
            decisions: RouteClass::ALL
                .iter()
                .map(|class| {
                    ["allowed", "limited"].map(|outcome| {
                        ratelimit_decisions.with_label_values(&[class.as_str(), outcome])
                    })
                })
                .collect(),
        })
    }

    /// What [`crate::connections::Capped`] records.
    /// Proxy service `index`'s connection metrics.
    pub fn connections(&self, index: usize) -> ConnectionMetrics {
        ConnectionMetrics {
            open: self.connections_open.clone(),
            service_open: self
                .service_connections
                .with_label_values(&[index.to_string().as_str()]),
            refused_replica: self
                .connections_refused
                .with_label_values(&[Cap::Replica.as_str()]),
            refused_network: self
                .connections_refused
                .with_label_values(&[Cap::Network.as_str()]),
        }
    }

    /// Counts a rate-limit decision for `class`.
    pub fn decision(&self, class: RouteClass, allowed: bool) {
        let index = RouteClass::ALL.iter().position(|c| *c == class);
        if let Some(counters) = index.and_then(|i| self.decisions.get(i)) {
            counters[usize::from(!allowed)].inc();
        }
    }

    /// The request series of one proxy service ([`RequestSeries`]).
    pub fn request_series(&self) -> RequestSeries {
        RequestSeries {
            requests: self.requests.clone(),
            duration: self.duration.clone(),
            resolved: Mutex::new(HashMap::default()),
        }
    }

    /// Proxy service `index`'s request counter (its series exists from the start).
    pub fn service_requests(&self, index: usize) -> IntCounter {
        self.service_requests
            .with_label_values(&[index.to_string().as_str()])
    }

    /// The `operator` label of an operator id: its id for the first [`OPERATOR_LABELS`]
    /// operators seen, then `other`; `none` without an operator.
    pub fn operator_label(&self, operator: Option<i64>) -> String {
        let Some(id) = operator else {
            return "none".into();
        };
        let mut seen = self.operators.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(&id) || (seen.len() < OPERATOR_LABELS && seen.insert(id)) {
            id.to_string()
        } else {
            "other".into()
        }
    }

    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

/// The series of each (route, method, status) label set seen, by the labels' addresses and
/// lengths.
type ByRequest = HashMap<[(usize, usize); 3], (IntCounter, Histogram), foldhash::fast::FixedState>;

/// `gateway_requests_total` and `gateway_request_duration_seconds` as one proxy service
/// records them: the series of each (route, method, status) seen is resolved on first use
/// (a label look-up hashes every label value on every call), in a map of this service's
/// own, which no other thread touches.
pub struct RequestSeries {
    requests: IntCounterVec,
    duration: HistogramVec,
    resolved: Mutex<ByRequest>,
}

impl RequestSeries {
    /// Counts a request answered with `status` (a label) on `route` (a template) and
    /// records its duration. The labels are `'static` strings from the route table and
    /// fixed label sets, so their address and length identify them.
    pub fn record(
        &self,
        route: &'static str,
        method: &'static str,
        status: &'static str,
        elapsed: Duration,
    ) {
        let at = |label: &'static str| (label.as_ptr() as usize, label.len());
        let key = [at(route), at(method), at(status)];
        let mut resolved = self.resolved.lock().unwrap_or_else(|e| e.into_inner());
        let (count, duration) = resolved.entry(key).or_insert_with(|| {
            (
                self.requests.with_label_values(&[route, method, status]),
                self.duration.with_label_values(&[route]),
            )
        });
        count.inc();
        duration.observe(elapsed.as_secs_f64());
    }
}

/// The `op` label of the rate limiter's leases.
pub const RATELIMIT_LEASE: &str = "ratelimit_lease";

/// A [`SharedCounter`] whose calls are timed and counted: an abandoned call (the limiter
/// gave up waiting) counts as an error like a failed one.
pub struct ObservedCounter {
    inner: Arc<dyn SharedCounter>,
    duration: Histogram,
    errors: IntCounter,
}

impl ObservedCounter {
    pub fn new(inner: Arc<dyn SharedCounter>, metrics: &Metrics) -> Self {
        Self {
            inner,
            duration: metrics.redis_duration.with_label_values(&[RATELIMIT_LEASE]),
            errors: metrics.redis_errors.with_label_values(&[RATELIMIT_LEASE]),
        }
    }
}

/// Records one call when dropped: its duration, and an error unless it succeeded.
struct CallRecord<'a> {
    start: Instant,
    ok: bool,
    counter: &'a ObservedCounter,
}

impl Drop for CallRecord<'_> {
    fn drop(&mut self) {
        self.counter
            .duration
            .observe(self.start.elapsed().as_secs_f64());
        if !self.ok {
            self.counter.errors.inc();
        }
    }
}

#[async_trait]
impl SharedCounter for ObservedCounter {
    async fn take(&self, key: &str, units: u64, ttl: Duration) -> Result<u64, StoreError> {
        let mut record = CallRecord {
            start: Instant::now(),
            ok: false,
            counter: self,
        };
        let result = self.inner.take(key, units, ttl).await;
        record.ok = result.is_ok();
        result
    }
}
