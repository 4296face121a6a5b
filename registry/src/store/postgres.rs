//! [`JourneyStore`] on PostgreSQL: `timestamptz`, `uuid`, `jsonb`.

use super::{InsertOutcome, JourneyRow, JourneyStore, StateColumns, StoreError, labels_json};
use crate::domain::JourneyState;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgPool, Row};

/// Journeys in the service's PostgreSQL schema.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// A store over `pool` (migrations already applied).
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

const INSERT: &str = "INSERT INTO journeys (uuid, operator_id, operator_journey_id, \
    operator_trip_id, operator_class, start_datetime, start_lat, start_lon, end_datetime, \
    end_lat, end_lon, distance, driver_identity_key, passenger_identity_key, payload, \
    created_at, acquisition_status, terms_violation_labels) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
    ON CONFLICT (operator_id, operator_journey_id) DO NOTHING \
    RETURNING journey_id";

const EXISTING: &str =
    "SELECT created_at FROM journeys WHERE operator_id = $1 AND operator_journey_id = $2";

const FIND: &str = "SELECT operator_journey_id, journey_id, created_at, acquisition_status, \
    fraud_status, anomaly_status, terms_violation_labels, fraud_error_labels, \
    anomaly_error_details \
    FROM journeys WHERE operator_id = $1 AND operator_journey_id = $2";

#[async_trait]
impl JourneyStore for PgStore {
    async fn insert(&self, row: &JourneyRow<'_>) -> Result<InsertOutcome, StoreError> {
        let j = row.journey;
        let mut tx = self.pool.begin().await?;
        let inserted: Option<i64> = sqlx::query_scalar(INSERT)
            .bind(row.uuid)
            .bind(row.operator_id)
            .bind(j.operator_journey_id.as_str())
            .bind(j.operator_trip_id.as_str())
            .bind(j.operator_class.as_str())
            .bind(j.start.datetime)
            .bind(j.start.lat)
            .bind(j.start.lon)
            .bind(j.end.datetime)
            .bind(j.end.lat)
            .bind(j.end.lon)
            .bind(j.distance)
            .bind(j.driver.identity.identity_key.as_str())
            .bind(j.passenger.identity.identity_key.as_str())
            .bind(row.payload)
            .bind(row.created_at)
            .bind(row.acquisition_status.as_str())
            .bind(labels_json(row.terms_violation_labels))
            .fetch_optional(&mut *tx)
            .await?;
        let outcome = match inserted {
            Some(journey_id) => InsertOutcome::Created { journey_id },
            None => {
                // The conflicting row is committed (ON CONFLICT waited for it if needed), so
                // this statement's fresh snapshot sees it.
                let created_at: DateTime<Utc> = sqlx::query_scalar(EXISTING)
                    .bind(row.operator_id)
                    .bind(j.operator_journey_id.as_str())
                    .fetch_one(&mut *tx)
                    .await?;
                InsertOutcome::AlreadyRegistered { created_at }
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
        StateColumns {
            operator_journey_id: r.try_get("operator_journey_id")?,
            journey_id: r.try_get("journey_id")?,
            created_at: r.try_get("created_at")?,
            acquisition_status: r.try_get("acquisition_status")?,
            fraud_status: r.try_get("fraud_status")?,
            anomaly_status: r.try_get("anomaly_status")?,
            terms_violation_labels: r.try_get::<Value, _>("terms_violation_labels")?,
            fraud_error_labels: r.try_get::<Value, _>("fraud_error_labels")?,
            anomaly_error_details: r.try_get::<Value, _>("anomaly_error_details")?,
        }
        .into_state()
        .map(Some)
    }
}
