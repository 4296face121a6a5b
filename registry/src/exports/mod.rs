//! Exports of journeys (docs/lifecycle.md, "Exports"): the CSV lines ([`csv`]), streamed to a
//! client as the cursor yields them ([`stream`]) or zipped into a file ([`file`]) by the
//! reference's asynchronous export, whose recipients are mailed ([`mail`]).
//!
//! [`Exports`] holds what both sides need: the store, the directory where files are kept, the
//! retention, the mailer and the limit on concurrent streams. Its `build`, `notify` and
//! `expire` are the work of the three export jobs; the job runner ([`crate::jobs`]) calls them.
//! No SQL here (that is [`crate::store::lifecycle::exports`]) and no HTTP.

pub mod csv;
pub mod file;
pub mod mail;
pub mod stream;

use crate::clock::Clock;
use crate::jobs::JobError;
use crate::settings::ExportsSettings;
use crate::store::StoreError;
use crate::store::lifecycle::exports::{
    BuiltExport, ExportRecord, ExportStart, ExportStore, export_of,
};
use crate::store::lifecycle::{Job, JobOutcome};
use anyhow::Context as _;
use chrono::{DateTime, TimeDelta, Utc};
use futures_util::StreamExt as _;
use mail::Mailer;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

/// An export's build is tried this many times (a runner that died, a database that failed
/// around it); then the export is a failure.
pub const MAX_BUILD_ATTEMPTS: i64 = 3;

/// While it writes a file, the runner renews its lease on the job every this many rows.
pub const LEASE_RENEWAL_ROWS: u64 = 50_000;

/// Exports: their store, files, mail and limits.
pub struct Exports {
    pub store: Arc<dyn ExportStore>,
    directory: PathBuf,
    retention: TimeDelta,
    public_url: String,
    mailer: Option<Mailer>,
    streams: Arc<Semaphore>,
}

/// Why a file could not be built (the export is then a failure).
#[derive(Debug, thiserror::Error)]
enum BuildError {
    #[error("reading the journeys failed: {0}")]
    Store(#[from] StoreError),
    #[error("writing the file failed: {0}")]
    File(#[from] std::io::Error),
}

impl BuildError {
    /// What the export record says: the kind of failure, not its details.
    fn summary(&self) -> &'static str {
        match self {
            BuildError::Store(_) => "reading the journeys failed",
            BuildError::File(_) => "writing the file failed",
        }
    }
}

impl Exports {
    /// Creates `settings.directory` and the mailer; says once, at start, when exports are not
    /// mailed.
    pub fn new(store: Arc<dyn ExportStore>, settings: &ExportsSettings) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&settings.directory).with_context(|| {
            format!(
                "cannot create exports.directory {}",
                settings.directory.display()
            )
        })?;
        let mailer = Mailer::new(&settings.mail)?;
        if mailer.is_none() {
            tracing::info!("exports.mail.host is not set: export recipients will not be mailed");
        }
        Ok(Self {
            store,
            directory: settings.directory.clone(),
            retention: TimeDelta::days(i64::from(settings.retention_days)),
            public_url: settings.public_url.trim_end_matches('/').to_owned(),
            mailer,
            streams: Arc::new(Semaphore::new(settings.max_streams.max(1) as usize)),
        })
    }

    /// A slot for one more synchronous export stream, if one is free.
    pub fn stream_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.streams.clone().try_acquire_owned().ok()
    }

    /// Where `export`'s file can be downloaded, as mails give it.
    pub fn link(&self, export: Uuid) -> String {
        format!("{}/v3/exports/{export}/download", self.public_url)
    }

    /// The path of `export`'s file, when it has one that can still be downloaded at `now`.
    pub fn download_path(&self, export: &ExportRecord, now: DateTime<Utc>) -> Option<PathBuf> {
        let name = export.file_name.as_deref()?;
        let live = export.status == crate::domain::lifecycle::export::ExportStatus::Success
            && export.expires_at.is_some_and(|at| now < at);
        // Names are ours (`<uuid>-<attempt>.zip`); refuse anything else all the same.
        let plain = !name.contains(['/', '\\']) && !name.starts_with('.');
        (live && plain).then(|| self.directory.join(name))
    }

    /// The `export` job: builds the file and records the outcome, success or failure. `Err`
    /// only when the outcome could not be recorded (the job is then retried).
    pub async fn build(
        &self,
        job: &Job,
        runner: &str,
        clock: &dyn Clock,
        lease: TimeDelta,
    ) -> Result<JobOutcome, StoreError> {
        let record = match self.store.start_export(job, runner, clock.now()).await? {
            ExportStart::Build(record) => record,
            ExportStart::Superseded => return Ok(JobOutcome::Superseded),
            ExportStart::Gone => return Ok(JobOutcome::Done),
        };
        let started = clock.now();
        let built = if job.attempts > MAX_BUILD_ATTEMPTS {
            tracing::error!(export = %record.uuid, attempts = job.attempts, "export given up");
            BuiltExport::Failure {
                error: format!("given up after {MAX_BUILD_ATTEMPTS} attempts"),
            }
        } else {
            match self.write_file(&record, job, runner, clock, lease).await {
                Ok(Some(built)) => built,
                Ok(None) => return Ok(JobOutcome::Superseded),
                Err(e) => {
                    tracing::error!(export = %record.uuid, error = %e, "export failed");
                    BuiltExport::Failure {
                        error: e.summary().to_owned(),
                    }
                }
            }
        };
        let now = clock.now();
        let notify = self.mailer.is_some() && !record.recipients.is_empty();
        let outcome = self
            .store
            .finish_export(job, runner, &built, notify, now, now + self.retention)
            .await;
        match (&outcome, &built) {
            (
                Ok(JobOutcome::Done),
                BuiltExport::Success {
                    row_count,
                    byte_count,
                    ..
                },
            ) => {
                tracing::info!(
                    export = %record.uuid,
                    rows = row_count,
                    bytes = byte_count,
                    seconds = (now - started).as_seconds_f64(),
                    "export built"
                );
            }
            (Ok(JobOutcome::Done), BuiltExport::Failure { .. }) => {}
            (_, BuiltExport::Success { file_name, .. }) => {
                // Not recorded as this runner's: the file is nobody's.
                let _ = file::remove(&self.directory, file_name);
            }
            (_, BuiltExport::Failure { .. }) => {}
        }
        outcome
    }

    /// Writes `export`'s file; `None` when the job stopped being this runner's meanwhile.
    async fn write_file(
        &self,
        export: &ExportRecord,
        job: &Job,
        runner: &str,
        clock: &dyn Clock,
        lease: TimeDelta,
    ) -> Result<Option<BuiltExport>, BuildError> {
        // One name per claim: a runner that lost the job never writes over its successor.
        let file_name = format!("{}-{}.zip", export.uuid, job.attempts);
        let entry = format!("export-{}.csv", export.uuid);
        let mut zip = file::ZipFile::create(&self.directory, &file_name, entry, clock.now());
        let mut rows = self.store.export_rows(&export.filter);
        let mut count: u64 = 0;
        while let Some(row) = rows.next().await {
            let row = match row {
                Ok(row) => row,
                Err(e) => {
                    zip.abandon().await;
                    return Err(e.into());
                }
            };
            if zip.push(row).await.is_err() {
                // The writer stopped; finishing says why.
                break;
            }
            count += 1;
            if count.is_multiple_of(LEASE_RENEWAL_ROWS) {
                match self
                    .store
                    .extend_lease(job, runner, clock.now() + lease)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        zip.abandon().await;
                        return Ok(None);
                    }
                    Err(e) => {
                        zip.abandon().await;
                        return Err(e.into());
                    }
                }
            }
        }
        drop(rows);
        let written = zip.finish().await?;
        Ok(Some(BuiltExport::Success {
            file_name,
            row_count: written.rows,
            byte_count: written.bytes,
        }))
    }

    /// The `export_notify` job: mails the recipients of a built (or failed) export, then
    /// forgets them.
    pub async fn notify(
        &self,
        job: &Job,
        runner: &str,
        now: DateTime<Utc>,
    ) -> Result<JobOutcome, JobError> {
        let uuid = export_of(job)?;
        let record = self.store.find_export(uuid).await?;
        if let (Some(mailer), Some(record)) = (&self.mailer, record) {
            use crate::domain::lifecycle::export::ExportStatus::{Failure, Success};
            if matches!(record.status, Success | Failure) && !record.recipients.is_empty() {
                mailer.send_notice(&record, &self.link(uuid)).await?;
                tracing::info!(
                    export = %uuid,
                    recipients = record.recipients.len(),
                    "export recipients mailed"
                );
            }
        }
        Ok(self.store.export_notified(job, runner, now).await?)
    }

    /// The `export_expiry` job: deletes every file of the export (its zip, and what a runner
    /// that died mid-write left), then marks it `expired`.
    pub async fn expire(
        &self,
        job: &Job,
        runner: &str,
        now: DateTime<Utc>,
    ) -> Result<JobOutcome, JobError> {
        let uuid = export_of(job)?;
        let directory = self.directory.clone();
        tokio::task::spawn_blocking(move || remove_files_of(&directory, uuid))
            .await
            .map_err(std::io::Error::other)??;
        Ok(self.store.expire_export(job, runner, now).await?)
    }

    /// The directory where export files are kept.
    pub fn directory(&self) -> &Path {
        &self.directory
    }
}

/// Removes `directory`'s files named after `export` (`<uuid>-...`).
fn remove_files_of(directory: &Path, export: Uuid) -> std::io::Result<()> {
    let prefix = format!("{export}-");
    for entry in std::fs::read_dir(directory)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            file::remove(directory, &entry.file_name().to_string_lossy())?;
        }
    }
    Ok(())
}
