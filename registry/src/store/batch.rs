//! Group commit of journey inserts on PostgreSQL.
//!
//! Every insert joins a queue; up to `writers` batch writers, each on one pooled connection,
//! take what is queued when they get their connection (at most `batch_max` journeys) and
//! insert it in ONE transaction: BEGIN with every person's advisory lock of the batch (in the
//! fixed order of [`super::person_locks`]), then the journeys in waves, then one COMMIT.
//! Callers are answered only after that COMMIT returned.
//!
//! A wave is one multi-row statement ([`insert_independent`]) of journeys that share no
//! person and no key, so that no terms check in it depends on another journey of the wave;
//! a journey that depends on an earlier one of the batch goes in a later wave, whose
//! statement sees it. The terms decisions are those of inserting one after the other in
//! arrival order. Under load (every journey its own people) a batch is a single wave: three
//! round trips for the whole batch.
//!
//! A lone journey is not delayed: when a writer is free it starts at once, and it takes
//! whatever is queued, however little (one journey goes through the one-by-one path).
//! Batches only grow while every writer is busy.
//!
//! Duplicates and terms refusals do not abort a batch (`ON CONFLICT DO NOTHING`, and a
//! refusal is a stored row). When a statement fails anyway, nothing of the batch is kept and
//! each of its journeys is inserted again in a transaction of its own, so that one bad journey
//! fails alone. A failed COMMIT fails every journey of the batch.
//!
//! When the database is out of reach (crashed, restarting), the whole batch is answered
//! `Unavailable` at once (503 to the clients) and the writer lets its connection go and
//! acquires a new one for the next batch.

use super::postgres::{begin_locking, insert_alone, insert_independent, insert_locked};
use super::{InsertOutcome, JourneyRow, StoreError, person_locks};
use crate::domain::NewJourney;
use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use sqlx::pool::PoolConnection;
use sqlx::{Connection, PgPool, Postgres};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use uuid::Uuid;

/// A journey waiting for a batch writer, owned so that a writer task can carry it.
struct Pending {
    uuid: Uuid,
    operator_id: i64,
    journey: NewJourney,
    payload: Box<RawValue>,
    created_at: DateTime<Utc>,
    reply: oneshot::Sender<Result<InsertOutcome, StoreError>>,
}

impl Pending {
    fn row(&self) -> JourneyRow<'_> {
        JourneyRow {
            uuid: self.uuid,
            operator_id: self.operator_id,
            journey: &self.journey,
            payload: &self.payload,
            created_at: self.created_at,
        }
    }
}

/// What the grouped insert path exports.
#[derive(Clone, Debug)]
pub struct BatchMetrics {
    /// Journeys per transaction.
    pub sizes: prometheus::Histogram,
    /// Journeys queued and not yet taken by a writer.
    pub queued: prometheus::IntGauge,
}

/// The queue and its writers.
pub(in crate::store) struct Batcher {
    pool: PgPool,
    queue: Mutex<VecDeque<Pending>>,
    /// One permit per writer running.
    writers: Arc<Semaphore>,
    batch_max: usize,
    metrics: BatchMetrics,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("batch_max", &self.batch_max)
            .field("writers_free", &self.writers.available_permits())
            .finish_non_exhaustive()
    }
}

impl Batcher {
    pub(in crate::store) fn new(
        pool: PgPool,
        batch_max: usize,
        writers: usize,
        metrics: BatchMetrics,
    ) -> Self {
        Self {
            metrics,
            pool,
            queue: Mutex::new(VecDeque::new()),
            writers: Arc::new(Semaphore::new(writers.max(1))),
            batch_max: batch_max.max(1),
        }
    }

    /// Queues `row`, starts a writer if one is free, and waits for the answer (given after
    /// the COMMIT of its batch).
    pub(in crate::store) async fn insert(
        self: &Arc<Self>,
        row: &JourneyRow<'_>,
    ) -> Result<InsertOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        {
            let mut queue = self.queue();
            queue.push_back(Pending {
                uuid: row.uuid,
                operator_id: row.operator_id,
                journey: row.journey.clone(),
                payload: row.payload.to_owned(),
                created_at: row.created_at,
                reply,
            });
            self.metrics.queued.set(queue.len() as i64);
        }
        if let Ok(permit) = self.writers.clone().try_acquire_owned() {
            // A task of its own: a caller going away must not cut its batch short.
            tokio::spawn(self.clone().write(permit));
        }
        answer.await.unwrap_or(Err(StoreError::BatchLost))
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Pending>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What is queued, oldest first, at most `batch_max`.
    fn take(&self) -> Vec<Pending> {
        let mut queue = self.queue();
        let n = queue.len().min(self.batch_max);
        let taken = queue.drain(..n).collect();
        self.metrics.queued.set(queue.len() as i64);
        taken
    }

    /// One writer: gets a connection, then writes batches while journeys are queued.
    async fn write(self: Arc<Self>, mut permit: OwnedSemaphorePermit) {
        loop {
            match self.pool.acquire().await {
                Ok(mut conn) => loop {
                    let batch = self.take();
                    if batch.is_empty() {
                        break;
                    }
                    if let Writer::Reconnect = self.commit_batch(&mut conn, batch).await {
                        // Never again on a dead connection: the next turn acquires anew
                        // (the pool tests a connection before handing it out).
                        conn.close_on_drop();
                        break;
                    }
                },
                Err(e) => {
                    let message = e.to_string();
                    let unavailable = rpc_service::db::is_unavailable(&e);
                    for p in self.take() {
                        let error = if unavailable {
                            StoreError::Unavailable(message.clone())
                        } else {
                            StoreError::Database(sqlx::Error::Protocol(message.clone()))
                        };
                        let _ = p.reply.send(Err(error));
                    }
                }
            }
            drop(permit);
            // A journey queued after our last look, while every writer was busy, found no
            // free writer: whoever frees the last permit looks again.
            if self.queue().is_empty() {
                return;
            }
            match self.writers.clone().try_acquire_owned() {
                Ok(again) => permit = again,
                Err(_) => return,
            }
        }
    }

    /// Inserts `batch` in one transaction on `conn` and answers each journey. When the
    /// database is out of reach, every journey of the batch is answered so at once (none
    /// waits for the others' attempts) and the connection is reported lost.
    async fn commit_batch(
        &self,
        conn: &mut PoolConnection<Postgres>,
        batch: Vec<Pending>,
    ) -> Writer {
        self.metrics.sizes.observe(batch.len() as f64);
        if batch.len() == 1 {
            let p = batch.into_iter().next().expect("one journey");
            let outcome = insert_alone_on(conn, &p.row()).await;
            let lost = outcome.as_ref().is_err_and(StoreError::is_unavailable);
            let _ = p.reply.send(outcome);
            return if lost {
                Writer::Reconnect
            } else {
                Writer::Keep
            };
        }
        match insert_together(conn, &batch).await {
            Ok(Ok(outcomes)) => {
                for (p, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = p.reply.send(Ok(outcome));
                }
                Writer::Keep
            }
            Ok(Err(commit)) if rpc_service::db::is_unavailable(&commit) => {
                // The COMMIT may have reached the server or not: a journey sent again
                // finds its row (409) if it did.
                tracing::warn!(error = %commit, journeys = batch.len(), "batch commit: database unavailable");
                unavailable(batch, &commit.to_string())
            }
            Ok(Err(commit)) => {
                tracing::error!(error = %commit, journeys = batch.len(), "batch commit failed");
                let message = commit.to_string();
                for p in batch {
                    let _ = p.reply.send(Err(StoreError::BatchCommit(message.clone())));
                }
                Writer::Keep
            }
            Err(e) if e.is_unavailable() => {
                tracing::warn!(error = %e, journeys = batch.len(), "batch: database unavailable");
                unavailable(batch, &e.to_string())
            }
            Err(e) => {
                // Rolled back: each journey again, alone, so that the failure stays with the
                // journey that causes it.
                tracing::warn!(error = %e, journeys = batch.len(), "batch failed, inserting one by one");
                for p in batch {
                    let outcome = insert_alone(&self.pool, &p.row()).await;
                    let _ = p.reply.send(outcome);
                }
                Writer::Keep
            }
        }
    }
}

/// Whether a writer's connection may serve its next batch.
enum Writer {
    Keep,
    /// The database went out of reach on it.
    Reconnect,
}

/// Answers every journey of `batch` [`StoreError::Unavailable`].
fn unavailable(batch: Vec<Pending>, message: &str) -> Writer {
    for p in batch {
        let _ = p
            .reply
            .send(Err(StoreError::Unavailable(message.to_owned())));
    }
    Writer::Reconnect
}

/// [`insert_alone`] on a connection already held.
async fn insert_alone_on(
    conn: &mut PoolConnection<Postgres>,
    row: &JourneyRow<'_>,
) -> Result<InsertOutcome, StoreError> {
    let mut tx = conn
        .begin_with(begin_locking(&person_locks(row.journey)))
        .await?;
    let outcome = insert_locked(&mut tx, row).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// The batch in one transaction. `Err`: a statement before COMMIT failed (rolled back);
/// `Ok(Err)`: the COMMIT failed; `Ok(Ok)`: committed, one outcome per journey in order.
async fn insert_together(
    conn: &mut PoolConnection<Postgres>,
    batch: &[Pending],
) -> Result<Result<Vec<InsertOutcome>, sqlx::Error>, StoreError> {
    let mut locks: Vec<i64> = batch
        .iter()
        .flat_map(|p| person_locks(&p.journey))
        .collect();
    locks.sort_unstable();
    locks.dedup();
    let mut tx = conn.begin_with(begin_locking(&locks)).await?;
    let mut outcomes: Vec<Option<InsertOutcome>> = vec![None; batch.len()];
    for wave in waves(batch) {
        let rows: Vec<JourneyRow<'_>> = wave.iter().map(|&i| batch[i].row()).collect();
        let done = insert_independent(&mut tx, &rows).await?;
        for (i, outcome) in wave.into_iter().zip(done) {
            outcomes[i] = Some(outcome);
        }
    }
    let outcomes = outcomes
        .into_iter()
        .map(|o| o.expect("every journey in a wave"));
    let outcomes: Vec<InsertOutcome> = outcomes.collect();
    Ok(tx.commit().await.map(|()| outcomes))
}

/// Splits a batch (indexes, in arrival order) into waves of journeys that do not depend on
/// each other: a journey goes in the wave after the last one holding one of its people or
/// its key, so that each wave's statement sees every earlier journey it depends on and the
/// terms decisions are those of inserting one after the other.
fn waves(batch: &[Pending]) -> Vec<Vec<usize>> {
    let mut last: HashMap<(i64, &str), usize> = HashMap::new();
    let mut waves: Vec<Vec<usize>> = Vec::new();
    for (i, p) in batch.iter().enumerate() {
        let j = &p.journey;
        // People: the operator is irrelevant to the terms (0); keys: the operator's.
        let marks = [
            (0, j.driver.identity.identity_key.as_str()),
            (0, j.passenger.identity.identity_key.as_str()),
            (p.operator_id, j.operator_journey_id.as_str()),
        ];
        let wave = marks
            .iter()
            .filter_map(|m| last.get(m).map(|w| w + 1))
            .max()
            .unwrap_or(0);
        for m in marks {
            last.insert(m, wave);
        }
        if wave == waves.len() {
            waves.push(Vec::new());
        }
        waves[wave].push(i);
    }
    waves
}
