//! The gateway's metrics (CONTRACT §9), in its own registry, served on the admin port.

use crate::reason::Reason;
use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    pub auth: IntCounterVec,
    pub upstream_errors: IntCounterVec,
    pub blacklist_entries: IntGauge,
    pub blacklist_sync_age: Gauge,
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
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "gateway_upstream_errors_total",
                "Failed upstream calls by upstream and reason",
            ),
            &["upstream", "reason"],
        )?;
        let blacklist_entries = IntGauge::new(
            "gateway_blacklist_entries",
            "Entries in the in-memory blacklist",
        )?;
        let blacklist_sync_age = Gauge::new(
            "gateway_blacklist_last_sync_age_seconds",
            "Seconds since the blacklist copy was last confirmed current",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(auth.clone()))?;
        registry.register(Box::new(upstream_errors.clone()))?;
        registry.register(Box::new(blacklist_entries.clone()))?;
        registry.register(Box::new(blacklist_sync_age.clone()))?;
        // Pre-create the bounded label sets so dashboards see zeros, not gaps.
        auth.with_label_values(&["ok"]);
        for reason in Reason::ALL {
            auth.with_label_values(&[reason.code()]);
        }
        Ok(Self {
            registry,
            requests,
            duration,
            auth,
            upstream_errors,
            blacklist_entries,
            blacklist_sync_age,
        })
    }

    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}
