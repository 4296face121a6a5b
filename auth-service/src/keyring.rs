//! The signing keys: loaded from the database at start (one is created on first start),
//! reloaded every [`RELOAD_EVERY`], after a rotation and for every JWKS request, so every replica signs with the
//! newest key and publishes exactly the keys that still verify.
//!
//! Rotation (CONTRACT §3.5): a new key signs at once; the old ones stay in the JWKS for an
//! overlap period, so tokens they signed keep working until they expire. Application tokens
//! never expire: an old key stays published while a live application's token was signed
//! with it, unless the rotation is an emergency one (`keep_for_applications: false`).
//!
//! Private halves are stored sealed under the key-encryption keys ([`crate::kek`]): at
//! start every stored key not sealed under the first KEK (a clear row from before sealing,
//! or one sealed under an older KEK) is re-sealed under it; a key that no configured KEK
//! opens stops the start.

use crate::kek::Keks;
use crate::store::{Audit, KeyRow, Rotation, Store, StoredKey};
use anyhow::Context;
use auth_token::{Claims, SigningKey};
use chrono::{DateTime, Utc};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use zeroize::Zeroizing;

/// How often each replica rereads the keys (a rotation made elsewhere, a retirement due).
/// A replica that has not reread yet signs with the previous key, still valid through the
/// overlap (an emergency rotation's retired key included: this bounds how long it may).
pub const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// The keys in use. Cheap to clone.
#[derive(Clone)]
pub struct Keyring {
    store: Store,
    keks: Arc<Keks>,
    loaded: Arc<RwLock<Arc<Loaded>>>,
    /// One reread for the JWKS at a time; requests waiting on it share its result.
    rereading: Arc<tokio::sync::Mutex<()>>,
}

struct Loaded {
    signing: SigningKey,
    published: Vec<Published>,
    /// When it was read from the database.
    at: std::time::Instant,
}

/// A key that verifies now or may after its planned retirement.
struct Published {
    jwk: Jwk,
    /// Its form once retired but kept for live applications' tokens.
    application_only: Option<Jwk>,
    /// When it stops verifying every kind of token (none: not planned).
    until: Option<DateTime<Utc>>,
}

impl Keyring {
    /// Re-seals every stored key under the first KEK, then loads the keys (creating the
    /// first one on a new database).
    pub async fn load_or_create(store: &Store, keks: Keks) -> anyhow::Result<Self> {
        reseal(store, &keks).await?;
        let loaded = load(store, &keks).await?;
        let keyring = Self {
            store: store.clone(),
            keks: Arc::new(keks),
            loaded: Arc::new(RwLock::new(Arc::new(loaded))),
            rereading: Arc::default(),
        };
        Ok(keyring)
    }

    /// Rereads the keys from the database; on failure the current ones stay.
    pub async fn reload(&self) -> anyhow::Result<()> {
        let loaded = load(&self.store, &self.keks).await?;
        *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(loaded);
        Ok(())
    }

    /// The JWKS as the database holds it now: a key made by a rotation on another replica
    /// is published by this one too, at once (a gateway that meets a token signed with it
    /// fetches the JWKS from any replica). Rereads at most one at a time; a request that
    /// waited for one started after it asked takes that one's keys. On failure, the keys
    /// in memory.
    pub async fn fresh_jwks(&self) -> JwkSet {
        let asked = std::time::Instant::now();
        let _one = self.rereading.lock().await;
        if self.current().at < asked
            && let Err(e) = self.reload().await
        {
            tracing::warn!(error = %format!("{e:#}"), "cannot reread signing keys for the JWKS; publishing the current ones");
        }
        self.jwks()
    }

    /// Reloads every [`RELOAD_EVERY`], until `stop` turns true.
    pub async fn keep_fresh(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(RELOAD_EVERY);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
            if let Err(e) = self.reload().await {
                tracing::warn!(error = %format!("{e:#}"), "cannot reload signing keys; keeping the current ones");
            }
        }
    }

    fn current(&self) -> Arc<Loaded> {
        self.loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Signs with the newest key.
    pub fn sign(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        self.sign_with_kid(claims).map(|(token, _)| token)
    }

    /// Signs with the newest key; returns the token and that key's `kid`.
    pub fn sign_with_kid(
        &self,
        claims: &Claims,
    ) -> Result<(String, String), jsonwebtoken::errors::Error> {
        let loaded = self.current();
        let token = loaded.signing.sign(claims)?;
        Ok((token, loaded.signing.kid().to_owned()))
    }

    /// The `kid` of the key that signs now.
    pub fn signing_kid(&self) -> String {
        self.current().signing.kid().to_owned()
    }

    /// The public keys that verify now: a retirement takes effect on time, not at the
    /// next reload. A retired key kept for live applications is published restricted to
    /// application tokens.
    pub fn jwks(&self) -> JwkSet {
        let now = Utc::now();
        let keys = self
            .current()
            .published
            .iter()
            .filter_map(|key| match key.until {
                Some(until) if until <= now => key.application_only.clone(),
                _ => Some(key.jwk.clone()),
            })
            .collect();
        JwkSet { keys }
    }

    /// Makes a new signing key; the others verify until `now + overlap` (and beyond while
    /// kept for live applications).
    pub async fn rotate(
        &self,
        overlap: Duration,
        keep_for_applications: bool,
        audit: Audit,
    ) -> anyhow::Result<Rotation> {
        let (key, der) = SigningKey::generate().context("cannot generate a signing key")?;
        let sealed = self.keks.seal(key.kid(), &Zeroizing::new(der))?;
        let retire_at =
            Utc::now() + chrono::Duration::from_std(overlap).context("overlap out of range")?;
        let audit = Audit {
            target: format!("key:{}", key.kid()),
            ..audit
        };
        let rotation = self
            .store
            .rotate_keys(key.kid(), &sealed, retire_at, keep_for_applications, audit)
            .await?;
        self.reload().await?;
        tracing::info!(
            kid = key.kid(),
            retiring = rotation.retiring.len(),
            "signing key rotated"
        );
        Ok(rotation)
    }
}

/// Opens every stored key, retired ones too (one that no configured KEK opens stops the
/// start), and seals under the first KEK each one that is not: clear rows of a database
/// made before sealing, and keys sealed under another KEK (a rotation of KEKs).
async fn reseal(store: &Store, keks: &Keks) -> anyhow::Result<()> {
    let mut resealed = 0;
    for row in store.all_keys().await? {
        let der = match row.stored() {
            Some(StoredKey::Sealed(sealed)) => {
                let der = keks.open(&row.kid, &sealed)?;
                if sealed.kek == keks.sealing_name() {
                    continue;
                }
                der
            }
            Some(StoredKey::Clear(der)) => Zeroizing::new(der),
            None => anyhow::bail!("signing key {} has no private half stored", row.kid),
        };
        SigningKey::from_pkcs8_der(&der)
            .with_context(|| format!("stored signing key {} is unreadable", row.kid))?;
        let sealed = keks.seal(&row.kid, &der)?;
        store.reseal_key(&row.kid, &sealed).await?;
        resealed += 1;
    }
    if resealed > 0 {
        tracing::info!(
            resealed,
            kek = keks.sealing_name(),
            "sealed signing keys under the first key-encryption key"
        );
    }
    Ok(())
}

async fn load(store: &Store, keks: &Keks) -> anyhow::Result<Loaded> {
    let mut rows = store.published_keys(Utc::now()).await?;
    if signer(&rows).is_none() {
        let (key, der) = SigningKey::generate().context("cannot generate a signing key")?;
        let sealed = keks.seal(key.kid(), &Zeroizing::new(der))?;
        store.insert_key(key.kid(), &sealed).await?;
        tracing::info!(kid = key.kid(), "created a signing key");
        rows = store.published_keys(Utc::now()).await?;
    }
    let signer = signer(&rows).context("no signing key after creating one")?;
    let signing = open(keks, signer)?;
    let published = rows
        .iter()
        .map(|row| {
            open(keks, row).map(|key| Published {
                jwk: key.jwk(),
                application_only: row.kept.then(|| key.jwk_application_only()),
                until: row.retired_at,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Loaded {
        signing,
        published,
        at: std::time::Instant::now(),
    })
}

/// The signing key stored in `row`.
fn open(keks: &Keks, row: &KeyRow) -> anyhow::Result<SigningKey> {
    let der = match row.stored() {
        Some(StoredKey::Sealed(sealed)) => keks.open(&row.kid, &sealed)?,
        // A clear row written by an older replica after this one re-sealed at start.
        Some(StoredKey::Clear(der)) => Zeroizing::new(der),
        None => anyhow::bail!("signing key {} has no private half stored", row.kid),
    };
    SigningKey::from_pkcs8_der(&der)
        .with_context(|| format!("stored signing key {} is unreadable", row.kid))
}

/// The newest key with no planned retirement.
fn signer(rows: &[KeyRow]) -> Option<&KeyRow> {
    rows.iter()
        .filter(|row| row.retired_at.is_none())
        .max_by_key(|row| row.created_at)
}
