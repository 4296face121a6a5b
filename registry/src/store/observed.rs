//! A [`JourneyStore`] that times and counts every call of another one: the database latency
//! and errors of the ingestion path (`registry_db_duration_seconds{op}`,
//! `registry_db_errors_total{op}`), whichever database is behind it.
//!
//! It sees calls, not SQL: a call's time includes waiting for a pooled connection, which is
//! what a request waits for too.

use super::{
    Cancellation, InsertOutcome, JourneyRow, JourneyStore, ListQuery, ListedJourney, Revise,
    StoreError, UpdateOutcome,
};
use crate::domain::JourneyState;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use std::sync::Arc;
use std::time::Instant;

/// The `op` label values, one per [`JourneyStore`] method.
const OPS: [&str; 5] = ["insert", "find", "list", "update", "cancel"];

/// Database call latency and failures, by operation.
#[derive(Clone)]
pub struct DbMetrics {
    duration: HistogramVec,
    errors: IntCounterVec,
}

impl DbMetrics {
    /// Registers `registry_db_duration_seconds` and `registry_db_errors_total` in `registry`,
    /// every operation exported from the start (errors at 0).
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "registry_db_duration_seconds",
                "Journey store calls (pool wait included), by operation",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["op"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "registry_db_errors_total",
                "Journey store calls that failed (database error or unreadable row), by operation",
            ),
            &["op"],
        )?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        for op in OPS {
            duration.with_label_values(&[op]);
            errors.with_label_values(&[op]);
        }
        Ok(Self { duration, errors })
    }

    fn record<T>(&self, op: &str, start: Instant, result: &Result<T, StoreError>) {
        self.duration
            .with_label_values(&[op])
            .observe(start.elapsed().as_secs_f64());
        if result.is_err() {
            self.errors.with_label_values(&[op]).inc();
        }
    }
}

/// `inner`, with every call recorded in `metrics`.
pub fn observed(inner: Arc<dyn JourneyStore>, metrics: DbMetrics) -> Arc<dyn JourneyStore> {
    Arc::new(ObservedStore { inner, metrics })
}

struct ObservedStore {
    inner: Arc<dyn JourneyStore>,
    metrics: DbMetrics,
}

#[async_trait]
impl JourneyStore for ObservedStore {
    async fn insert(&self, row: &JourneyRow<'_>) -> Result<InsertOutcome, StoreError> {
        let start = Instant::now();
        let result = self.inner.insert(row).await;
        self.metrics.record("insert", start, &result);
        result
    }

    async fn find(
        &self,
        operator_id: i64,
        operator_journey_id: &str,
    ) -> Result<Option<JourneyState>, StoreError> {
        let start = Instant::now();
        let result = self.inner.find(operator_id, operator_journey_id).await;
        self.metrics.record("find", start, &result);
        result
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<ListedJourney>, StoreError> {
        let start = Instant::now();
        let result = self.inner.list(query).await;
        self.metrics.record("list", start, &result);
        result
    }

    async fn update(
        &self,
        operator_id: i64,
        operator_journey_id: &str,
        now: DateTime<Utc>,
        revise: Revise<'_>,
    ) -> Result<UpdateOutcome, StoreError> {
        let start = Instant::now();
        let result = (self.inner)
            .update(operator_id, operator_journey_id, now, revise)
            .await;
        self.metrics.record("update", start, &result);
        result
    }

    async fn cancel(
        &self,
        operator_id: i64,
        operator_journey_id: &str,
        cancellation: &Cancellation<'_>,
    ) -> Result<bool, StoreError> {
        let start = Instant::now();
        let result = (self.inner)
            .cancel(operator_id, operator_journey_id, cancellation)
            .await;
        self.metrics.record("cancel", start, &result);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::TextEncoder;

    /// A store whose `find` fails but for operator 0, and whose other calls fail.
    struct Broken;

    fn broken<T>() -> Result<T, StoreError> {
        Err(StoreError::Corrupt("broken".into()))
    }

    #[async_trait]
    impl JourneyStore for Broken {
        async fn insert(&self, _: &JourneyRow<'_>) -> Result<InsertOutcome, StoreError> {
            broken()
        }
        async fn find(&self, operator: i64, _: &str) -> Result<Option<JourneyState>, StoreError> {
            if operator == 0 { Ok(None) } else { broken() }
        }
        async fn list(&self, _: &ListQuery) -> Result<Vec<ListedJourney>, StoreError> {
            broken()
        }
        async fn update(
            &self,
            _: i64,
            _: &str,
            _: DateTime<Utc>,
            _: Revise<'_>,
        ) -> Result<UpdateOutcome, StoreError> {
            broken()
        }
        async fn cancel(&self, _: i64, _: &str, _: &Cancellation<'_>) -> Result<bool, StoreError> {
            broken()
        }
    }

    /// The value of the exported sample named exactly `sample` (name and labels).
    fn sample(registry: &Registry, sample: &str) -> f64 {
        let text = TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        let line = text
            .lines()
            .find(|l| {
                l.strip_prefix(sample)
                    .is_some_and(|rest| rest.starts_with(' '))
            })
            .unwrap_or_else(|| panic!("{sample} is not exported:\n{text}"));
        line[sample.len()..].trim().parse().unwrap()
    }

    #[tokio::test]
    async fn failed_calls_are_counted_and_every_call_is_timed() {
        let registry = Registry::new();
        let store = observed(Arc::new(Broken), DbMetrics::register(&registry).unwrap());

        assert!(store.find(1, "j1").await.is_err());
        assert!(store.find(2, "j2").await.is_err());
        assert!(store.find(0, "j3").await.unwrap().is_none());

        assert_eq!(
            sample(&registry, r#"registry_db_errors_total{op="find"}"#),
            2.0
        );
        assert_eq!(
            sample(
                &registry,
                r#"registry_db_duration_seconds_count{op="find"}"#
            ),
            3.0
        );
        // Every operation is exported from the start, so dashboards and alerts see zeros.
        assert_eq!(
            sample(&registry, r#"registry_db_errors_total{op="insert"}"#),
            0.0
        );
        assert_eq!(
            sample(
                &registry,
                r#"registry_db_duration_seconds_count{op="cancel"}"#
            ),
            0.0
        );
    }
}
