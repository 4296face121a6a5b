//! Sign-in throttling (CONTRACT §3): after [`MAX_FAILURES`] failed attempts for one
//! (login, client IP) within [`WINDOW`], further attempts are refused with 429 until the
//! oldest of those failures is a window old.
//!
//! The key is the same whether or not the login exists, so the answer reveals nothing. The
//! login is kept only as a keyed hash, never in clear. State is in memory, bounded by
//! [`MAX_KEYS`]; with several auth-service replicas each counts its own attempts (documented
//! limit: an attacker spreading over n replicas gets n times the budget).

use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const MAX_FAILURES: usize = 5;
pub const WINDOW: Duration = Duration::from_secs(60);
/// Keys tracked at most; beyond it, stale keys are dropped first, then the oldest.
pub const MAX_KEYS: usize = 100_000;

/// The (login, IP) attempt counter.
pub struct Throttle {
    salt: [u8; 16],
    failures: Mutex<HashMap<[u8; 32], VecDeque<Instant>>>,
}

/// Attempts are refused for this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locked {
    pub retry_after: Duration,
}

impl Locked {
    /// Whole seconds for a `Retry-After` header, rounded up.
    pub fn seconds(self) -> u64 {
        self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0)
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new()
    }
}

impl Throttle {
    pub fn new() -> Self {
        Self {
            salt: rand::random(),
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn key(&self, login: &str, ip: Option<IpAddr>) -> [u8; 32] {
        let mut hash = Sha256::new();
        hash.update(self.salt);
        hash.update(login.trim().to_lowercase().as_bytes());
        hash.update([0]);
        hash.update(ip.map(|ip| ip.to_string()).unwrap_or_default().as_bytes());
        hash.finalize().into()
    }

    /// `Err` while (login, ip) has too many recent failures. Call before checking the password.
    pub fn check(&self, login: &str, ip: Option<IpAddr>, now: Instant) -> Result<(), Locked> {
        let key = self.key(login, ip);
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let Some(recent) = failures.get_mut(&key) else {
            return Ok(());
        };
        forget_old(recent, now);
        if recent.len() < MAX_FAILURES {
            return Ok(());
        }
        let oldest = recent[recent.len() - MAX_FAILURES];
        Err(Locked {
            retry_after: (oldest + WINDOW).saturating_duration_since(now),
        })
    }

    /// Records a failed attempt.
    pub fn failed(&self, login: &str, ip: Option<IpAddr>, now: Instant) {
        let key = self.key(login, ip);
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= MAX_KEYS && !failures.contains_key(&key) {
            failures.retain(|_, recent| {
                forget_old(recent, now);
                !recent.is_empty()
            });
            if failures.len() >= MAX_KEYS {
                let oldest = failures
                    .iter()
                    .min_by_key(|(_, recent)| recent.back().copied())
                    .map(|(k, _)| *k);
                if let Some(oldest) = oldest {
                    failures.remove(&oldest);
                }
            }
        }
        let recent = failures.entry(key).or_default();
        forget_old(recent, now);
        recent.push_back(now);
        // Only the last MAX_FAILURES matter for the decision.
        while recent.len() > MAX_FAILURES {
            recent.pop_front();
        }
    }

    /// A successful sign-in clears the counter.
    pub fn succeeded(&self, login: &str, ip: Option<IpAddr>) {
        let key = self.key(login, ip);
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(&key);
    }
}

fn forget_old(recent: &mut VecDeque<Instant>, now: Instant) {
    while recent
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
    {
        recent.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn five_failures_within_a_minute_lock_until_the_first_is_a_minute_old() {
        let t = Throttle::new();
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        for s in 0..5 {
            assert_eq!(t.check("a@x.fr", ip("10.0.0.1"), at(s)), Ok(()));
            t.failed("a@x.fr", ip("10.0.0.1"), at(s));
        }
        let locked = t.check("a@x.fr", ip("10.0.0.1"), at(10)).unwrap_err();
        assert_eq!(locked.retry_after, Duration::from_secs(50));
        // Same login, any case and spacing; other IPs and other logins are not locked.
        assert!(t.check(" A@X.fr ", ip("10.0.0.1"), at(10)).is_err());
        assert_eq!(t.check("a@x.fr", ip("10.0.0.2"), at(10)), Ok(()));
        assert_eq!(t.check("b@x.fr", ip("10.0.0.1"), at(10)), Ok(()));
        // Still locked one second before the minute; open at the minute.
        assert!(t.check("a@x.fr", ip("10.0.0.1"), at(59)).is_err());
        assert_eq!(t.check("a@x.fr", ip("10.0.0.1"), at(60)), Ok(()));
    }

    #[test]
    fn four_failures_do_not_lock_and_success_clears() {
        let t = Throttle::new();
        let now = Instant::now();
        for _ in 0..4 {
            t.failed("a", None, now);
        }
        assert_eq!(t.check("a", None, now), Ok(()));
        t.succeeded("a", None);
        t.failed("a", None, now);
        assert_eq!(t.check("a", None, now), Ok(()));
    }

    #[test]
    fn failures_spread_over_more_than_a_minute_do_not_lock() {
        let t = Throttle::new();
        let start = Instant::now();
        for s in [0, 20, 40, 61, 62] {
            t.failed("a", None, start + Duration::from_secs(s));
        }
        assert_eq!(t.check("a", None, start + Duration::from_secs(62)), Ok(()));
    }
}
