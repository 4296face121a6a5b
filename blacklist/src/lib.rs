//! The blacklist contract between auth-service (the only writer) and every gateway replica
//! (readers). CONTRACT §5.
//!
//! - [`Entry`]: what is blacklisted (`kind` + `value`), with an optional expiry.
//! - [`BlacklistSet`]: the exact in-memory copy each gateway checks on the request path, with
//!   no I/O.
//! - [`Feed`]: how changes travel: [`RedisFeed`] in production (a Redis hash as the fast copy,
//!   pub/sub as the change feed), [`LocalFeed`] in the embedded single-process mode. The
//!   messages ([`Event`]) and their wire format are in `feed.rs`.
//! - [`run_sync`]: the gateway's loop that keeps a [`BlacklistSet`] equal to a feed, reporting
//!   to a [`SyncObserver`].
//!
//! The system of record is auth-service's database; a feed can always be rebuilt from it,
//! and a feed whose copy was lost says so ([`FeedError::NotLoaded`]) instead of looking empty.
//! See `docs/blacklist.md` for the whole flow and its failure modes.

mod feed;
mod redis_feed;
mod set;
mod sync;

pub use feed::{Change, Event, Feed, FeedError, LocalFeed};
pub use redis_feed::{LOADED_FIELD, RedisFeed};
pub use set::{BlacklistSet, Entry, Kind};
pub use sync::{SyncObserver, SyncOptions, run_sync};
