//! [`JourneyStore`] on SQLite: timestamps as INTEGER unix milliseconds, uuid and JSON as TEXT.
//! Every write transaction starts with `BEGIN IMMEDIATE`, which takes the database's single
//! write lock up front: terms checks and updates are serialised without further locking.

use super::{
    Cancellation, InsertOutcome, JourneyRow, JourneyStore, ListQuery, ListedColumns, ListedJourney,
    Revise, StateColumns, StoreError, UpdateOutcome, acquisition_after_terms, labels_json, sql,
};
use crate::domain::lifecycle::CHECKS_AFTER;
use crate::domain::{
    AcquisitionStatus, JourneyState, Neighbours, NewJourney, StoredJourney, TermsLabel,
    TermsWindows, violations,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{Row, SqliteConnection, SqlitePool};

/// Journeys in the embedded SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(in crate::store) pool: SqlitePool,
}

impl SqliteStore {
    /// A store over `pool` (migrations already applied).
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

pub(in crate::store) fn from_millis(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms} out of range")))
}

fn parse_json(column: &str, text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

/// Counts the journey's neighbours and decides its terms labels at `now`; the caller holds
/// the write lock.
async fn terms_labels(
    conn: &mut SqliteConnection,
    operator_id: i64,
    journey_id: i64,
    journey: &NewJourney,
    now: DateTime<Utc>,
) -> Result<Vec<TermsLabel>, StoreError> {
    let w = TermsWindows::of(journey);
    let (driver, passenger, close): (i64, i64, i64) =
        sqlx::query_as(sql::NEIGHBOURS_SQLITE.as_str())
            .bind(operator_id)
            .bind(journey_id)
            .bind(journey.operator_trip_id.as_str())
            .bind(journey.driver.identity.identity_key.as_str())
            .bind(journey.passenger.identity.identity_key.as_str())
            .bind(w.day_start.timestamp_millis())
            .bind(w.day_end.timestamp_millis())
            .bind(w.close_start.timestamp_millis())
            .bind(w.close_end.timestamp_millis())
            .bind(w.scan_start.timestamp_millis())
            .bind(w.scan_end.timestamp_millis())
            .fetch_one(&mut *conn)
            .await?;
    let neighbours = Neighbours {
        driver_trips_that_day: driver,
        passenger_trips_that_day: passenger,
        close_trips: close,
    };
    Ok(violations(journey, now, &neighbours))
}

/// Schedules (or moves) a journey's checks to 24 h after its start.
async fn reschedule_checks(
    conn: &mut SqliteConnection,
    journey_id: i64,
    start: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(sql::ENQUEUE_CHECKS)
        .bind(journey_id.to_string())
        .bind((start + CHECKS_AFTER).timestamp_millis())
        .bind(now.timestamp_millis())
        .execute(&mut *conn)
        .await?;
    sqlx::query(sql::DROP_FINAL)
        .bind(journey_id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[async_trait]
impl JourneyStore for SqliteStore {
    async fn insert(&self, row: &JourneyRow<'_>) -> Result<InsertOutcome, StoreError> {
        let j = row.journey;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let labels = terms_labels(&mut tx, row.operator_id, 0, j, row.created_at).await?;
        let acquisition = acquisition_after_terms(&labels, AcquisitionStatus::Received);
        let (driver, passenger) = (&j.driver.identity, &j.passenger.identity);
        let inserted: Option<i64> = sqlx::query_scalar(sql::INSERT)
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
            .bind(driver.identity_key.as_str())
            .bind(passenger.identity_key.as_str())
            .bind(row.payload.get())
            .bind(row.created_at.timestamp_millis())
            .bind(acquisition.as_str())
            .bind(labels_json(&labels).to_string())
            .bind(driver.phone.as_ref().map(|p| p.as_str()))
            .bind(driver.phone_trunc.as_ref().map(|p| p.as_str()))
            .bind(passenger.phone.as_ref().map(|p| p.as_str()))
            .bind(passenger.phone_trunc.as_ref().map(|p| p.as_str()))
            .fetch_optional(&mut *tx)
            .await?;
        let outcome = match inserted {
            Some(journey_id) => {
                if labels.is_empty() {
                    reschedule_checks(&mut tx, journey_id, j.start.datetime, row.created_at)
                        .await?;
                }
                InsertOutcome::Created {
                    journey_id,
                    terms_violation_labels: labels,
                }
            }
            None => {
                let created_at: i64 = sqlx::query_scalar(sql::EXISTING)
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
        let Some(r) = sqlx::query(sql::FIND)
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

    async fn list(&self, query: &ListQuery) -> Result<Vec<ListedJourney>, StoreError> {
        let Some(text) = sql::list(query.status, query.operator_id.is_some()) else {
            return Ok(Vec::new());
        };
        let mut q = sqlx::query(text);
        if let Some(operator_id) = query.operator_id {
            q = q.bind(operator_id);
        }
        let rows = q
            .bind(query.start.timestamp_millis())
            .bind(query.end.timestamp_millis())
            .bind(query.limit)
            .bind(query.offset)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                ListedColumns {
                    operator_id: r.try_get("operator_id")?,
                    operator_journey_id: r.try_get("operator_journey_id")?,
                    journey_id: r.try_get("journey_id")?,
                    start: from_millis(r.try_get("start_datetime")?)?,
                    created_at: from_millis(r.try_get("created_at")?)?,
                    acquisition_status: r.try_get("acquisition_status")?,
                    fraud_status: r.try_get("fraud_status")?,
                    anomaly_status: r.try_get("anomaly_status")?,
                }
                .into_listed()
            })
            .collect()
    }

    async fn update(
        &self,
        operator_id: i64,
        operator_journey_id: &str,
        now: DateTime<Utc>,
        revise: Revise<'_>,
    ) -> Result<UpdateOutcome, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let Some(r) = sqlx::query(sql::STORED)
            .bind(operator_id)
            .bind(operator_journey_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(UpdateOutcome::NotFound);
        };
        let journey_id: i64 = r.try_get("journey_id")?;
        let stored_payload: String = r.try_get("payload")?;
        let stored = StoredJourney {
            payload: parse_json("payload", &stored_payload)?,
            start: from_millis(r.try_get("start_datetime")?)?,
            acquisition: AcquisitionStatus::parse(r.try_get("acquisition_status")?),
        };
        let (j, payload) = match revise(&stored) {
            Ok(revised) => revised,
            Err(refusal) => return Ok(UpdateOutcome::Refused(refusal)),
        };
        let labels = terms_labels(&mut tx, operator_id, journey_id, &j, now).await?;
        let acquisition = acquisition_after_terms(&labels, AcquisitionStatus::Updated);
        sqlx::query(sql::UPDATE)
            .bind(journey_id)
            .bind(j.operator_trip_id.as_str())
            .bind(j.operator_class.as_str())
            .bind(j.start.datetime.timestamp_millis())
            .bind(j.start.lat)
            .bind(j.start.lon)
            .bind(j.end.datetime.timestamp_millis())
            .bind(j.end.lat)
            .bind(j.end.lon)
            .bind(j.distance)
            .bind(payload.to_string())
            .bind(acquisition.as_str())
            .bind(labels_json(&labels).to_string())
            .bind(now.timestamp_millis())
            .execute(&mut *tx)
            .await?;
        reschedule_checks(&mut tx, journey_id, j.start.datetime, now).await?;
        sqlx::query(sql::REVISION)
            .bind(journey_id)
            .bind("update")
            .bind(now.timestamp_millis())
            .bind(stored_payload)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(UpdateOutcome::Updated {
            terms_violation_labels: labels,
        })
    }

    async fn cancel(
        &self,
        operator_id: i64,
        operator_journey_id: &str,
        cancellation: &Cancellation<'_>,
    ) -> Result<bool, StoreError> {
        let at = cancellation.at.timestamp_millis();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let Some(journey_id): Option<i64> = sqlx::query_scalar(sql::CANCEL)
            .bind(operator_id)
            .bind(operator_journey_id)
            .bind(cancellation.code)
            .bind(cancellation.message)
            .bind(at)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(false);
        };
        sqlx::query(sql::REVISION)
            .bind(journey_id)
            .bind("cancel")
            .bind(at)
            .bind(cancellation.body.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::sql;
    use rpc_service::db::{Database, DatabaseSettings};
    use sqlx::{AssertSqlSafe, Executor};

    /// On SQLite too the neighbour counts find a person's journeys through the person indexes
    /// alone, never through the operator's journeys of the day: on a database never
    /// analysed (as every embedded registry is) and once analysed, with one operator sending
    /// every journey of the day.
    #[tokio::test]
    async fn neighbour_counts_read_the_person_indexes_whatever_the_statistics() {
        let path = std::env::temp_dir().join(format!(
            "registry-plan-{}.db",
            uuid::Uuid::new_v4().simple()
        ));
        let settings = DatabaseSettings::new(format!("sqlite://{}", path.display()), None);
        let Database::Sqlite(pool) = Database::connect(
            &settings,
            &crate::POSTGRES_MIGRATIONS,
            &crate::SQLITE_MIGRATIONS,
        )
        .await
        .unwrap() else {
            unreachable!("a SQLite URL")
        };
        pool.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) \
             INSERT INTO journeys (uuid, operator_id, operator_journey_id, operator_trip_id, \
             operator_class, start_datetime, start_lat, start_lon, end_datetime, end_lat, \
             end_lon, distance, driver_identity_key, passenger_identity_key, payload, \
             created_at, acquisition_status) \
             SELECT lower(hex(randomblob(16))), 1, 'j' || i, 't' || i, 'C', \
             1764892800000 + i * 60000, 48.85, 2.35, 1764892800000 + i * 60000 + 1800000, \
             48.9, 2.4, 12000, printf('%064x', i % 500), printf('%064x', 1000 + i % 800), \
             '{}', 1764892800000 + i * 60000, 'received' FROM n",
        )
        .await
        .unwrap();
        let mut plans = Vec::new();
        for analysed in [false, true] {
            if analysed {
                pool.execute("ANALYZE").await.unwrap();
            }
            let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(AssertSqlSafe(format!(
                "EXPLAIN QUERY PLAN {}",
                sql::NEIGHBOURS_SQLITE.as_str()
            )))
            .fetch_all(&pool)
            .await
            .unwrap();
            let plan: Vec<String> = rows.into_iter().map(|(.., detail)| detail).collect();
            plans.push((analysed, plan.join("\n")));
        }
        pool.close().await;
        let _ = std::fs::remove_file(&path);
        for (analysed, plan) in plans {
            assert!(
                plan.contains("journeys_driver_time_idx")
                    && plan.contains("journeys_passenger_time_idx"),
                "analysed: {analysed}: the person indexes are not used:\n{plan}"
            );
            assert!(
                !plan.contains("journeys_operator_start_idx") && !plan.contains("SCAN journeys"),
                "analysed: {analysed}: the operator's journeys or the whole table are read:\n{plan}"
            );
        }
    }
}
