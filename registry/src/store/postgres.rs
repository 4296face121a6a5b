//! [`JourneyStore`] on PostgreSQL: `timestamptz`, `uuid`, `json`. Terms checks are
//! serialised per person with transaction-scoped advisory locks; updates lock their row.

use super::batch::{BatchMetrics, Batcher};
use super::{
    Cancellation, InsertOutcome, JourneyRow, JourneyStore, ListQuery, ListedColumns, ListedJourney,
    Revise, StateColumns, StoreError, UpdateOutcome, acquisition_after_terms, labels_json,
    person_locks, sql,
};
use crate::domain::lifecycle::CHECKS_AFTER;
use crate::domain::{
    AcquisitionStatus, JourneyState, Neighbours, NewJourney, StoredJourney, TermsLabel,
    TermsWindows, violations,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Row};
use std::sync::Arc;

/// Journeys in the service's PostgreSQL schema.
#[derive(Debug, Clone)]
pub struct PgStore {
    pub(in crate::store) pool: PgPool,
    /// Groups concurrent inserts into shared transactions; `None`: one transaction each.
    batcher: Option<Arc<Batcher>>,
}

impl PgStore {
    /// A store over `pool` (migrations already applied), one transaction per insert.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            batcher: None,
        }
    }

    /// A store over `pool` whose concurrent inserts are committed together, at most
    /// `batch_max` per transaction by at most `writers` transactions at once, each
    /// transaction's size and the queue observed in `metrics`; `batch_max` 1 is [`PgStore::new`].
    pub fn batched(pool: PgPool, batch_max: usize, writers: usize, metrics: BatchMetrics) -> Self {
        let batcher = (batch_max > 1)
            .then(|| Arc::new(Batcher::new(pool.clone(), batch_max, writers, metrics)));
        Self { pool, batcher }
    }
}

/// Takes the journey's two people's locks until the end of the transaction, then counts its
/// neighbours and decides its terms labels at `now`.
async fn terms_labels(
    conn: &mut PgConnection,
    operator_id: i64,
    journey_id: i64,
    journey: &NewJourney,
    now: DateTime<Utc>,
) -> Result<Vec<TermsLabel>, StoreError> {
    let [first, second] = person_locks(journey);
    sqlx::query("SELECT pg_advisory_xact_lock($1), pg_advisory_xact_lock($2)")
        .bind(first)
        .bind(second)
        .execute(&mut *conn)
        .await?;
    let w = TermsWindows::of(journey);
    let (driver, passenger, close): (i64, i64, i64) = sqlx::query_as(sql::NEIGHBOURS_PG.as_str())
        .bind(operator_id)
        .bind(journey_id)
        .bind(journey.operator_trip_id.as_str())
        .bind(journey.driver.identity.identity_key.as_str())
        .bind(journey.passenger.identity.identity_key.as_str())
        .bind(w.day_start)
        .bind(w.day_end)
        .bind(w.close_start)
        .bind(w.close_end)
        .bind(w.scan_start)
        .bind(w.scan_end)
        .fetch_one(&mut *conn)
        .await?;
    let neighbours = Neighbours {
        driver_trips_that_day: driver,
        passenger_trips_that_day: passenger,
        close_trips: close,
    };
    Ok(violations(journey, now, &neighbours))
}

/// Moves an updated journey's checks to 24 h after its (new) start.
async fn reschedule_checks(
    conn: &mut PgConnection,
    journey_id: i64,
    start: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(sql::ENQUEUE_CHECKS)
        .bind(journey_id.to_string())
        .bind(start + CHECKS_AFTER)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    sqlx::query(sql::DROP_FINAL)
        .bind(journey_id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Inserts `row` in the open transaction of `conn`, whose people's locks are held: the insert
/// counting the neighbours in one statement (the snapshot is taken after the locks, and sees
/// what this transaction wrote before), a second statement only when the journey breaks the
/// terms, a different one only for a duplicate.
pub(in crate::store) async fn insert_locked(
    conn: &mut PgConnection,
    row: &JourneyRow<'_>,
) -> Result<InsertOutcome, StoreError> {
    let j = row.journey;
    let w = TermsWindows::of(j);
    let (driver, passenger) = (&j.driver.identity, &j.passenger.identity);
    let inserted: Option<(i64, i64, i64, i64)> = sqlx::query_as(sql::INSERT_COUNTING.as_str())
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
        .bind(driver.identity_key.as_str())
        .bind(passenger.identity_key.as_str())
        .bind(row.payload.get())
        .bind(row.created_at)
        .bind(AcquisitionStatus::Received.as_str())
        .bind(labels_json(&[]))
        .bind(driver.phone.as_ref().map(|p| p.as_str()))
        .bind(driver.phone_trunc.as_ref().map(|p| p.as_str()))
        .bind(passenger.phone.as_ref().map(|p| p.as_str()))
        .bind(passenger.phone_trunc.as_ref().map(|p| p.as_str()))
        .bind(w.day_start)
        .bind(w.day_end)
        .bind(w.close_start)
        .bind(w.close_end)
        .bind(j.start.datetime + CHECKS_AFTER)
        .bind(w.scan_start)
        .bind(w.scan_end)
        .fetch_optional(&mut *conn)
        .await?;
    outcome(conn, row, inserted).await
}

/// What the insert statement's answer for `row` means: created (with the terms labels its
/// neighbour counts give, stored by a second statement when there are any), or a duplicate
/// (when the statement inserted nothing), with the earlier journey's receipt time.
async fn outcome(
    conn: &mut PgConnection,
    row: &JourneyRow<'_>,
    inserted: Option<(i64, i64, i64, i64)>,
) -> Result<InsertOutcome, StoreError> {
    let j = row.journey;
    match inserted {
        Some((journey_id, driver_trips, passenger_trips, close_trips)) => {
            let neighbours = Neighbours {
                driver_trips_that_day: driver_trips,
                passenger_trips_that_day: passenger_trips,
                close_trips,
            };
            let labels = violations(j, row.created_at, &neighbours);
            if !labels.is_empty() {
                sqlx::query(sql::TERMS_VIOLATION)
                    .bind(journey_id)
                    .bind(labels_json(&labels))
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(InsertOutcome::Created {
                journey_id,
                terms_violation_labels: labels,
            })
        }
        None => {
            // The conflicting row is committed (ON CONFLICT waited for it if needed) or this
            // transaction's own, so this statement's fresh snapshot sees it.
            let created_at: DateTime<Utc> = sqlx::query_scalar(sql::EXISTING)
                .bind(row.operator_id)
                .bind(j.operator_journey_id.as_str())
                .fetch_one(&mut *conn)
                .await?;
            Ok(InsertOutcome::AlreadyRegistered { created_at })
        }
    }
}

/// Inserts `rows` in the open transaction of `conn`, whose people's locks are held, with one
/// statement (plus one per terms refusal or duplicate): each row's outcome, in order, as
/// [`insert_locked`] would give it. The rows must share no person and no key, so that none
/// of their terms checks depends on another (the caller splits a batch into such waves).
pub(in crate::store) async fn insert_independent(
    conn: &mut PgConnection,
    rows: &[JourneyRow<'_>],
) -> Result<Vec<InsertOutcome>, StoreError> {
    let n = rows.len();
    let mut uuids = Vec::with_capacity(n);
    let mut operators = Vec::with_capacity(n);
    let mut ids = Vec::with_capacity(n);
    let mut trips = Vec::with_capacity(n);
    let mut classes = Vec::with_capacity(n);
    let (mut starts, mut start_lats, mut start_lons) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ends, mut end_lats, mut end_lons) = (Vec::new(), Vec::new(), Vec::new());
    let mut distances = Vec::with_capacity(n);
    let (mut drivers, mut passengers) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut payloads = Vec::with_capacity(n);
    let mut received = Vec::with_capacity(n);
    let mut phones: [Vec<Option<&str>>; 4] = Default::default();
    let mut windows: [Vec<DateTime<Utc>>; 7] = Default::default();
    for row in rows {
        let j = row.journey;
        uuids.push(row.uuid);
        operators.push(row.operator_id);
        ids.push(j.operator_journey_id.as_str());
        trips.push(j.operator_trip_id.as_str());
        classes.push(j.operator_class.as_str());
        starts.push(j.start.datetime);
        start_lats.push(j.start.lat);
        start_lons.push(j.start.lon);
        ends.push(j.end.datetime);
        end_lats.push(j.end.lat);
        end_lons.push(j.end.lon);
        distances.push(j.distance);
        let (driver, passenger) = (&j.driver.identity, &j.passenger.identity);
        drivers.push(driver.identity_key.as_str());
        passengers.push(passenger.identity_key.as_str());
        payloads.push(row.payload.get());
        received.push(row.created_at);
        phones[0].push(driver.phone.as_ref().map(|p| p.as_str()));
        phones[1].push(driver.phone_trunc.as_ref().map(|p| p.as_str()));
        phones[2].push(passenger.phone.as_ref().map(|p| p.as_str()));
        phones[3].push(passenger.phone_trunc.as_ref().map(|p| p.as_str()));
        let w = TermsWindows::of(j);
        windows[0].push(w.day_start);
        windows[1].push(w.day_end);
        windows[2].push(w.close_start);
        windows[3].push(w.close_end);
        windows[4].push(j.start.datetime + CHECKS_AFTER);
        windows[5].push(w.scan_start);
        windows[6].push(w.scan_end);
    }
    let [
        driver_phones,
        driver_truncs,
        passenger_phones,
        passenger_truncs,
    ] = phones;
    let [
        day_starts,
        day_ends,
        close_starts,
        close_ends,
        checks_at,
        scan_starts,
        scan_ends,
    ] = windows;
    let inserted: Vec<(i64, String, i64, i64, i64, i64)> =
        sqlx::query_as(sql::INSERT_COUNTING_MANY.as_str())
            .bind(uuids)
            .bind(operators)
            .bind(ids)
            .bind(trips)
            .bind(classes)
            .bind(starts)
            .bind(start_lats)
            .bind(start_lons)
            .bind(ends)
            .bind(end_lats)
            .bind(end_lons)
            .bind(distances)
            .bind(drivers)
            .bind(passengers)
            .bind(payloads)
            .bind(received)
            .bind(driver_phones)
            .bind(driver_truncs)
            .bind(passenger_phones)
            .bind(passenger_truncs)
            .bind(day_starts)
            .bind(day_ends)
            .bind(close_starts)
            .bind(close_ends)
            .bind(checks_at)
            .bind(scan_starts)
            .bind(scan_ends)
            .fetch_all(&mut *conn)
            .await?;
    let mut outcomes = Vec::with_capacity(n);
    for row in rows {
        let j = row.journey;
        let found = inserted.iter().find(|(operator_id, id, ..)| {
            *operator_id == row.operator_id && id == j.operator_journey_id.as_str()
        });
        let counts = found.map(|&(_, _, journey_id, driver, passenger, close)| {
            (journey_id, driver, passenger, close)
        });
        let outcome = outcome(conn, row, counts).await?;
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// `BEGIN` and the transaction-scoped advisory locks of `locks` (sorted, so that two
/// transactions never wait on each other crosswise), as one simple query.
pub(in crate::store) fn begin_locking(locks: &[i64]) -> AssertSqlSafe<String> {
    let calls = locks
        .iter()
        .map(|l| format!("pg_advisory_xact_lock({l})"))
        .collect::<Vec<_>>()
        .join(", ");
    // Audited: integers only.
    AssertSqlSafe(format!("BEGIN; SELECT {calls}"))
}

/// One journey in its own transaction: three round trips (BEGIN with the people's locks,
/// the insert, COMMIT).
pub(in crate::store) async fn insert_alone(
    pool: &PgPool,
    row: &JourneyRow<'_>,
) -> Result<InsertOutcome, StoreError> {
    let mut tx = pool
        .begin_with(begin_locking(&person_locks(row.journey)))
        .await?;
    let outcome = insert_locked(&mut tx, row).await?;
    tx.commit().await?;
    Ok(outcome)
}

#[async_trait]
impl JourneyStore for PgStore {
    async fn insert(&self, row: &JourneyRow<'_>) -> Result<InsertOutcome, StoreError> {
        match &self.batcher {
            Some(batcher) => batcher.insert(row).await,
            None => insert_alone(&self.pool, row).await,
        }
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

    async fn list(&self, query: &ListQuery) -> Result<Vec<ListedJourney>, StoreError> {
        let Some(text) = sql::list(query.status, query.operator_id.is_some()) else {
            return Ok(Vec::new());
        };
        let mut q = sqlx::query(text);
        if let Some(operator_id) = query.operator_id {
            q = q.bind(operator_id);
        }
        let rows = q
            .bind(query.start)
            .bind(query.end)
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
                    start: r.try_get("start_datetime")?,
                    created_at: r.try_get("created_at")?,
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
        let mut tx = self.pool.begin().await?;
        let Some(r) = sqlx::query(sql::STORED_FOR_UPDATE)
            .bind(operator_id)
            .bind(operator_journey_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(UpdateOutcome::NotFound);
        };
        let journey_id: i64 = r.try_get("journey_id")?;
        let stored = StoredJourney {
            payload: r.try_get("payload")?,
            start: r.try_get("start_datetime")?,
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
            .bind(j.start.datetime)
            .bind(j.start.lat)
            .bind(j.start.lon)
            .bind(j.end.datetime)
            .bind(j.end.lat)
            .bind(j.end.lon)
            .bind(j.distance)
            .bind(&payload)
            .bind(acquisition.as_str())
            .bind(labels_json(&labels))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        reschedule_checks(&mut tx, journey_id, j.start.datetime, now).await?;
        sqlx::query(sql::REVISION)
            .bind(journey_id)
            .bind("update")
            .bind(now)
            .bind(&stored.payload)
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
        let mut tx = self.pool.begin().await?;
        let Some(journey_id): Option<i64> = sqlx::query_scalar(sql::CANCEL)
            .bind(operator_id)
            .bind(operator_journey_id)
            .bind(cancellation.code)
            .bind(cancellation.message)
            .bind(cancellation.at)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(false);
        };
        sqlx::query(sql::REVISION)
            .bind(journey_id)
            .bind("cancel")
            .bind(cancellation.at)
            .bind(cancellation.body)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::sql;
    use crate::store::lifecycle::body;
    use rpc_service::db::{Database, DatabaseSettings};
    use sqlx::{AssertSqlSafe, Executor, PgPool};

    /// The generic plan of `query` (parameters left unbound), as a prepared statement gets it
    /// once PostgreSQL stops planning it per call.
    async fn plan(pool: &PgPool, query: &str) -> String {
        let mut conn = pool.acquire().await.unwrap();
        conn.execute("SET plan_cache_mode = force_generic_plan")
            .await
            .unwrap();
        conn.execute(AssertSqlSafe(format!("PREPARE q AS {query}")))
            .await
            .unwrap();
        let params = sqlx::query_scalar::<_, i32>(
            "SELECT cardinality(parameter_types) FROM pg_prepared_statements WHERE name = 'q'",
        )
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        let nulls = vec!["NULL"; params as usize].join(", ");
        let lines: Vec<String> =
            sqlx::query_scalar(AssertSqlSafe(format!("EXPLAIN EXECUTE q({nulls})")))
                .fetch_all(&mut *conn)
                .await
                .unwrap();
        conn.execute("DEALLOCATE q").await.unwrap();
        lines.join("\n")
    }

    /// Journeys `from..=to` starting today, spread over `operators` operators (one operator:
    /// operator 1) and `people` drivers and as many passengers.
    fn journeys(from: u32, to: u32, operators: u32, people: u32) -> String {
        let operator = format!("1 + i % {operators}");
        format!(
            "INSERT INTO journeys (uuid, operator_id, operator_journey_id, operator_trip_id, \
             operator_class, start_datetime, start_lat, start_lon, end_datetime, end_lat, \
             end_lon, distance, driver_identity_key, passenger_identity_key, payload, \
             created_at, acquisition_status) \
             SELECT gen_random_uuid(), {operator}, 'j' || i, 't' || i, 'C', t, 48.85, 2.35, \
             t + interval '30 minutes', 48.9, 2.4, 12000, \
             md5('d' || i % {people}) || md5('dd' || i % {people}), \
             md5('p' || i % {people}) || md5('pp' || i % {people}), '{{}}', t, 'received' \
             FROM generate_series({from}, {to}) AS i, \
             LATERAL (SELECT date_trunc('day', now()) + (i % 1440) * interval '1 minute' AS t) AS s"
        )
    }

    /// The neighbour queries' plans on a new schema prepared by `setup`.
    async fn plans_after(setup: &str) -> Vec<(&'static str, String)> {
        let url = std::env::var("REGISTRY_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        let settings = DatabaseSettings::new(url, Some(&schema));
        let Database::Postgres(pool) = Database::connect(
            &settings,
            &crate::POSTGRES_MIGRATIONS,
            &crate::SQLITE_MIGRATIONS,
        )
        .await
        .unwrap() else {
            unreachable!("a PostgreSQL URL")
        };
        pool.execute(AssertSqlSafe(setup.to_owned())).await.unwrap();
        let queries = [
            ("NEIGHBOURS_PG", sql::NEIGHBOURS_PG.as_str()),
            ("INSERT_COUNTING", sql::INSERT_COUNTING.as_str()),
            ("INSERT_COUNTING_MANY", sql::INSERT_COUNTING_MANY.as_str()),
            ("lifecycle NEIGHBOURS_PG", body::NEIGHBOURS_PG),
        ];
        let mut plans = Vec::new();
        for (name, query) in queries {
            plans.push((name, plan(&pool, query).await));
        }
        pool.execute(AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE")))
            .await
            .unwrap();
        plans
    }

    /// Every query that counts or lists a person's neighbours finds them through the two
    /// person indexes, and never through the operator's journeys of the period, whatever the
    /// statistics say: a registry that starts empty (statistics of an empty table, then a
    /// day of journeys before autoanalyze runs), one never analysed (a restored dump), one
    /// operator sending nearly all of the day's journeys, and a registry in service.
    #[tokio::test]
    async fn neighbour_queries_read_the_person_indexes_whatever_the_statistics() {
        let cases = [
            (
                "statistics of an empty table, 20 000 journeys since",
                format!("ANALYZE journeys; {}", journeys(1, 20_000, 1, 5_000)),
            ),
            ("never analysed", journeys(1, 20_000, 1, 5_000)),
            (
                "an operator onboarding with a backlog: analysed while 200 operators shared a \
                 few regulars' 2 000 journeys, then 20 000 of one operator's 5 000 people",
                format!(
                    "{}; ANALYZE journeys; {}",
                    journeys(1, 2_000, 200, 20),
                    journeys(2_001, 22_000, 1, 5_000)
                ),
            ),
            (
                "four operators, analysed",
                format!("{}; ANALYZE journeys", journeys(1, 20_000, 4, 5_000)),
            ),
        ];
        let mut wrong = Vec::new();
        for (case, setup) in cases {
            for (name, plan) in plans_after(&setup).await {
                let person_indexes = [
                    "journeys_driver_prefix_idx",
                    "journeys_passenger_prefix_idx",
                ]
                .iter()
                .all(|index| plan.contains(index));
                if !person_indexes
                    || plan.contains("journeys_operator_start_idx")
                    || plan.contains("Seq Scan on journeys")
                {
                    wrong.push(format!("{case}: {name}:\n{plan}"));
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "{} plans do not read the person indexes alone:\n{}",
            wrong.len(),
            wrong.join("\n\n")
        );
    }
}
