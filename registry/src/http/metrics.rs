//! The registry's metrics, registered in the Application's own `prometheus::Registry`.

use crate::domain::JourneyStatus;
use crate::store::lifecycle::{JobKind, QueueStats};
use crate::store::{BatchMetrics, DbMetrics};
use chrono::{DateTime, Utc};
use prometheus::{Gauge, Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};
use rpc_service::http::HttpMetrics;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// Distinct operator ids given their own `operator` label value (the gateway's bound too);
/// later ones share `other`, so a flood of operators cannot grow the series without bound.
const OPERATOR_LABELS: usize = 500;

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

/// The `pass` label of a journey job.
fn pass_label(kind: JobKind) -> &'static str {
    match kind {
        JobKind::JourneyFinal => "final",
        _ => "checks",
    }
}

/// Every metric the registry exports.
#[derive(Clone)]
pub struct Metrics {
    /// Requests by route template, method and status.
    pub http: HttpMetrics,
    /// Journey store calls: latency and failures by operation.
    pub db: DbMetrics,
    journeys_received: IntCounterVec,
    /// Journey submissions by operator (bounded, see [`Metrics::operator_label`]) and outcome.
    operator_journeys: IntCounterVec,
    operators: Arc<Mutex<HashSet<i64>>>,
    jobs_queue_depth: IntGauge,
    jobs_lag: Gauge,
    jobs_failures: IntCounterVec,
    jobs_done: IntCounterVec,
    journeys_checked: IntCounterVec,
    /// The grouped insert path (store::batch): journeys per PostgreSQL transaction, and
    /// journeys waiting for a writer.
    pub insert_batch: BatchMetrics,
}

impl Metrics {
    /// Registers the metrics in `registry`, under the `registry_` prefix.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let http = HttpMetrics::register(registry, "registry")?;
        let db = DbMetrics::register(registry)?;
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
        let operator_journeys = IntCounterVec::new(
            Opts::new(
                "registry_operator_journeys_received_total",
                "Journey submissions by operator (its id for the first 500 seen, then other; \
                 none without an operator) and outcome",
            ),
            &["operator", "outcome"],
        )?;
        registry.register(Box::new(operator_journeys.clone()))?;
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
        let journeys_checked = IntCounterVec::new(
            Opts::new(
                "registry_journeys_checked_total",
                "Journeys whose lifecycle checks committed, by pass (checks at 24 h, final at \
                 48 h) and the status they gave",
            ),
            &["pass", "status"],
        )?;
        registry.register(Box::new(journeys_checked.clone()))?;
        for pass in [JobKind::JourneyChecks, JobKind::JourneyFinal] {
            for status in JourneyStatus::CHECKED {
                journeys_checked.with_label_values(&[pass_label(pass), status.as_str()]);
            }
        }
        let insert_batch_size = Histogram::with_opts(
            HistogramOpts::new(
                "registry_journey_insert_batch_size",
                "Journeys committed per transaction by the grouped insert path",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]),
        )?;
        registry.register(Box::new(insert_batch_size.clone()))?;
        let insert_queue = IntGauge::new(
            "registry_journey_insert_queue_length",
            "Journeys waiting for a writer of the grouped insert path",
        )?;
        registry.register(Box::new(insert_queue.clone()))?;
        Ok(Self {
            http,
            db,
            journeys_received,
            operator_journeys,
            operators: Arc::default(),
            insert_batch: BatchMetrics {
                sizes: insert_batch_size,
                queued: insert_queue,
            },
            jobs_queue_depth,
            jobs_lag,
            jobs_failures,
            jobs_done,
            journeys_checked,
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

    /// Counts a journey whose `pass` of checks gave it `status`.
    pub fn journey_checked(&self, pass: JobKind, status: JourneyStatus) {
        self.journeys_checked
            .with_label_values(&[pass_label(pass), status.as_str()])
            .inc();
    }

    /// Counts a job completed.
    pub fn job_done(&self, kind: JobKind) {
        self.jobs_done.with_label_values(&[kind.as_str()]).inc();
    }

    /// Counts one journey submission, of `operator` when the caller is one's.
    pub fn journey_received(&self, outcome: Outcome, operator: Option<i64>) {
        self.journeys_received
            .with_label_values(&[outcome.as_str()])
            .inc();
        let operator = self.operator_label(operator);
        self.operator_journeys
            .with_label_values(&[operator.as_str(), outcome.as_str()])
            .inc();
    }

    /// The `operator` label of an operator id: its id for the first [`OPERATOR_LABELS`]
    /// operators seen, then `other`; `none` without an operator.
    fn operator_label(&self, operator: Option<i64>) -> String {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::TextEncoder;

    fn exported(registry: &Registry) -> String {
        TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap()
    }

    #[test]
    fn operator_label_is_bounded_and_stable() {
        let registry = Registry::new();
        let metrics = Metrics::register(&registry).unwrap();
        for id in 0..OPERATOR_LABELS as i64 {
            metrics.journey_received(Outcome::Created, Some(id));
        }
        metrics.journey_received(Outcome::TermsViolation, Some(7));
        metrics.journey_received(Outcome::Created, Some(100_000));
        metrics.journey_received(Outcome::Error, Some(100_001));
        metrics.journey_received(Outcome::Invalid, None);

        let text = exported(&registry);
        let has = |sample: &str| text.lines().any(|l| l == sample);
        assert!(has(
            r#"registry_operator_journeys_received_total{operator="7",outcome="created"} 1"#
        ));
        assert!(has(
            r#"registry_operator_journeys_received_total{operator="7",outcome="terms_violation"} 1"#
        ));
        assert!(has(
            r#"registry_operator_journeys_received_total{operator="other",outcome="created"} 1"#
        ));
        assert!(has(
            r#"registry_operator_journeys_received_total{operator="other",outcome="error"} 1"#
        ));
        assert!(has(
            r#"registry_operator_journeys_received_total{operator="none",outcome="invalid"} 1"#
        ));
        assert!(
            !text.contains(r#"operator="100000""#),
            "past the bound: other"
        );
        assert!(has(
            r#"registry_journeys_received_total{outcome="created"} 501"#
        ));
    }
}
