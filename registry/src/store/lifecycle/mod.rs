//! The lifecycle in the database: jobs, the 24 h / 48 h checks, campaigns, incentives,
//! funding calls and exports (the export records in [`exports`]). [`LifecycleStore`] is implemented once, by the
//! [`impl_lifecycle_store!`] macro, for [`super::PgStore`] and [`super::SqliteStore`]: one SQL
//! text, with per-database helpers for timestamps, JSON, transactions and row locks.
//!
//! Every job's work and the job's completion commit in one transaction, so a runner that
//! dies mid-job leaves nothing half done: its lease expires and another runner does it all
//! again. PostgreSQL runners claim with `FOR UPDATE SKIP LOCKED` and lock the journey (and
//! each campaign it may be paid by) while they work; SQLite has one process and takes its
//! write lock with `BEGIN IMMEDIATE`.

#[macro_use]
pub(in crate::store) mod body;
pub mod exports;
#[macro_use]
mod exports_sql;
mod postgres;
mod sqlite;

use super::StoreError;
use crate::domain::cee::France;
use crate::domain::lifecycle::Month;
use crate::domain::lifecycle::campaign::{Campaign, NewCampaign};
use crate::domain::{AcquisitionStatus, CheckStatus, JourneyStatus};
use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// A journey's checks, 24 h after its start (subject: journey id).
    JourneyChecks,
    /// A journey's final pass and incentives, 48 h after its start (subject: journey id).
    JourneyFinal,
    /// A month's funding call, on the 6th of the next month (subject: `YYYY-MM`).
    FundingCall,
    /// Building an export's file, as soon as it is asked for (subject: the export's uuid).
    Export,
    /// Mailing an export's recipients once it is built (subject: the export's uuid).
    ExportNotify,
    /// Deleting an export's file when its retention ends (subject: the export's uuid).
    ExportExpiry,
}

impl JobKind {
    pub const ALL: [JobKind; 6] = [
        JobKind::JourneyChecks,
        JobKind::JourneyFinal,
        JobKind::FundingCall,
        JobKind::Export,
        JobKind::ExportNotify,
        JobKind::ExportExpiry,
    ];

    /// The storage spelling, also the `kind` label of the job metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::JourneyChecks => "journey_checks",
            JobKind::JourneyFinal => "journey_final",
            JobKind::FundingCall => "funding_call",
            JobKind::Export => "export",
            JobKind::ExportNotify => "export_notify",
            JobKind::ExportExpiry => "export_expiry",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A job claimed by a runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: i64,
    pub kind: JobKind,
    pub subject: String,
    /// When it was due.
    pub run_at: DateTime<Utc>,
    /// Claims so far, this one included.
    pub attempts: i64,
}

/// What running a job did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// Its work committed, the job with it.
    Done,
    /// Not yet possible (a funding call waits for its month's journeys); nothing written.
    NotReady,
    /// The job was rescheduled or taken over since the claim; nothing written.
    Superseded,
    /// The work failed; the runner rescheduled it with backoff.
    Failed,
}

/// The queue, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Jobs due and not done.
    pub due: i64,
    /// When the oldest of them was due.
    pub oldest_due: Option<DateTime<Utc>>,
}

/// One line of an export.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportRow {
    pub journey_id: i64,
    pub operator_id: i64,
    pub operator_journey_id: String,
    pub operator_trip_id: String,
    pub operator_class: String,
    pub start: DateTime<Utc>,
    pub start_lat: f64,
    pub start_lon: f64,
    pub end: DateTime<Utc>,
    pub end_lat: f64,
    pub end_lon: f64,
    pub distance: i64,
    pub status: JourneyStatus,
    /// Cents paid by the registry's campaigns.
    pub incentive: i64,
}

/// One journey of a funding call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FundingLine {
    pub operator_id: i64,
    pub campaign_id: i64,
    pub campaign_name: String,
    pub journey_id: i64,
    pub operator_journey_id: String,
    pub amount: i64,
}

/// An issued funding call (lines of one operator, or of all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FundingCall {
    pub month: String,
    pub issued_at: DateTime<Utc>,
    /// Ordered by operator, campaign, journey.
    pub lines: Vec<FundingLine>,
}

/// An incentive paid for one journey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JourneyIncentive {
    pub campaign_id: i64,
    pub campaign_name: String,
    pub amount: i64,
}

/// Jobs and everything they produce.
#[async_trait]
pub trait LifecycleStore: Send + Sync + 'static {
    /// Claims up to `limit` due jobs for `runner` until `now + lease`; jobs whose lease ran
    /// out (their runner died) are due again.
    async fn claim(
        &self,
        runner: &str,
        now: DateTime<Utc>,
        lease: TimeDelta,
        limit: i64,
    ) -> Result<Vec<Job>, StoreError>;

    /// Gives a claimed job back, due again at `run_at`, noting `error` if any.
    async fn reschedule(
        &self,
        job: &Job,
        runner: &str,
        run_at: DateTime<Utc>,
        error: Option<&str>,
    ) -> Result<(), StoreError>;

    /// Adds a job unless one of that kind and subject exists.
    async fn ensure_job(
        &self,
        kind: JobKind,
        subject: &str,
        run_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Due jobs at `now`.
    async fn queue_stats(&self, now: DateTime<Utc>) -> Result<QueueStats, StoreError>;

    /// Runs a journey's checks (and, for [`JobKind::JourneyFinal`], makes its status final
    /// and computes its incentives), completing `job`, in one transaction. With the outcome,
    /// the status the checks gave the journey, when they ran and committed.
    async fn check_journey(
        &self,
        job: &Job,
        runner: &str,
        now: DateTime<Utc>,
        france: &France,
    ) -> Result<(JobOutcome, Option<JourneyStatus>), StoreError>;

    /// Issues `month`'s funding call at `issued_at`, completing `job`, in one transaction;
    /// [`JobOutcome::NotReady`] while journey jobs that may pay in that month are pending.
    async fn issue_funding_call(
        &self,
        job: &Job,
        runner: &str,
        month: Month,
        now: DateTime<Utc>,
    ) -> Result<JobOutcome, StoreError>;

    /// Stores a campaign.
    async fn create_campaign(
        &self,
        campaign: &NewCampaign,
        now: DateTime<Utc>,
    ) -> Result<Campaign, StoreError>;

    /// Every campaign, oldest first.
    async fn campaigns(&self) -> Result<Vec<Campaign>, StoreError>;

    /// `month`'s funding call if issued, with the lines of `operator_id` or of all.
    async fn funding_call(
        &self,
        month: Month,
        operator_id: Option<i64>,
    ) -> Result<Option<FundingCall>, StoreError>;

    /// The incentives paid for a journey.
    async fn incentives_of(&self, journey_id: i64) -> Result<Vec<JourneyIncentive>, StoreError>;
}

/// Whether the checks still have work on a journey in this acquisition state: not
/// canceled, not refused for the terms.
fn checkable(acquisition: Option<AcquisitionStatus>) -> bool {
    use AcquisitionStatus as A;
    matches!(
        acquisition,
        Some(A::Received | A::Updated | A::Processed | A::NormalizationError)
    )
}

/// The stored parts a verdict writes.
struct Written {
    acquisition: AcquisitionStatus,
    fraud: CheckStatus,
    anomaly: CheckStatus,
    fraud_labels: serde_json::Value,
    anomaly_details: serde_json::Value,
}

impl Written {
    /// The public status these parts make.
    fn status(&self) -> JourneyStatus {
        JourneyStatus::compute(Some(self.acquisition), self.fraud, self.anomaly)
    }

    fn of(verdict: &crate::domain::lifecycle::checks::Verdict) -> Self {
        use crate::domain::lifecycle::checks::Verdict;
        let passed = |failed: bool| {
            if failed {
                CheckStatus::Failed
            } else {
                CheckStatus::Passed
            }
        };
        match verdict {
            Verdict::NotNormalised(_) => Written {
                acquisition: AcquisitionStatus::NormalizationError,
                fraud: CheckStatus::Pending,
                anomaly: CheckStatus::Pending,
                fraud_labels: serde_json::json!([]),
                anomaly_details: serde_json::json!([]),
            },
            Verdict::Checked { fraud, anomalies } => Written {
                acquisition: AcquisitionStatus::Processed,
                fraud: passed(!fraud.is_empty()),
                anomaly: passed(!anomalies.is_empty()),
                fraud_labels: fraud.iter().map(|l| l.as_str()).collect(),
                anomaly_details: serde_json::Value::from(anomalies.clone()),
            },
        }
    }

    fn is_ok(&self) -> bool {
        self.status() == JourneyStatus::Ok
    }
}

/// A campaign read back from its columns.
#[expect(clippy::too_many_arguments, reason = "one per group of columns")]
fn campaign_from(
    id: i64,
    name: String,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    classes: serde_json::Value,
    [amount_per_km, min_distance, max_distance]: [i64; 3],
    area: Option<serde_json::Value>,
    [max_per_person_per_day, max_per_person_per_month, budget]: [Option<i64>; 3],
    created_at: DateTime<Utc>,
) -> Result<Campaign, StoreError> {
    use crate::domain::OperatorClass;
    let corrupt = |what: &str| StoreError::Corrupt(format!("campaign {id}: {what}"));
    let operator_classes = classes
        .as_array()
        .ok_or_else(|| corrupt("operator_classes"))?
        .iter()
        .map(|c| {
            c.as_str()
                .and_then(OperatorClass::parse)
                .ok_or_else(|| corrupt("operator class"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let area = match area {
        None | Some(serde_json::Value::Null) => None,
        Some(geometry) => {
            let shape = crate::domain::cee::Area::from_geometry(&geometry)
                .map_err(|e| corrupt(&format!("area: {e}")))?;
            Some((geometry, shape))
        }
    };
    Ok(Campaign {
        id,
        created_at,
        rules: NewCampaign {
            name,
            start,
            end,
            operator_classes,
            amount_per_km,
            min_distance,
            max_distance,
            area,
            max_per_person_per_day,
            max_per_person_per_month,
            budget,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbours_skip_exactly_the_journeys_that_do_not_count_toward_the_terms() {
        let listed: Vec<String> = AcquisitionStatus::not_counting_toward_terms()
            .map(|a| format!("'{}'", a.as_str()))
            .collect();
        for neighbours in [body::NEIGHBOURS_PG, body::NEIGHBOURS_SQLITE] {
            assert!(
                neighbours.contains(&format!("NOT IN ({})", listed.join(", "))),
                "{neighbours}"
            );
        }
    }

    #[test]
    fn job_kinds_round_trip() {
        for kind in JobKind::ALL {
            assert_eq!(JobKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(JobKind::parse("mystery"), None);
    }
}
