//! A bounded cache of verified tokens, so a long-lived token (an application's, typically)
//! is not put through Ed25519 verification on every request.
//!
//! What is cached is only the result of the signature check: the claims of a token string
//! that verified under one exact key set. Everything else is decided on every request as
//! before: expiry (against the request's clock), the blacklist, the route's credential kinds
//! and the role's permission. A new key set (a rotation, a retirement) empties the cache, as
//! entries remember which set verified them. Only exact token strings hit, so a forged token
//! can never match a cached one.

use crate::authorize::Verify;
use auth_token::{Claims, KeySet, VerifyError};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

const SHARDS: usize = 16;

pub struct TokenCache {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    /// foldhash, seeded per process: SipHash cost more than the rest of a hit. Only tokens
    /// that verified are ever stored, so their hashes are not the caller's to choose.
    hasher: foldhash::fast::RandomState,
}

#[derive(Default)]
struct Shard {
    /// The key set the entries were verified with; entries of another set are stale.
    keys: Option<Arc<KeySet>>,
    entries: HashMap<Box<str>, Arc<Claims>, foldhash::fast::RandomState>,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens (0 disables it).
    pub fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: capacity.div_ceil(SHARDS),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    /// Verifies `token` with `keys`, from the cache when this exact token already verified
    /// under these exact keys. Expiry is always checked against `now`.
    pub fn verify(&self, token: &str, keys: &Arc<KeySet>, now: i64) -> Result<Claims, VerifyError> {
        if self.per_shard == 0 {
            return keys.verify(token, now);
        }
        let shard = &self.shards[self.hasher.hash_one(token) as usize % SHARDS];
        let hit = {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            match &shard.keys {
                Some(cached) if Arc::ptr_eq(cached, keys) => shard.entries.get(token).cloned(),
                _ => None,
            }
        };
        if let Some(claims) = hit {
            return match claims.exp {
                Some(exp) if exp <= now => Err(VerifyError::Expired),
                _ => Ok(Claims::clone(&claims)),
            };
        }
        let claims = keys.verify(token, now)?;
        let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
        if !shard.keys.as_ref().is_some_and(|k| Arc::ptr_eq(k, keys)) {
            shard.keys = Some(keys.clone());
            shard.entries.clear();
        }
        if shard.entries.len() >= self.per_shard {
            // Any entry will do: a token evicted is verified again on its next request.
            if let Some(victim) = shard.entries.keys().next().cloned() {
                shard.entries.remove(&victim);
            }
        }
        shard.entries.insert(token.into(), Arc::new(claims.clone()));
        Ok(claims)
    }

    /// Tokens cached now (for the metrics).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).entries.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The cache in front of one key set, as the pipeline's verifier.
pub struct Cached<'a> {
    pub cache: &'a TokenCache,
    pub keys: Arc<KeySet>,
}

impl Verify for Cached<'_> {
    fn verify(&self, token: &str, now: i64) -> Result<Claims, VerifyError> {
        self.cache.verify(token, &self.keys, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auth_token::{CredentialKind, Role, SigningKey};
    use jsonwebtoken::jwk::JwkSet;

    fn claims(exp: Option<i64>) -> Claims {
        Claims {
            jti: "j".into(),
            kind: CredentialKind::Application,
            sub: "app".into(),
            op: Some(1),
            role: Role::OperatorApplication,
            iat: 0,
            exp,
            client: None,
            uid: None,
            sid: None,
            csrf: None,
            siret: None,
        }
    }

    fn set(key: &SigningKey) -> Arc<KeySet> {
        Arc::new(KeySet::from_jwks(&JwkSet {
            keys: vec![key.jwk()],
        }))
    }

    #[test]
    fn a_hit_still_checks_expiry_and_a_new_key_set_empties_the_cache() {
        let (key, _) = SigningKey::generate().unwrap();
        let keys = set(&key);
        let cache = TokenCache::new(100);
        let token = key.sign(&claims(Some(1_000))).unwrap();
        assert!(cache.verify(&token, &keys, 10).is_ok());
        assert_eq!(cache.len(), 1);
        assert!(cache.verify(&token, &keys, 999).is_ok());
        assert_eq!(
            cache.verify(&token, &keys, 1_000),
            Err(VerifyError::Expired)
        );

        // The same token under a key set without its key: not verified, whatever was cached.
        let (other, _) = SigningKey::generate().unwrap();
        assert!(matches!(
            cache.verify(&token, &set(&other), 10),
            Err(VerifyError::UnknownKey(_))
        ));
        let fresh = set(&key);
        assert!(cache.verify(&token, &fresh, 10).is_ok());
    }

    #[test]
    fn only_the_exact_token_string_hits_and_the_size_is_bounded() {
        let (key, _) = SigningKey::generate().unwrap();
        let keys = set(&key);
        let cache = TokenCache::new(SHARDS * 2);
        let token = key.sign(&claims(None)).unwrap();
        cache.verify(&token, &keys, 0).unwrap();
        let (head, _) = token.rsplit_once('.').unwrap();
        let forged = format!("{head}.AAAA");
        assert_eq!(cache.verify(&forged, &keys, 0), Err(VerifyError::Invalid));
        for i in 0..200 {
            let t = key
                .sign(&Claims {
                    jti: format!("j{i}"),
                    ..claims(None)
                })
                .unwrap();
            cache.verify(&t, &keys, 0).unwrap();
        }
        assert!(cache.len() <= SHARDS * 2, "{}", cache.len());
        let off = TokenCache::new(0);
        assert!(off.verify(&token, &keys, 0).is_ok());
        assert!(off.is_empty());
    }
}
