//! Keeping a gateway's [`BlacklistSet`] equal to the feed: [`run_sync`].
//!
//! One round: subscribe, then load a snapshot (subscribing first means no change can fall
//! between the two: a change already in the snapshot and also delivered is applied twice,
//! which changes nothing, and changes are applied in the order they were published), then
//! apply events, reloading on [`Event::Reset`] and every [`SyncOptions::reconcile_every`]. A lost
//! connection ends the round; the next one starts after a short backoff. Whatever fails, the
//! set keeps its last copy: it is replaced only by a whole one.

use crate::feed::{Change, Event, Feed, FeedError};
use crate::set::BlacklistSet;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The timing of [`run_sync`].
#[derive(Debug, Clone, Copy)]
pub struct SyncOptions {
    /// How often the whole fast copy is read again, even while the change feed is healthy:
    /// it heals a missed message and proves the copy current (the sync-age metric), and it
    /// is how a copy lost without a lost connection (a flush) is noticed.
    pub reconcile_every: Duration,
    /// How soon a fast copy found missing is looked at again (auth-service rebuilds it and
    /// announces the rebuild, which reloads at once; this is the fallback).
    pub retry_not_loaded: Duration,
    /// The clock (unix seconds) of [`BlacklistSet::mark_synced`].
    pub now: fn() -> i64,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            reconcile_every: Duration::from_secs(10),
            retry_not_loaded: Duration::from_millis(500),
            now: unix_now,
        }
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Backoff between rounds after a failure: doubles from the first to the second.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(1));

/// What the sync loop reports as it goes (the gateway turns it into metrics).
pub trait SyncObserver: Send + Sync {
    /// A change was applied. `published_ms` is when it was published (unix milliseconds),
    /// when the message says.
    fn change_applied(&self, _published_ms: Option<i64>) {}
    /// The feed failed: lost, unreachable, or its fast copy missing.
    fn feed_failed(&self, _error: &FeedError) {}
}

/// Observes nothing.
impl SyncObserver for () {}

/// Keeps `set` equal to the feed until `stop` changes (see the module).
pub async fn run_sync(
    feed: Arc<dyn Feed>,
    set: Arc<BlacklistSet>,
    observer: Arc<dyn SyncObserver>,
    options: SyncOptions,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF.0;
    // Whether the last failure was already logged: one warning per outage, not per retry.
    let mut failing = false;
    loop {
        let mut synced = false;
        let error = tokio::select! {
            error = follow(feed.as_ref(), &set, observer.as_ref(), options, &mut synced, &mut failing) => error,
            _ = stop.changed() => return,
        };
        set.set_feed_up(false);
        observer.feed_failed(&error);
        if !failing {
            tracing::warn!(error = %error, "blacklist feed lost; serving the last copy");
            failing = true;
        } else {
            tracing::debug!(error = %error, "blacklist feed still unavailable");
        }
        backoff = if synced {
            BACKOFF.0
        } else {
            (backoff * 2).min(BACKOFF.1)
        };
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
    }
}

/// One round; returns why it ended. `synced`: a whole copy was loaded in this round.
async fn follow(
    feed: &dyn Feed,
    set: &BlacklistSet,
    observer: &dyn SyncObserver,
    options: SyncOptions,
    synced: &mut bool,
    failing: &mut bool,
) -> FeedError {
    let mut events = match feed.subscribe().await {
        Ok(events) => events,
        Err(e) => return e,
    };
    let mut next_load = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next_load) => match feed.snapshot().await {
                Ok(entries) => {
                    set.replace(entries);
                    set.mark_synced((options.now)());
                    set.set_feed_up(true);
                    if !*synced || *failing {
                        tracing::info!(entries = set.len(), "blacklist loaded");
                    }
                    *synced = true;
                    *failing = false;
                    next_load = Instant::now() + options.reconcile_every;
                }
                Err(FeedError::NotLoaded) => {
                    set.set_feed_up(false);
                    observer.feed_failed(&FeedError::NotLoaded);
                    if !*failing {
                        tracing::warn!("blacklist fast copy missing; serving the last copy until it is rebuilt");
                        *failing = true;
                    }
                    next_load = Instant::now() + options.retry_not_loaded;
                }
                Err(e) => return e,
            },
            event = events.next() => match event {
                Some(Event::Change { change, published_ms }) => {
                    match change {
                        Change::Add(e) => set.insert(e),
                        Change::Remove(e) => set.remove(e.kind, &e.value),
                    }
                    // A change proves the subscription alive, not a missing copy whole.
                    if set.feed_up() {
                        set.mark_synced((options.now)());
                    }
                    observer.change_applied(published_ms);
                }
                Some(Event::Reset) => next_load = Instant::now(),
                None => return FeedError::Closed,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::LocalFeed;
    use crate::set::{Entry, Kind};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Seen {
        published: Mutex<Vec<Option<i64>>>,
        failures: Mutex<Vec<&'static str>>,
    }

    impl SyncObserver for Seen {
        fn change_applied(&self, published_ms: Option<i64>) {
            self.published.lock().unwrap().push(published_ms);
        }
        fn feed_failed(&self, error: &FeedError) {
            self.failures.lock().unwrap().push(error.kind());
        }
    }

    fn clock() -> i64 {
        1_000
    }

    /// Short periods, so the tests run in real time in milliseconds.
    const FAST: SyncOptions = SyncOptions {
        reconcile_every: Duration::from_millis(100),
        retry_not_loaded: Duration::from_millis(20),
        now: clock,
    };

    /// Runs the sync on `feed` in the background; returns the set, the observer and the stop.
    fn start(
        feed: &LocalFeed,
    ) -> (
        Arc<BlacklistSet>,
        Arc<Seen>,
        tokio::sync::watch::Sender<bool>,
    ) {
        let set = Arc::new(BlacklistSet::new());
        let seen = Arc::new(Seen::default());
        let (stop, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(run_sync(
            Arc::new(feed.clone()),
            set.clone(),
            seen.clone(),
            FAST,
            rx,
        ));
        (set, seen, stop)
    }

    /// Lets the sync task run until `check` holds (at most 5 s).
    async fn until(check: impl Fn() -> bool) {
        for _ in 0..1_000 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("condition never held");
    }

    #[tokio::test]
    async fn a_missing_copy_is_never_loaded_as_an_empty_one() {
        let feed = LocalFeed::new();
        let (set, seen, _stop) = start(&feed);
        until(|| seen.failures.lock().unwrap().contains(&"not_loaded")).await;
        assert!(!set.loaded(), "no copy yet: the set must not claim one");
        assert!(!set.feed_up());

        feed.reset(&[Entry::new(Kind::Jti, "j1")]).await.unwrap();
        until(|| set.loaded()).await;
        assert!(set.contains(Kind::Jti, "j1", 0));
        assert!(set.feed_up());
        assert_eq!(set.synced_at(), 1_000);
    }

    #[tokio::test]
    async fn a_copy_lost_after_loading_keeps_the_last_one_until_rebuilt() {
        let feed = LocalFeed::new();
        feed.reset(&[Entry::new(Kind::Jti, "j1")]).await.unwrap();
        let (set, seen, _stop) = start(&feed);
        until(|| set.feed_up()).await;

        feed.lose_copy();
        // The next reconcile finds no copy: the set keeps what it has and says it is behind.
        until(|| seen.failures.lock().unwrap().contains(&"not_loaded")).await;
        assert!(!set.feed_up());
        assert!(
            set.contains(Kind::Jti, "j1", 0),
            "the revoked stays revoked"
        );

        // Changes still arrive and apply while the copy is being rebuilt.
        let j2 = Change::Add(Entry::new(Kind::Jti, "j2"));
        assert!(
            feed.publish(&j2).await.is_err(),
            "the writer hears the copy is missing"
        );
        until(|| set.contains(Kind::Jti, "j2", 0)).await;

        // The rebuild announces itself: the set reloads at once, not at the next reconcile.
        feed.reset(&[Entry::new(Kind::Jti, "j1"), Entry::new(Kind::Jti, "j2")])
            .await
            .unwrap();
        until(|| set.feed_up()).await;
        assert_eq!(set.len(), 2);
    }

    #[tokio::test]
    async fn changes_apply_in_order_and_report_their_publication_time() {
        let feed = LocalFeed::new();
        feed.reset(&[]).await.unwrap();
        let (set, seen, _stop) = start(&feed);
        until(|| set.feed_up()).await;
        let entry = Entry::new(Kind::Application, "a1");
        feed.publish(&Change::Add(entry.clone())).await.unwrap();
        feed.publish(&Change::Remove(entry.clone())).await.unwrap();
        feed.publish(&Change::Add(Entry::new(Kind::User, "u1")))
            .await
            .unwrap();
        until(|| set.contains(Kind::User, "u1", 0)).await;
        assert!(!set.contains(Kind::Application, "a1", 0), "add then remove");
        let published = seen.published.lock().unwrap().clone();
        assert_eq!(published.len(), 3);
        assert!(published.iter().all(|at| at.is_some_and(|ms| ms > 0)));
    }

    #[tokio::test]
    async fn stopping_ends_the_sync() {
        let feed = LocalFeed::new();
        let set = Arc::new(BlacklistSet::new());
        let (stop, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(run_sync(Arc::new(feed), set, Arc::new(()), FAST, rx));
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("the sync stops")
            .unwrap();
    }
}
