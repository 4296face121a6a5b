//! Persistence: the only code that knows SQL.
//!
//! [`JourneyStore`] is what the HTTP layer sees; [`PgStore`] (production) and [`SqliteStore`]
//! (embedded default) implement it over the schemas in `registry/migrations/`. Pick one with
//! [`for_database`].

mod postgres;
mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::domain::{AcquisitionStatus, CheckStatus, JourneyState, NewJourney, TermsLabel};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rpc_service::db::Database;
use serde_json::Value;
use std::sync::Arc;
use uuid::Uuid;

/// Why a store call failed. Never shown to clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed the call.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored value this code cannot read back.
    #[error("stored row is unreadable: {0}")]
    Corrupt(String),
}

/// One journey to insert, with what the registry decided about it.
#[derive(Debug, Clone)]
pub struct JourneyRow<'a> {
    /// Internal id.
    pub uuid: Uuid,
    /// The operator the caller belongs to.
    pub operator_id: i64,
    /// The validated journey.
    pub journey: &'a NewJourney,
    /// The body as received, kept for audits and re-processing.
    pub payload: &'a Value,
    /// Receipt time, millisecond precision.
    pub created_at: DateTime<Utc>,
    /// `received`, or `terms_violation_error` when `terms_violation_labels` is not empty.
    pub acquisition_status: AcquisitionStatus,
    /// Terms of use the journey breaks, in label order.
    pub terms_violation_labels: &'a [TermsLabel],
}

/// What an insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Committed; `journey_id` is the new sequential id.
    Created { journey_id: i64 },
    /// The operator already sent this `operator_journey_id`; nothing was written.
    AlreadyRegistered { created_at: DateTime<Utc> },
}

/// Journeys, keyed by `(operator_id, operator_journey_id)`.
#[async_trait]
pub trait JourneyStore: Send + Sync + 'static {
    /// Inserts `row` in one transaction and returns only after COMMIT. Concurrent inserts of
    /// the same key create exactly one row.
    async fn insert(&self, row: &JourneyRow<'_>) -> Result<InsertOutcome, StoreError>;

    /// The processing state of one of `operator_id`'s journeys.
    async fn find(
        &self,
        operator_id: i64,
        operator_journey_id: &str,
    ) -> Result<Option<JourneyState>, StoreError>;
}

/// The store over whichever database `db` is.
pub fn for_database(db: &Database) -> Arc<dyn JourneyStore> {
    match db {
        Database::Postgres(pool) => Arc::new(PgStore::new(pool.clone())),
        Database::Sqlite(pool) => Arc::new(SqliteStore::new(pool.clone())),
    }
}

/// The labels as stored: a JSON array of strings.
fn labels_json(labels: &[TermsLabel]) -> Value {
    Value::from(labels.iter().map(|l| l.as_str()).collect::<Vec<_>>())
}

/// The stored status columns and JSON arrays, read back into a [`JourneyState`].
struct StateColumns {
    operator_journey_id: String,
    journey_id: i64,
    created_at: DateTime<Utc>,
    acquisition_status: String,
    fraud_status: String,
    anomaly_status: String,
    terms_violation_labels: Value,
    fraud_error_labels: Value,
    anomaly_error_details: Value,
}

impl StateColumns {
    fn into_state(self) -> Result<JourneyState, StoreError> {
        let check = |s: &str| {
            CheckStatus::parse(s).ok_or_else(|| StoreError::Corrupt(format!("check status {s:?}")))
        };
        Ok(JourneyState {
            acquisition: AcquisitionStatus::parse(&self.acquisition_status),
            fraud: check(&self.fraud_status)?,
            anomaly: check(&self.anomaly_status)?,
            terms_violation_labels: strings(self.terms_violation_labels)?,
            fraud_error_labels: strings(self.fraud_error_labels)?,
            anomaly_error_details: array(self.anomaly_error_details)?,
            operator_journey_id: self.operator_journey_id,
            journey_id: self.journey_id,
            created_at: self.created_at,
        })
    }
}

fn array(value: Value) -> Result<Vec<Value>, StoreError> {
    match value {
        Value::Array(items) => Ok(items),
        other => Err(StoreError::Corrupt(format!(
            "expected a JSON array, got {other}"
        ))),
    }
}

fn strings(value: Value) -> Result<Vec<String>, StoreError> {
    array(value)?
        .into_iter()
        .map(|v| match v {
            Value::String(s) => Ok(s),
            other => Err(StoreError::Corrupt(format!(
                "expected a string, got {other}"
            ))),
        })
        .collect()
}
