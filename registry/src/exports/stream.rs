//! Response bodies produced by a task as the client reads them: the synchronous export's CSV,
//! written from the database cursor, and a built export's zip, read from its file. The task
//! is at most [`AHEAD`] chunks ahead of the client (backpressure down to the cursor), and
//! stops when the client goes away.
//!
//! An error after the first chunk cannot change the status already sent: the body ends with
//! an error, so the connection is cut before the end of the chunked encoding and the client
//! sees an incomplete answer, never a short "complete" one.

use super::csv::RowWriter;
use crate::store::StoreError;
use crate::store::lifecycle::ExportRow;
use crate::store::lifecycle::exports::{ExportFilter, ExportStore};
use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use std::io::{self, Read as _};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Bytes buffered before a chunk is handed to the client.
pub const CHUNK: usize = 64 * 1024;

/// Chunks a task may have produced that the client has not read yet.
pub const AHEAD: usize = 2;

/// One chunk of a body, or the error that cuts it short.
pub type Chunk = Result<Bytes, io::Error>;

/// A response body fed by a task; `Send + Sync` as warp's streamed bodies want.
pub struct Chunks {
    first: Option<Bytes>,
    rx: mpsc::Receiver<Chunk>,
}

impl Stream for Chunks {
    type Item = Chunk;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Chunk>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(first)));
        }
        self.rx.poll_recv(cx)
    }
}

impl Chunks {
    /// Waits for the task's first chunk: `Err` when the task failed before producing any,
    /// so the caller can still answer an error status.
    async fn start(mut rx: mpsc::Receiver<Chunk>) -> Result<Self, io::Error> {
        match rx.recv().await {
            Some(Ok(first)) => Ok(Self {
                first: Some(first),
                rx,
            }),
            Some(Err(e)) => Err(e),
            None => Err(io::Error::other("the body's task ended before writing")),
        }
    }
}

/// The CSV of the journeys `filter` selects (header first), flushed after the first line (so
/// that a database failing at once is an error status, not a cut body) and then every
/// [`CHUNK`] bytes. `guard` is held until the last row is written (a slot of the concurrent
/// streams limit).
pub async fn csv_body<G: Send + 'static>(
    store: Arc<dyn ExportStore>,
    filter: ExportFilter,
    guard: G,
) -> Result<Chunks, io::Error> {
    let (tx, rx) = mpsc::channel(AHEAD);
    tokio::spawn(async move {
        let _guard = guard;
        if let Err(e) = write_csv(store.export_rows(&filter), &tx).await {
            tracing::error!(error = %e, "export stream failed; the response is cut short");
            let _ = tx.send(Err(io::Error::other("export failed"))).await;
        }
    });
    Chunks::start(rx).await
}

/// Writes the CSV into `tx`; `Ok` also when the client went away.
async fn write_csv(
    rows: impl Stream<Item = Result<ExportRow, StoreError>>,
    tx: &mpsc::Sender<Chunk>,
) -> Result<(), WriteError> {
    const CAPACITY: usize = CHUNK + CHUNK / 4;
    let mut rows = std::pin::pin!(rows);
    let mut out = RowWriter::new(Vec::with_capacity(CAPACITY))?;
    let mut first = true;
    while let Some(row) = rows.next().await {
        out.row(&row?)?;
        if first || out.ready() >= CHUNK {
            first = false;
            let chunk = Bytes::from(out.take(CAPACITY)?);
            if tx.send(Ok(chunk)).await.is_err() {
                return Ok(());
            }
        }
    }
    let rest = out.into_inner()?;
    let _ = tx.send(Ok(Bytes::from(rest))).await;
    Ok(())
}

/// Why a CSV body could not be written.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("cannot write CSV: {0}")]
    Io(#[from] io::Error),
}

/// The bytes of `file`, read on a blocking thread [`CHUNK`] at a time.
pub async fn file_body(mut file: std::fs::File) -> Result<Chunks, io::Error> {
    let (tx, rx) = mpsc::channel(AHEAD);
    tokio::task::spawn_blocking(move || {
        loop {
            let mut buffer = vec![0; CHUNK];
            match file.read(&mut buffer) {
                Ok(0) => return,
                Ok(n) => {
                    buffer.truncate(n);
                    if tx.blocking_send(Ok(Bytes::from(buffer))).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::error!(error = %e, "cannot read an export file; the response is cut short");
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    Chunks::start(rx).await
}
