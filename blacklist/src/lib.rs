//! The blacklist contract between auth-service (the only writer) and every gateway replica
//! (readers). CONTRACT §5.
//!
//! - [`Entry`]: what is blacklisted (`kind` + `value`), with an optional expiry.
//! - [`BlacklistSet`]: the exact in-memory copy each gateway checks on the request path, with
//!   no I/O.
//! - [`Feed`]: how changes travel: [`RedisFeed`] in production (a Redis hash as the fast copy,
//!   pub/sub as the change feed), [`LocalFeed`] in the embedded single-process mode.
//!
//! The system of record is auth-service's database; a feed can always be rebuilt from it.

mod feed;
mod set;

pub use feed::{Change, Feed, FeedError, LocalFeed, RedisFeed, run_sync};
pub use set::{BlacklistSet, Entry, Kind};
