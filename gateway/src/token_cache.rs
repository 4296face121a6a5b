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
//! It also remembers the tokens the same key set refused as forged or malformed
//! ([`VerifyError::Invalid`]: a signature that does not verify, a header or claims out of
//! form) or as expired, by their SHA-256, so a client that repeats one (a stale token retried
//! in a loop, or a flood of one forged token) costs a hash, not a verification (60–75 µs on
//! a 2.1 GHz Xeon; a genuine request costs the gateway about 35 µs in all). Those
//! outcomes depend on the token and the key set alone (an expired token stays expired); an
//! unknown key (which refreshes the JWKS) and every refusal of a genuine token (revoked, not
//! accepted here...) are decided again each time. A digest, not the string: the strings are
//! the caller's to choose, up to the 16 KiB a header may hold, and a digest keeps a full
//! cache at 32 bytes an entry. Refusals are kept apart from the verified tokens, so no flood
//! of them evicts a verified one. Tokens that differ each time are verified each time
//! (session 30 of docs/performance.md).
//!
//! The cache is split in segments, one per proxy service ([`TokenCache::segmented`]): a
//! service's thread locks only its own segment's shards, so no lock nor entry is shared
//! between the cores (one shared shard moved its lock's cache line between them on every
//! request, issue 24). A token used on several services is verified once on each.

use crate::authorize::Verify;
use crate::metrics::Verifications;
use auth_token::{Claims, KeySet, VerifyError};
use crossbeam_utils::CachePadded;
use sha2::{Digest, Sha256};
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
    /// SHA-256 of the tokens these keys refused as invalid or expired, and which; at most
    /// as many as `entries`.
    refused: HashMap<[u8; 32], Refused, foldhash::fast::RandomState>,
}

impl Shard {
    /// Starts over when `keys` is not the set the entries were decided with.
    fn decided_by(&mut self, keys: &Arc<KeySet>) {
        if !self.keys.as_ref().is_some_and(|k| Arc::ptr_eq(k, keys)) {
            self.keys = Some(keys.clone());
            self.entries.clear();
            self.refused.clear();
        }
    }
}

/// Why a token was refused, when that is for good.
#[derive(Clone, Copy)]
enum Refused {
    Invalid,
    Expired,
}

impl Refused {
    fn of(error: &VerifyError) -> Option<Self> {
        match error {
            VerifyError::Invalid => Some(Refused::Invalid),
            VerifyError::Expired => Some(Refused::Expired),
            VerifyError::UnknownKey(_) => None,
        }
    }

    fn error(self) -> VerifyError {
        match self {
            Refused::Invalid => VerifyError::Invalid,
            Refused::Expired => VerifyError::Expired,
        }
    }
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
        self.decide(segment, token, keys, now, || keys.verify(token, now))
    }

    /// [`TokenCache::verify_in`], where `verify` is what checks the token against `keys` when
    /// the cache does not know it (the gateway counts those checks).
    pub fn decide(
        &self,
        segment: usize,
        token: &str,
        keys: &Arc<KeySet>,
        now: i64,
        verify: impl FnOnce() -> Result<Claims, VerifyError>,
    ) -> Result<Claims, VerifyError> {
        if self.per_shard == 0 {
            return verify();
        }
        let at = segment % self.segments * SHARDS + self.hasher.hash_one(token) as usize % SHARDS;
        let shard = &self.shards[at];
        // Only a token that is not among the verified ones is hashed (once).
        let mut digest = None;
        // What the shard knows of the token under these keys: its claims, or why it was refused.
        let known: Option<Result<Claims, Refused>> = {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            match &shard.keys {
                // The claims are copied under the lock: the entry's `Arc` is not touched.
                Some(cached) if Arc::ptr_eq(cached, keys) => match shard.entries.get(token) {
                    Some(claims) => Some(Ok(Claims::clone(claims))),
                    None if shard.refused.is_empty() => None,
                    None => {
                        let sum: [u8; 32] = Sha256::digest(token.as_bytes()).into();
                        digest = Some(sum);
                        shard.refused.get(&sum).map(|why| Err(*why))
                    }
                },
                _ => None,
            }
        };
        match known {
            Some(Ok(claims)) => {
                return match claims.exp {
                    Some(exp) if exp <= now => Err(VerifyError::Expired),
                    _ => Ok(claims),
                };
            }
            Some(Err(why)) => return Err(why.error()),
            None => {}
        }
        let verified = verify();
        let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
        shard.decided_by(keys);
        match &verified {
            Ok(claims) => {
                if shard.entries.len() >= self.per_shard {
                    // Any entry will do: a token evicted is verified again on its next request.
                    if let Some(victim) = shard.entries.keys().next().cloned() {
                        shard.entries.remove(&victim);
                    }
                }
                shard.entries.insert(token.into(), Arc::new(claims.clone()));
            }
            Err(error) => {
                if let Some(why) = Refused::of(error) {
                    let sum = digest.unwrap_or_else(|| Sha256::digest(token.as_bytes()).into());
                    if shard.refused.len() >= self.per_shard
                        && let Some(victim) = shard.refused.keys().next().copied()
                    {
                        shard.refused.remove(&victim);
                    }
                    shard.refused.insert(sum, why);
                }
            }
        }
        verified
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

    /// Refusals remembered now.
    #[cfg(test)]
    fn refused(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).refused.len())
            .sum()
    }
}

/// The cache in front of one key set, as the pipeline's verifier.
pub struct Cached<'a> {
    pub cache: &'a TokenCache,
    /// The proxy service's segment of the cache.
    pub segment: usize,
    pub keys: &'a Arc<KeySet>,
    /// Counts the verifications the cache could not spare.
    pub counted: &'a Verifications,
}

impl Verify for Cached<'_> {
    fn verify(&self, token: &str, now: i64) -> Result<Claims, VerifyError> {
        self.cache.decide(self.segment, token, self.keys, now, || {
            let verified = self.keys.verify(token, now);
            self.counted.count(&verified);
            verified
        })
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
            let t = signed(&key, format!("j{i}"));
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
            let t = signed(&key, format!("j{i}"));
            cache.verify(&t, &keys, 0).unwrap();
        }
        assert!(cache.len() <= SHARDS * 2, "{}", cache.len());
        let off = TokenCache::new(0);
        assert!(off.verify(&token, &keys, 0).is_ok());
        assert!(off.is_empty());
    }

    /// A token `key` signs for the claims of [`claims`] with this `jti`.
    fn signed(key: &SigningKey, jti: impl Into<String>) -> String {
        key.sign(&Claims {
            jti: jti.into(),
            ..claims(None)
        })
        .unwrap()
    }

    /// `token`'s header and claims under the signature of `other` (the same key's): well
    /// formed, a real key id, and forged.
    fn forge(token: &str, other: &str) -> String {
        let (signed, _) = token.rsplit_once('.').unwrap();
        let (_, signature) = other.rsplit_once('.').unwrap();
        format!("{signed}.{signature}")
    }

    #[test]
    fn a_token_refused_for_good_is_refused_again_without_a_verification() {
        let (key, _) = SigningKey::generate().unwrap();
        let keys = set(&key);
        let cache = TokenCache::new(SHARDS * 4);
        let runs = std::cell::Cell::new(0);
        let check = |token: &str, keys: &Arc<KeySet>, now: i64| {
            cache.decide(0, token, keys, now, || {
                runs.set(runs.get() + 1);
                keys.verify(token, now)
            })
        };
        let token = key.sign(&claims(None)).unwrap();
        let other = signed(&key, "other");
        // The same forged token sent over and over is verified once.
        let forged = forge(&token, &other);
        for _ in 0..10 {
            assert_eq!(check(&forged, &keys, 0), Err(VerifyError::Invalid));
        }
        assert_eq!(runs.get(), 1);
        // Each forged token of its own is verified, once.
        let third = signed(&key, "third");
        let again = forge(&token, &third);
        assert_eq!(check(&again, &keys, 0), Err(VerifyError::Invalid));
        assert_eq!(check(&again, &keys, 0), Err(VerifyError::Invalid));
        assert_eq!(runs.get(), 2);
        // The genuine token is not mistaken for its forgeries.
        assert!(check(&token, &keys, 0).is_ok());
        assert!(check(&token, &keys, 0).is_ok());
        assert_eq!(runs.get(), 3);
        // An expired token stays expired: verified once too.
        let expired = key.sign(&claims(Some(5))).unwrap();
        assert_eq!(check(&expired, &keys, 10), Err(VerifyError::Expired));
        assert_eq!(check(&expired, &keys, 11), Err(VerifyError::Expired));
        assert_eq!(runs.get(), 4);
        // An unknown key is looked for again each time (the JWKS may have it by then).
        let (stranger, _) = SigningKey::generate().unwrap();
        let unknown = stranger.sign(&claims(None)).unwrap();
        for _ in 0..2 {
            assert!(matches!(
                check(&unknown, &keys, 0),
                Err(VerifyError::UnknownKey(_))
            ));
        }
        assert_eq!(runs.get(), 6);
        assert_eq!(cache.refused(), 3);
    }

    #[test]
    fn refusals_are_forgotten_with_their_key_set_and_bounded() {
        let (key, _) = SigningKey::generate().unwrap();
        let (other, _) = SigningKey::generate().unwrap();
        // Another public key under this key's id: this key's tokens do not verify with it.
        let mut wrong = other.jwk();
        wrong.common.key_id = key.jwk().common.key_id;
        let wrong = Arc::new(KeySet::from_jwks(&JwkSet { keys: vec![wrong] }));
        let cache = TokenCache::new(SHARDS * 2);
        let token = key.sign(&claims(None)).unwrap();
        assert_eq!(cache.verify(&token, &wrong, 0), Err(VerifyError::Invalid));
        assert_eq!(cache.verify(&token, &wrong, 0), Err(VerifyError::Invalid));
        // The right keys (a rotation's new set): the refusal is not theirs.
        let right = set(&key);
        assert!(cache.verify(&token, &right, 0).is_ok());
        // However many forgeries, the refusals stay within the capacity.
        for i in 0..200 {
            let other = signed(&key, format!("j{i}"));
            let forged = forge(&token, &other);
            assert_eq!(cache.verify(&forged, &right, 0), Err(VerifyError::Invalid));
        }
        assert!(cache.refused() <= SHARDS * 2, "{}", cache.refused());
        assert!(cache.refused() > 0);
        assert!(cache.verify(&token, &right, 0).is_ok());
    }
}
