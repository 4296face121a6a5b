//! PostgreSQL crashes under load (issue 26): a private server (`tests::PgServer`) serves
//! both services; journeys and sign-ins go through the gateway without pause while it is
//! killed (SIGKILL) and restarted. Every journey answered 201 is stored; every answer is a
//! 201 (200 for sign-ins) or the documented 503 `database_unavailable` with `Retry-After`,
//! never a 500 nor a wait past the gateway's upstream timeout; the services recover by
//! themselves once PostgreSQL is back.

use reqwest::Method;
use rpc_service::db::DatabaseSettings;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tests::{ADMIN_EMAIL, ADMIN_PASSWORD, Mode, Options, PgServer, Stack, journey};

/// Concurrent clients per kind of load.
const CLIENTS: usize = 3;
/// Longer than any answer may take: a request still waiting then is a hang.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// One answer (or a failure to get one).
#[derive(Debug, Clone)]
struct Answer {
    /// The journey's `operator_journey_id` (empty for sign-ins).
    id: String,
    sent: Instant,
    took: Duration,
    /// `None`: no HTTP answer (connection error, client timeout).
    status: Option<u16>,
    retry_after: Option<String>,
    body: Value,
}

type Log = Arc<Mutex<Vec<Answer>>>;

/// A journey no other journey of the test shares a person with, so terms never refuse it.
fn unique_journey(id: &str) -> Value {
    let mut body = journey(id);
    let key = |who: &str| {
        let hex = format!("{:x}", hash64(&format!("{who}/{id}")));
        hex.repeat(4)[..64].to_owned()
    };
    body["driver"]["identity"]["identity_key"] = json!(key("driver"));
    body["driver"]["identity"]["operator_user_id"] = json!(format!("driver-{id}"));
    body["passenger"]["identity"]["identity_key"] = json!(key("passenger"));
    body["passenger"]["identity"]["operator_user_id"] = json!(format!("passenger-{id}"));
    body
}

/// A 64-bit hash of `s` (16 hex digits once formatted).
fn hash64(s: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish() | (1 << 63)
}

async fn send(request: reqwest::RequestBuilder, id: String, log: &Log) -> Option<u16> {
    let sent = Instant::now();
    let (status, retry_after, body) = match request.timeout(CLIENT_TIMEOUT).send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let retry_after = (response.headers().get("retry-after"))
                .map(|v| v.to_str().unwrap_or_default().to_owned());
            let text = response.text().await.unwrap_or_default();
            let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
            (Some(status), retry_after, body)
        }
        Err(e) => (None, None, Value::String(e.to_string())),
    };
    let answer = Answer {
        id,
        sent,
        took: sent.elapsed(),
        status,
        retry_after,
        body,
    };
    log.lock().unwrap().push(answer);
    status
}

fn count(log: &Log, since: Instant, status: u16) -> usize {
    let log = log.lock().unwrap();
    (log.iter())
        .filter(|a| a.sent >= since && a.status == Some(status))
        .count()
}

/// Waits until `check` holds, polling; panics with `what` after `within`.
async fn until(within: Duration, what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the log says, for the failure messages and the report.
fn summary(name: &str, log: &[Answer]) -> String {
    let mut by_status = std::collections::BTreeMap::<String, usize>::new();
    for a in log {
        let key = a.status.map_or("no answer".into(), |s| s.to_string());
        *by_status.entry(key).or_default() += 1;
    }
    let longest = log.iter().map(|a| a.took).max().unwrap_or_default();
    format!("{name}: {by_status:?}, longest {longest:?}")
}

/// Checks one service's answers: `ok` or the documented 503, never a wait past `bound`.
fn check_answers(name: &str, log: &[Answer], ok: u16, bound: Duration) {
    let summary = summary(name, log);
    for a in log {
        match a.status {
            Some(s) if s == ok => {}
            Some(503) => {
                assert_eq!(
                    a.body,
                    json!({"id": 1, "jsonrpc": "2.0", "error": {"code": -32603,
                        "message": "Service Unavailable", "data": "database_unavailable"}}),
                    "{name}: a 503 in the documented shape ({summary})"
                );
                let retry: u64 = (a.retry_after.as_deref())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{name}: a 503 says when to retry ({summary})"));
                assert!(retry >= 1, "{name}: Retry-After {retry}");
            }
            other => panic!(
                "{name}: {ok} or 503 only, got {other:?} after {:?}: {} ({summary})",
                a.took, a.body
            ),
        }
        assert!(
            a.took < bound,
            "{name}: an answer took {:?}, past the gateway's upstream timeout {bound:?} \
             ({summary})",
            a.took
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_crash_answers_503_then_recovers_without_restarts() {
    let mut pg = PgServer::start()
        .await
        .expect("a private PostgreSQL starts");
    let options = Options {
        databases: Some((
            DatabaseSettings::new(pg.url(), Some("auth")),
            DatabaseSettings::new(pg.url(), Some("registry")),
        )),
        ..Options::default()
    };
    let stack = Arc::new(Stack::start_with(Mode::Production, options).await.unwrap());
    let admin = stack.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let (_, op_admin) = stack.operator_with_admin(&admin).await.unwrap();
    let token = stack.application_token(&op_admin).await.unwrap();
    let bound = Duration::from_secs(gateway::Settings::default().upstream_read_timeout_secs);

    let stop = Arc::new(AtomicBool::new(false));
    let journeys: Log = Arc::default();
    let sign_ins: Log = Arc::default();
    let mut clients = Vec::new();
    for n in 0..CLIENTS {
        let (s, halt, log, token) = (stack.clone(), stop.clone(), journeys.clone(), token.clone());
        clients.push(tokio::spawn(async move {
            for i in 0.. {
                if halt.load(Ordering::Relaxed) {
                    break;
                }
                let id = format!("crash-{n}-{i}");
                let request = (s.request(Method::POST, "/v3/journeys"))
                    .bearer_auth(&token)
                    .json(&unique_journey(&id));
                if send(request, id, &log).await != Some(201) {
                    // A client honouring Retry-After waits; the test only paces itself.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
        let (s, halt, log) = (stack.clone(), stop.clone(), sign_ins.clone());
        clients.push(tokio::spawn(async move {
            while !halt.load(Ordering::Relaxed) {
                let request = (s.request(Method::POST, "/api/v1/auth/sign_in"))
                    .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}));
                send(request, String::new(), &log).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }

    let start = Instant::now();
    let minute = Duration::from_secs(60);
    until(minute, "journeys are stored before the crash", || {
        count(&journeys, start, 201) >= 20 && count(&sign_ins, start, 200) >= 5
    })
    .await;

    pg.kill();
    let killed = Instant::now();
    // Keep sending until each service has answered several requests sent after the crash
    // (and a few seconds have passed).
    let answered_since = |log: &Log| {
        let log = log.lock().unwrap();
        (log.iter()).filter(|a| a.sent >= killed).count()
    };
    until(minute, "requests are answered during the outage", || {
        answered_since(&journeys) >= 10 && answered_since(&sign_ins) >= 5
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Both services: not ready (their balancers stop sending), still alive (no restart).
    for addr in [stack.auth_addr, stack.registry_addr] {
        let status = |path: &'static str| {
            let url = format!("http://{addr}{path}");
            let http = stack.http.clone();
            async move { http.get(url).send().await.unwrap().status().as_u16() }
        };
        assert_eq!(
            status("/health").await,
            503,
            "{addr} ready without its database"
        );
        assert_eq!(status("/health/live").await, 200, "{addr} not alive");
    }

    pg.resume().await.expect("PostgreSQL starts again");
    let resumed = Instant::now();
    until(
        minute,
        "ingestion and sign-ins recover by themselves",
        || count(&journeys, resumed, 201) >= 20 && count(&sign_ins, resumed, 200) >= 5,
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }

    let journeys = journeys.lock().unwrap().clone();
    let sign_ins = sign_ins.lock().unwrap().clone();
    // The outage was real: requests sent while PostgreSQL was down were refused.
    let during = |log: &[Answer]| {
        (log.iter())
            .filter(|a| a.sent >= killed && a.sent + a.took <= resumed)
            .filter(|a| a.status == Some(503))
            .count()
    };
    eprintln!(
        "{}\n{}",
        summary("journeys", &journeys),
        summary("sign-ins", &sign_ins)
    );
    assert!(during(&journeys) > 0, "{}", summary("journeys", &journeys));
    assert!(during(&sign_ins) > 0, "{}", summary("sign-ins", &sign_ins));
    check_answers("journeys", &journeys, 201, bound);
    check_answers("sign-ins", &sign_ins, 200, bound);

    // Every journey answered 201 is stored.
    let created: HashSet<String> = (journeys.iter())
        .filter(|a| a.status == Some(201))
        .map(|a| a.id.clone())
        .collect();
    let pool = sqlx::PgPool::connect(&pg.url()).await.unwrap();
    let stored: HashSet<String> =
        sqlx::query_scalar("SELECT operator_journey_id FROM registry.journeys")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    pool.close().await;
    let lost: Vec<&String> = created.difference(&stored).collect();
    assert!(lost.is_empty(), "answered 201 but not stored: {lost:?}");

    match Arc::try_unwrap(stack) {
        Ok(stack) => stack.stop().await,
        Err(_) => panic!("the clients hold no stack any more"),
    }
}
