//! The exact in-memory blacklist.

use crossbeam_utils::sync::ShardedLock;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

/// What an entry names. A raw `token` entry is turned into a `jti` entry by auth-service when
/// it is added, so gateways never need the raw token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Jti,
    Application,
    Credential,
    User,
    Operator,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Jti,
        Kind::Application,
        Kind::Credential,
        Kind::User,
        Kind::Operator,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Jti => "jti",
            Kind::Application => "application",
            Kind::Credential => "credential",
            Kind::User => "user",
            Kind::Operator => "operator",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s).ok_or(())
    }
}

/// One blacklisted thing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    pub kind: Kind,
    pub value: String,
    /// Unix seconds after which the entry no longer applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

impl Entry {
    pub fn new(kind: Kind, value: impl Into<String>) -> Self {
        Self {
            kind,
            value: value.into(),
            expires_at: None,
        }
    }

    /// The key under which the entry is stored in a feed (`kind:value`).
    /// The entry that holds when several name the same target: one without expiry wins,
    /// else the one that expires last. `None` when there are none.
    pub fn strongest(entries: impl IntoIterator<Item = Entry>) -> Option<Entry> {
        entries
            .into_iter()
            .max_by_key(|e| e.expires_at.map_or((1, 0), |at| (0, at)))
    }

    pub fn key(&self) -> String {
        format!("{}:{}", self.kind, self.value)
    }
}

type Maps = [HashMap<String, Option<i64>>; Kind::ALL.len()];

/// The exact set a gateway checks, and how fresh it is. Lookups take a read lock and allocate
/// nothing; the freshness flags are atomics, cheap enough for every request. The lock is
/// sharded by thread: a reader takes only its own thread's shard, so lookups from the
/// gateway's services (one thread each) never write to a line another core reads; a change
/// takes every shard. One shared reader count cost each request a cache line moved between
/// the cores (issue 24).
#[derive(Default)]
pub struct BlacklistSet {
    maps: ShardedLock<Maps>,
    /// Unix seconds of the last full load or change applied while the feed was current; 0
    /// before the first load.
    synced_at: AtomicI64,
    /// A full copy was loaded once: until then the set says nothing about what is revoked.
    loaded: AtomicBool,
    /// The feed is followed and its fast copy is whole (see [`crate::run_sync`]).
    feed_up: AtomicBool,
}

impl BlacklistSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `kind:value` is blacklisted at `now` (unix seconds).
    pub fn contains(&self, kind: Kind, value: &str, now: i64) -> bool {
        let maps = self.maps.read().unwrap_or_else(|e| e.into_inner());
        match maps[kind.index()].get(value) {
            Some(Some(expires_at)) => *expires_at > now,
            Some(None) => true,
            None => false,
        }
    }

    pub fn insert(&self, entry: Entry) {
        let mut maps = self.maps.write().unwrap_or_else(|e| e.into_inner());
        maps[entry.kind.index()].insert(entry.value, entry.expires_at);
    }

    pub fn remove(&self, kind: Kind, value: &str) {
        let mut maps = self.maps.write().unwrap_or_else(|e| e.into_inner());
        maps[kind.index()].remove(value);
    }

    /// Replaces the whole content (a full load from the feed); the set is loaded from then on.
    pub fn replace(&self, entries: impl IntoIterator<Item = Entry>) {
        let mut fresh: Maps = Default::default();
        for entry in entries {
            fresh[entry.kind.index()].insert(entry.value, entry.expires_at);
        }
        *self.maps.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        self.loaded.store(true, Ordering::Release);
    }

    /// Whether a full copy was ever loaded. Before that, an absent entry proves nothing, so a
    /// gateway must not accept credentials on the strength of this set.
    pub fn loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Records whether the feed is followed with a whole fast copy behind it.
    pub fn set_feed_up(&self, up: bool) {
        self.feed_up.store(up, Ordering::Relaxed);
    }

    /// Whether the feed is followed with a whole fast copy behind it.
    pub fn feed_up(&self) -> bool {
        self.feed_up.load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        let maps = self.maps.read().unwrap_or_else(|e| e.into_inner());
        maps.iter().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn mark_synced(&self, now: i64) {
        self.synced_at.store(now, Ordering::Relaxed);
    }

    /// Unix seconds of the last successful sync, 0 if never.
    pub fn synced_at(&self) -> i64 {
        self.synced_at.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_strongest_of_several_entries_holds() {
        let at = |kind, exp| Entry {
            kind,
            value: "v".into(),
            expires_at: exp,
        };
        let strongest = Entry::strongest([at(Kind::User, Some(5)), at(Kind::User, Some(9))]);
        assert_eq!(strongest.unwrap().expires_at, Some(9));
        let strongest = Entry::strongest([
            at(Kind::User, Some(5)),
            at(Kind::User, None),
            at(Kind::User, Some(9)),
        ]);
        assert_eq!(strongest.unwrap().expires_at, None);
        assert!(Entry::strongest([]).is_none());
    }

    #[test]
    fn membership_is_exact_per_kind_and_honours_expiry() {
        let set = BlacklistSet::new();
        set.insert(Entry::new(Kind::Application, "a1"));
        set.insert(Entry {
            kind: Kind::Jti,
            value: "j1".into(),
            expires_at: Some(100),
        });
        assert!(set.contains(Kind::Application, "a1", 0));
        assert!(!set.contains(Kind::User, "a1", 0), "kinds do not mix");
        assert!(!set.contains(Kind::Application, "a", 0), "no prefix match");
        assert!(set.contains(Kind::Jti, "j1", 99));
        assert!(!set.contains(Kind::Jti, "j1", 100));
        set.remove(Kind::Application, "a1");
        assert!(!set.contains(Kind::Application, "a1", 0));
        set.replace([Entry::new(Kind::Operator, "7")]);
        assert_eq!(set.len(), 1);
        assert!(!set.contains(Kind::Jti, "j1", 0));
    }

    #[test]
    fn only_a_full_load_makes_the_set_loaded() {
        let set = BlacklistSet::new();
        assert!(!set.loaded());
        set.insert(Entry::new(Kind::Jti, "j1"));
        assert!(!set.loaded(), "a single change is not a copy");
        set.replace([]);
        assert!(set.loaded(), "an empty copy is still a copy");
    }
}
