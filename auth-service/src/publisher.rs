//! Keeps the blacklist feed's fast copy equal to the database, the record (CONTRACT §5).
//!
//! Every change is committed first, then published ([`Publisher::publish`]). The fast copy
//! can still fall behind: a publish fails while Redis is down (the change is in the database
//! only), or Redis comes back empty (it keeps nothing on disk) or its keys are deleted. So a
//! background task ([`Publisher::run`]) looks every `republish_check_secs` and rewrites the
//! whole copy from the database ([`Publisher::republish`]) when a publish failed since the
//! last rewrite or the copy's loaded marker is gone, or when, compared whole with the
//! database every `compare_secs`, it differs: someone who can write to Redis cannot lift an
//! entry for longer than that. The rewrite announces itself on the change channel, so gateways
//! reload at once.
//!
//! Ordering: publishes share a lock that a rewrite takes alone. A change committed while the
//! rewrite reads the database is either in what it read or published after the rewrite, so a
//! rewrite never erases a newer change. (This holds within one auth-service process, the
//! deployment this system has.)

use crate::store::Store;
use anyhow::Context;
use blacklist::{Change, Entry, Feed, FeedError, Kind};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, RwLock};

pub struct Publisher {
    store: Store,
    feed: Arc<dyn Feed>,
    /// Shared by publishes, taken alone by a rewrite (see the module).
    order: RwLock<()>,
    /// A publish failed, or found the copy missing, since the last rewrite.
    behind: AtomicBool,
    /// Wakes the task early when `behind` is set.
    wake: Notify,
}

/// Why [`Publisher::publish_target`] failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("reading the target's entries: {0}")]
    Store(crate::store::StoreError),
    #[error("publishing: {0}")]
    Feed(FeedError),
}

impl Publisher {
    pub fn new(store: Store, feed: Arc<dyn Feed>) -> Self {
        Self {
            store,
            feed,
            order: RwLock::new(()),
            behind: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    /// Publishes a committed change. When the feed fails, the copy is marked behind (the
    /// task rewrites it once Redis answers) and the error returned. When the copy turns
    /// out to be missing, the change still reached the gateways that follow the feed and
    /// the rewrite is already due: that is not an error.
    pub async fn publish(&self, change: &Change) -> Result<(), FeedError> {
        let result = {
            let _shared = self.order.read().await;
            self.feed.publish(change).await
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                self.mark_behind();
                match e {
                    FeedError::NotLoaded => Ok(()),
                    e => Err(e),
                }
            }
        }
    }

    /// Publishes what now holds for one target: the strongest of its active entries (several
    /// may name it: a revocation and a staff entry, say), or its removal when none is left. A
    /// lift or a shorter entry must never undo a stronger one.
    pub async fn publish_target(&self, kind: Kind, value: &str) -> Result<(), PublishError> {
        let entries = self
            .store
            .active_expiries(kind.as_str(), value)
            .await
            .map_err(PublishError::Store)?
            .into_iter()
            .map(|expires_at| Entry {
                kind,
                value: value.to_owned(),
                expires_at: expires_at.map(|t| t.timestamp()),
            });
        let change = match Entry::strongest(entries) {
            Some(entry) => Change::Add(entry),
            None => Change::Remove(Entry::new(kind, value)),
        };
        self.publish(&change).await.map_err(PublishError::Feed)
    }

    /// Marks the copy behind and wakes the task.
    pub fn mark_behind(&self) {
        self.behind.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Rewrites the whole fast copy from the database; returns how many entries it holds.
    pub async fn republish(&self) -> anyhow::Result<usize> {
        let _alone = self.order.write().await;
        // Cleared before reading, so a publish failing from now on asks for another rewrite.
        self.behind.store(false, Ordering::Release);
        let result = async {
            let entries = self.current_entries().await?;
            self.feed
                .reset(&entries)
                .await
                .context("cannot publish the blacklist to the feed")?;
            Ok(entries.len())
        }
        .await;
        if result.is_err() {
            self.behind.store(true, Ordering::Release);
        }
        result
    }

    /// What holds now per target: the strongest of its active, unexpired entries.
    async fn current_entries(&self) -> anyhow::Result<Vec<Entry>> {
        let now = chrono::Utc::now();
        let mut by_target: HashMap<String, Vec<Entry>> = HashMap::new();
        for row in self.store.active_blacklist().await? {
            if row.expires_at.is_some_and(|at| at <= now) {
                continue;
            }
            let Ok(kind) = row.target_kind.parse::<Kind>() else {
                continue;
            };
            let entry = Entry {
                kind,
                value: row.target_value,
                expires_at: row.expires_at.map(|t| t.timestamp()),
            };
            by_target.entry(entry.key()).or_default().push(entry);
        }
        Ok(by_target
            .into_values()
            .filter_map(Entry::strongest)
            .collect())
    }

    /// Whether the copy needs a rewrite now: a publish failed, or the marker is gone.
    async fn due(&self) -> Result<bool, FeedError> {
        if self.behind.load(Ordering::Acquire) {
            return Ok(true);
        }
        Ok(!self.feed.loaded().await?)
    }

    /// Whether the fast copy holds exactly the database's unexpired entries. Taken alone, as
    /// a rewrite is, so that no publish falls between the two reads.
    pub async fn matches_database(&self) -> anyhow::Result<bool> {
        let _alone = self.order.write().await;
        let now = chrono::Utc::now().timestamp();
        let live = |e: &Entry| e.expires_at.is_none_or(|at| at > now);
        let sorted = |mut entries: Vec<Entry>| {
            entries.retain(live);
            entries.sort_by_key(|e| (e.key(), e.expires_at));
            entries
        };
        let record = sorted(self.current_entries().await?);
        let copy = match self.feed.snapshot().await {
            Ok(copy) => sorted(copy),
            Err(FeedError::NotLoaded) => return Ok(false),
            Err(e) => return Err(e).context("cannot read the blacklist's fast copy"),
        };
        Ok(record == copy)
    }

    /// Checks every `every` (and at once after a failed publish) until `stop` is set; rewrites
    /// the copy when it is due, or when it differs from the database, compared whole every
    /// `compare_every`. Logs once per outage, not once per check.
    pub async fn run(
        self: Arc<Self>,
        every: Duration,
        compare_every: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut failing = false;
        let mut compared = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = self.wake.notified() => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
            if compared.elapsed() >= compare_every {
                compared = tokio::time::Instant::now();
                match self.matches_database().await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(
                            "blacklist fast copy differs from the database; rewriting it"
                        );
                        self.behind.store(true, Ordering::Release);
                    }
                    // The check below meets the same failure and reports it.
                    Err(_) => {}
                }
            }
            let outcome = match self.due().await {
                Ok(false) => Ok(None),
                Ok(true) => self.republish().await.map(Some),
                Err(e) => Err(anyhow::Error::new(e)),
            };
            match outcome {
                Ok(Some(entries)) => {
                    tracing::info!(entries, "blacklist fast copy rewritten from the database");
                    failing = false;
                }
                Ok(None) => failing = false,
                Err(e) if !failing => {
                    tracing::warn!(error = %format!("{e:#}"), "blacklist feed unavailable; will rewrite it once it answers");
                    failing = true;
                }
                Err(e) => {
                    tracing::debug!(error = %format!("{e:#}"), "blacklist feed still unavailable")
                }
            }
        }
    }
}
