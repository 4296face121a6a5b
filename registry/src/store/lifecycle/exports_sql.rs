//! The one implementation of [`super::exports::ExportStore`], instantiated per database by
//! `impl_export_store!(Store, helpers)` in the module where `impl_lifecycle_store!` was
//! instantiated: it uses that macro's `still_owned` and `complete`, so an export job's effect
//! commits with its completion like every other job's. `helpers` is the same module of
//! per-database functions (`t`, `get_t`, `j`, `get_j`, `id`, `get_id`, `begin`).

/// The columns of an export line, in [`super::ExportRow`] order; the incentive is summed per
/// journey through the `(journey_id, campaign_id)` unique index.
pub(super) const EXPORT_SELECT: &str = "SELECT j.journey_id, j.operator_id, \
    j.operator_journey_id, j.operator_trip_id, j.operator_class, j.start_datetime, j.start_lat, \
    j.start_lon, j.end_datetime, j.end_lat, j.end_lon, j.distance, j.acquisition_status, \
    j.fraud_status, j.anomaly_status, \
    (SELECT CAST(COALESCE(SUM(i.amount), 0) AS BIGINT) FROM incentives i \
     WHERE i.journey_id = j.journey_id) AS incentive \
    FROM journeys j WHERE j.start_datetime >= $1 AND j.start_datetime < $2 \
    AND j.acquisition_status <> 'canceled'";

/// The export query for `operators` operator ids (`$3`...; none: every operator).
pub(super) fn export_query(operators: usize) -> String {
    let filter = if operators == 0 {
        String::new()
    } else {
        let placeholders: Vec<String> = (0..operators).map(|i| format!("${}", i + 3)).collect();
        format!(" AND j.operator_id IN ({})", placeholders.join(", "))
    };
    format!("{EXPORT_SELECT}{filter} ORDER BY j.start_datetime, j.journey_id")
}

pub(super) const EXPORT_COLUMNS: &str = "uuid, target, status, owner_operator_id, tz, \
    start_at, end_at, operator_ids, recipients, file_name, row_count, error, created_at, \
    completed_at, expires_at";

macro_rules! impl_export_store {
    ($store:ty, $db:ident) => {
        mod export_store {
            use super::{$db, complete, still_owned};
            use $crate::domain::lifecycle::export::{ExportStatus, ExportTarget};
            use $crate::domain::{AcquisitionStatus, CheckStatus, JourneyStatus};
            use $crate::store::StoreError;
            use $crate::store::lifecycle::exports::{
                BuiltExport, ExportFilter, ExportRecord, ExportStart, ExportStore, NewExport,
                export_of,
            };
            use $crate::store::lifecycle::exports_sql::{EXPORT_COLUMNS, export_query};
            use $crate::store::lifecycle::{ExportRow, Job, JobKind, JobOutcome};
            use async_trait::async_trait;
            use chrono::{DateTime, Utc};
            use futures_util::StreamExt as _;
            use futures_util::stream::BoxStream;
            use sqlx::{AssertSqlSafe, Row};
            use uuid::Uuid;

            /// Adds a job due at `run_at` (again, if one of that kind and subject was done).
            const PLAN: &str = "INSERT INTO jobs (kind, subject, run_at, created_at) \
                VALUES ($1, $2, $3, $4) ON CONFLICT (kind, subject) DO UPDATE SET \
                run_at = excluded.run_at, attempts = 0, locked_by = NULL, \
                locked_until = NULL, last_error = NULL, done_at = NULL";

            #[async_trait]
            impl ExportStore for $store {
                fn export_rows(
                    &self,
                    filter: &ExportFilter,
                ) -> BoxStream<'_, Result<ExportRow, StoreError>> {
                    let sql = export_query(filter.operator_ids.len());
                    // Audited: placeholders only, counted from the filter.
                    let mut q = sqlx::query(AssertSqlSafe(sql))
                        .bind($db::t(filter.start))
                        .bind($db::t(filter.end));
                    for id in &filter.operator_ids {
                        q = q.bind(*id);
                    }
                    q.fetch(&self.pool)
                        .map(|row| read_export_row(&row?))
                        .boxed()
                }

                async fn create_export(
                    &self,
                    export: &NewExport,
                    now: DateTime<Utc>,
                ) -> Result<(), StoreError> {
                    let mut tx = $db::begin(&self.pool).await?;
                    sqlx::query(
                        "INSERT INTO exports (uuid, target, status, owner_operator_id, \
                         created_by, tz, start_at, end_at, operator_ids, recipients, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                    )
                    .bind($db::id(export.uuid))
                    .bind(export.target.as_str())
                    .bind(ExportStatus::Pending.as_str())
                    .bind(export.owner_operator_id)
                    .bind(export.created_by.as_str())
                    .bind(export.tz.as_str())
                    .bind($db::t(export.filter.start))
                    .bind($db::t(export.filter.end))
                    .bind($db::j(&serde_json::json!(export.filter.operator_ids)))
                    .bind($db::j(&serde_json::json!(export.recipients)))
                    .bind($db::t(now))
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(PLAN)
                        .bind(JobKind::Export.as_str())
                        .bind(export.uuid.to_string())
                        .bind($db::t(now))
                        .bind($db::t(now))
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn find_export(
                    &self,
                    uuid: Uuid,
                ) -> Result<Option<ExportRecord>, StoreError> {
                    let sql = format!("SELECT {EXPORT_COLUMNS} FROM exports WHERE uuid = $1");
                    // Audited: a constant column list.
                    sqlx::query(AssertSqlSafe(sql))
                        .bind($db::id(uuid))
                        .fetch_optional(&self.pool)
                        .await?
                        .map(|r| read_export(&r))
                        .transpose()
                }

                async fn start_export(
                    &self,
                    job: &Job,
                    runner: &str,
                    now: DateTime<Utc>,
                ) -> Result<ExportStart, StoreError> {
                    let uuid = export_of(job)?;
                    let tx = $db::begin(&self.pool).await?;
                    let Some(mut tx) = still_owned(tx, job.id, runner).await? else {
                        return Ok(ExportStart::Superseded);
                    };
                    let started = sqlx::query(
                        "UPDATE exports SET status = $2, started_at = $3 WHERE uuid = $1",
                    )
                    .bind($db::id(uuid))
                    .bind(ExportStatus::Running.as_str())
                    .bind($db::t(now))
                    .execute(&mut *tx)
                    .await?;
                    if started.rows_affected() == 0 {
                        complete(tx, job.id, now).await?;
                        return Ok(ExportStart::Gone);
                    }
                    let sql = format!("SELECT {EXPORT_COLUMNS} FROM exports WHERE uuid = $1");
                    // Audited: a constant column list.
                    let record = sqlx::query(AssertSqlSafe(sql))
                        .bind($db::id(uuid))
                        .fetch_one(&mut *tx)
                        .await?;
                    let record = read_export(&record)?;
                    tx.commit().await?;
                    Ok(ExportStart::Build(Box::new(record)))
                }

                async fn extend_lease(
                    &self,
                    job: &Job,
                    runner: &str,
                    until: DateTime<Utc>,
                ) -> Result<bool, StoreError> {
                    let extended = sqlx::query(
                        "UPDATE jobs SET locked_until = $3 \
                         WHERE id = $1 AND locked_by = $2 AND done_at IS NULL",
                    )
                    .bind(job.id)
                    .bind(runner)
                    .bind($db::t(until))
                    .execute(&self.pool)
                    .await?;
                    Ok(extended.rows_affected() == 1)
                }

                async fn finish_export(
                    &self,
                    job: &Job,
                    runner: &str,
                    built: &BuiltExport,
                    notify: bool,
                    now: DateTime<Utc>,
                    expires_at: DateTime<Utc>,
                ) -> Result<JobOutcome, StoreError> {
                    let uuid = export_of(job)?;
                    let tx = $db::begin(&self.pool).await?;
                    let Some(mut tx) = still_owned(tx, job.id, runner).await? else {
                        return Ok(JobOutcome::Superseded);
                    };
                    let update = sqlx::query(
                        "UPDATE exports SET status = $2, file_name = $3, row_count = $4, \
                         byte_count = $5, error = $6, completed_at = $7, expires_at = $8 \
                         WHERE uuid = $1",
                    )
                    .bind($db::id(uuid));
                    let update = match built {
                        BuiltExport::Success {
                            file_name,
                            row_count,
                            byte_count,
                        } => update
                            .bind(ExportStatus::Success.as_str())
                            .bind(Some(file_name.as_str()))
                            .bind(Some(*row_count))
                            .bind(Some(*byte_count))
                            .bind(None::<&str>)
                            .bind($db::t(now))
                            .bind(Some($db::t(expires_at))),
                        BuiltExport::Failure { error } => update
                            .bind(ExportStatus::Failure.as_str())
                            .bind(None::<&str>)
                            .bind(None::<i64>)
                            .bind(None::<i64>)
                            .bind(Some(error.as_str()))
                            .bind($db::t(now))
                            .bind(None::<DateTime<Utc>>.map($db::t)),
                    };
                    update.execute(&mut *tx).await?;
                    let subject = uuid.to_string();
                    let plan = |kind: JobKind, at: DateTime<Utc>| {
                        sqlx::query(PLAN)
                            .bind(kind.as_str())
                            .bind(subject.clone())
                            .bind($db::t(at))
                            .bind($db::t(now))
                    };
                    // A failure expires too: that forgets its recipients and removes what a
                    // runner that died mid-write may have left.
                    plan(JobKind::ExportExpiry, expires_at)
                        .execute(&mut *tx)
                        .await?;
                    if notify {
                        plan(JobKind::ExportNotify, now).execute(&mut *tx).await?;
                    }
                    complete(tx, job.id, now).await
                }

                async fn export_notified(
                    &self,
                    job: &Job,
                    runner: &str,
                    now: DateTime<Utc>,
                ) -> Result<JobOutcome, StoreError> {
                    forget_recipients(self, job, runner, false, now).await
                }

                async fn expire_export(
                    &self,
                    job: &Job,
                    runner: &str,
                    now: DateTime<Utc>,
                ) -> Result<JobOutcome, StoreError> {
                    forget_recipients(self, job, runner, true, now).await
                }
            }

            /// Empties the recipients of the export of `job` (and, when it `expired`, turns a
            /// success into `expired`), completing the job.
            async fn forget_recipients(
                store: &$store,
                job: &Job,
                runner: &str,
                expired: bool,
                now: DateTime<Utc>,
            ) -> Result<JobOutcome, StoreError> {
                let uuid = export_of(job)?;
                let tx = $db::begin(&store.pool).await?;
                let Some(mut tx) = still_owned(tx, job.id, runner).await? else {
                    return Ok(JobOutcome::Superseded);
                };
                let status = if expired {
                    ExportStatus::Expired
                } else {
                    ExportStatus::Success
                };
                sqlx::query(
                    "UPDATE exports SET recipients = $2, \
                     status = CASE WHEN status = $3 THEN $4 ELSE status END WHERE uuid = $1",
                )
                .bind($db::id(uuid))
                .bind($db::j(&serde_json::json!([])))
                .bind(ExportStatus::Success.as_str())
                .bind(status.as_str())
                .execute(&mut *tx)
                .await?;
                complete(tx, job.id, now).await
            }

            fn read_export_row(r: &$db::Row) -> Result<ExportRow, StoreError> {
                let status = |c: &str| -> Result<CheckStatus, StoreError> {
                    let s: String = r.try_get(c)?;
                    CheckStatus::parse(&s).ok_or_else(|| StoreError::Corrupt(format!("{c} {s:?}")))
                };
                let acquisition: String = r.try_get("acquisition_status")?;
                let class: String = r.try_get("operator_class")?;
                Ok(ExportRow {
                    journey_id: r.try_get("journey_id")?,
                    operator_id: r.try_get("operator_id")?,
                    operator_journey_id: r.try_get("operator_journey_id")?,
                    operator_trip_id: r.try_get("operator_trip_id")?,
                    operator_class: class.trim().to_owned(),
                    start: $db::get_t(r, "start_datetime")?,
                    start_lat: r.try_get("start_lat")?,
                    start_lon: r.try_get("start_lon")?,
                    end: $db::get_t(r, "end_datetime")?,
                    end_lat: r.try_get("end_lat")?,
                    end_lon: r.try_get("end_lon")?,
                    distance: i64::from(r.try_get::<i32, _>("distance")?),
                    status: JourneyStatus::compute(
                        AcquisitionStatus::parse(&acquisition),
                        status("fraud_status")?,
                        status("anomaly_status")?,
                    ),
                    incentive: r.try_get("incentive")?,
                })
            }

            fn read_export(r: &$db::Row) -> Result<ExportRecord, StoreError> {
                let uuid = $db::get_id(r, "uuid")?;
                let corrupt = |what: &str| StoreError::Corrupt(format!("export {uuid}: {what}"));
                let target: String = r.try_get("target")?;
                let status: String = r.try_get("status")?;
                let operator_ids = $db::get_j(r, "operator_ids")?;
                let recipients = $db::get_j(r, "recipients")?;
                Ok(ExportRecord {
                    uuid,
                    target: ExportTarget::parse(&target).ok_or_else(|| corrupt("target"))?,
                    status: ExportStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
                    owner_operator_id: r.try_get("owner_operator_id")?,
                    tz: r.try_get("tz")?,
                    filter: ExportFilter {
                        operator_ids: serde_json::from_value(operator_ids)
                            .map_err(|_| corrupt("operator_ids"))?,
                        start: $db::get_t(r, "start_at")?,
                        end: $db::get_t(r, "end_at")?,
                    },
                    recipients: serde_json::from_value(recipients)
                        .map_err(|_| corrupt("recipients"))?,
                    file_name: r.try_get("file_name")?,
                    row_count: r.try_get("row_count")?,
                    error: r.try_get("error")?,
                    created_at: $db::get_t(r, "created_at")?,
                    completed_at: $db::get_opt_t(r, "completed_at")?,
                    expires_at: $db::get_opt_t(r, "expires_at")?,
                })
            }
        }
    };
}
