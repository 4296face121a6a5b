//! Change feeds: how blacklist changes reach gateways.

use crate::set::{BlacklistSet, Entry};
use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

/// One change to the blacklist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    Add(Entry),
    Remove(Entry),
}

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("feed closed")]
    Closed,
}

/// Where the fast copy lives and how changes are announced.
#[async_trait]
pub trait Feed: Send + Sync {
    /// Applies a change to the fast copy and announces it (auth-service).
    async fn publish(&self, change: &Change) -> Result<(), FeedError>;
    /// Replaces the fast copy with `entries` (auth-service, rebuilding from its database).
    async fn reset(&self, entries: &[Entry]) -> Result<(), FeedError>;
    /// The whole fast copy (gateways, at start and on reconcile).
    async fn snapshot(&self) -> Result<Vec<Entry>, FeedError>;
    /// Changes from now on (gateways).
    async fn subscribe(&self) -> Result<BoxStream<'static, Change>, FeedError>;
}

/// In-process feed for the embedded single-machine mode.
#[derive(Clone)]
pub struct LocalFeed {
    entries: Arc<Mutex<HashMap<String, Entry>>>,
    changes: broadcast::Sender<Change>,
}

impl Default for LocalFeed {
    fn default() -> Self {
        Self {
            entries: Arc::default(),
            changes: broadcast::channel(1024).0,
        }
    }
}

impl LocalFeed {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Feed for LocalFeed {
    async fn publish(&self, change: &Change) -> Result<(), FeedError> {
        {
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            match change {
                Change::Add(e) => entries.insert(e.key(), e.clone()),
                Change::Remove(e) => entries.remove(&e.key()),
            };
        }
        // No subscriber yet is fine: a gateway starting later takes the snapshot.
        let _ = self.changes.send(change.clone());
        Ok(())
    }

    async fn reset(&self, entries: &[Entry]) -> Result<(), FeedError> {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        *map = entries.iter().map(|e| (e.key(), e.clone())).collect();
        Ok(())
    }

    async fn snapshot(&self) -> Result<Vec<Entry>, FeedError> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        Ok(entries.values().cloned().collect())
    }

    async fn subscribe(&self) -> Result<BoxStream<'static, Change>, FeedError> {
        let rx = self.changes.subscribe();
        // A lagging reader's stream ends, so the caller resyncs from a snapshot.
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.ok().map(|change| (change, rx))
        });
        Ok(stream.boxed())
    }
}

/// Redis feed: the fast copy is a hash `<prefix>blacklist` (field `kind:value`, value the entry
/// as JSON) and changes go out on the channel `<prefix>blacklist:changes`.
#[derive(Clone)]
pub struct RedisFeed {
    client: redis::Client,
    conn: redis::aio::ConnectionManager,
    hash: String,
    channel: String,
}

impl RedisFeed {
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, FeedError> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        let conn = redis::aio::ConnectionManager::new_with_config(client.clone(), config).await?;
        Ok(Self {
            client,
            conn,
            hash: format!("{prefix}blacklist"),
            channel: format!("{prefix}blacklist:changes"),
        })
    }
}

fn to_json<T: Serialize>(value: &T) -> String {
    // Entries and changes are plain data; serialisation cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

#[async_trait]
impl Feed for RedisFeed {
    async fn publish(&self, change: &Change) -> Result<(), FeedError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        match change {
            Change::Add(e) => pipe.hset(&self.hash, e.key(), to_json(e)).ignore(),
            Change::Remove(e) => pipe.hdel(&self.hash, e.key()).ignore(),
        };
        pipe.publish(&self.channel, to_json(change)).ignore();
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    async fn reset(&self, entries: &[Entry]) -> Result<(), FeedError> {
        let mut pipe = redis::pipe();
        pipe.atomic().del(&self.hash).ignore();
        for e in entries {
            pipe.hset(&self.hash, e.key(), to_json(e)).ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    async fn snapshot(&self) -> Result<Vec<Entry>, FeedError> {
        let mut conn = self.conn.clone();
        let raw: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(&self.hash)
            .query_async(&mut conn)
            .await?;
        Ok(raw
            .values()
            .filter_map(|json| serde_json::from_str(json).ok())
            .collect())
    }

    async fn subscribe(&self) -> Result<BoxStream<'static, Change>, FeedError> {
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.subscribe(&self.channel).await?;
        let stream = pubsub.into_on_message().filter_map(|msg| async move {
            let payload: String = msg.get_payload().ok()?;
            serde_json::from_str(&payload).ok()
        });
        Ok(stream.boxed())
    }
}

/// How often a gateway re-reads the whole fast copy, even while the change feed is healthy:
/// it heals a missed message and proves the copy is current (the sync-age metric).
pub const RECONCILE_EVERY: Duration = Duration::from_secs(10);

/// Keeps `set` equal to the feed until `stop` changes: subscribe, load a snapshot, apply
/// changes, reconcile every [`RECONCILE_EVERY`]; on any failure keep the last copy and
/// retry with backoff. `now` is the clock (unix seconds).
pub async fn run_sync(
    feed: Arc<dyn Feed>,
    set: Arc<BlacklistSet>,
    now: fn() -> i64,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut loaded = false;
        let round = async {
            // Subscribe before the snapshot so no change falls between the two.
            let mut changes = feed.subscribe().await?;
            set.replace(feed.snapshot().await?);
            set.mark_synced(now());
            loaded = true;
            tracing::info!(entries = set.len(), "blacklist loaded");
            let mut reconcile = tokio::time::interval(RECONCILE_EVERY);
            reconcile.tick().await;
            loop {
                tokio::select! {
                    change = changes.next() => match change {
                        Some(Change::Add(e)) => set.insert(e),
                        Some(Change::Remove(e)) => set.remove(e.kind, &e.value),
                        None => return Err::<(), _>(FeedError::Closed),
                    },
                    _ = reconcile.tick() => set.replace(feed.snapshot().await?),
                }
                set.mark_synced(now());
            }
        };
        tokio::select! {
            result = round => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "blacklist feed lost; serving the last copy");
                }
            }
            _ = stop.changed() => return,
        }
        backoff = if loaded {
            Duration::from_millis(100)
        } else {
            (backoff * 2).min(Duration::from_secs(5))
        };
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
    }
}
