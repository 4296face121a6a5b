//! The registry's metrics, registered in the Application's own `prometheus::Registry`.

use crate::store::lifecycle::{JobKind, QueueStats};
use chrono::{DateTime, Utc};
use prometheus::{Gauge, IntCounterVec, IntGauge, Opts, Registry};
use rpc_service::http::HttpMetrics;

/// How a journey submission ended, the `outcome` label of `registry_journeys_received_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 201.
    Created,
    /// 400 or 403: the payload or the caller was refused.
    Invalid,
    /// 409: already registered.
    Conflict,
    /// 422: stored, but breaking the terms of use.
    TermsViolation,
    /// 5xx.
    Error,
}

impl Outcome {
    const ALL: [Outcome; 5] = [
        Outcome::Created,
        Outcome::Invalid,
        Outcome::Conflict,
        Outcome::TermsViolation,
        Outcome::Error,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Invalid => "invalid",
            Outcome::Conflict => "conflict",
            Outcome::TermsViolation => "terms_violation",
            Outcome::Error => "error",
        }
    }
}

/// Every metric the registry exports.
#[derive(Clone)]
pub struct Metrics {
    /// Requests by route template, method and status.
    pub http: HttpMetrics,
    journeys_received: IntCounterVec,
    jobs_queue_depth: IntGauge,
    jobs_lag: Gauge,
    jobs_failures: IntCounterVec,
    jobs_done: IntCounterVec,
}

impl Metrics {
    /// Registers the metrics in `registry`, under the `registry_` prefix.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let http = HttpMetrics::register(registry, "registry")?;
        let journeys_received = IntCounterVec::new(
            Opts::new(
                "registry_journeys_received_total",
                "Journey submissions by outcome",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(journeys_received.clone()))?;
        for outcome in Outcome::ALL {
            // Export every outcome from the start, at 0.
            journeys_received.with_label_values(&[outcome.as_str()]);
        }
        let jobs_queue_depth = IntGauge::new(
            "registry_jobs_queue_depth",
            "Lifecycle jobs due and not done, at the last runner pass",
        )?;
        let jobs_lag = Gauge::new(
            "registry_jobs_lag_seconds",
            "How long the oldest due lifecycle job has been waiting, at the last runner pass",
        )?;
        let jobs_failures = IntCounterVec::new(
            Opts::new(
                "registry_jobs_failures_total",
                "Lifecycle job runs that failed and were rescheduled, by kind",
            ),
            &["kind"],
        )?;
        let jobs_done = IntCounterVec::new(
            Opts::new(
                "registry_jobs_completed_total",
                "Lifecycle jobs completed, by kind",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(jobs_queue_depth.clone()))?;
        registry.register(Box::new(jobs_lag.clone()))?;
        registry.register(Box::new(jobs_failures.clone()))?;
        registry.register(Box::new(jobs_done.clone()))?;
        for kind in JobKind::ALL {
            jobs_failures.with_label_values(&[kind.as_str()]);
            jobs_done.with_label_values(&[kind.as_str()]);
        }
        Ok(Self {
            http,
            journeys_received,
            jobs_queue_depth,
            jobs_lag,
            jobs_failures,
            jobs_done,
        })
    }

    /// Records the queue as a runner pass leaves it at `now`.
    pub fn jobs_queue(&self, stats: QueueStats, now: DateTime<Utc>) {
        self.jobs_queue_depth.set(stats.due);
        let lag = stats.oldest_due.map_or(0.0, |due| {
            (now - due).num_milliseconds().max(0) as f64 / 1000.0
        });
        self.jobs_lag.set(lag);
    }

    /// Counts a job that failed and will be retried.
    pub fn job_failed(&self, kind: JobKind) {
        self.jobs_failures.with_label_values(&[kind.as_str()]).inc();
    }

    /// Counts a job completed.
    pub fn job_done(&self, kind: JobKind) {
        self.jobs_done.with_label_values(&[kind.as_str()]).inc();
    }

    /// Counts one journey submission.
    pub fn journey_received(&self, outcome: Outcome) {
        self.journeys_received
            .with_label_values(&[outcome.as_str()])
            .inc();
    }
}
