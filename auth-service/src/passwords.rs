//! argon2id password and secret hashing, off the async threads, and never more at once
//! than the machine has cores: each hash takes 19 MiB and tens of milliseconds, and the
//! sign-in routes are public, so unbounded parallel hashing would be a way to exhaust memory.
//!
//! Extra requests wait their turn, but not without bound: at most [`MAX_WAITING`] per core
//! wait, for at most [`MAX_WAIT`]; past either the answer is [`Busy`] (503 with
//! `Retry-After`), so a flood of attempts costs its senders refusals instead of stalling every
//! sign-in behind it (the security review, issue 26).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::rngs::OsRng;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Hashes that may wait for a turn, per core: a few rounds of work (a round is ~50 ms).
pub const MAX_WAITING: usize = 8;

/// The longest a hash waits for its turn.
pub const MAX_WAIT: Duration = Duration::from_secs(2);

/// No turn to hash within the bounds: answer 503 and let the client retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("password hashing is saturated")]
pub struct Busy;

impl Busy {
    /// Seconds a client should wait before retrying.
    pub fn retry_after(self) -> u64 {
        MAX_WAIT.as_secs().max(1)
    }
}

/// Turns at hashing: `turns` at once, `max_waiting` waiting, each for at most `max_wait`.
pub struct Queue {
    turns: Semaphore,
    waiting: AtomicUsize,
    max_waiting: usize,
    max_wait: Duration,
}

impl Queue {
    pub fn new(turns: usize, max_waiting: usize, max_wait: Duration) -> Self {
        Self {
            turns: Semaphore::new(turns),
            waiting: AtomicUsize::new(0),
            max_waiting,
            max_wait,
        }
    }

    /// Runs `work` on a blocking thread when a turn is free; [`Busy`] when too many wait
    /// already or the wait runs out. `None` when the work panicked.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<Option<T>, Busy> {
        let _turn = match self.turns.try_acquire() {
            Ok(turn) => turn,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    return Err(Busy);
                }
                let turn = tokio::time::timeout(self.max_wait, self.turns.acquire()).await;
                self.waiting.fetch_sub(1, Ordering::AcqRel);
                match turn {
                    Ok(Ok(turn)) => turn,
                    // Timed out (the semaphore is never closed).
                    _ => return Err(Busy),
                }
            }
        };
        Ok(tokio::task::spawn_blocking(work).await.ok())
    }
}

static HASHING: LazyLock<Queue> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    Queue::new(cores, MAX_WAITING * cores, MAX_WAIT)
});

/// The argon2id hash (PHC string) of `secret`.
pub async fn hash(secret: String) -> anyhow::Result<String> {
    HASHING
        .run(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(secret.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| anyhow::anyhow!("argon2: {e}"))
        })
        .await?
        .ok_or_else(|| anyhow::anyhow!("argon2 panicked"))?
}

/// Whether `secret` matches the PHC string `phc` (false for a malformed one); [`Busy`] when
/// no turn came within the bounds.
pub async fn verify(secret: String, phc: String) -> Result<bool, Busy> {
    let matched = HASHING
        .run(move || {
            PasswordHash::new(&phc)
                .map(|parsed| {
                    Argon2::default()
                        .verify_password(secret.as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await?;
    Ok(matched.unwrap_or(false))
}

/// A random printable secret of `len` characters.
pub fn random_secret(len: usize) -> String {
    use rand::Rng;
    use rand::distributions::Alphanumeric;
    OsRng
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// `bytes` random bytes in unpadded base64url: secret keys and refresh tokens. The alphabet
/// has no `.`, so such a value can be joined to another with one.
pub fn random_token(bytes: usize) -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut raw = vec![0u8; bytes];
    OsRng.fill_bytes(&mut raw);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_tokens_are_base64url_without_dots_and_differ() {
        let (a, b) = (random_token(32), random_token(32));
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_a_long_wait_gives_up() {
        use std::sync::Arc;
        let queue = Arc::new(Queue::new(1, 2, Duration::from_millis(300)));
        // One turn, held by a slow hash.
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let holder = {
            let queue = queue.clone();
            tokio::spawn(async move { queue.run(move || hold.recv().ok()).await })
        };
        while queue.turns.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        // Two may wait; both give up when the wait runs out.
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let queue = queue.clone();
                tokio::spawn(async move { queue.run(|| 1).await })
            })
            .collect();
        while queue.waiting.load(Ordering::Acquire) < 2 {
            tokio::task::yield_now().await;
        }
        // A third is refused without waiting.
        assert_eq!(queue.run(|| 1).await, Err(Busy));
        for waiter in waiters {
            assert_eq!(waiter.await.unwrap(), Err(Busy));
        }
        assert_eq!(
            queue.waiting.load(Ordering::Acquire),
            0,
            "waiters are forgotten"
        );
        // Freed, the queue works again.
        release.send(()).unwrap();
        assert_eq!(holder.await.unwrap(), Ok(Some(Some(()))));
        assert_eq!(queue.run(|| 7).await, Ok(Some(7)));
    }
}
