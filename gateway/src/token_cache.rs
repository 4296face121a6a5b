//! A bounded cache of verified tokens, so a long-lived token (an application's, typically)
//! is not put through Ed25519 verification on every request.
//!
//! What is cached is only the result of the signature check: the claims of a token string
//! that verified under one exact key set. Everything else is decided on every request as
//! before: expiry (against the request's clock), the blacklist, the route's credential kinds
//! and the role's permission. A new key set (a rotation, a retirement) empties the cache, as
//! entries remember which set verified them. Only exact token strings hit, so a forged token
//! can never match a cached one.
//!
//! The cache is split in segments, one per proxy service ([`TokenCache::segmented`]): a
//! service's thread locks only its own segment's shards, so no lock nor entry is shared
//! between the cores (one shared shard moved its lock's cache line between them on every
//! request, issue 24). A token used on several services is verified once on each.

use crate::authorize::Verify;
use auth_token::{Claims, KeySet, VerifyError};
use crossbeam_utils::CachePadded;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

const SHARDS: usize = 16;

pub struct TokenCache {
    /// `SHARDS` per segment, each in a cache line of its own.
    shards: Vec<CachePadded<Mutex<Shard>>>,
    segments: usize,
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
    /// A cache of at most `capacity` tokens (0 disables it), in one segment.
    pub fn new(capacity: usize) -> Self {
        Self::segmented(capacity, 1)
    }

    /// A cache of at most `capacity` tokens in all, split in `segments` (one per proxy
    /// service).
    pub fn segmented(capacity: usize, segments: usize) -> Self {
        let segments = segments.max(1);
        Self {
            shards: (0..SHARDS * segments)
                .map(|_| CachePadded::new(Mutex::new(Shard::default())))
                .collect(),
            segments,
            per_shard: capacity.div_ceil(SHARDS * segments),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    /// [`TokenCache::verify_in`] the first segment.
    pub fn verify(&self, token: &str, keys: &Arc<KeySet>, now: i64) -> Result<Claims, VerifyError> {
        self.verify_in(0, token, keys, now)
    }

    /// Verifies `token` with `keys`, from segment `segment` of the cache when this exact token
    /// already verified there under these exact keys. Expiry is always checked against `now`.
    pub fn verify_in(
        &self,
        segment: usize,
        token: &str,
        keys: &Arc<KeySet>,
        now: i64,
    ) -> Result<Claims, VerifyError> {
        if self.per_shard == 0 {
            return keys.verify(token, now);
        }
        let at = segment % self.segments * SHARDS + self.hasher.hash_one(token) as usize % SHARDS;
        let shard = &self.shards[at];
        let hit = {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            match &shard.keys {
                // The claims are copied under the lock: the entry's `Arc` is not touched.
                Some(cached) if Arc::ptr_eq(cached, keys) => {
                    shard.entries.get(token).map(|c| Claims::clone(c))
                }
                _ => None,
            }
        };
        if let Some(claims) = hit {
            return match claims.exp {
                Some(exp) if exp <= now => Err(VerifyError::Expired),
                _ => Ok(claims),
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
    /// The proxy service's segment of the cache.
    pub segment: usize,
    pub keys: &'a Arc<KeySet>,
}

impl Verify for Cached<'_> {
    fn verify(&self, token: &str, now: i64) -> Result<Claims, VerifyError> {
        self.cache.verify_in(self.segment, token, self.keys, now)
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
    fn each_segment_keeps_its_own_entries_within_its_share() {
        let (key, _) = SigningKey::generate().unwrap();
        let keys = set(&key);
        let cache = TokenCache::segmented(SHARDS * 2, 2);
        let token = key.sign(&claims(None)).unwrap();
        cache.verify_in(0, &token, &keys, 0).unwrap();
        assert_eq!(cache.len(), 1);
        // Another service verifies it in its own segment, once.
        cache.verify_in(1, &token, &keys, 0).unwrap();
        assert_eq!(cache.len(), 2);
        cache.verify_in(1, &token, &keys, 0).unwrap();
        cache.verify_in(0, &token, &keys, 0).unwrap();
        assert_eq!(cache.len(), 2);
        // A segment holds its share of the capacity: one per shard here.
        for i in 0..SHARDS * 8 {
            let t = key
                .sign(&Claims {
                    jti: format!("j{i}"),
                    ..claims(None)
                })
                .unwrap();
            cache.verify_in(1, &t, &keys, 0).unwrap();
        }
        assert!(cache.len() <= 1 + SHARDS, "{}", cache.len());
        // A forged token in the other segment is still refused.
        let (head, _) = token.rsplit_once('.').unwrap();
        let forged = format!("{head}.AAAA");
        assert_eq!(
            cache.verify_in(1, &forged, &keys, 0),
            Err(VerifyError::Invalid)
        );
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
