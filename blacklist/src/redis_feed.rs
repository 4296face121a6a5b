//! The Redis feed: the fast copy is the hash `<prefix>blacklist` (field `kind:value`, value
//! the entry as JSON, plus the loaded marker field [`LOADED_FIELD`]) and events go out on the
//! channel `<prefix>blacklist:changes`.
//!
//! The marker lives *in* the hash, so whatever loses the hash (a restart without
//! persistence, a flush, a `DEL`, an eviction) loses the marker with it; a change published
//! meanwhile recreates the hash without the marker, so a partial copy never passes for a
//! whole one.

use crate::feed::{Change, Event, Feed, FeedError, now_ms};
use crate::set::Entry;
use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// The hash field that marks a whole fast copy. Entry fields are `<kind>:<value>` with a
/// lowercase kind, so it cannot collide with one.
pub const LOADED_FIELD: &str = "!loaded";

/// Connecting (and subscribing) gives up after this long: a feed call never hangs a caller.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A command gives up after this long (a whole snapshot included).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Entries per `HSET` when rewriting the copy.
const RESET_CHUNK: usize = 1000;

/// Redis feed (production). Cheap to clone; connects on first use, so a gateway can start
/// while Redis is down.
#[derive(Clone)]
pub struct RedisFeed {
    client: redis::Client,
    conn: Arc<OnceCell<ConnectionManager>>,
    hash: String,
    channel: String,
}

impl RedisFeed {
    /// A feed on `url` under `prefix`; nothing is connected until first use.
    pub fn new(url: &str, prefix: &str) -> Result<Self, FeedError> {
        Ok(Self {
            client: redis::Client::open(url)?,
            conn: Arc::default(),
            hash: format!("{prefix}blacklist"),
            channel: format!("{prefix}blacklist:changes"),
        })
    }

    /// A feed on `url` under `prefix`, checked to answer now.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, FeedError> {
        let feed = Self::new(url, prefix)?;
        let mut conn = feed.conn().await?;
        redis::cmd("PING").query_async::<()>(&mut conn).await?;
        Ok(feed)
    }

    /// The shared connection, created in the runtime of its first user. It reconnects by
    /// itself; a call while Redis is down fails after one quick retry.
    async fn conn(&self) -> Result<ConnectionManager, FeedError> {
        let make = || async {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(RESPONSE_TIMEOUT))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(200));
            ConnectionManager::new_lazy_with_config(self.client.clone(), config)
        };
        Ok(self.conn.get_or_try_init(make).await?.clone())
    }

    /// Runs `pipe`, once more on a new connection when the one it used had died since its
    /// last use (Redis restarted while this feed was idle). Every pipeline here can run twice:
    /// writes set the same values again, and a change announced twice is applied twice to
    /// the same effect.
    async fn query<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, FeedError> {
        let mut conn = self.conn().await?;
        match pipe.query_async(&mut conn).await {
            Err(e) if e.is_connection_dropped() && !e.is_connection_refusal() => {
                Ok(pipe.query_async(&mut conn).await?)
            }
            result => Ok(result?),
        }
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Entries are plain data; serialisation cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

fn timed_out() -> FeedError {
    FeedError::Redis(std::io::Error::from(std::io::ErrorKind::TimedOut).into())
}

#[async_trait]
impl Feed for RedisFeed {
    async fn publish(&self, change: &Change) -> Result<(), FeedError> {
        let mut pipe = redis::pipe();
        pipe.atomic().hexists(&self.hash, LOADED_FIELD);
        match change {
            Change::Add(e) => pipe.hset(&self.hash, e.key(), to_json(e)).ignore(),
            Change::Remove(e) => pipe.hdel(&self.hash, e.key()).ignore(),
        };
        let event = Event::published_now(change.clone());
        pipe.publish(&self.channel, event.encode()).ignore();
        let (loaded,): (bool,) = self.query(&pipe).await?;
        if loaded {
            Ok(())
        } else {
            Err(FeedError::NotLoaded)
        }
    }

    async fn reset(&self, entries: &[Entry]) -> Result<(), FeedError> {
        let mut pipe = redis::pipe();
        pipe.atomic().del(&self.hash).ignore();
        for chunk in entries.chunks(RESET_CHUNK) {
            let fields: Vec<(String, String)> =
                chunk.iter().map(|e| (e.key(), to_json(e))).collect();
            pipe.hset_multiple(&self.hash, &fields).ignore();
        }
        let marker = serde_json::json!({"at_ms": now_ms(), "entries": entries.len()});
        pipe.hset(&self.hash, LOADED_FIELD, marker.to_string())
            .ignore();
        pipe.publish(&self.channel, Event::Reset.encode()).ignore();
        self.query::<()>(&pipe).await
    }

    async fn loaded(&self) -> Result<bool, FeedError> {
        let mut pipe = redis::pipe();
        pipe.hexists(&self.hash, LOADED_FIELD);
        let (loaded,): (bool,) = self.query(&pipe).await?;
        Ok(loaded)
    }

    async fn snapshot(&self) -> Result<Vec<Entry>, FeedError> {
        let mut pipe = redis::pipe();
        pipe.hgetall(&self.hash);
        let (mut raw,): (HashMap<String, String>,) = self.query(&pipe).await?;
        if raw.remove(LOADED_FIELD).is_none() {
            return Err(FeedError::NotLoaded);
        }
        Ok(raw
            .values()
            .filter_map(|json| serde_json::from_str(json).ok())
            .collect())
    }

    async fn subscribe(&self) -> Result<BoxStream<'static, Event>, FeedError> {
        let subscribed = async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.subscribe(&self.channel).await?;
            Ok::<_, FeedError>(pubsub)
        };
        let pubsub = tokio::time::timeout(CONNECT_TIMEOUT + RESPONSE_TIMEOUT, subscribed)
            .await
            .map_err(|_| timed_out())??;
        let stream = pubsub.into_on_message().filter_map(|msg| async move {
            let payload: String = msg.get_payload().ok()?;
            Event::decode(&payload)
        });
        Ok(stream.boxed())
    }
}
