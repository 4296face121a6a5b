//! The verification keys, fetched from auth-service's JWKS. Refreshed when a token names an
//! unknown `kid`, at most once per `min_interval` and one fetch at a time, so bogus tokens
//! cannot turn the gateway into a load generator against auth-service.

use auth_token::KeySet;
use jsonwebtoken::jwk::JwkSet;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

pub struct Jwks {
    url: String,
    client: reqwest::Client,
    keys: RwLock<Arc<KeySet>>,
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    min_interval: Duration,
}

impl Jwks {
    pub fn new(url: String, min_interval: Duration) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            // Fetches happen on several runtimes; a pooled connection must not outlive its own.
            .pool_max_idle_per_host(0)
            .build()
            .unwrap_or_default();
        Self {
            url,
            client,
            keys: RwLock::new(Arc::new(KeySet::from_jwks(&JwkSet { keys: vec![] }))),
            last_fetch: tokio::sync::Mutex::new(None),
            min_interval,
        }
    }

    /// The current keys (cheap: an `Arc` clone).
    pub fn current(&self) -> Arc<KeySet> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Fetches the JWKS now, unless another fetch ran within `min_interval`; returns whether
    /// the key set may have changed.
    pub async fn refresh(&self) -> bool {
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|t| t.elapsed() < self.min_interval) {
            return false;
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(set) => {
                tracing::info!(keys = set.len(), "JWKS loaded");
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "JWKS fetch failed; keeping the previous keys");
                false
            }
        }
    }

    async fn fetch(&self) -> Result<KeySet, reqwest::Error> {
        let set: JwkSet = self
            .client
            .get(&self.url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(KeySet::from_jwks(&set))
    }
}
