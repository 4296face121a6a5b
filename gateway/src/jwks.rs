//! The verification keys, fetched from auth-service's JWKS by one background task
//! ([`Jwks::run`]): at start (retrying until auth-service answers), every `reload_every` (so
//! keys retired by a rotation stop verifying), and when a request names an unknown `kid`.
//!
//! Requests never fetch themselves. A request with an unknown `kid` asks the task for a
//! fetch and waits (bounded) for the next completed one, so a burst of such requests makes
//! one fetch, and fetches asked for by requests run at most once per `min_interval`: bogus
//! tokens cannot turn the gateway into a load generator against auth-service.

use auth_token::KeySet;
use crossbeam_utils::sync::{ShardedLock, ShardedLockReadGuard};
use jsonwebtoken::jwk::JwkSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// How long a request waits for the fetch it asked for, beyond `min_interval`.
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Jwks {
    /// auth-service's replicas, one picked per fetch.
    caller: crate::upstreams::Caller,
    /// Read by every request: each thread reads through a lock of its own, and borrows the
    /// keys instead of cloning the `Arc` (a shared reference count, moved between the cores
    /// per request; issue 24).
    keys: ShardedLock<Arc<KeySet>>,
    /// The JWKS document the keys were built from: an identical one keeps the same `Arc`, so
    /// the verified-token cache survives scheduled reloads.
    last_document: std::sync::Mutex<Vec<u8>>,
    /// Counts completed fetches (successful or not); requests wait for it to move.
    fetched: watch::Sender<u64>,
    wanted: Notify,
    min_interval: Duration,
}

impl Jwks {
    /// The settings every JWKS client has (a TLS one adds its own: [`crate::upstream_tls`]).
    pub fn client_builder() -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            // Fetches happen on several runtimes; a pooled connection must not outlive its own.
            .pool_max_idle_per_host(0)
    }

    /// Keys fetched from auth-service's JWKS through `caller`.
    pub fn new(caller: crate::upstreams::Caller, min_interval: Duration) -> Self {
        Self {
            caller,
            keys: ShardedLock::new(Arc::new(KeySet::from_jwks(&JwkSet { keys: vec![] }))),
            last_document: std::sync::Mutex::new(Vec::new()),
            fetched: watch::Sender::new(0),
            wanted: Notify::new(),
            min_interval,
        }
    }

    /// The current keys (cheap: an `Arc` clone).
    pub fn current(&self) -> Arc<KeySet> {
        self.keys().clone()
    }

    /// The current keys, lent while the guard lives (not across an `.await`: a new set
    /// waits for it).
    pub fn keys(&self) -> ShardedLockReadGuard<'_, Arc<KeySet>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks for a fetch and waits for it to complete (at most `min_interval` plus the fetch
    /// timeout); returns whether one completed, so the caller may look at the keys again.
    pub async fn refresh(&self) -> bool {
        let mut fetched = self.fetched.subscribe();
        let seen = *fetched.borrow_and_update();
        self.wanted.notify_one();
        let wait = self.min_interval + FETCH_TIMEOUT;
        matches!(
            tokio::time::timeout(wait, fetched.wait_for(|n| *n > seen)).await,
            Ok(Ok(_))
        )
    }

    /// The fetching task: until `stopped` resolves.
    pub async fn run(&self, reload_every: Duration, stopped: impl Future<Output = ()>) {
        tokio::pin!(stopped);
        let mut backoff = Duration::from_millis(50);
        while !self.fetch_once().await {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = &mut stopped => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
        loop {
            tokio::select! {
                _ = self.wanted.notified() => {
                    self.fetch_once().await;
                    // The bound on request-driven fetches.
                    tokio::select! {
                        _ = tokio::time::sleep(self.min_interval) => {}
                        _ = &mut stopped => return,
                    }
                }
                _ = tokio::time::sleep(reload_every) => { self.fetch_once().await; }
                _ = &mut stopped => return,
            }
        }
    }

    async fn fetch_once(&self) -> bool {
        let ok = match self.fetch().await {
            Ok((document, set)) => {
                let mut last = self.last_document.lock().unwrap_or_else(|e| e.into_inner());
                if *last != document {
                    tracing::debug!(keys = set.len(), "JWKS loaded");
                    *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
                    *last = document;
                }
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "JWKS fetch failed; keeping the previous keys");
                false
            }
        };
        self.fetched.send_modify(|n| *n += 1);
        ok
    }

    async fn fetch(&self) -> Result<(Vec<u8>, KeySet), FetchError> {
        let (client, url) = self.caller.target()?;
        let document = client
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        let set: JwkSet = serde_json::from_slice(&document)?;
        Ok((document.to_vec(), KeySet::from_jwks(&set)))
    }
}

#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    #[error(transparent)]
    Replica(#[from] crate::upstreams::CallError),
    #[error("not a JWKS: {0}")]
    Json(#[from] serde_json::Error),
}
