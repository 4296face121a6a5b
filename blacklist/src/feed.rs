//! Change feeds: how blacklist changes reach gateways, and the messages they carry.
//!
//! A feed holds a *fast copy* of the blacklist (rebuilt from auth-service's database by
//! [`Feed::reset`]) and announces every change. The fast copy carries a *loaded marker*,
//! written with it in one step: a copy without the marker (Redis restarted empty, the hash
//! deleted) is not a copy, and [`Feed::snapshot`] says so with [`FeedError::NotLoaded`]
//! rather than hand out an empty blacklist.
//!
//! Wire format of the change channel (JSON, one object per message):
//! `{"op":"add"|"remove","kind":..,"value":..,"expires_at":..?,"published_ms":..}` and
//! `{"op":"reset"}`. Fields are only ever added: a reader ignores fields and
//! `op`s it does not know, and a message without `published_ms` (an older writer) is still a
//! change. A change that old readers must not misread goes on a new channel name.

use crate::set::Entry;
use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// One change to the blacklist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    Add(Entry),
    Remove(Entry),
}

/// What a subscriber receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// One change. `published_ms`: when the writer published it (unix milliseconds), if the
    /// message says; the gateway measures propagation with it.
    Change {
        change: Change,
        published_ms: Option<i64>,
    },
    /// The fast copy was rewritten from the system of record: load it again.
    Reset,
}

impl Event {
    /// A change stamped with the time it is published now.
    pub fn published_now(change: Change) -> Event {
        Event::Change {
            change,
            published_ms: Some(now_ms()),
        }
    }

    /// The message as sent on the change channel.
    pub fn encode(&self) -> String {
        let mut value = match self {
            Event::Change { change, .. } => serde_json::to_value(change).unwrap_or_default(),
            Event::Reset => serde_json::json!({"op": "reset"}),
        };
        if let (
            Event::Change {
                published_ms: Some(at),
                ..
            },
            Value::Object(fields),
        ) = (self, &mut value)
        {
            fields.insert("published_ms".into(), (*at).into());
        }
        value.to_string()
    }

    /// A message read from the change channel; `None` for one this reader does not know.
    pub fn decode(payload: &str) -> Option<Event> {
        let value: Value = serde_json::from_str(payload).ok()?;
        let published_ms = value.get("published_ms").and_then(Value::as_i64);
        match value.get("op")?.as_str()? {
            "reset" => Some(Event::Reset),
            _ => serde_json::from_value::<Change>(value)
                .ok()
                .map(|change| Event::Change {
                    change,
                    published_ms,
                }),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("feed closed")]
    Closed,
    /// The fast copy is missing (never written, or lost with a Redis restart or flush): it
    /// must be rebuilt from the database before anyone trusts it.
    #[error("the blacklist's fast copy is not loaded")]
    NotLoaded,
}

impl FeedError {
    /// A low-cardinality name for metrics: `redis`, `closed` or `not_loaded`.
    pub fn kind(&self) -> &'static str {
        match self {
            FeedError::Redis(_) => "redis",
            FeedError::Closed => "closed",
            FeedError::NotLoaded => "not_loaded",
        }
    }
}

/// Where the fast copy lives and how changes are announced.
#[async_trait]
pub trait Feed: Send + Sync {
    /// Applies a change to the fast copy and announces it (auth-service). The change is
    /// applied and announced even when the fast copy is not loaded, but then the answer is
    /// [`FeedError::NotLoaded`]: the copy must be rebuilt.
    async fn publish(&self, change: &Change) -> Result<(), FeedError>;
    /// Replaces the fast copy with `entries`, marks it loaded and announces
    /// [`Event::Reset`] (auth-service, rebuilding from its database).
    async fn reset(&self, entries: &[Entry]) -> Result<(), FeedError>;
    /// Whether the fast copy is loaded (a cheap check; auth-service polls it).
    async fn loaded(&self) -> Result<bool, FeedError>;
    /// The whole fast copy (gateways, at start and on reconcile); [`FeedError::NotLoaded`]
    /// when it is missing.
    async fn snapshot(&self) -> Result<Vec<Entry>, FeedError>;
    /// Events from now on (gateways). The stream ends when the feed is lost.
    async fn subscribe(&self) -> Result<BoxStream<'static, Event>, FeedError>;
}

/// Unix milliseconds now.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// In-process feed for the embedded single-machine mode.
#[derive(Clone)]
pub struct LocalFeed {
    copy: Arc<Mutex<LocalCopy>>,
    events: broadcast::Sender<String>,
}

#[derive(Default)]
struct LocalCopy {
    entries: HashMap<String, Entry>,
    loaded: bool,
}

impl Default for LocalFeed {
    fn default() -> Self {
        Self {
            copy: Arc::default(),
            events: broadcast::channel(1024).0,
        }
    }
}

impl LocalFeed {
    pub fn new() -> Self {
        Self::default()
    }

    fn copy(&self) -> std::sync::MutexGuard<'_, LocalCopy> {
        self.copy.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops the fast copy, as a Redis restart would (tests of the recovery).
    #[cfg(test)]
    pub(crate) fn lose_copy(&self) {
        *self.copy() = LocalCopy::default();
    }

    fn announce(&self, event: &Event) {
        // No subscriber yet is fine: a gateway starting later takes the snapshot. Messages go
        // through their wire form, as on Redis.
        let _ = self.events.send(event.encode());
    }
}

#[async_trait]
impl Feed for LocalFeed {
    async fn publish(&self, change: &Change) -> Result<(), FeedError> {
        let loaded = {
            let mut copy = self.copy();
            match change {
                Change::Add(e) => copy.entries.insert(e.key(), e.clone()),
                Change::Remove(e) => copy.entries.remove(&e.key()),
            };
            copy.loaded
        };
        self.announce(&Event::published_now(change.clone()));
        if loaded {
            Ok(())
        } else {
            Err(FeedError::NotLoaded)
        }
    }

    async fn reset(&self, entries: &[Entry]) -> Result<(), FeedError> {
        *self.copy() = LocalCopy {
            entries: entries.iter().map(|e| (e.key(), e.clone())).collect(),
            loaded: true,
        };
        self.announce(&Event::Reset);
        Ok(())
    }

    async fn loaded(&self) -> Result<bool, FeedError> {
        Ok(self.copy().loaded)
    }

    async fn snapshot(&self) -> Result<Vec<Entry>, FeedError> {
        let copy = self.copy();
        if !copy.loaded {
            return Err(FeedError::NotLoaded);
        }
        Ok(copy.entries.values().cloned().collect())
    }

    async fn subscribe(&self) -> Result<BoxStream<'static, Event>, FeedError> {
        let rx = self.events.subscribe();
        // A lagging reader's stream ends, so the caller resyncs from a snapshot.
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            loop {
                let message = rx.recv().await.ok()?;
                if let Some(event) = Event::decode(&message) {
                    return Some((event, rx));
                }
            }
        });
        Ok(stream.boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::set::Kind;

    #[test]
    fn changes_carry_their_publication_time_and_old_messages_still_read() {
        let change = Change::Add(Entry {
            kind: Kind::Jti,
            value: "j1".into(),
            expires_at: Some(9),
        });
        let event = Event::Change {
            change: change.clone(),
            published_ms: Some(1_700_000_000_123),
        };
        let wire = event.encode();
        let json: Value = serde_json::from_str(&wire).unwrap();
        assert_eq!(json["op"], "add");
        assert_eq!(json["kind"], "jti");
        assert_eq!(json["published_ms"], 1_700_000_000_123_i64);
        assert_eq!(
            Event::decode(&wire),
            Some(Event::Change {
                change: change.clone(),
                published_ms: Some(1_700_000_000_123)
            })
        );
        // What writers sent before `published_ms` existed.
        let old = r#"{"op":"add","kind":"jti","value":"j1","expires_at":9}"#;
        assert_eq!(
            Event::decode(old),
            Some(Event::Change {
                change,
                published_ms: None
            })
        );
    }

    #[test]
    fn unknown_fields_are_ignored_and_unknown_ops_skipped() {
        let newer = r#"{"op":"remove","kind":"user","value":"u","published_ms":5,"trace":"x"}"#;
        assert_eq!(
            Event::decode(newer),
            Some(Event::Change {
                change: Change::Remove(Entry::new(Kind::User, "u")),
                published_ms: Some(5)
            })
        );
        assert_eq!(Event::decode(r#"{"op":"compact","published_ms":5}"#), None);
        assert_eq!(
            Event::decode(r#"{"op":"add","kind":"planet","value":"x"}"#),
            None
        );
        assert_eq!(Event::decode("not json"), None);
        assert_eq!(
            Event::decode(&Event::Reset.encode()),
            Some(Event::Reset),
            "reset round-trips"
        );
    }

    #[tokio::test]
    async fn a_local_copy_is_not_loaded_until_reset() {
        let feed = LocalFeed::new();
        assert!(!feed.loaded().await.unwrap());
        assert!(matches!(feed.snapshot().await, Err(FeedError::NotLoaded)));
        let add = Change::Add(Entry::new(Kind::Jti, "j1"));
        assert!(
            matches!(feed.publish(&add).await, Err(FeedError::NotLoaded)),
            "a change to a missing copy asks for a rebuild"
        );
        feed.reset(&[Entry::new(Kind::User, "u1")]).await.unwrap();
        assert!(feed.loaded().await.unwrap());
        assert_eq!(
            feed.snapshot().await.unwrap(),
            vec![Entry::new(Kind::User, "u1")]
        );
        feed.publish(&add).await.unwrap();
        assert_eq!(feed.snapshot().await.unwrap().len(), 2);
    }
}
