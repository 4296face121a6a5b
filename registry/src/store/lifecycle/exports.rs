//! Exports in the database: the rows an export holds, streamed from a cursor, and the
//! records of the asynchronous exports with the jobs that build, mail and expire their files.
//! [`ExportStore`] is implemented once, by `impl_export_store!` (`exports_sql.rs`), for both
//! databases.
//!
//! The store knows no files: the job runner (`crate::exports`) writes and deletes them and
//! tells the store what happened, in the same job-ownership transactions as every other job.

use super::{ExportRow, Job, JobOutcome};
use crate::domain::lifecycle::export::{ExportStatus, ExportTarget};
use crate::store::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::stream::BoxStream;
use uuid::Uuid;

/// Which journeys an export holds: starting in `[start, end)`, of `operator_ids` (every
/// operator when empty), canceled ones excluded, in start order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportFilter {
    pub operator_ids: Vec<i64>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// An export to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewExport {
    pub uuid: Uuid,
    pub target: ExportTarget,
    /// The asking operator; `None` for registry staff.
    pub owner_operator_id: Option<i64>,
    /// The credential's id (never a name or an address).
    pub created_by: String,
    pub tz: String,
    pub filter: ExportFilter,
    /// Addresses to mail; personal data.
    pub recipients: Vec<String>,
}

/// A recorded export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRecord {
    pub uuid: Uuid,
    pub target: ExportTarget,
    pub status: ExportStatus,
    pub owner_operator_id: Option<i64>,
    pub tz: String,
    pub filter: ExportFilter,
    /// Addresses still to mail (emptied once mailed and at expiry); personal data.
    pub recipients: Vec<String>,
    /// The zip's name in the exports directory, once built.
    pub file_name: Option<String>,
    pub row_count: Option<i64>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// What building an export's file gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuiltExport {
    /// The whole file is in the exports directory under `file_name`.
    Success {
        file_name: String,
        row_count: i64,
        byte_count: i64,
    },
    /// No file; `error` says what kind of failure (the cause is logged).
    Failure { error: String },
}

/// What a runner found when it came to build an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportStart {
    /// The export is now `running`, and this runner's to build.
    Build(Box<ExportRecord>),
    /// The job is no longer this runner's; nothing written.
    Superseded,
    /// There is no such export; the job was completed.
    Gone,
}

/// Exports and their jobs.
#[async_trait]
pub trait ExportStore: Send + Sync + 'static {
    /// The journeys `filter` selects, read from one cursor as the stream is polled: the
    /// rows are never all in memory.
    fn export_rows(&self, filter: &ExportFilter) -> BoxStream<'_, Result<ExportRow, StoreError>>;

    /// Records `export` as `pending` with its `export` job due at `now`, in one transaction.
    async fn create_export(&self, export: &NewExport, now: DateTime<Utc>)
    -> Result<(), StoreError>;

    /// The export `uuid`, if recorded.
    async fn find_export(&self, uuid: Uuid) -> Result<Option<ExportRecord>, StoreError>;

    /// Marks the export of `job` `running` if the job is still `runner`'s.
    async fn start_export(
        &self,
        job: &Job,
        runner: &str,
        now: DateTime<Utc>,
    ) -> Result<ExportStart, StoreError>;

    /// Keeps `job` `runner`'s until `until`; `false` when it no longer is.
    async fn extend_lease(
        &self,
        job: &Job,
        runner: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Records what building the export of `job` gave, completing the job, in one
    /// transaction that first checks the job is still `runner`'s. Plans the export's expiry
    /// at `expires_at` (a success's file is downloadable until then) and, with `notify`, the
    /// mail to its recipients.
    async fn finish_export(
        &self,
        job: &Job,
        runner: &str,
        built: &BuiltExport,
        notify: bool,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<JobOutcome, StoreError>;

    /// The recipients of the export of `job` were mailed: forgets them, completing the job.
    async fn export_notified(
        &self,
        job: &Job,
        runner: &str,
        now: DateTime<Utc>,
    ) -> Result<JobOutcome, StoreError>;

    /// The files of the export of `job` were deleted: marks it `expired` (a failure stays a
    /// failure) and forgets its recipients, completing the job.
    async fn expire_export(
        &self,
        job: &Job,
        runner: &str,
        now: DateTime<Utc>,
    ) -> Result<JobOutcome, StoreError>;
}

/// The export a job is about (its subject is the export's uuid).
pub(crate) fn export_of(job: &Job) -> Result<Uuid, StoreError> {
    Uuid::parse_str(&job.subject)
        .map_err(|_| StoreError::Corrupt(format!("export job for {:?}", job.subject)))
}
