//! [`CeeStore`] on PostgreSQL: registrations hold advisory locks on the person's keys and the
//! claimed journey until COMMIT.

use super::{
    ApplicationColumns, CeeStore, ImportOutcome, JourneyColumns, NewApplication, RegisterOutcome,
    begin_locked, identity_import_locks, import_locks, registration_locks, sql,
};
use crate::domain::TimeGeoPoint;
use crate::domain::cee::{
    ClaimedJourney, IdentityImport, JourneyType, Person, SpecificOperation, StoredApplication,
    first_conflict,
};
use crate::store::{PgStore, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgConnection, Row};
use uuid::Uuid;

fn application(r: &PgRow) -> Result<StoredApplication, StoreError> {
    let acquisition: Option<String> = r.try_get("acquisition_status")?;
    let statuses = match acquisition {
        Some(a) => Some((a, r.try_get("fraud_status")?, r.try_get("anomaly_status")?)),
        None => None,
    };
    ApplicationColumns {
        uuid: r.try_get("uuid")?,
        operator_id: r.try_get("operator_id")?,
        kind: r.try_get("kind")?,
        journey_type: r.try_get("journey_type")?,
        journey_id: r.try_get("journey_id")?,
        identity_key: r.try_get("identity_key")?,
        driving_license: r.try_get("driving_license")?,
        last_name_trunc: r.try_get("last_name_trunc")?,
        phone_trunc: r.try_get("phone_trunc")?,
        datetime: r.try_get("datetime")?,
        token: r.try_get("token")?,
        deleted: r
            .try_get::<Option<DateTime<Utc>>, _>("deleted_at")?
            .is_some(),
        statuses,
    }
    .into_application()
}

async fn same_person(
    conn: &mut PgConnection,
    journey_type: JourneyType,
    person: &Person,
) -> Result<Vec<StoredApplication>, StoreError> {
    let rows = sqlx::query(sql::SAME_PERSON)
        .bind(journey_type.as_str())
        .bind(person.identity_key.as_ref().map(|k| k.as_str()))
        .bind(person.driving_licence.as_ref().map(|l| l.as_str()))
        .bind(person.last_name_trunc.as_str())
        .bind(person.phone_trunc.as_str())
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(application).collect()
}

#[async_trait]
impl CeeStore for PgStore {
    async fn claimable_journey(
        &self,
        operator_id: i64,
        operator_journey_id: &str,
    ) -> Result<Option<ClaimedJourney>, StoreError> {
        let Some(r) = sqlx::query(sql::JOURNEY)
            .bind(operator_id)
            .bind(operator_journey_id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let point = |at: &str, lat: &str, lon: &str| -> Result<TimeGeoPoint, StoreError> {
            Ok(TimeGeoPoint {
                datetime: r.try_get(at)?,
                lat: r.try_get(lat)?,
                lon: r.try_get(lon)?,
            })
        };
        JourneyColumns {
            journey_id: r.try_get("journey_id")?,
            operator_class: r.try_get("operator_class")?,
            distance: i64::from(r.try_get::<i32, _>("distance")?),
            start: point("start_datetime", "start_lat", "start_lon")?,
            end: point("end_datetime", "end_lat", "end_lon")?,
            driver_phone: r.try_get("driver_phone")?,
            driver_phone_trunc: r.try_get("driver_phone_trunc")?,
            statuses: (
                r.try_get("acquisition_status")?,
                r.try_get("fraud_status")?,
                r.try_get("anomaly_status")?,
            ),
        }
        .into_journey()
        .map(Some)
    }

    async fn register(&self, app: &NewApplication<'_>) -> Result<RegisterOutcome, StoreError> {
        let locks = registration_locks(app.person, app.journey_id);
        // Audited: integers only.
        let mut tx = self
            .pool
            .begin_with(AssertSqlSafe(begin_locked(&locks)))
            .await?;
        if let Some(journey_id) = app.journey_id
            && let Some(r) = sqlx::query(sql::CLAIMING)
                .bind(journey_id)
                .fetch_optional(&mut *tx)
                .await?
        {
            return Ok(RegisterOutcome::JourneyClaimed(application(&r)?));
        }
        let earlier = same_person(&mut tx, app.journey_type, app.person).await?;
        if let Some(conflict) = first_conflict(&earlier, app.journey_type, app.person, app.datetime)
        {
            return Ok(RegisterOutcome::Conflict(conflict.clone()));
        }
        let p = app.person;
        sqlx::query(sql::INSERT)
            .bind(app.uuid)
            .bind(app.operator_id)
            .bind(app.journey_type.as_str())
            .bind(app.journey_id)
            .bind(p.identity_key.as_ref().map(|k| k.as_str()))
            .bind(p.driving_licence.as_ref().map(|l| l.as_str()))
            .bind(p.last_name_trunc.as_str())
            .bind(p.phone_trunc.as_str())
            .bind(app.datetime)
            .bind(app.application_timestamp)
            .bind(app.token)
            .bind(app.created_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(RegisterOutcome::Created)
    }

    async fn applications_of(
        &self,
        journey_type: JourneyType,
        person: &Person,
    ) -> Result<Vec<StoredApplication>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        same_person(&mut conn, journey_type, person).await
    }

    async fn find_application(
        &self,
        operator_id: i64,
        uuid: Uuid,
    ) -> Result<Option<StoredApplication>, StoreError> {
        sqlx::query(sql::FIND)
            .bind(uuid)
            .bind(operator_id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(application)
            .transpose()
    }

    async fn delete_application(
        &self,
        operator_id: i64,
        uuid: Uuid,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(sql::DELETE)
            .bind(uuid)
            .bind(operator_id)
            .bind(at)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn import_specific(
        &self,
        operator_id: i64,
        operations: &[SpecificOperation],
        created_at: DateTime<Utc>,
    ) -> Result<Vec<ImportOutcome>, StoreError> {
        // Audited: integers only.
        let begin = begin_locked(&import_locks(operations));
        let mut tx = self.pool.begin_with(AssertSqlSafe(begin)).await?;
        let mut outcomes = Vec::with_capacity(operations.len());
        for o in operations {
            let done = sqlx::query(sql::IMPORT)
                .bind(Uuid::new_v4())
                .bind(operator_id)
                .bind(o.journey_type.as_str())
                .bind(o.last_name_trunc.as_str())
                .bind(o.phone_trunc.as_str())
                .bind(o.datetime)
                .bind(o.datetime)
                .bind(created_at)
                .execute(&mut *tx)
                .await?;
            outcomes.push(if done.rows_affected() == 1 {
                ImportOutcome::Imported
            } else {
                ImportOutcome::Conflict
            });
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    async fn import_identities(
        &self,
        operator_id: i64,
        imports: &[IdentityImport],
    ) -> Result<Vec<bool>, StoreError> {
        // Audited: integers only.
        let begin = begin_locked(&identity_import_locks(imports));
        let mut tx = self.pool.begin_with(AssertSqlSafe(begin)).await?;
        let mut set = Vec::with_capacity(imports.len());
        for import in imports {
            let query = match import {
                IdentityImport::Standardized { uuid, identity_key } => {
                    sqlx::query(sql::IDENTIFY_BY_UUID)
                        .bind(identity_key.as_str())
                        .bind(operator_id)
                        .bind(*uuid)
                }
                IdentityImport::Specific {
                    identity_key,
                    operation: o,
                } => sqlx::query(sql::IDENTIFY_SPECIFIC)
                    .bind(identity_key.as_str())
                    .bind(operator_id)
                    .bind(o.journey_type.as_str())
                    .bind(o.last_name_trunc.as_str())
                    .bind(o.phone_trunc.as_str()),
            };
            set.push(query.execute(&mut *tx).await?.rows_affected() == 1);
        }
        tx.commit().await?;
        Ok(set)
    }
}
