//! The registry's metrics, registered in the Application's own `prometheus::Registry`.

use prometheus::{IntCounterVec, Opts, Registry};
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
        Ok(Self {
            http,
            journeys_received,
        })
    }

    /// Counts one journey submission.
    pub fn journey_received(&self, outcome: Outcome) {
        self.journeys_received
            .with_label_values(&[outcome.as_str()])
            .inc();
    }
}
