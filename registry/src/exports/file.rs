//! An export's file: one CSV entry, deflated, in a zip, written on a blocking thread that the
//! job feeds with batches of rows through a bounded channel (so the cursor waits for the
//! disk, and memory holds a few batches whatever the export's size).
//!
//! The file is written as `<name>.part` and renamed to `<name>` only once whole and synced:
//! a reader never sees half a zip, and an export that fails or is abandoned (its sender
//! dropped without [`ZipFile::finish`]) leaves nothing behind.

use super::csv::RowWriter;
use crate::store::lifecycle::ExportRow;
use chrono::{DateTime, Datelike, Timelike, Utc};
use std::fs::File;
use std::io::{self, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use zip::write::SimpleFileOptions;

/// Rows sent to the writer at a time.
pub const BATCH: usize = 1024;

/// Batches the job may be ahead of the disk.
const AHEAD: usize = 4;

/// What was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub rows: i64,
    pub bytes: i64,
}

enum Message {
    Rows(Vec<ExportRow>),
    /// Every row was sent: finish the file.
    Finish,
}

/// A zip being written in the background.
pub struct ZipFile {
    tx: mpsc::Sender<Message>,
    writer: JoinHandle<io::Result<Written>>,
    batch: Vec<ExportRow>,
}

impl ZipFile {
    /// Starts writing `directory/file_name` holding one CSV entry named `entry`, dated `now`.
    pub fn create(directory: &Path, file_name: &str, entry: String, now: DateTime<Utc>) -> Self {
        let (tx, rx) = mpsc::channel(AHEAD);
        let path = directory.join(file_name);
        let writer = tokio::task::spawn_blocking(move || write(rx, &path, entry, now));
        Self {
            tx,
            writer,
            batch: Vec::with_capacity(BATCH),
        }
    }

    /// Adds one row; waits while the writer is [`AHEAD`] batches behind. `Err` when the
    /// writer failed (its error comes from [`ZipFile::finish`]).
    pub async fn push(&mut self, row: ExportRow) -> Result<(), ()> {
        self.batch.push(row);
        if self.batch.len() < BATCH {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        self.tx.send(Message::Rows(batch)).await.map_err(|_| ())
    }

    /// Writes the last rows, closes the zip, syncs it and gives it its name.
    pub async fn finish(mut self) -> io::Result<Written> {
        let batch = std::mem::take(&mut self.batch);
        // A failed send means the writer already stopped: its result says why.
        if self.tx.send(Message::Rows(batch)).await.is_ok() {
            let _ = self.tx.send(Message::Finish).await;
        }
        drop(self.tx);
        self.writer.await.map_err(io::Error::other)?
    }

    /// Stops writing and removes what was written.
    pub async fn abandon(self) {
        drop(self.tx);
        let _ = self.writer.await;
    }
}

/// The writer thread: rows from `rx` into `path` (through `path.part`).
fn write(
    mut rx: mpsc::Receiver<Message>,
    path: &Path,
    entry: String,
    now: DateTime<Utc>,
) -> io::Result<Written> {
    let mut part = PartFile {
        path: path.with_extension("zip.part"),
        keep: false,
    };
    let file = File::create(&part.path)?;
    let mut zip = zip::ZipWriter::new(BufWriter::with_capacity(256 * 1024, file));
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        // The size is unknown until the end: allow more than 4 GiB.
        .large_file(true)
        .last_modified_time(zip_time(now));
    zip.start_file(entry, options).map_err(io::Error::other)?;
    let mut csv = RowWriter::new(zip).map_err(io::Error::other)?;
    let mut rows = 0;
    loop {
        match rx.blocking_recv() {
            Some(Message::Rows(batch)) => {
                for row in &batch {
                    csv.row(row).map_err(io::Error::other)?;
                }
                rows += i64::try_from(batch.len()).unwrap_or(i64::MAX);
            }
            Some(Message::Finish) => break,
            None => return Err(io::Error::other("export abandoned before its last row")),
        }
    }
    let zip = csv.into_inner()?;
    let mut out = zip.finish().map_err(io::Error::other)?;
    out.flush()?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    let bytes = i64::try_from(file.metadata()?.len()).unwrap_or(i64::MAX);
    drop(file);
    std::fs::rename(&part.path, path)?;
    part.keep = true;
    Ok(Written { rows, bytes })
}

/// A file being written, removed unless it was renamed (`keep`).
struct PartFile {
    path: PathBuf,
    keep: bool,
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// `at` in Paris local time, as zip entries are dated (1980 when out of zip's range).
fn zip_time(at: DateTime<Utc>) -> zip::DateTime {
    let local = at.with_timezone(&chrono_tz::Europe::Paris);
    let field = |n: u32| u8::try_from(n).unwrap_or(0);
    u16::try_from(local.year())
        .ok()
        .and_then(|year| {
            zip::DateTime::from_date_and_time(
                year,
                field(local.month()),
                field(local.day()),
                field(local.hour()),
                field(local.minute()),
                field(local.second()),
            )
            .ok()
        })
        .unwrap_or_default()
}

/// Removes `directory/file_name`; a file already gone is not an error.
pub fn remove(directory: &Path, file_name: &str) -> io::Result<()> {
    match std::fs::remove_file(directory.join(file_name)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
