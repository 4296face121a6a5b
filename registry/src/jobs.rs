//! The durable job runner of the lifecycle (docs/lifecycle.md): jobs live in the database
//! (`jobs` table), are due at an instant of the injectable [`Clock`], and are claimed for a
//! lease so that several registry replicas share the work and a dead runner's jobs come back
//! when its lease runs out. A job's work commits with its completion (see
//! [`crate::store::lifecycle`]), so a job is done once however often it is tried.
//!
//! [`Runner::run`] polls; [`Runner::run_due`] runs everything due now (tests call it after
//! moving the clock). A failed job is retried with exponential backoff, and counted in
//! `registry_jobs_failures_total{kind}`. Export jobs (build, mail, expiry) are
//! [`crate::exports::Exports`]'s work.

use crate::clock::Clock;
use crate::domain::cee::France;
use crate::domain::lifecycle::Month;
use crate::exports::Exports;
use crate::exports::mail::MailError;
use crate::http::Metrics;
use crate::store::StoreError;
use crate::store::lifecycle::{Job, JobKind, JobOutcome, LifecycleStore};
use chrono::{DateTime, TimeDelta, Utc};
use std::sync::Arc;
use std::time::Duration;

/// The first retry waits this long; each next one twice as long.
pub const FIRST_BACKOFF: TimeDelta = TimeDelta::seconds(10);

/// Retries never wait longer than this.
pub const MAX_BACKOFF: TimeDelta = TimeDelta::hours(1);

/// A funding call waiting for its month's journeys looks again after this.
pub const NOT_READY_DELAY: TimeDelta = TimeDelta::minutes(5);

/// How long to wait before the retry following attempt number `attempts` (1 = first).
pub fn backoff(attempts: i64) -> TimeDelta {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    FIRST_BACKOFF
        .checked_mul(2_i32.saturating_pow(doublings))
        .map_or(MAX_BACKOFF, |d| d.min(MAX_BACKOFF))
}

/// Why a job's work failed: it is rescheduled with backoff, this text kept as its
/// `last_error` (never an address: [`MailError`] keeps no SMTP text).
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot mail the recipients: {0}")]
    Mail(#[from] MailError),
    #[error("cannot delete the export's files: {0}")]
    File(#[from] std::io::Error),
}

/// Runs lifecycle jobs. Clones share everything, including the runner's id.
#[derive(Clone)]
pub struct Runner {
    store: Arc<dyn LifecycleStore>,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
    france: Arc<France>,
    exports: Arc<Exports>,
    id: String,
    lease: TimeDelta,
    batch: i64,
}

impl Runner {
    /// A runner with a fresh random id.
    pub fn new(
        store: Arc<dyn LifecycleStore>,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
        france: Arc<France>,
        exports: Arc<Exports>,
        lease: TimeDelta,
        batch: i64,
    ) -> Self {
        Self {
            store,
            clock,
            metrics,
            france,
            exports,
            id: uuid::Uuid::new_v4().to_string(),
            lease,
            batch,
        }
    }

    /// Another runner on the same database, with its own id (as another replica would be).
    pub fn another(&self) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            ..self.clone()
        }
    }

    /// The same runner claiming at most `batch` jobs at a time.
    pub fn with_batch(self, batch: i64) -> Self {
        Self {
            batch: batch.max(1),
            ..self
        }
    }

    /// This runner's id, as written in the jobs it holds.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Polls every `interval` until the task is dropped. Dropping it mid-job is safe: the
    /// job's transaction rolls back and its lease runs out.
    pub async fn run(self, interval: Duration) {
        loop {
            if let Err(e) = self.run_due().await {
                tracing::error!(error = %e, "lifecycle job runner pass failed");
            }
            tokio::time::sleep(interval).await;
        }
    }

    /// Makes sure the previous month's funding call is planned, then runs every job due now
    /// until none is left; returns how many completed.
    pub async fn run_due(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let last_month = Month::of(now).previous();
        self.store
            .ensure_job(
                JobKind::FundingCall,
                &last_month.to_string(),
                last_month.funding_call_at(),
                now,
            )
            .await?;
        let mut completed = 0;
        loop {
            let jobs = self.claim().await?;
            if jobs.is_empty() {
                break;
            }
            for job in jobs {
                if self.execute(&job).await? == JobOutcome::Done {
                    completed += 1;
                }
            }
        }
        let now = self.clock.now();
        let stats = self.store.queue_stats(now).await?;
        self.metrics.jobs_queue(stats, now);
        Ok(completed)
    }

    /// Claims the next batch of due jobs for this runner's lease (what a runner that then
    /// dies leaves behind).
    pub async fn claim(&self) -> Result<Vec<Job>, StoreError> {
        self.store
            .claim(&self.id, self.clock.now(), self.lease, self.batch)
            .await
    }

    /// Runs one claimed job; a failure reschedules it with backoff. `Err` only when the job
    /// could not even be given back.
    pub async fn execute(&self, job: &Job) -> Result<JobOutcome, StoreError> {
        let now = self.clock.now();
        let result = match job.kind {
            JobKind::JourneyChecks | JobKind::JourneyFinal => self
                .store
                .check_journey(job, &self.id, now, &self.france)
                .await
                .map(|(outcome, status)| {
                    if let Some(status) = status {
                        self.metrics.journey_checked(job.kind, status);
                    }
                    outcome
                })
                .map_err(JobError::from),
            JobKind::FundingCall => match Month::parse(&job.subject) {
                Some(month) => self
                    .store
                    .issue_funding_call(job, &self.id, month, now)
                    .await
                    .map_err(JobError::from),
                None => Err(
                    StoreError::Corrupt(format!("funding call job for {:?}", job.subject)).into(),
                ),
            },
            JobKind::Export => self
                .exports
                .build(job, &self.id, self.clock.as_ref(), self.lease)
                .await
                .map_err(JobError::from),
            JobKind::ExportNotify => self.exports.notify(job, &self.id, now).await,
            JobKind::ExportExpiry => self.exports.expire(job, &self.id, now).await,
        };
        match result {
            Ok(JobOutcome::Done) => {
                self.metrics.job_done(job.kind);
                Ok(JobOutcome::Done)
            }
            Ok(JobOutcome::NotReady) => {
                self.store
                    .reschedule(job, &self.id, now + NOT_READY_DELAY, None)
                    .await?;
                Ok(JobOutcome::NotReady)
            }
            Ok(outcome @ (JobOutcome::Superseded | JobOutcome::Failed)) => Ok(outcome),
            Err(e) => {
                self.metrics.job_failed(job.kind);
                let retry = now + backoff(job.attempts);
                tracing::warn!(
                    job_id = job.id,
                    kind = job.kind.as_str(),
                    attempts = job.attempts,
                    retry_at = %retry,
                    error = %e,
                    "lifecycle job failed"
                );
                self.store
                    .reschedule(job, &self.id, retry, Some(&e.to_string()))
                    .await?;
                Ok(JobOutcome::Failed)
            }
        }
    }

    /// Now, as this runner's clock says.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_ten_seconds_up_to_an_hour() {
        assert_eq!(backoff(1), TimeDelta::seconds(10));
        assert_eq!(backoff(2), TimeDelta::seconds(20));
        assert_eq!(backoff(4), TimeDelta::seconds(80));
        assert_eq!(backoff(9), TimeDelta::seconds(2_560));
        assert_eq!(backoff(10), MAX_BACKOFF);
        assert_eq!(backoff(1_000), MAX_BACKOFF);
        assert_eq!(backoff(0), TimeDelta::seconds(10));
    }
}
