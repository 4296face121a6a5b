//! Usage records: what each credential did, per minute, counted in memory on the request
//! path and sent to auth-service off it ([`Flusher`], every `usage.flush_secs`).
//!
//! On the path a request costs one uncontended lock (each proxy service has its own shard;
//! the flusher takes a shard's map whole once per flush), one hash look-up by the
//! credential's id without copying it, and a short scan of that credential's cells since the
//! last flush. Nothing waits for auth-service: a batch it did not take stays queued and is
//! sent again unchanged (auth-service applies a `(replica, seq)` once), and the queue is
//! bounded ([`MAX_PENDING_ROWS`]); what falls off it is counted
//! (`gateway_usage_lost_rows_total`).

use crate::metrics::Metrics;
use auth_token::usage::{
    Batch, LastUsedRow, MAX_ROWS_PER_BATCH, NetworkRow, Subject, USAGE_PATH, UsageRow,
};
use auth_token::{ASSERTION_HEADER, AssertionKey, CredentialKind, Principal};
use ipnet::IpNet;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Client networks named per credential between two flushes: requests from more are still
/// counted, their networks not named (the distinct count a signal reads is then at least
/// this, which is already far past any honest client's).
const MAX_NETWORKS: usize = 64;

/// Rows waiting for auth-service at most (a row is about 150 bytes in memory): past it the
/// oldest batches are dropped and counted.
pub const MAX_PENDING_ROWS: usize = 200_000;

/// Bytes of a user agent kept (cut on a character boundary): the header may hold 16 KiB,
/// a row must stay small so batches stay under auth-service's body limit.
pub const MAX_USER_AGENT_BYTES: usize = 256;

/// A batch not taken within this long is dropped (counted as lost): auth-service remembers
/// the batches it applied for 7 days, so one sent later could be counted twice.
const MAX_BATCH_AGE: Duration = Duration::from_secs(24 * 3600);

/// How long one batch may take to be sent and answered.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// One request, as the usage records see it.
pub struct Seen<'a> {
    pub kind: CredentialKind,
    pub id: &'a str,
    pub operator_id: Option<i64>,
    /// The route class, or `public`.
    pub class: &'static str,
    /// [`outcome`] of the answer.
    pub outcome: &'static str,
    pub client: IpAddr,
    pub user_agent: Option<&'a str>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Unix milliseconds (the last use of two replicas in one second is still ordered).
    pub at_ms: i64,
}

/// The outcome label of an answer: the gateway's refusal code when it refused, else the
/// upstream's status, by class for success, redirection and server errors.
pub fn outcome(refusal: Option<&'static str>, status: u16) -> &'static str {
    if let Some(code) = refusal {
        return code;
    }
    match status {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        409 => "409",
        413 => "413",
        415 => "415",
        422 => "422",
        429 => "429",
        402..=499 => "4xx",
        500..=599 => "5xx",
        _ => "aborted",
    }
}

/// The upstreams' finer outcomes the records keep (`x-rpc-outcome`: the registry's terms
/// labels of a 422); any other value is ignored, so an upstream cannot grow the label set.
pub const UPSTREAM_OUTCOMES: [&str; 4] = [
    "422:expired",
    "422:distance_too_short",
    "422:too_many_trips_by_day",
    "422:too_close_trips",
];

/// `value` as one of [`UPSTREAM_OUTCOMES`], if it is one.
pub fn upstream_outcome(value: &[u8]) -> Option<&'static str> {
    UPSTREAM_OUTCOMES
        .into_iter()
        .find(|known| known.as_bytes() == value)
}

/// `agent` cut to at most [`MAX_USER_AGENT_BYTES`], on a character boundary.
pub fn cut_user_agent(agent: &str) -> &str {
    if agent.len() <= MAX_USER_AGENT_BYTES {
        return agent;
    }
    let mut end = MAX_USER_AGENT_BYTES;
    while !agent.is_char_boundary(end) {
        end -= 1;
    }
    &agent[..end]
}

/// The client network a credential is seen from: an IPv4 /24, an IPv6 /48 (an IPv4-mapped
/// IPv6 address is its IPv4 one).
pub fn network(ip: IpAddr) -> IpNet {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let prefix = if ip.is_ipv4() { 24 } else { 48 };
    IpNet::new(ip, prefix).map_or_else(|_| IpNet::from(ip), |net| net.trunc())
}

/// The counts of every proxy service, one shard each, each in a cache line of its own: two
/// shards in one line made the services' threads take that line from each other on every
/// request (issue 24).
pub struct Recorder {
    shards: Box<[crossbeam_utils::CachePadded<Mutex<Shard>>]>,
}

#[derive(Default)]
struct Shard {
    /// By credential id, then by [`Subject::index`].
    by_id: FastMap<Box<str>, [Option<Tally>; 3]>,
}

struct Tally {
    operator_id: Option<i64>,
    cells: Vec<Cell>,
    /// (hour, network, requests).
    networks: Vec<(i64, IpNet, u64)>,
    last: Last,
}

struct Cell {
    minute: i64,
    class: &'static str,
    outcome: &'static str,
    requests: u64,
    bytes_in: u64,
    bytes_out: u64,
}

struct Last {
    at_ms: i64,
    network: IpNet,
    user_agent: Option<Box<str>>,
}

impl Recorder {
    pub fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards.max(1))
                .map(|_| crossbeam_utils::CachePadded::new(Mutex::new(Shard::default())))
                .collect(),
        }
    }

    /// Counts one request in `shard` (the proxy service's index).
    pub fn record(&self, shard: usize, seen: &Seen<'_>) {
        let subject = Subject::of(seen.kind);
        let network = network(seen.client);
        let at = seen.at_ms.div_euclid(1000);
        let minute = at - at.rem_euclid(60);
        let hour = at - at.rem_euclid(3600);
        let mut shard = self.shards[shard % self.shards.len()]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let slots = match shard.by_id.get_mut(seen.id) {
            Some(slots) => slots,
            None => shard.by_id.entry(seen.id.into()).or_default(),
        };
        let tally = slots[subject.index()].get_or_insert_with(|| Tally {
            operator_id: seen.operator_id,
            cells: Vec::with_capacity(2),
            networks: Vec::with_capacity(1),
            last: Last {
                at_ms: seen.at_ms,
                network,
                user_agent: None,
            },
        });
        match tally
            .cells
            .iter_mut()
            .find(|c| c.minute == minute && c.class == seen.class && c.outcome == seen.outcome)
        {
            Some(cell) => {
                cell.requests += 1;
                cell.bytes_in += seen.bytes_in;
                cell.bytes_out += seen.bytes_out;
            }
            None => tally.cells.push(Cell {
                minute,
                class: seen.class,
                outcome: seen.outcome,
                requests: 1,
                bytes_in: seen.bytes_in,
                bytes_out: seen.bytes_out,
            }),
        }
        let named = tally.networks.len();
        match tally
            .networks
            .iter_mut()
            .find(|(h, n, _)| *h == hour && *n == network)
        {
            Some((_, _, requests)) => *requests += 1,
            None if named < MAX_NETWORKS => tally.networks.push((hour, network, 1)),
            None => {}
        }
        if seen.at_ms >= tally.last.at_ms {
            tally.last.at_ms = seen.at_ms;
            tally.last.network = network;
            let agent = seen.user_agent.map(cut_user_agent);
            if tally.last.user_agent.as_deref() != agent {
                tally.last.user_agent = agent.map(Into::into);
            }
        }
        if tally.operator_id.is_none() {
            tally.operator_id = seen.operator_id;
        }
    }

    /// Everything counted since the last call, merged over the shards, as rows.
    pub fn take(&self) -> Rows {
        let mut usage: FastMap<(Subject, Box<str>, i64, &'static str, &'static str), UsageRow> =
            FastMap::default();
        let mut networks: FastMap<(Subject, Box<str>, i64, IpNet), u64> = FastMap::default();
        let mut last: FastMap<(Subject, Box<str>), LastUsedRow> = FastMap::default();
        for shard in self.shards.iter() {
            let taken = std::mem::take(&mut shard.lock().unwrap_or_else(|e| e.into_inner()).by_id);
            for (id, slots) in taken {
                for (index, tally) in slots.into_iter().enumerate() {
                    let Some(tally) = tally else { continue };
                    let subject = SUBJECTS[index];
                    for cell in tally.cells {
                        let key = (subject, id.clone(), cell.minute, cell.class, cell.outcome);
                        let row = usage.entry(key).or_insert_with(|| UsageRow {
                            subject,
                            id: id.to_string(),
                            operator_id: tally.operator_id,
                            minute: cell.minute,
                            class: cell.class.to_owned(),
                            outcome: cell.outcome.to_owned(),
                            requests: 0,
                            bytes_in: 0,
                            bytes_out: 0,
                        });
                        row.requests += cell.requests;
                        row.bytes_in += cell.bytes_in;
                        row.bytes_out += cell.bytes_out;
                    }
                    for (hour, network, requests) in tally.networks {
                        *networks
                            .entry((subject, id.clone(), hour, network))
                            .or_default() += requests;
                    }
                    let seen = LastUsedRow {
                        subject,
                        id: id.to_string(),
                        operator_id: tally.operator_id,
                        at_ms: tally.last.at_ms,
                        network: tally.last.network.to_string(),
                        user_agent: tally.last.user_agent.map(String::from),
                    };
                    match last.entry((subject, id.clone())) {
                        std::collections::hash_map::Entry::Occupied(mut kept) => {
                            if seen.at_ms > kept.get().at_ms {
                                kept.insert(seen);
                            }
                        }
                        std::collections::hash_map::Entry::Vacant(slot) => {
                            slot.insert(seen);
                        }
                    }
                }
            }
        }
        Rows {
            usage: usage.into_values().collect(),
            networks: networks
                .into_iter()
                .map(|((subject, id, hour, network), requests)| NetworkRow {
                    subject,
                    id: id.into(),
                    hour,
                    network: network.to_string(),
                    requests,
                })
                .collect(),
            last_used: last.into_values().collect(),
        }
    }
}

const SUBJECTS: [Subject; 3] = [Subject::Application, Subject::ApiCredential, Subject::User];

/// What [`Recorder::take`] returns.
#[derive(Debug, Default)]
pub struct Rows {
    pub usage: Vec<UsageRow>,
    pub networks: Vec<NetworkRow>,
    pub last_used: Vec<LastUsedRow>,
}

impl Rows {
    pub fn is_empty(&self) -> bool {
        self.usage.is_empty() && self.networks.is_empty() && self.last_used.is_empty()
    }

    /// These rows as batches of at most [`MAX_ROWS_PER_BATCH`] rows, numbered from `next`.
    pub fn into_batches(self, replica: &str, next: &mut u64) -> Vec<Batch> {
        let mut batches = Vec::new();
        let mut current = Batch::default();
        let mut push = |batch: &mut Batch, force: bool| {
            if batch.rows() >= MAX_ROWS_PER_BATCH || (force && batch.rows() > 0) {
                let mut full = std::mem::take(batch);
                full.replica = replica.to_owned();
                full.seq = *next;
                *next += 1;
                batches.push(full);
            }
        };
        for row in self.usage {
            current.usage.push(row);
            push(&mut current, false);
        }
        for row in self.networks {
            current.networks.push(row);
            push(&mut current, false);
        }
        for row in self.last_used {
            current.last_used.push(row);
            push(&mut current, false);
        }
        push(&mut current, true);
        batches
    }
}

/// Batches made but not yet taken by auth-service, oldest first, bounded.
#[derive(Default)]
pub struct Queue {
    batches: VecDeque<(Instant, Batch)>,
    rows: usize,
}

impl Queue {
    /// Adds `batch`; returns the rows dropped (oldest batches first) to stay within
    /// `max_rows`.
    pub fn push(&mut self, batch: Batch, made: Instant, max_rows: usize) -> usize {
        self.rows += batch.rows();
        self.batches.push_back((made, batch));
        let mut dropped = 0;
        while self.rows > max_rows {
            let Some((_, old)) = self.batches.pop_front() else {
                break;
            };
            self.rows -= old.rows();
            dropped += old.rows();
        }
        dropped
    }

    pub fn front(&self) -> Option<&(Instant, Batch)> {
        self.batches.front()
    }

    pub fn pop(&mut self) {
        if let Some((_, batch)) = self.batches.pop_front() {
            self.rows -= batch.rows();
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }
}

/// What auth-service did with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Applied (or applied before).
    Taken,
    /// Not now (unreachable, 5xx, 401, 429...): send it again later.
    Later,
    /// Refused for what it is (400, 413, 422): sending it again would not help.
    Refused,
}

/// Sends the recorder's rows to auth-service every `every`.
pub struct Flusher {
    pub recorder: std::sync::Arc<Recorder>,
    pub replica: String,
    /// auth-service's replicas, one picked per batch.
    pub caller: crate::upstreams::Caller,
    pub key: AssertionKey,
    pub every: Duration,
    pub max_pending_rows: usize,
}

impl Flusher {
    /// Flushes every `every` until `stopped` resolves, then once more (bounded by
    /// [`SEND_TIMEOUT`]) so a graceful stop loses nothing auth-service can take.
    pub async fn run(&self, metrics: &Metrics, stopped: impl Future<Output = ()>) {
        tokio::pin!(stopped);
        let mut queue = Queue::default();
        let mut next = 1;
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            let stop = tokio::select! {
                _ = tick.tick() => false,
                () = &mut stopped => true,
            };
            self.flush(&mut queue, &mut next, metrics).await;
            if stop {
                return;
            }
        }
    }

    /// Takes what was counted, queues it, and sends the queue in order until a batch is not
    /// taken.
    pub async fn flush(&self, queue: &mut Queue, next: &mut u64, metrics: &Metrics) {
        let rows = self.recorder.take();
        let made = Instant::now();
        if !rows.is_empty() {
            for batch in rows.into_batches(&self.replica, next) {
                let dropped = queue.push(batch, made, self.max_pending_rows);
                metrics.usage_lost_rows.inc_by(dropped as u64);
            }
        }
        while let Some((made, batch)) = queue.front() {
            if made.elapsed() > MAX_BATCH_AGE {
                metrics.usage_lost_rows.inc_by(batch.rows() as u64);
                tracing::warn!(
                    seq = batch.seq,
                    "a usage batch not taken for a day; dropped"
                );
                queue.pop();
                continue;
            }
            let sent = self.send(batch).await;
            metrics
                .usage_flushes
                .with_label_values(&[match sent {
                    Sent::Taken => "taken",
                    Sent::Later => "failed",
                    Sent::Refused => "refused",
                }])
                .inc();
            match sent {
                Sent::Taken => queue.pop(),
                Sent::Refused => {
                    metrics.usage_lost_rows.inc_by(batch.rows() as u64);
                    tracing::warn!(
                        seq = batch.seq,
                        rows = batch.rows(),
                        "auth-service refused a usage batch; dropped"
                    );
                    queue.pop();
                }
                Sent::Later => break,
            }
        }
        metrics.usage_pending_rows.set(queue.rows() as i64);
        let lag = queue
            .front()
            .map_or(0.0, |(made, _)| made.elapsed().as_secs_f64());
        metrics.usage_flush_lag.set(lag);
    }

    /// One batch to auth-service, under the gateway's own assertion bound to its body.
    pub async fn send(&self, batch: &Batch) -> Sent {
        let body = match serde_json::to_vec(batch) {
            Ok(body) => body,
            Err(_) => return Sent::Refused,
        };
        let digest = auth_token::body_digest(&body);
        let request = auth_token::Request {
            method: "POST",
            path: USAGE_PATH,
            query: "",
            body: digest.as_deref(),
        };
        let principal = Principal::gateway(&self.replica);
        let rid = format!("usage-{}-{}", self.replica, batch.seq);
        let assertion = self.key.sign_new(
            &principal,
            crate::routes::Upstream::AuthService.audience(),
            &request,
            &rid,
            crate::unix_now(),
        );
        let (client, url) = match self.caller.target() {
            Ok(target) => target,
            Err(_) => return Sent::Later,
        };
        let answer = client
            .post(url)
            .header(ASSERTION_HEADER, assertion)
            .header("content-type", "application/json")
            .header("x-request-id", rid)
            .timeout(SEND_TIMEOUT)
            .body(body)
            .send()
            .await;
        match answer.map(|a| a.status().as_u16()) {
            Ok(200..=299) => Sent::Taken,
            Ok(400 | 413 | 422) => Sent::Refused,
            Ok(_) | Err(_) => Sent::Later,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen<'a>(id: &'a str, at: i64, client: &str, outcome: &'static str) -> Seen<'a> {
        Seen {
            kind: CredentialKind::Application,
            id,
            operator_id: Some(7),
            class: "journeys_write",
            outcome,
            client: client.parse().unwrap(),
            user_agent: Some("operator-client/1.0"),
            bytes_in: 1500,
            bytes_out: 200,
            at_ms: at * 1000,
        }
    }

    #[test]
    fn user_agents_are_cut_on_a_character_boundary() {
        assert_eq!(cut_user_agent("curl/8"), "curl/8");
        let long = "é".repeat(200);
        let cut = cut_user_agent(&long);
        assert!(cut.len() <= MAX_USER_AGENT_BYTES && cut.len() >= MAX_USER_AGENT_BYTES - 1);
        assert!(long.starts_with(cut));
    }

    #[test]
    fn only_known_upstream_outcomes_are_kept() {
        assert_eq!(
            upstream_outcome(b"422:too_close_trips"),
            Some("422:too_close_trips")
        );
        assert_eq!(upstream_outcome(b"422:anything-else"), None);
        assert_eq!(upstream_outcome(b""), None);
    }

    #[test]
    fn networks_are_ipv4_24_and_ipv6_48() {
        for (ip, net) in [
            ("203.0.113.77", "203.0.113.0/24"),
            ("2001:db8:1:2:3::9", "2001:db8:1::/48"),
            ("::ffff:198.51.100.4", "198.51.100.0/24"),
            ("::1", "::/48"),
        ] {
            assert_eq!(network(ip.parse().unwrap()).to_string(), net, "{ip}");
        }
    }

    #[test]
    fn outcomes_name_the_refusal_else_the_status() {
        assert_eq!(outcome(Some("revoked_token"), 401), "revoked_token");
        for (status, label) in [
            (201, "2xx"),
            (308, "3xx"),
            (400, "400"),
            (409, "409"),
            (422, "422"),
            (418, "4xx"),
            (503, "5xx"),
            (0, "aborted"),
        ] {
            assert_eq!(outcome(None, status), label, "{status}");
        }
    }

    #[test]
    fn requests_add_up_per_minute_class_and_outcome_across_shards() {
        let recorder = Recorder::new(2);
        let t = 500_000 * 3600;
        recorder.record(0, &seen("app-1", t + 1, "203.0.113.1", "2xx"));
        recorder.record(1, &seen("app-1", t + 59, "203.0.113.2", "2xx"));
        recorder.record(1, &seen("app-1", t + 60, "198.51.100.1", "422"));
        recorder.record(0, &seen("app-2", t + 5, "203.0.113.1", "revoked_token"));
        let mut rows = recorder.take();
        rows.usage.sort_by_key(|r| (r.id.clone(), r.minute));
        let got: Vec<_> = rows
            .usage
            .iter()
            .map(|r| {
                (
                    r.id.as_str(),
                    r.minute - t,
                    r.outcome.as_str(),
                    r.requests,
                    r.bytes_in,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("app-1", 0, "2xx", 2, 3000),
                ("app-1", 60, "422", 1, 1500),
                ("app-2", 0, "revoked_token", 1, 1500)
            ]
        );
        let mut networks: Vec<_> = rows
            .networks
            .iter()
            .map(|n| (n.id.as_str(), n.network.as_str(), n.requests))
            .collect();
        networks.sort();
        assert_eq!(
            networks,
            [
                ("app-1", "198.51.100.0/24", 1),
                ("app-1", "203.0.113.0/24", 2),
                ("app-2", "203.0.113.0/24", 1)
            ]
        );
        let app1 = rows.last_used.iter().find(|l| l.id == "app-1").unwrap();
        assert_eq!(
            (app1.at_ms / 1000 - t, app1.network.as_str()),
            (60, "198.51.100.0/24")
        );
        assert_eq!(app1.user_agent.as_deref(), Some("operator-client/1.0"));
        assert!(recorder.take().is_empty(), "taken rows are gone");
    }

    #[test]
    fn one_id_under_two_kinds_is_two_credentials() {
        let recorder = Recorder::new(1);
        recorder.record(0, &seen("same", 60, "203.0.113.1", "2xx"));
        recorder.record(
            0,
            &Seen {
                kind: CredentialKind::Session,
                ..seen("same", 60, "203.0.113.1", "2xx")
            },
        );
        let rows = recorder.take();
        let mut subjects: Vec<_> = rows.usage.iter().map(|r| r.subject.as_str()).collect();
        subjects.sort();
        assert_eq!(subjects, ["application", "user"]);
    }

    #[test]
    fn networks_named_per_credential_are_bounded() {
        let recorder = Recorder::new(1);
        for i in 0..(MAX_NETWORKS as u32 + 50) {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + (i << 8));
            recorder.record(0, &seen("copied", 3600, &ip.to_string(), "2xx"));
        }
        let rows = recorder.take();
        assert_eq!(rows.networks.len(), MAX_NETWORKS);
        assert_eq!(rows.usage[0].requests, MAX_NETWORKS as u64 + 50);
    }

    #[test]
    fn rows_are_cut_into_numbered_batches() {
        let row = |i: usize| UsageRow {
            subject: Subject::Application,
            id: format!("app-{i}"),
            operator_id: None,
            minute: 0,
            class: "default".into(),
            outcome: "2xx".into(),
            requests: 1,
            bytes_in: 0,
            bytes_out: 0,
        };
        let rows = Rows {
            usage: (0..MAX_ROWS_PER_BATCH * 2 + 3).map(row).collect(),
            ..Rows::default()
        };
        let mut next = 5;
        let batches = rows.into_batches("r1", &mut next);
        let shape: Vec<_> = batches.iter().map(|b| (b.seq, b.rows())).collect();
        assert_eq!(
            shape,
            [(5, MAX_ROWS_PER_BATCH), (6, MAX_ROWS_PER_BATCH), (7, 3)]
        );
        assert_eq!(next, 8);
        assert!(batches.iter().all(|b| b.replica == "r1"));
        assert!(Rows::default().into_batches("r1", &mut next).is_empty());
    }

    #[test]
    fn the_queue_drops_its_oldest_batches_past_its_bound() {
        let batch = |seq: u64, rows: usize| Batch {
            seq,
            last_used: (0..rows)
                .map(|i| LastUsedRow {
                    subject: Subject::User,
                    id: i.to_string(),
                    operator_id: None,
                    at_ms: 0,
                    network: String::new(),
                    user_agent: None,
                })
                .collect(),
            ..Batch::default()
        };
        let mut queue = Queue::default();
        let now = Instant::now();
        assert_eq!(queue.push(batch(1, 4), now, 10), 0);
        assert_eq!(queue.push(batch(2, 4), now, 10), 0);
        assert_eq!(queue.push(batch(3, 4), now, 10), 4, "the oldest goes");
        assert_eq!(queue.front().unwrap().1.seq, 2);
        assert_eq!(queue.rows(), 8);
        queue.pop();
        queue.pop();
        assert!(queue.is_empty());
        assert_eq!(queue.rows(), 0);
    }
}
