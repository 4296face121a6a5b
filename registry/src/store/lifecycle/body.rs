//! The one implementation of [`super::LifecycleStore`], instantiated per database by
//! `impl_lifecycle_store!(Store, helpers, lock = "...", skip_locked = "...", neighbours = ...)`.
//! `helpers` is a module with the same functions for both databases (`t`, `get_t`,
//! `get_opt_t`, `j`, `get_j`, `get_opt_j`, `begin`) whose types differ; `lock` and
//! `skip_locked` are the row-lock clauses (empty on SQLite, whose write transactions exclude
//! each other); `neighbours` is the database's [`NEIGHBOURS_PG`] or [`NEIGHBOURS_SQLITE`].

/// The journeys of either person (`$1`, `$2`) starting in `$3`..`$4`, other than `$5`, still
/// counting as neighbours: not canceled, not refused for the terms
/// (`AcquisitionStatus::not_counting_toward_terms`, checked by a test). `$people` picks them
/// by key the way the database's person indexes serve, ending in `AND` when not empty.
macro_rules! neighbours {
    ($people:literal) => {
        concat!(
            "SELECT journey_id, operator_id, operator_journey_id, operator_trip_id, \
             driver_identity_key, passenger_identity_key, start_datetime, end_datetime \
             FROM journeys WHERE ",
            $people,
            "(driver_identity_key IN ($1, $2) OR passenger_identity_key IN ($1, $2)) \
             AND start_datetime >= $3 AND start_datetime < $4 AND journey_id <> $5 \
             AND acquisition_status NOT IN ('canceled', 'expired', 'terms_violation_error')"
        )
    };
}

/// [`neighbours!`] on PostgreSQL, whose person indexes hold the key's first 64 bits
/// (`identity_prefix`, migration 0007); the whole keys are compared on the rows found.
pub(in crate::store) const NEIGHBOURS_PG: &str = neighbours!(
    "(identity_prefix(driver_identity_key) IN (identity_prefix($1), identity_prefix($2)) \
     OR identity_prefix(passenger_identity_key) IN (identity_prefix($1), identity_prefix($2))) AND "
);

/// [`neighbours!`] on SQLite, whose person indexes hold the whole key.
pub(super) const NEIGHBOURS_SQLITE: &str = neighbours!("");

pub(super) const CAMPAIGN_COLUMNS: &str = "id, name, start_at, end_at, operator_classes, \
    amount_per_km, min_distance, max_distance, area, max_per_person_per_day, \
    max_per_person_per_month, budget, created_at";

macro_rules! impl_lifecycle_store {
    ($store:ty, $db:ident, lock = $lock:literal, skip_locked = $skip:literal, neighbours = $neighbours:path) => {
        use $crate::domain::cee::France;
        use $crate::domain::lifecycle::campaign::{Campaign, NewCampaign, Spent, Trip};
        use $crate::domain::lifecycle::checks::{self, Facts, Neighbour};
        use $crate::domain::lifecycle::{FINAL_AFTER, Month};
        use $crate::domain::{AcquisitionStatus, JourneyStatus, OperatorClass};
        use $crate::store::StoreError;
        use $crate::store::lifecycle::{
            FundingCall, FundingLine, Job, JobKind, JobOutcome, JourneyIncentive,
            LifecycleStore, QueueStats, Written, body, checkable, campaign_from,
        };
        use async_trait::async_trait;
        use chrono::{DateTime, TimeDelta, Utc};
        use sqlx::{AssertSqlSafe, Row};

        /// Marks `job` done inside the work's transaction.
        const COMPLETE: &str = "UPDATE jobs SET done_at = $2, locked_by = NULL, \
            locked_until = NULL, last_error = NULL WHERE id = $1";

        /// The claimed job, locked, if it is still this runner's.
        const OWNED: &str = concat!(
            "SELECT id FROM jobs WHERE id = $1 AND locked_by = $2 AND done_at IS NULL",
            $lock
        );

        #[async_trait]
        impl LifecycleStore for $store {
            async fn claim(
                &self,
                runner: &str,
                now: DateTime<Utc>,
                lease: TimeDelta,
                limit: i64,
            ) -> Result<Vec<Job>, StoreError> {
                const CLAIM: &str = concat!(
                    "UPDATE jobs SET locked_by = $1, locked_until = $2, attempts = attempts + 1 \
                     WHERE id IN (SELECT id FROM jobs WHERE done_at IS NULL AND run_at <= $3 \
                     AND (locked_until IS NULL OR locked_until <= $3) \
                     ORDER BY run_at, id LIMIT $4",
                    $skip,
                    ") RETURNING id, kind, subject, run_at, attempts"
                );
                let rows = sqlx::query(CLAIM)
                    .bind(runner)
                    .bind($db::t(now + lease))
                    .bind($db::t(now))
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?;
                let mut jobs = rows
                    .iter()
                    .map(|r| {
                        let kind: String = r.try_get("kind")?;
                        Ok(Job {
                            id: r.try_get("id")?,
                            kind: JobKind::parse(&kind)
                                .ok_or_else(|| StoreError::Corrupt(format!("job kind {kind:?}")))?,
                            subject: r.try_get("subject")?,
                            run_at: $db::get_t(r, "run_at")?,
                            attempts: i64::from(r.try_get::<i32, _>("attempts")?),
                        })
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?;
                jobs.sort_by_key(|j| (j.run_at, j.id));
                Ok(jobs)
            }

            async fn reschedule(
                &self,
                job: &Job,
                runner: &str,
                run_at: DateTime<Utc>,
                error: Option<&str>,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "UPDATE jobs SET locked_by = NULL, locked_until = NULL, run_at = $3, \
                     last_error = COALESCE($4, last_error) \
                     WHERE id = $1 AND locked_by = $2 AND done_at IS NULL",
                )
                .bind(job.id)
                .bind(runner)
                .bind($db::t(run_at))
                .bind(error)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn ensure_job(
                &self,
                kind: JobKind,
                subject: &str,
                run_at: DateTime<Utc>,
                now: DateTime<Utc>,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO jobs (kind, subject, run_at, created_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (kind, subject) DO NOTHING",
                )
                .bind(kind.as_str())
                .bind(subject)
                .bind($db::t(run_at))
                .bind($db::t(now))
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn queue_stats(&self, now: DateTime<Utc>) -> Result<QueueStats, StoreError> {
                let r = sqlx::query(
                    "SELECT count(*) AS due, MIN(run_at) AS oldest FROM jobs \
                     WHERE done_at IS NULL AND run_at <= $1",
                )
                .bind($db::t(now))
                .fetch_one(&self.pool)
                .await?;
                Ok(QueueStats {
                    due: r.try_get("due")?,
                    oldest_due: $db::get_opt_t(&r, "oldest")?,
                })
            }

            async fn check_journey(
                &self,
                job: &Job,
                runner: &str,
                now: DateTime<Utc>,
                france: &France,
            ) -> Result<(JobOutcome, Option<JourneyStatus>), StoreError> {
                let journey_id: i64 = job
                    .subject
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("journey job {:?}", job.subject)))?;
                let final_pass = job.kind == JobKind::JourneyFinal;
                let mut tx = $db::begin(&self.pool).await?;
                // The journey first, then the job: the order an update takes them in.
                let journey = sqlx::query(concat!(
                    "SELECT operator_id, operator_trip_id, operator_class, driver_identity_key, \
                     passenger_identity_key, start_datetime, end_datetime, start_lat, start_lon, \
                     end_lat, end_lon, distance, acquisition_status, finalized_at \
                     FROM journeys WHERE journey_id = $1",
                    $lock
                ))
                .bind(journey_id)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(mut tx) = still_owned(tx, job.id, runner).await? else {
                    return Ok((JobOutcome::Superseded, None));
                };
                let Some(r) = journey else {
                    return Ok((complete(tx, job.id, now).await?, None));
                };
                let acquisition_text: String = r.try_get("acquisition_status")?;
                let acquisition = AcquisitionStatus::parse(&acquisition_text);
                if !checkable(acquisition) || $db::get_opt_t(&r, "finalized_at")?.is_some() {
                    // Canceled, refused for the terms, or already final: nothing to do.
                    return Ok((complete(tx, job.id, now).await?, None));
                }
                let facts = Facts {
                    journey_id,
                    operator_id: r.try_get("operator_id")?,
                    operator_trip_id: r.try_get("operator_trip_id")?,
                    driver: r.try_get("driver_identity_key")?,
                    passenger: r.try_get("passenger_identity_key")?,
                    start: $db::get_t(&r, "start_datetime")?,
                    end: $db::get_t(&r, "end_datetime")?,
                    start_point: (r.try_get("start_lat")?, r.try_get("start_lon")?),
                    end_point: (r.try_get("end_lat")?, r.try_get("end_lon")?),
                    distance: i64::from(r.try_get::<i32, _>("distance")?),
                };
                let class_text: String = r.try_get("operator_class")?;
                let class = OperatorClass::parse(class_text.trim()).ok_or_else(|| {
                    StoreError::Corrupt(format!("operator class {class_text:?}"))
                })?;
                let (lo, hi) = $crate::domain::neighbour_starts(
                    $crate::domain::paris_day(facts.start),
                    facts.start,
                    facts.end,
                    checks::MAX_DURATION,
                );
                let rows = sqlx::query($neighbours)
                    .bind(facts.driver.as_str())
                    .bind(facts.passenger.as_str())
                    .bind($db::t(lo))
                    .bind($db::t(hi))
                    .bind(journey_id)
                    .fetch_all(&mut *tx)
                    .await?;
                let neighbours = rows
                    .iter()
                    .map(|n| {
                        Ok(Neighbour {
                            journey_id: n.try_get("journey_id")?,
                            operator_id: n.try_get("operator_id")?,
                            operator_journey_id: n.try_get("operator_journey_id")?,
                            operator_trip_id: n.try_get("operator_trip_id")?,
                            driver: n.try_get("driver_identity_key")?,
                            passenger: n.try_get("passenger_identity_key")?,
                            start: $db::get_t(n, "start_datetime")?,
                            end: $db::get_t(n, "end_datetime")?,
                        })
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?;
                let verdict = checks::check(&facts, &neighbours, france);
                let w = Written::of(&verdict);
                sqlx::query(
                    "UPDATE journeys SET acquisition_status = $2, fraud_status = $3, \
                     anomaly_status = $4, fraud_error_labels = $5, anomaly_error_details = $6, \
                     finalized_at = $7 WHERE journey_id = $1",
                )
                .bind(journey_id)
                .bind(w.acquisition.as_str())
                .bind(w.fraud.as_str())
                .bind(w.anomaly.as_str())
                .bind($db::j(&w.fraud_labels))
                .bind($db::j(&w.anomaly_details))
                .bind(final_pass.then(|| $db::t(now)))
                .execute(&mut *tx)
                .await?;
                if !final_pass {
                    sqlx::query(
                        "INSERT INTO jobs (kind, subject, run_at, created_at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (kind, subject) DO UPDATE SET \
                         run_at = excluded.run_at, attempts = 0, locked_by = NULL, \
                         locked_until = NULL, last_error = NULL, done_at = NULL",
                    )
                    .bind(JobKind::JourneyFinal.as_str())
                    .bind(journey_id.to_string())
                    .bind($db::t(facts.start + FINAL_AFTER))
                    .bind($db::t(now))
                    .execute(&mut *tx)
                    .await?;
                } else if w.is_ok() {
                    let trip = Trip {
                        operator_class: class,
                        start: facts.start,
                        distance: facts.distance,
                        start_point: facts.start_point,
                        end_point: facts.end_point,
                    };
                    pay(&mut tx, journey_id, &facts.driver, &trip, now).await?;
                }
                Ok((complete(tx, job.id, now).await?, Some(w.status())))
            }

            async fn issue_funding_call(
                &self,
                job: &Job,
                runner: &str,
                month: Month,
                now: DateTime<Utc>,
            ) -> Result<JobOutcome, StoreError> {
                let (month_start, month_end) = month.bounds();
                let issued_at = month.funding_call_at();
                let tx = $db::begin(&self.pool).await?;
                let Some(mut tx) = still_owned(tx, job.id, runner).await? else {
                    return Ok(JobOutcome::Superseded);
                };
                // Journeys of the month still waiting for their final pass would be missed.
                let pending: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM jobs WHERE kind IN ($1, $2) AND done_at IS NULL \
                     AND run_at < $3",
                )
                .bind(JobKind::JourneyChecks.as_str())
                .bind(JobKind::JourneyFinal.as_str())
                .bind($db::t(month_end + FINAL_AFTER))
                .fetch_one(&mut *tx)
                .await?;
                if pending > 0 {
                    tx.rollback().await?;
                    return Ok(JobOutcome::NotReady);
                }
                sqlx::query(
                    "INSERT INTO funding_calls (month, issued_at) VALUES ($1, $2) \
                     ON CONFLICT (month) DO NOTHING",
                )
                .bind(month.to_string())
                .bind($db::t(issued_at))
                .execute(&mut *tx)
                .await?;
                let call_id: i64 = sqlx::query_scalar("SELECT id FROM funding_calls WHERE month = $1")
                    .bind(month.to_string())
                    .fetch_one(&mut *tx)
                    .await?;
                // A journey canceled before the issue leaves the call; after, it stays.
                sqlx::query(
                    "INSERT INTO funding_call_lines \
                     (funding_call_id, operator_id, campaign_id, journey_id, amount) \
                     SELECT $1, j.operator_id, i.campaign_id, i.journey_id, i.amount \
                     FROM incentives i JOIN journeys j ON j.journey_id = i.journey_id \
                     WHERE j.start_datetime >= $2 AND j.start_datetime < $3 \
                     AND (j.canceled_at IS NULL OR j.canceled_at >= $4) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(call_id)
                .bind($db::t(month_start))
                .bind($db::t(month_end))
                .bind($db::t(issued_at))
                .execute(&mut *tx)
                .await?;
                complete(tx, job.id, now).await
            }

            async fn create_campaign(
                &self,
                c: &NewCampaign,
                now: DateTime<Utc>,
            ) -> Result<Campaign, StoreError> {
                let classes = serde_json::Value::from(
                    c.operator_classes.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
                );
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO campaigns (name, start_at, end_at, operator_classes, \
                     amount_per_km, min_distance, max_distance, area, max_per_person_per_day, \
                     max_per_person_per_month, budget, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
                )
                .bind(c.name.as_str())
                .bind($db::t(c.start))
                .bind($db::t(c.end))
                .bind($db::j(&classes))
                .bind(c.amount_per_km)
                .bind(c.min_distance)
                .bind(c.max_distance)
                .bind(c.area.as_ref().map(|(geometry, _)| $db::j(geometry)))
                .bind(c.max_per_person_per_day)
                .bind(c.max_per_person_per_month)
                .bind(c.budget)
                .bind($db::t(now))
                .fetch_one(&self.pool)
                .await?;
                Ok(Campaign {
                    id,
                    created_at: now,
                    rules: c.clone(),
                })
            }

            async fn campaigns(&self) -> Result<Vec<Campaign>, StoreError> {
                let sql = format!("SELECT {} FROM campaigns ORDER BY id", body::CAMPAIGN_COLUMNS);
                // Audited: a constant column list.
                let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(&self.pool).await?;
                rows.iter().map(read_campaign).collect()
            }

            async fn funding_call(
                &self,
                month: Month,
                operator_id: Option<i64>,
            ) -> Result<Option<FundingCall>, StoreError> {
                let Some(call) = sqlx::query("SELECT id, issued_at FROM funding_calls WHERE month = $1")
                    .bind(month.to_string())
                    .fetch_optional(&self.pool)
                    .await?
                else {
                    return Ok(None);
                };
                let call_id: i64 = call.try_get("id")?;
                let sql = format!(
                    "SELECT l.operator_id, l.campaign_id, c.name, l.journey_id, \
                     j.operator_journey_id, l.amount FROM funding_call_lines l \
                     JOIN campaigns c ON c.id = l.campaign_id \
                     JOIN journeys j ON j.journey_id = l.journey_id \
                     WHERE l.funding_call_id = $1 {} \
                     ORDER BY l.operator_id, l.campaign_id, l.journey_id",
                    if operator_id.is_some() { "AND l.operator_id = $2" } else { "" }
                );
                // Audited: one of two constant texts.
                let mut q = sqlx::query(AssertSqlSafe(sql)).bind(call_id);
                if let Some(id) = operator_id {
                    q = q.bind(id);
                }
                let lines = q
                    .fetch_all(&self.pool)
                    .await?
                    .iter()
                    .map(|r| {
                        Ok(FundingLine {
                            operator_id: r.try_get("operator_id")?,
                            campaign_id: r.try_get("campaign_id")?,
                            campaign_name: r.try_get("name")?,
                            journey_id: r.try_get("journey_id")?,
                            operator_journey_id: r.try_get("operator_journey_id")?,
                            amount: r.try_get("amount")?,
                        })
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?;
                Ok(Some(FundingCall {
                    month: month.to_string(),
                    issued_at: $db::get_t(&call, "issued_at")?,
                    lines,
                }))
            }

            async fn incentives_of(
                &self,
                journey_id: i64,
            ) -> Result<Vec<JourneyIncentive>, StoreError> {
                let rows = sqlx::query(
                    "SELECT i.campaign_id, c.name, i.amount FROM incentives i \
                     JOIN campaigns c ON c.id = i.campaign_id WHERE i.journey_id = $1 \
                     ORDER BY i.campaign_id",
                )
                .bind(journey_id)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(JourneyIncentive {
                            campaign_id: r.try_get("campaign_id")?,
                            campaign_name: r.try_get("name")?,
                            amount: r.try_get("amount")?,
                        })
                    })
                    .collect()
            }
        }

        /// `tx` back when job `id` is still `runner`'s (its row now locked), else `None`
        /// after rolling `tx` back at once: a dropped transaction would keep its row locks
        /// until the pooled connection is next used.
        async fn still_owned<'c>(
            mut tx: sqlx::Transaction<'c, $db::Db>,
            id: i64,
            runner: &str,
        ) -> Result<Option<sqlx::Transaction<'c, $db::Db>>, StoreError> {
            let owned: Option<i64> = sqlx::query_scalar(OWNED)
                .bind(id)
                .bind(runner)
                .fetch_optional(&mut *tx)
                .await?;
            if owned.is_some() {
                return Ok(Some(tx));
            }
            tx.rollback().await?;
            Ok(None)
        }

        /// Marks job `id` done and commits its work.
        async fn complete(
            mut tx: sqlx::Transaction<'_, $db::Db>,
            id: i64,
            now: DateTime<Utc>,
        ) -> Result<JobOutcome, StoreError> {
            sqlx::query(COMPLETE)
                .bind(id)
                .bind($db::t(now))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(JobOutcome::Done)
        }

        fn read_campaign(r: &$db::Row) -> Result<Campaign, StoreError> {
            campaign_from(
                r.try_get("id")?,
                r.try_get("name")?,
                ($db::get_t(r, "start_at")?, $db::get_t(r, "end_at")?),
                $db::get_j(r, "operator_classes")?,
                [
                    r.try_get("amount_per_km")?,
                    r.try_get("min_distance")?,
                    r.try_get("max_distance")?,
                ],
                $db::get_opt_j(r, "area")?,
                [
                    r.try_get("max_per_person_per_day")?,
                    r.try_get("max_per_person_per_month")?,
                    r.try_get("budget")?,
                ],
                $db::get_t(r, "created_at")?,
            )
        }

        /// Pays `trip` on every campaign running at its start, each campaign locked while
        /// what it already pays is summed, inside the final pass's transaction.
        async fn pay(
            tx: &mut sqlx::Transaction<'_, $db::Db>,
            journey_id: i64,
            driver: &str,
            trip: &Trip,
            now: DateTime<Utc>,
        ) -> Result<(), StoreError> {
            let sql = format!(
                "SELECT {} FROM campaigns WHERE start_at <= $1 AND end_at >= $1 ORDER BY id{}",
                body::CAMPAIGN_COLUMNS,
                $lock
            );
            // Audited: constant text.
            let rows = sqlx::query(AssertSqlSafe(sql))
                .bind($db::t(trip.start))
                .fetch_all(&mut **tx)
                .await?;
            let (day_start, day_end) = $crate::domain::paris_day(trip.start);
            let (month_start, month_end) = Month::of(trip.start).bounds();
            for row in &rows {
                let campaign = read_campaign(row)?;
                if !campaign.rules.covers(trip) {
                    continue;
                }
                let r = sqlx::query(
                    "SELECT \
                     CAST(COALESCE(SUM(CASE WHEN i.beneficiary_key = $2 AND i.start_datetime >= $3 \
                       AND i.start_datetime < $4 THEN i.amount ELSE 0 END), 0) AS BIGINT) AS day, \
                     CAST(COALESCE(SUM(CASE WHEN i.beneficiary_key = $2 AND i.start_datetime >= $5 \
                       AND i.start_datetime < $6 THEN i.amount ELSE 0 END), 0) AS BIGINT) AS month, \
                     CAST(COALESCE(SUM(i.amount), 0) AS BIGINT) AS total \
                     FROM incentives i JOIN journeys j ON j.journey_id = i.journey_id \
                     WHERE i.campaign_id = $1 AND i.journey_id <> $7 \
                     AND j.acquisition_status <> 'canceled'",
                )
                .bind(campaign.id)
                .bind(driver)
                .bind($db::t(day_start))
                .bind($db::t(day_end))
                .bind($db::t(month_start))
                .bind($db::t(month_end))
                .bind(journey_id)
                .fetch_one(&mut **tx)
                .await?;
                let spent = Spent {
                    person_day: r.try_get("day")?,
                    person_month: r.try_get("month")?,
                    campaign: r.try_get("total")?,
                };
                let amount = campaign.rules.incentive(trip, &spent);
                if amount == 0 {
                    continue;
                }
                sqlx::query(
                    "INSERT INTO incentives (journey_id, campaign_id, beneficiary_key, \
                     start_datetime, amount, computed_at) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (journey_id, campaign_id) DO NOTHING",
                )
                .bind(journey_id)
                .bind(campaign.id)
                .bind(driver)
                .bind($db::t(trip.start))
                .bind(amount)
                .bind($db::t(now))
                .execute(&mut **tx)
                .await?;
                let month = Month::of(trip.start);
                sqlx::query(
                    "INSERT INTO jobs (kind, subject, run_at, created_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (kind, subject) DO NOTHING",
                )
                .bind(JobKind::FundingCall.as_str())
                .bind(month.to_string())
                .bind($db::t(month.funding_call_at()))
                .bind($db::t(now))
                .execute(&mut **tx)
                .await?;
            }
            Ok(())
        }
    };
}
