//! [`JourneyStore`] on SQLite: timestamps as INTEGER unix milliseconds, uuid and JSON as TEXT.

use super::{InsertOutcome, JourneyRow, JourneyStore, StateColumns, StoreError, labels_json};
use crate::domain::JourneyState;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{Row, SqlitePool};

/// Journeys in the embedded SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// A store over `pool` (migrations already applied).
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

const INSERT: &str = "INSERT INTO journeys (uuid, operator_id, operator_journey_id, \
    operator_trip_id, operator_class, start_datetime, start_lat, start_lon, end_datetime, \
    end_lat, end_lon, distance, driver_identity_key, passenger_identity_key, payload, \
    created_at, acquisition_status, terms_violation_labels) \
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
    ON CONFLICT (operator_id, operator_journey_id) DO NOTHING \
    RETURNING journey_id";

const EXISTING: &str =
    "SELECT created_at FROM journeys WHERE operator_id = ? AND operator_journey_id = ?";

const FIND: &str = "SELECT operator_journey_id, journey_id, created_at, acquisition_status, \
    fraud_status, anomaly_status, terms_violation_labels, fraud_error_labels, \
    anomaly_error_details \
    FROM journeys WHERE operator_id = ? AND operator_journey_id = ?";

fn from_millis(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms} out of range")))
}

fn parse_json(column: &str, text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

#[async_trait]
impl JourneyStore for SqliteStore {
    async fn insert(&self, row: &JourneyRow<'_>) -> Result<InsertOutcome, StoreError> {
        let j = row.journey;
        // IMMEDIATE takes the write lock up front (waiting under busy_timeout), so reads made
        // in this transaction cannot deadlock with another writer when upgrading.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let inserted: Option<i64> = sqlx::query_scalar(INSERT)
            .bind(row.uuid.to_string())
            .bind(row.operator_id)
            .bind(j.operator_journey_id.as_str())
            .bind(j.operator_trip_id.as_str())
            .bind(j.operator_class.as_str())
            .bind(j.start.datetime.timestamp_millis())
            .bind(j.start.lat)
            .bind(j.start.lon)
            .bind(j.end.datetime.timestamp_millis())
            .bind(j.end.lat)
            .bind(j.end.lon)
            .bind(j.distance)
            .bind(j.driver.identity.identity_key.as_str())
            .bind(j.passenger.identity.identity_key.as_str())
            .bind(row.payload.to_string())
            .bind(row.created_at.timestamp_millis())
            .bind(row.acquisition_status.as_str())
            .bind(labels_json(row.terms_violation_labels).to_string())
            .fetch_optional(&mut *tx)
            .await?;
        let outcome = match inserted {
            Some(journey_id) => InsertOutcome::Created { journey_id },
            None => {
                let created_at: i64 = sqlx::query_scalar(EXISTING)
                    .bind(row.operator_id)
                    .bind(j.operator_journey_id.as_str())
                    .fetch_one(&mut *tx)
                    .await?;
                InsertOutcome::AlreadyRegistered {
                    created_at: from_millis(created_at)?,
                }
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn find(
        &self,
        operator_id: i64,
        operator_journey_id: &str,
    ) -> Result<Option<JourneyState>, StoreError> {
        let Some(r) = sqlx::query(FIND)
            .bind(operator_id)
            .bind(operator_journey_id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let json = |column: &str| -> Result<Value, StoreError> {
            let text: String = r.try_get(column)?;
            parse_json(column, &text)
        };
        StateColumns {
            operator_journey_id: r.try_get("operator_journey_id")?,
            journey_id: r.try_get("journey_id")?,
            created_at: from_millis(r.try_get("created_at")?)?,
            acquisition_status: r.try_get("acquisition_status")?,
            fraud_status: r.try_get("fraud_status")?,
            anomaly_status: r.try_get("anomaly_status")?,
            terms_violation_labels: json("terms_violation_labels")?,
            fraud_error_labels: json("fraud_error_labels")?,
            anomaly_error_details: json("anomaly_error_details")?,
        }
        .into_state()
        .map(Some)
    }
}
