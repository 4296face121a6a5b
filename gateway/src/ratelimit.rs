//! Rate limits (CONTRACT §6): how many requests a subject may make per route class and
//! window, counted across gateway replicas without a shared-store round trip per request.
//!
//! What it is: the decision ([`Limiter::check`] → [`Decision`], with its response headers),
//! the class and subject choices ([`RouteClass::of`], [`Subject::of`], plain functions), the
//! settings ([`Limits`]) and the shared counters ([`SharedCounter`]: [`RedisCounter`] across
//! replicas, [`MemoryCounter`] in one process). What it is not: proxy glue. The caller maps
//! the route template to a class, picks the subject, calls `check`, adds
//! [`Decision::headers`] to the response and answers 429 `rate_limited` when refused.
//!
//! How it counts: fixed windows aligned on the epoch, one counter per (class, subject,
//! window start). A replica never asks the store per request: it leases [`lease_size`] units
//! at a time with one atomic `INCRBY` on the window's key and is granted
//! `min(lease, limit - total before)`, then spends them locally. Grants therefore never
//! exceed the limit, whatever the number of replicas. Units leased but not spent by the
//! window's end are lost (at most one lease, 2 % of the limit, per replica and counter).
//! Only a request finding its replica's lease spent waits for the store, bounded by
//! `store_timeout_ms`, and only one such request per counter at a time.
//!
//! When the store fails or times out, the limiter leaves it alone for `store_retry_secs` and
//! counts locally: each replica allows its share `limit / replicas` of the window, flagged
//! `degraded` (in the decision and [`Limiter::degraded`]). A counter that counted locally
//! keeps its share as a cap until its window ends, and adds the units it allowed meanwhile
//! to the store's counter with its next lease, so a window spanning an outage stays close
//! to its limit (a replica that never counted locally does not know what the others
//! allowed while the store was down: a window spanning a recovery may exceed its limit by
//! the shares spent before it, never more).
//!
//! Time is a parameter (`now`, unix seconds) so tests control it.

use async_trait::async_trait;
use http::header::RETRY_AFTER;
use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Groups of routes sharing a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteClass {
    /// Journey create (and push) and cancel.
    JourneysWrite,
    /// Journey status, list and patch.
    JourneysRead,
    /// CEE applications.
    Cee,
    /// The reference's `auth/access_token`, always counted per client address.
    AccessToken,
    /// Revocations and sign-out (`DELETE /applications/{uuid}`, `DELETE
    /// /{version}/auth/credentials`, `DELETE /api/v1/auth/sign_out`, `POST /profile/signout`),
    /// counted per person in a class of their own: whatever else is spent, a person can still
    /// revoke what leaked.
    Manage,
    /// Everything else.
    Default,
}

/// A limit: `limit` requests per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub limit: u64,
    pub window: Duration,
}

impl Policy {
    fn window_secs(&self) -> u64 {
        self.window.as_secs().max(1)
    }
}

impl RouteClass {
    pub const ALL: [RouteClass; 6] = [
        RouteClass::JourneysWrite,
        RouteClass::JourneysRead,
        RouteClass::Cee,
        RouteClass::AccessToken,
        RouteClass::Manage,
        RouteClass::Default,
    ];

    /// The class of a route, from its template (`routes::Route::template`) and method;
    /// `None` for routes that are not limited: key discovery (gateways and clients fetch it
    /// to verify tokens) and the console's static assets.
    pub fn of(template: &str, method: &str) -> Option<RouteClass> {
        use RouteClass::*;
        if template == "/.well-known/jwks.json" || template.starts_with("/console") {
            return None;
        }
        Some(match (method, template) {
            (
                "POST",
                "/{version}/journeys" | "/journeys/push" | "/{version}/journeys/{id}/cancel",
            ) => JourneysWrite,
            ("GET", "/{version}/journeys" | "/{version}/journeys/{id}") => JourneysRead,
            ("PATCH" | "POST", "/{version}/journeys/{id}") => JourneysRead,
            (_, t) if t.starts_with("/{version}/policies/cee") => Cee,
            (_, "/{version}/auth/access_token") => AccessToken,
            (
                "DELETE",
                "/applications/{uuid}" | "/{version}/auth/credentials" | "/api/v1/auth/sign_out",
            )
            | ("POST", "/profile/signout") => Manage,
            _ => Default,
        })
    }

    /// The reference's limit for this class.
    pub fn default_policy(self) -> Policy {
        let minute = Duration::from_secs(60);
        let (limit, window) = match self {
            RouteClass::JourneysWrite => (20_000, minute),
            RouteClass::JourneysRead => (2_000, minute),
            RouteClass::Cee => (20_000, minute),
            RouteClass::AccessToken => (5, minute),
            RouteClass::Manage | RouteClass::Default => (100, Duration::from_secs(300)),
        };
        Policy { limit, window }
    }

    /// The name used in settings, store keys and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteClass::JourneysWrite => "journeys_write",
            RouteClass::JourneysRead => "journeys_read",
            RouteClass::Cee => "cee",
            RouteClass::AccessToken => "access_token",
            RouteClass::Manage => "manage",
            RouteClass::Default => "default",
        }
    }
}

/// Who is counted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// Every machine credential of an operator (applications, API keys), and its people on
    /// the operator API.
    Operator(i64),
    /// A signed-in person (agent triple or browser session) outside the operator API, and
    /// staff without an operator, by principal id.
    Principal(String),
    /// An anonymous client, and every client of `auth/access_token`, by its network
    /// ([`Subject::network`]): an IPv4 address, or an IPv6 /64 (lower 64 bits zero).
    Address(IpAddr),
}

impl Subject {
    /// What a request counts against: its client address for [`RouteClass::AccessToken`]
    /// (the credential is being proved there) and for anonymous requests; a person's own
    /// budget (`person`: an agent or browser credential) outside the operator API, so that
    /// one leaked or looping credential of an operator cannot spend its admins' requests;
    /// else its operator, else its principal.
    pub fn of(
        class: RouteClass,
        person: bool,
        operator_id: Option<i64>,
        principal: Option<&str>,
        client_ip: IpAddr,
    ) -> Subject {
        let operator_api = matches!(
            class,
            RouteClass::JourneysWrite | RouteClass::JourneysRead | RouteClass::Cee
        );
        let client = Subject::network(client_ip);
        match (class, operator_id, principal) {
            (RouteClass::AccessToken, _, _) => Subject::Address(client),
            (_, _, Some(principal)) if person && !operator_api && !principal.is_empty() => {
                Subject::Principal(principal.to_owned())
            }
            (_, Some(operator), _) => Subject::Operator(operator),
            (_, None, Some(principal)) if !principal.is_empty() => {
                Subject::Principal(principal.to_owned())
            }
            _ => Subject::Address(client),
        }
    }

    /// The network a client address is counted by. One IPv6 subscriber usually holds a
    /// whole /64, and rotating source addresses inside it costs nothing: IPv6 addresses are
    /// counted by their /64 (as the sign-in throttle groups them). An IPv4-mapped address
    /// (`::ffff:a.b.c.d`, what a dual-stack listener sees of an IPv4 client) is its IPv4
    /// address, so IPv4 clients do not collapse into one /64.
    pub fn network(ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => IpAddr::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(std::net::Ipv6Addr::from(
                    u128::from(v6) & !u128::from(u64::MAX),
                )),
            },
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Operator(id) => write!(f, "op:{id}"),
            Subject::Principal(id) => write!(f, "user:{id}"),
            Subject::Address(ip @ IpAddr::V4(_)) => write!(f, "ip:{ip}"),
            Subject::Address(ip @ IpAddr::V6(_)) => write!(f, "ip:{ip}/64"),
        }
    }
}

/// Rate-limit settings; the default is the reference's limits for two replicas.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Limits replacing the reference's for every subject: class name → requests per window.
    pub classes: HashMap<RouteClass, u64>,
    /// Per-operator limits: operator id → class name → requests per window.
    pub overrides: HashMap<i64, HashMap<RouteClass, u64>>,
    /// Gateway replicas expected; while the shared store is down each allows
    /// `limit / replicas` per window (at least 1).
    pub replicas: u32,
    /// Milliseconds a request whose lease is spent waits for the shared store before the
    /// replica counts locally.
    pub store_timeout_ms: u64,
    /// Seconds the shared store is left alone after a failure.
    pub store_retry_secs: u64,
    /// Counters kept in memory at most (subjects × classes of the current windows).
    pub capacity: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            classes: HashMap::new(),
            overrides: HashMap::new(),
            replicas: 2,
            store_timeout_ms: 250,
            store_retry_secs: 5,
            capacity: 100_000,
        }
    }
}

impl Limits {
    /// The policy for `class` and `subject`: an operator override, else a class setting,
    /// else the reference's. Windows are always the reference's.
    pub fn policy(&self, class: RouteClass, subject: &Subject) -> Policy {
        let mut policy = class.default_policy();
        if let Some(&limit) = self.classes.get(&class) {
            policy.limit = limit;
        }
        if let Subject::Operator(id) = subject
            && let Some(&limit) = self.overrides.get(id).and_then(|o| o.get(&class))
        {
            policy.limit = limit;
        }
        policy
    }
}

/// Units a replica takes from the shared counter at once: 2 % of the limit, at least 1.
pub fn lease_size(limit: u64) -> u64 {
    (limit / 50).max(1)
}

/// What a replica may allow on its own while the shared store is down.
pub fn degraded_share(limit: u64, replicas: u32) -> u64 {
    if limit == 0 {
        0
    } else {
        (limit / u64::from(replicas.max(1))).max(1)
    }
}

/// The limiter's answer for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u64,
    /// Best estimate of the requests left in the window, across replicas.
    pub remaining: u64,
    /// Seconds until the window ends.
    pub reset_secs: u64,
    /// The window's length, for `RateLimit-Policy` (`<limit>;w=<window secs>`).
    pub window_secs: u64,
    /// Counted locally because the shared store is down.
    pub degraded: bool,
}

static RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
static RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
static RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

impl Decision {
    /// The `RateLimit-*` headers, and `Retry-After` when refused (numbers written straight
    /// into header values, with no string formatting on the request path).
    pub fn headers(&self) -> impl Iterator<Item = (&'static HeaderName, HeaderValue)> + use<> {
        let (limit, policy) = policy_values(self.limit, self.window_secs);
        let retry = (!self.allowed).then(|| (&RETRY_AFTER, crate::header_number(self.reset_secs)));
        [
            (&RATELIMIT_LIMIT, limit),
            (&RATELIMIT_REMAINING, crate::header_number(self.remaining)),
            (&RATELIMIT_RESET, crate::header_number(self.reset_secs)),
            (&RATELIMIT_POLICY, policy),
        ]
        .into_iter()
        .chain(retry)
    }
}

/// Policies whose header values a thread keeps ([`policy_values`]).
const POLICY_VALUES_KEPT: usize = 8;

thread_local! {
    /// `RateLimit-Limit` and `RateLimit-Policy` values of the last policies answered on this
    /// thread, by limit and window: a handful of policies serve nearly every request, and a
    /// kept value is handed out again without writing or allocating it (issue 24).
    static POLICY_VALUES: std::cell::RefCell<Vec<(u64, u64, HeaderValue, HeaderValue)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// The `RateLimit-Limit` and `RateLimit-Policy` (`<limit>;w=<window secs>`) values of a
/// policy.
fn policy_values(limit: u64, window_secs: u64) -> (HeaderValue, HeaderValue) {
    POLICY_VALUES.with_borrow_mut(|kept| {
        if let Some((_, _, limit, policy)) = kept
            .iter()
            .find(|(l, w, _, _)| (*l, *w) == (limit, window_secs))
        {
            return (limit.clone(), policy.clone());
        }
        let mut policy = itoa::Buffer::new().format(limit).as_bytes().to_vec();
        policy.extend_from_slice(b";w=");
        policy.extend_from_slice(itoa::Buffer::new().format(window_secs).as_bytes());
        let policy = HeaderValue::from_maybe_shared(bytes::Bytes::from(policy))
            .expect("digits and ;w= make a header value");
        let values = (crate::header_number(limit), policy);
        if kept.len() == POLICY_VALUES_KEPT {
            kept.remove(0);
        }
        kept.push((limit, window_secs, values.0.clone(), values.1.clone()));
        values
    })
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("the shared counter store did not answer in time")]
    Timeout,
    #[error("the shared counter store is unavailable")]
    Unavailable,
}

/// Counters shared by the replicas.
#[async_trait]
pub trait SharedCounter: Send + Sync {
    /// Adds `units` to counter `key` (created at 0, kept at least `ttl`) atomically and
    /// returns its total after.
    async fn take(&self, key: &str, units: u64, ttl: Duration) -> Result<u64, StoreError>;
}

/// Counters in this process: embedded mode (one replica) and tests.
#[derive(Default)]
pub struct MemoryCounter {
    inner: Mutex<MemoryCounters>,
}

#[derive(Default)]
struct MemoryCounters {
    counters: HashMap<String, (u64, Instant)>,
    /// Expired counters are dropped when the map reaches this size.
    sweep_at: usize,
}

#[async_trait]
impl SharedCounter for MemoryCounter {
    async fn take(&self, key: &str, units: u64, ttl: Duration) -> Result<u64, StoreError> {
        let now = Instant::now();
        let mut inner = lock(&self.inner);
        if inner.counters.len() >= inner.sweep_at {
            inner.counters.retain(|_, (_, expires)| *expires > now);
            inner.sweep_at = (inner.counters.len() * 2).max(1024);
        }
        let entry = inner
            .counters
            .entry(key.to_owned())
            .or_insert((0, now + ttl));
        if entry.1 <= now {
            *entry = (0, now + ttl);
        }
        entry.0 = entry.0.saturating_add(units);
        Ok(entry.0)
    }
}

/// Counters in Redis, one key per (class, subject, window): `<prefix>ratelimit:<class>:
/// <subject>:<window start>`, expiring two windows after its last lease.
pub struct RedisCounter {
    client: redis::Client,
    /// Made by the first lease, inside the runtime that serves requests: the connection's
    /// task must live there, and Redis may be down when the gateway starts.
    conn: std::sync::OnceLock<redis::aio::ConnectionManager>,
    prefix: String,
}

impl RedisCounter {
    /// Checks the URL; connects at the first lease.
    pub fn new(url: &str, prefix: &str) -> Result<Self, StoreError> {
        Ok(Self {
            client: redis::Client::open(url)?,
            conn: std::sync::OnceLock::new(),
            prefix: prefix.to_owned(),
        })
    }

    fn connection(&self) -> Result<redis::aio::ConnectionManager, StoreError> {
        if let Some(conn) = self.conn.get() {
            return Ok(conn.clone());
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1);
        let conn =
            redis::aio::ConnectionManager::new_lazy_with_config(self.client.clone(), config)?;
        Ok(self.conn.get_or_init(|| conn).clone())
    }
}

#[async_trait]
impl SharedCounter for RedisCounter {
    async fn take(&self, key: &str, units: u64, ttl: Duration) -> Result<u64, StoreError> {
        let key = format!("{}ratelimit:{key}", self.prefix);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("INCRBY")
            .arg(&key)
            .arg(units)
            .cmd("EXPIRE")
            .arg(&key)
            .arg(ttl.as_secs().max(1))
            .ignore();
        let mut conn = self.connection()?;
        let (total,): (u64,) = pipe.query_async(&mut conn).await?;
        Ok(total)
    }
}

const SHARDS: usize = 16;
/// Seconds between two sweeps of a shard's past windows.
const SWEEP_EVERY: u64 = 60;

/// The rate limiter of one replica. Cheap to share (`Arc`); `check` from any thread.
pub struct Limiter {
    limits: Limits,
    store: Arc<dyn SharedCounter>,
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    hasher: RandomState,
    /// Unix second until which the store is left alone (0: up).
    down_until: AtomicU64,
    /// Unix second of the next sweep of past windows.
    next_sweep: AtomicU64,
}

type Shard = HashMap<(RouteClass, Subject), Arc<Counter>>;

/// One (class, subject) on this replica.
struct Counter {
    window_secs: u64,
    state: Mutex<State>,
    /// Held while asking the store for a lease, so one request per counter waits for it.
    refill: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    window_start: u64,
    /// Leased units not spent yet.
    allowance: u64,
    /// The store's total at the last lease.
    total: u64,
    /// The store's total reached the limit: nothing more this window.
    exhausted: bool,
    /// Units this replica allowed this window.
    taken: u64,
    /// Units allowed while the store was down, not yet added to it.
    unreported: u64,
    /// Counted locally at some point this window: the replica's share stays its cap until
    /// the window ends (other replicas may have spent theirs, unknown to the store).
    was_degraded: bool,
}

/// What spending one unit gave.
struct Spent {
    allowed: bool,
    remaining: u64,
    degraded: bool,
}

impl Spent {
    fn refused(degraded: bool) -> Self {
        Self {
            allowed: false,
            remaining: 0,
            degraded,
        }
    }
}

impl Counter {
    /// Spends one unit of the window starting at `start`, or `None` when a lease is needed.
    fn spend(&self, start: u64, limit: u64, share: u64, store_down: bool) -> Option<Spent> {
        let mut s = lock(&self.state);
        if start > s.window_start {
            *s = State {
                window_start: start,
                ..State::default()
            };
        }
        if s.allowance > 0 {
            s.allowance -= 1;
            s.taken += 1;
            return Some(Spent {
                allowed: true,
                remaining: limit - s.total.min(limit) + s.allowance,
                degraded: false,
            });
        }
        // A capped counter still reports its local units once the store is back, so the
        // other replicas see them.
        let capped = s.was_degraded && s.taken >= share && (store_down || s.unreported == 0);
        if s.exhausted || limit == 0 || capped {
            return Some(Spent::refused(store_down));
        }
        if !store_down {
            return None;
        }
        if s.taken >= share {
            return Some(Spent::refused(true));
        }
        s.taken += 1;
        s.unreported += 1;
        s.was_degraded = true;
        Some(Spent {
            allowed: true,
            remaining: share - s.taken,
            degraded: true,
        })
    }

    /// Units allowed while the store was down, to add to it with the next lease.
    fn unreported(&self, start: u64) -> u64 {
        let s = lock(&self.state);
        if s.window_start == start {
            s.unreported
        } else {
            0
        }
    }

    /// Records the store's answer to a lease of `lease` (+ `reported`) units.
    fn granted(&self, start: u64, total: u64, lease: u64, reported: u64, limit: u64, share: u64) {
        let mut s = lock(&self.state);
        if s.window_start != start {
            return;
        }
        s.unreported = s.unreported.saturating_sub(reported);
        let mut granted = lease.min(limit.saturating_sub(total.saturating_sub(lease)));
        if s.was_degraded {
            granted = granted.min(share.saturating_sub(s.taken + s.allowance));
        }
        s.allowance += granted;
        s.total = total;
        s.exhausted = total >= limit;
    }
}

impl Limiter {
    pub fn new(limits: Limits, store: Arc<dyn SharedCounter>) -> Self {
        Self {
            per_shard: limits.capacity.div_ceil(SHARDS).max(1),
            limits,
            store,
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: RandomState::new(),
            down_until: AtomicU64::new(0),
            next_sweep: AtomicU64::new(0),
        }
    }

    /// Counts one request of `subject` on a route of `class` at `now` (unix seconds).
    /// Waits for the store only when this replica's lease for the counter is spent.
    pub async fn check(&self, class: RouteClass, subject: &Subject, now: u64) -> Decision {
        let policy = self.limits.policy(class, subject);
        let window = policy.window_secs();
        let start = now - now % window;
        let limit = policy.limit;
        let share = degraded_share(limit, self.limits.replicas);
        let decide = |spent: Spent| Decision {
            allowed: spent.allowed,
            limit,
            remaining: spent.remaining,
            reset_secs: start + window - now,
            window_secs: window,
            degraded: spent.degraded,
        };

        self.sweep_if_due(now);
        let counter = self.counter(class, subject, start, window, now);
        if let Some(spent) = counter.spend(start, limit, share, self.degraded(now)) {
            return decide(spent);
        }
        // Boxed: the common path above then keeps a small future (it is moved per request).
        let spent = Box::pin(self.refill(&counter, (class, subject), start, (limit, share), now));
        decide(spent.await)
    }

    /// Spends one unit once this replica's lease is refilled (or the store found down).
    async fn refill(
        &self,
        counter: &Counter,
        (class, subject): (RouteClass, &Subject),
        start: u64,
        (limit, share): (u64, u64),
        now: u64,
    ) -> Spent {
        let _refilling = counter.refill.lock().await;
        // Another request may have refilled while this one waited.
        if let Some(spent) = counter.spend(start, limit, share, self.degraded(now)) {
            return spent;
        }
        self.lease(counter, (class, subject), start, (limit, share), now)
            .await;
        counter
            .spend(start, limit, share, self.degraded(now))
            // Only when the counter moved to a newer window meanwhile.
            .unwrap_or(Spent::refused(false))
    }

    /// Asks the store for a lease; on failure marks it down for `store_retry_secs`.
    async fn lease(
        &self,
        counter: &Counter,
        (class, subject): (RouteClass, &Subject),
        start: u64,
        (limit, share): (u64, u64),
        now: u64,
    ) {
        let lease = lease_size(limit);
        let reported = counter.unreported(start);
        let key = format!("{}:{subject}:{start}", class.as_str());
        let ttl = Duration::from_secs(2 * counter.window_secs);
        let timeout = Duration::from_millis(self.limits.store_timeout_ms.max(1));
        let answer = tokio::time::timeout(timeout, self.store.take(&key, lease + reported, ttl))
            .await
            .unwrap_or(Err(StoreError::Timeout));
        match answer {
            Ok(total) => {
                self.down_until.store(0, Ordering::Relaxed);
                counter.granted(start, total, lease, reported, limit, share);
            }
            Err(error) => {
                if !self.degraded(now) {
                    tracing::warn!(%error, "rate-limit store failed; counting per replica");
                }
                let until = now + self.limits.store_retry_secs.max(1);
                self.down_until.store(until, Ordering::Relaxed);
            }
        }
    }

    /// Whether the shared store is considered down at `now` (counting per replica): a flag
    /// for the metrics.
    pub fn degraded(&self, now: u64) -> bool {
        now < self.down_until.load(Ordering::Relaxed)
    }

    /// Counters held in memory (for the metrics).
    pub fn counters(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    fn counter(
        &self,
        class: RouteClass,
        subject: &Subject,
        start: u64,
        window: u64,
        now: u64,
    ) -> Arc<Counter> {
        let key = (class, subject.clone());
        let shard = &self.shards[self.hasher.hash_one(&key) as usize % SHARDS];
        let mut shard = lock(shard);
        if let Some(counter) = shard.get(&key) {
            return counter.clone();
        }
        if shard.len() >= self.per_shard {
            sweep(&mut shard, now);
        }
        if shard.len() >= self.per_shard {
            // Any victim will do: its unspent lease is lost, never over-granted.
            if let Some(victim) = shard.keys().next().cloned() {
                shard.remove(&victim);
            }
        }
        let counter = Arc::new(Counter {
            window_secs: window,
            state: Mutex::new(State {
                window_start: start,
                ..State::default()
            }),
            refill: tokio::sync::Mutex::new(()),
        });
        shard.insert(key, counter.clone());
        counter
    }

    /// Every [`SWEEP_EVERY`] seconds, drops the counters of past windows from every shard.
    fn sweep_if_due(&self, now: u64) {
        let due = self.next_sweep.load(Ordering::Relaxed);
        if now < due
            || self
                .next_sweep
                .compare_exchange(due, now + SWEEP_EVERY, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        for shard in &self.shards {
            sweep(&mut lock(shard), now);
        }
    }
}

/// Drops counters whose window is over at `now` (a new window starts from zero anyway).
fn sweep(shard: &mut Shard, now: u64) {
    shard.retain(|_, c| lock(&c.state).window_start + c.window_secs > now);
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
    /// A window start for every class (a multiple of 300 s).
    const T0: u64 = 1_800_000_000;

    /// Counts calls and fails on demand, around another store.
    #[derive(Default)]
    struct Wrapped {
        inner: MemoryCounter,
        calls: AtomicUsize,
        failing: AtomicBool,
    }

    #[async_trait]
    impl SharedCounter for Wrapped {
        async fn take(&self, key: &str, units: u64, ttl: Duration) -> Result<u64, StoreError> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            if self.failing.load(Ordering::Relaxed) {
                return Err(StoreError::Unavailable);
            }
            self.inner.take(key, units, ttl).await
        }
    }

    /// Never answers.
    struct Hanging;

    #[async_trait]
    impl SharedCounter for Hanging {
        async fn take(&self, _: &str, _: u64, _: Duration) -> Result<u64, StoreError> {
            std::future::pending().await
        }
    }

    fn limits(default_limit: u64) -> Limits {
        Limits {
            classes: HashMap::from([(RouteClass::Default, default_limit)]),
            ..Limits::default()
        }
    }

    async fn allowed(limiter: &Limiter, subject: &Subject, now: u64, n: usize) -> usize {
        let mut allowed = 0;
        for _ in 0..n {
            if limiter
                .check(RouteClass::Default, subject, now)
                .await
                .allowed
            {
                allowed += 1;
            }
        }
        allowed
    }

    #[test]
    fn route_classes_follow_the_contract() {
        use RouteClass::*;
        let cases = [
            ("POST", "/{version}/journeys", JourneysWrite),
            ("POST", "/journeys/push", JourneysWrite),
            ("POST", "/{version}/journeys/{id}/cancel", JourneysWrite),
            ("GET", "/{version}/journeys", JourneysRead),
            ("GET", "/{version}/journeys/{id}", JourneysRead),
            ("PATCH", "/{version}/journeys/{id}", JourneysRead),
            ("POST", "/{version}/journeys/{id}", JourneysRead),
            ("POST", "/{version}/policies/cee", Cee),
            ("POST", "/{version}/policies/cee/simulate", Cee),
            ("POST", "/{version}/policies/cee/import", Cee),
            ("POST", "/{version}/policies/cee/import/identity", Cee),
            ("GET", "/{version}/policies/cee/{uuid}", Cee),
            ("DELETE", "/{version}/policies/cee/{uuid}", Cee),
            ("GET", "/{version}/policies/cee/public-key", Cee),
            ("POST", "/{version}/auth/access_token", AccessToken),
            ("POST", "/{version}/auth/credentials", Default),
            ("POST", "/api/v1/auth/sign_in", Default),
            ("GET", "/admin/operators", Default),
            // The reference's default limiter for exports: 100 / 5 min.
            ("GET", "/{version}/exports/journeys", Default),
            ("POST", "/{version}/exports", Default),
            ("GET", "/{version}/exports/{uuid}", Default),
            ("GET", "/{version}/exports/{uuid}/download", Default),
        ];
        for (method, template, class) in cases {
            assert_eq!(
                RouteClass::of(template, method),
                Some(class),
                "{method} {template}"
            );
        }
        for unlimited in ["/.well-known/jwks.json", "/console/{asset}"] {
            assert_eq!(RouteClass::of(unlimited, "GET"), None, "{unlimited}");
        }
        let policies: Vec<(u64, u64)> = RouteClass::ALL
            .iter()
            .map(|c| {
                (
                    c.default_policy().limit,
                    c.default_policy().window.as_secs(),
                )
            })
            .collect();
        assert_eq!(
            policies,
            [
                (20_000, 60),
                (2_000, 60),
                (20_000, 60),
                (5, 60),
                (100, 300),
                (100, 300)
            ]
        );
    }

    #[test]
    fn subjects_are_operator_then_principal_then_address() {
        use RouteClass::*;
        let person = |id: &str| Subject::Principal(id.into());
        let cases = [
            // Machines count against their operator.
            (
                JourneysWrite,
                false,
                Some(4),
                Some("app"),
                Subject::Operator(4),
            ),
            (JourneysRead, false, Some(4), None, Subject::Operator(4)),
            (Default, false, Some(4), Some("app"), Subject::Operator(4)),
            (Manage, false, Some(4), Some("app"), Subject::Operator(4)),
            // People too on the operator API, as the reference counts...
            (
                JourneysWrite,
                true,
                Some(4),
                Some("u1"),
                Subject::Operator(4),
            ),
            (Cee, true, Some(4), Some("u1"), Subject::Operator(4)),
            // ...and against themselves elsewhere: one looping account cannot spend its
            // operator's admins' requests.
            (Default, true, Some(4), Some("u1"), person("u1")),
            (Manage, true, Some(4), Some("u1"), person("u1")),
            (Default, true, None, Some("u1"), person("u1")),
            (Default, false, None, Some("u1"), person("u1")),
            (Default, true, None, Some(""), Subject::Address(IP)),
            (Cee, false, None, None, Subject::Address(IP)),
            (AccessToken, true, Some(4), Some("u1"), Subject::Address(IP)),
            (AccessToken, false, None, None, Subject::Address(IP)),
        ];
        for (class, is_person, operator, principal, subject) in cases {
            assert_eq!(
                Subject::of(class, is_person, operator, principal, IP),
                subject,
                "{class:?} person: {is_person} {operator:?} {principal:?}"
            );
        }
    }

    #[test]
    fn addresses_are_counted_by_network() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let of = |s: &str| Subject::of(RouteClass::AccessToken, false, None, None, ip(s));
        // Rotating inside one /64 is one subject.
        assert_eq!(
            of("2001:db8:1:2::1"),
            of("2001:db8:1:2:ffff:ffff:ffff:fffe")
        );
        assert_eq!(of("2001:db8:1:2::1").to_string(), "ip:2001:db8:1:2::/64");
        assert_ne!(of("2001:db8:1:2::1"), of("2001:db8:1:3::1"));
        // IPv4 addresses stay whole, also as a dual-stack listener sees them.
        assert_eq!(of("::ffff:192.0.2.7"), of("192.0.2.7"));
        assert_ne!(of("::ffff:192.0.2.7"), of("::ffff:192.0.2.8"));
        assert_eq!(of("192.0.2.7").to_string(), "ip:192.0.2.7");
    }

    #[test]
    fn revocations_and_sign_out_have_a_class_of_their_own() {
        for (method, template) in [
            ("DELETE", "/applications/{uuid}"),
            ("DELETE", "/{version}/auth/credentials"),
            ("DELETE", "/api/v1/auth/sign_out"),
            ("POST", "/profile/signout"),
        ] {
            assert_eq!(
                RouteClass::of(template, method),
                Some(RouteClass::Manage),
                "{method} {template}"
            );
        }
        for (method, template) in [
            ("GET", "/applications"),
            ("POST", "/{version}/auth/credentials"),
            ("GET", "/profile"),
        ] {
            assert_eq!(
                RouteClass::of(template, method),
                Some(RouteClass::Default),
                "{method} {template}"
            );
        }
    }

    #[test]
    fn overrides_apply_to_their_operator_only() {
        let limits: Limits = serde_json::from_str(
            r#"{"classes":{"default":300},
                "overrides":{"7":{"journeys_write":50000,"default":10}},
                "replicas":3}"#,
        )
        .unwrap();
        let cases = [
            (RouteClass::JourneysWrite, Subject::Operator(7), 50_000),
            (RouteClass::Default, Subject::Operator(7), 10),
            (RouteClass::JourneysRead, Subject::Operator(7), 2_000),
            (RouteClass::JourneysWrite, Subject::Operator(8), 20_000),
            (RouteClass::Default, Subject::Operator(8), 300),
            (RouteClass::Default, Subject::Address(IP), 300),
        ];
        for (class, subject, limit) in cases {
            assert_eq!(
                limits.policy(class, &subject).limit,
                limit,
                "{class:?} {subject}"
            );
        }
        assert_eq!(limits.replicas, 3);
        assert!(serde_json::from_str::<Limits>(r#"{"overrides":{"7":{"nope":1}}}"#).is_err());
        assert!(serde_json::from_str::<Limits>(r#"{"replica":1}"#).is_err());
    }

    #[test]
    fn leases_and_shares() {
        let cases = [
            (0, 1, 0),
            (5, 1, 2),
            (100, 2, 50),
            (2_000, 40, 1_000),
            (1, 1, 1),
        ];
        for (limit, lease, share) in cases {
            assert_eq!(lease_size(limit), lease, "{limit}");
            assert_eq!(degraded_share(limit, 2), share, "{limit}");
        }
        assert_eq!(degraded_share(100, 0), 100);
    }

    #[tokio::test]
    async fn one_replica_allows_exactly_the_limit_per_window() {
        let limiter = Limiter::new(Limits::default(), Arc::new(MemoryCounter::default()));
        let class = RouteClass::AccessToken;
        let subject = Subject::Address(IP);
        let now = T0 + 15;
        for i in 0..5 {
            let d = limiter.check(class, &subject, now).await;
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 4 - i);
        }
        let refused = limiter.check(class, &subject, now + 30).await;
        assert!(!refused.allowed);
        assert_eq!(refused.reset_secs, 15, "time to the window's end");
        assert!(texts(&refused).contains(&("retry-after", "15".into())));
        assert!(limiter.check(class, &subject, T0 + 60).await.allowed);
        // Another address has its own counter.
        let other = Subject::Address(IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert!(limiter.check(class, &other, now).await.allowed);

        let limiter = Limiter::new(Limits::default(), Arc::new(MemoryCounter::default()));
        let operator = Subject::Operator(1);
        assert_eq!(allowed(&limiter, &operator, T0 + 1, 150).await, 100);
        assert_eq!(allowed(&limiter, &operator, T0 + 299, 10).await, 0);
        assert_eq!(allowed(&limiter, &operator, T0 + 300, 150).await, 100);
    }

    #[tokio::test]
    async fn replicas_sharing_a_store_allow_the_limit_together_with_few_store_calls() {
        let store = Arc::new(Wrapped::default());
        let a = Limiter::new(Limits::default(), store.clone());
        let b = Limiter::new(Limits::default(), store.clone());
        let subject = Subject::Operator(3);
        let class = RouteClass::JourneysRead;
        let (mut requests, mut granted) = (0, 0);
        for i in 0..3_000 {
            // Uneven interleaving: a takes three for every one of b.
            let replica = if i % 4 == 3 { &b } else { &a };
            requests += 1;
            let d = replica.check(class, &subject, T0 + 10).await;
            granted += usize::from(d.allowed);
            assert!(granted <= 2_000);
        }
        assert_eq!(granted, 2_000);
        let calls = store.calls.load(Ordering::Relaxed);
        assert!(
            calls <= 2_000 / 40 + 2,
            "{calls} store calls for {requests} requests"
        );
        // Both replicas know the window is spent: no more store calls.
        assert!(!a.check(class, &subject, T0 + 11).await.allowed);
        assert!(!b.check(class, &subject, T0 + 11).await.allowed);
        assert_eq!(store.calls.load(Ordering::Relaxed), calls);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_never_exceed_the_limit() {
        let store = Arc::new(Wrapped::default());
        let replicas: Vec<Arc<Limiter>> = (0..3)
            .map(|_| Arc::new(Limiter::new(limits(1_000), store.clone())))
            .collect();
        let tasks: Vec<_> = (0..30)
            .map(|i| {
                let limiter = replicas[i % 3].clone();
                tokio::spawn(async move {
                    allowed(&limiter, &Subject::Principal("staff".into()), T0, 50).await
                })
            })
            .collect();
        let mut granted = 0;
        for task in tasks {
            granted += task.await.unwrap();
        }
        assert_eq!(granted, 1_000);
        assert!(store.calls.load(Ordering::Relaxed) <= 1_000 / 20 + 3);
    }

    #[tokio::test]
    async fn a_failing_store_leaves_each_replica_its_share_then_recovers() {
        let store = Arc::new(Wrapped::default());
        let a = Limiter::new(limits(10), store.clone());
        let b = Limiter::new(limits(10), store.clone());
        let subject = Subject::Operator(9);
        store.failing.store(true, Ordering::Relaxed);
        for replica in [&a, &b] {
            assert_eq!(allowed(replica, &subject, T0 + 1, 8).await, 5);
            assert!(replica.degraded(T0 + 1));
            let d = replica.check(RouteClass::Default, &subject, T0 + 2).await;
            assert!(!d.allowed && d.degraded);
        }
        let calls = store.calls.load(Ordering::Relaxed);
        assert!(calls <= 2, "the store is left alone while down: {calls}");

        // Back within the same window: the units allowed meanwhile count in the store.
        store.failing.store(false, Ordering::Relaxed);
        let later = T0 + 1 + Limits::default().store_retry_secs;
        assert!(!a.degraded(later));
        // Each replica allowed its share: its cap until the window ends. Each reports its
        // units once, then refuses locally.
        assert_eq!(allowed(&a, &subject, later, 5).await, 0);
        assert_eq!(allowed(&b, &subject, later, 5).await, 0);
        assert!(!a.degraded(later) && !b.degraded(later));
        assert_eq!(store.calls.load(Ordering::Relaxed), calls + 2);
        let c = Limiter::new(limits(10), store.clone());
        assert_eq!(
            allowed(&c, &subject, later, 5).await,
            0,
            "sees the reported units"
        );

        // Next window: the shared limit again, not degraded.
        let next = T0 + 300;
        let d = a.check(RouteClass::Default, &subject, next).await;
        assert!(d.allowed && !d.degraded);
        assert_eq!(
            allowed(&a, &subject, next, 5).await + allowed(&b, &subject, next, 9).await,
            9
        );
    }

    #[tokio::test]
    async fn a_store_recovering_mid_window_counts_the_degraded_units() {
        let store = Arc::new(Wrapped::default());
        let a = Limiter::new(limits(10), store.clone());
        let b = Limiter::new(limits(10), store.clone());
        let subject = Subject::Operator(9);
        store.failing.store(true, Ordering::Relaxed);
        assert_eq!(allowed(&a, &subject, T0, 3).await, 3);
        store.failing.store(false, Ordering::Relaxed);
        let later = T0 + 10;
        // a keeps to its share (2 more); b sees a's 3 units in the store.
        assert_eq!(allowed(&a, &subject, later, 20).await, 2);
        assert_eq!(allowed(&b, &subject, later, 20).await, 5);
    }

    #[tokio::test]
    async fn a_hanging_store_is_bounded_by_the_timeout() {
        let limits = Limits {
            store_timeout_ms: 200,
            ..limits(10)
        };
        let limiter = Limiter::new(limits, Arc::new(Hanging));
        let started = Instant::now();
        let d = limiter
            .check(RouteClass::Default, &Subject::Address(IP), T0)
            .await;
        assert!(d.allowed && d.degraded);
        assert!(started.elapsed() < Duration::from_secs(5), "bounded");
        // Left alone now: ten more checks, which would take 2 s if each waited for it.
        let started = Instant::now();
        assert_eq!(
            allowed(&limiter, &Subject::Address(IP), T0 + 1, 10).await,
            4
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "no more waiting"
        );
    }

    fn texts(decision: &Decision) -> Vec<(&'static str, String)> {
        let text = |v: HeaderValue| v.to_str().unwrap().to_owned();
        decision
            .headers()
            .map(|(n, v)| (n.as_str(), text(v)))
            .collect()
    }

    #[tokio::test]
    async fn headers_of_allowed_and_refused_decisions() {
        let limiter = Limiter::new(Limits::default(), Arc::new(MemoryCounter::default()));
        let subject = Subject::Address(IP);
        let first = limiter
            .check(RouteClass::AccessToken, &subject, T0 + 20)
            .await;
        assert_eq!(
            texts(&first),
            [
                ("ratelimit-limit", "5".to_owned()),
                ("ratelimit-remaining", "4".to_owned()),
                ("ratelimit-reset", "40".to_owned()),
                ("ratelimit-policy", "5;w=60".to_owned()),
            ]
        );
        for _ in 0..4 {
            limiter
                .check(RouteClass::AccessToken, &subject, T0 + 20)
                .await;
        }
        let refused = limiter
            .check(RouteClass::AccessToken, &subject, T0 + 59)
            .await;
        assert_eq!(
            texts(&refused),
            [
                ("ratelimit-limit", "5".to_owned()),
                ("ratelimit-remaining", "0".to_owned()),
                ("ratelimit-reset", "1".to_owned()),
                ("ratelimit-policy", "5;w=60".to_owned()),
                ("retry-after", "1".to_owned()),
            ]
        );
    }

    /// The values a thread keeps are always their own policy's, whether found kept or made
    /// again after more policies than are kept came between.
    #[test]
    fn a_policy_s_header_values_are_its_own_kept_or_not() {
        // Each limit twice, with two windows.
        let policies: Vec<(u64, u64)> = (0..3 * POLICY_VALUES_KEPT as u64)
            .map(|i| ((i / 2 + 1) * 7, if i % 2 == 0 { 60 } else { 300 }))
            .collect();
        for round in 0..3 {
            // Round 0 makes them, round 1 meets each again after more than are kept, round 2
            // asks the last ones (kept) in reverse.
            let order: Vec<_> = match round {
                2 => policies.iter().rev().take(POLICY_VALUES_KEPT).collect(),
                _ => policies.iter().collect(),
            };
            for &&(limit, window) in &order {
                let (l, p) = policy_values(limit, window);
                assert_eq!(l.to_str().unwrap(), limit.to_string());
                assert_eq!(p.to_str().unwrap(), format!("{limit};w={window}"));
            }
        }
    }

    #[tokio::test]
    async fn counters_stay_bounded() {
        let limits = Limits {
            capacity: 64,
            ..Limits::default()
        };
        let limiter = Limiter::new(limits, Arc::new(MemoryCounter::default()));
        for i in 0..1_000 {
            limiter
                .check(RouteClass::Default, &Subject::Operator(i), T0)
                .await;
        }
        assert!(limiter.counters() <= 64, "{}", limiter.counters());
        // Past windows are swept as time moves on.
        limiter
            .check(RouteClass::Default, &Subject::Operator(1), T0 + 600)
            .await;
        assert_eq!(limiter.counters(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replicas_over_redis_never_exceed_the_limit() {
        let prefix = format!("rl-test-{}:", uuid::Uuid::new_v4().simple());
        let url = "redis://127.0.0.1:6379";
        let replicas: Vec<Arc<Limiter>> = (0..2)
            .map(|_| {
                let store = Arc::new(RedisCounter::new(url, &prefix).unwrap());
                Arc::new(Limiter::new(limits(500), store))
            })
            .collect();
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let limiter = replicas[i % 2].clone();
                tokio::spawn(async move { allowed(&limiter, &Subject::Operator(1), T0, 100).await })
            })
            .collect();
        let mut granted = 0;
        for task in tasks {
            granted += task.await.unwrap();
        }
        assert!(
            replicas.iter().all(|r| !r.degraded(T0)),
            "Redis at {url} must run"
        );
        assert_eq!(granted, 500);

        let client = redis::Client::open(url).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(keys, [format!("{prefix}ratelimit:default:op:1:{T0}")]);
        let ttl: i64 = redis::cmd("TTL")
            .arg(&keys[0])
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 0 && ttl <= 600, "{ttl}");
        let () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}
