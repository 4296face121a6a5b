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
/// Keys tracked at most; beyond it, stale keys are dropped first, then the unlocked key whose
/// last failure is oldest. A locked key is never dropped before its window ends: with every
/// key locked, a new (login, address) is refused until one ends.
pub const MAX_KEYS: usize = 100_000;

/// The (login, IP) attempt counter.
pub struct Throttle {
    salt: [u8; 16],
    keys: Mutex<HashMap<[u8; 32], Attempts>>,
}

#[derive(Default)]
struct Attempts {
    /// Failures of the last window, oldest first (the last [`MAX_FAILURES`] at most).
    failures: VecDeque<Instant>,
    /// Attempts begun and not yet settled: they count as failures until they are, so
    /// parallel guesses cannot all pass one check.
    pending: usize,
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

/// One attempt in progress. Settle it with [`Attempt::failed`] or [`Attempt::succeeded`];
/// dropped unsettled (an internal error), it counts for nothing.
pub struct Attempt<'a> {
    throttle: &'a Throttle,
    key: [u8; 32],
    settled: bool,
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
            keys: Mutex::new(HashMap::new()),
        }
    }

    fn key(&self, login: &str, ip: Option<IpAddr>) -> [u8; 32] {
        let mut hash = Sha256::new();
        hash.update(self.salt);
        hash.update(login.trim().to_lowercase().as_bytes());
        hash.update([0]);
        hash.update(ip.map(network_of).unwrap_or_default().as_bytes());
        hash.finalize().into()
    }

    /// Begins an attempt for (login, ip), or refuses it while the failures of the last
    /// window and the attempts in flight reach [`MAX_FAILURES`]. Call before checking the
    /// password.
    pub fn begin(
        &self,
        login: &str,
        ip: Option<IpAddr>,
        now: Instant,
    ) -> Result<Attempt<'_>, Locked> {
        let key = self.key(login, ip);
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if keys.len() >= MAX_KEYS
            && !keys.contains_key(&key)
            && let Err(locked) = make_room(&mut keys, now)
        {
            return Err(locked);
        }
        let attempts = keys.entry(key).or_default();
        forget_old(&mut attempts.failures, now);
        if attempts.failures.len() + attempts.pending >= MAX_FAILURES {
            let retry_after = match attempts.failures.len().checked_sub(MAX_FAILURES) {
                Some(i) => (attempts.failures[i] + WINDOW).saturating_duration_since(now),
                // Locked by attempts in flight: they settle within seconds.
                None => Duration::from_secs(1),
            };
            return Err(Locked { retry_after });
        }
        attempts.pending += 1;
        Ok(Attempt {
            throttle: self,
            key,
            settled: false,
        })
    }

    fn settle(&self, key: &[u8; 32], failed_at: Option<Instant>, success: bool) {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let Some(attempts) = keys.get_mut(key) else {
            return;
        };
        attempts.pending = attempts.pending.saturating_sub(1);
        if success {
            attempts.failures.clear();
        }
        if let Some(at) = failed_at {
            attempts.failures.push_back(at);
            while attempts.failures.len() > MAX_FAILURES {
                attempts.failures.pop_front();
            }
        }
        if attempts.pending == 0 && attempts.failures.is_empty() {
            keys.remove(key);
        }
    }
}

impl Attempt<'_> {
    /// The credentials were wrong.
    pub fn failed(mut self, now: Instant) {
        self.settled = true;
        self.throttle.settle(&self.key, Some(now), false);
    }

    /// The credentials were right: the failures are forgiven.
    pub fn succeeded(mut self) {
        self.settled = true;
        self.throttle.settle(&self.key, None, true);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.throttle.settle(&self.key, None, false);
        }
    }
}

/// The address an attacker cannot vary cheaply: an IPv4 address (IPv4-mapped IPv6 included),
/// or an IPv6 /64, which one subscriber usually holds whole.
fn network_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// Drops keys with nothing recent and nothing in flight; if none, the stalest key.
/// Room for one more key: attempts out of the window are forgotten, then the unlocked key
/// whose last failure is oldest. A locked key is kept (forgetting it would give its guesser a
/// fresh start, which filling the table with other keys would otherwise buy); when every key
/// is locked or in flight, the new one waits for the first window to end.
fn make_room(keys: &mut HashMap<[u8; 32], Attempts>, now: Instant) -> Result<(), Locked> {
    keys.retain(|_, a| {
        forget_old(&mut a.failures, now);
        a.pending > 0 || !a.failures.is_empty()
    });
    if keys.len() < MAX_KEYS {
        return Ok(());
    }
    let stalest = keys
        .iter()
        .filter(|(_, a)| a.pending == 0 && a.failures.len() < MAX_FAILURES)
        .min_by_key(|(_, a)| a.failures.back().copied())
        .map(|(k, _)| *k);
    match stalest {
        Some(stalest) => {
            keys.remove(&stalest);
            Ok(())
        }
        None => {
            let first_to_end = keys.values().filter_map(|a| a.failures.front()).min();
            let retry_after = first_to_end.map_or(Duration::from_secs(1), |t| {
                (*t + WINDOW).saturating_duration_since(now)
            });
            Err(Locked { retry_after })
        }
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

    fn fail(t: &Throttle, login: &str, addr: Option<IpAddr>, at: Instant) {
        t.begin(login, addr, at).unwrap().failed(at);
    }

    #[test]
    fn five_failures_within_a_minute_lock_until_the_first_is_a_minute_old() {
        let t = Throttle::new();
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        for s in 0..5 {
            fail(&t, "a@x.fr", ip("10.0.0.1"), at(s));
        }
        let locked = t.begin("a@x.fr", ip("10.0.0.1"), at(10)).err().unwrap();
        assert_eq!(locked.retry_after, Duration::from_secs(50));
        // Same login, any case and spacing; other IPs and other logins are not locked.
        assert!(t.begin(" A@X.fr ", ip("10.0.0.1"), at(10)).is_err());
        assert!(t.begin("a@x.fr", ip("10.0.0.2"), at(10)).is_ok());
        assert!(t.begin("b@x.fr", ip("10.0.0.1"), at(10)).is_ok());
        // Still locked one second before the minute; open at the minute.
        assert!(t.begin("a@x.fr", ip("10.0.0.1"), at(59)).is_err());
        assert!(t.begin("a@x.fr", ip("10.0.0.1"), at(60)).is_ok());
    }

    /// To verify of the security review (issue 26, 11): a guesser who locked a login fills
    /// the table with other (login, address) pairs to have it forgotten, and guess again.
    #[test]
    fn filling_the_table_does_not_unlock_a_locked_login() {
        let t = Throttle::new();
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        for s in 0..5 {
            fail(&t, "victim@x.fr", ip("10.0.0.1"), at(s));
        }
        // One failure each for as many other logins as the table holds, all more recent.
        for n in 0..MAX_KEYS {
            fail(&t, &format!("filler{n}"), ip("10.0.0.2"), at(10));
        }
        assert!(t.begin("one more", ip("10.0.0.2"), at(11)).is_ok());
        assert!(
            t.begin("victim@x.fr", ip("10.0.0.1"), at(12)).is_err(),
            "still locked"
        );

        // Every key locked: a new pair waits for the first window to end, then gets in.
        let t = Throttle::new();
        for n in 0..MAX_KEYS {
            for _ in 0..MAX_FAILURES {
                fail(&t, &format!("locked{n}"), None, at(0));
            }
        }
        let locked = t.begin("newcomer", None, at(30)).err().expect("no room");
        assert_eq!(locked.retry_after, Duration::from_secs(30));
        assert!(t.begin("newcomer", None, at(60)).is_ok());
    }

    #[test]
    fn four_failures_do_not_lock_and_success_clears() {
        let t = Throttle::new();
        let now = Instant::now();
        for _ in 0..4 {
            fail(&t, "a", None, now);
        }
        t.begin("a", None, now).unwrap().succeeded();
        for _ in 0..4 {
            fail(&t, "a", None, now);
        }
        assert!(t.begin("a", None, now).is_ok());
    }

    #[test]
    fn failures_spread_over_more_than_a_minute_do_not_lock() {
        let t = Throttle::new();
        let start = Instant::now();
        for s in [0, 20, 40, 61, 62] {
            fail(&t, "a", None, start + Duration::from_secs(s));
        }
        assert!(t.begin("a", None, start + Duration::from_secs(62)).is_ok());
    }

    #[test]
    fn attempts_in_flight_count_so_parallel_guesses_cannot_pass_one_check() {
        let t = Throttle::new();
        let now = Instant::now();
        let in_flight: Vec<_> = (0..5).map(|_| t.begin("a", None, now).unwrap()).collect();
        assert!(
            t.begin("a", None, now).is_err(),
            "a sixth parallel guess waits"
        );
        drop(in_flight); // unsettled (internal errors): they count for nothing
        assert!(t.begin("a", None, now).is_ok());
    }

    #[test]
    fn addresses_group_by_what_an_attacker_cannot_vary_cheaply() {
        let t = Throttle::new();
        let now = Instant::now();
        for i in 0..5 {
            fail(&t, "a", ip(&format!("2001:db8:1:2::{i}")), now);
        }
        assert!(
            t.begin("a", ip("2001:db8:1:2:ffff::1"), now).is_err(),
            "same /64"
        );
        assert!(
            t.begin("a", ip("2001:db8:1:3::1"), now).is_ok(),
            "another /64"
        );
        for _ in 0..5 {
            fail(&t, "b", ip("::ffff:192.0.2.1"), now);
        }
        assert!(
            t.begin("b", ip("192.0.2.1"), now).is_err(),
            "IPv4-mapped is IPv4"
        );
    }
}
