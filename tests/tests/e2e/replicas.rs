//! Every service as two replicas, each a process of the real binary as a cluster runs it, on
//! the machine's PostgreSQL (a schema per service) and Redis (a key prefix): two registries,
//! two auth-services, two gateways balancing over both (pingora's load balancer with health
//! checks). Under continuous ingestion through both gateways, one replica of each service is
//! killed (SIGKILL) and started again in turn; the test checks that
//!
//! - every journey answered 201 is stored, and only requests in flight on a killed replica
//!   fail (no journey is refused by a replica that is still up);
//! - the terms decisions are exact when one person's journeys reach both registries at once
//!   (duplicates: exactly one 201; the fifth trip of a day and a couple's trips 30 min apart:
//!   refused as if they had come one after the other);
//! - a revocation made through either auth-service is refused by both gateways soon after
//!   (the bound asserted is loose, 5 s; the time measured is printed and in
//!   `gateway_blacklist_propagation_seconds`);
//! - a key rotation made through one auth-service is honoured by both gateways whichever
//!   replica they fetch the JWKS from;
//! - the sign-in throttle counts per replica: with two replicas a login and address get at
//!   most twice `MAX_FAILURES` attempts a minute (docs/operations.md, "Replicas").
//!
//! That lifecycle jobs are shared and done once across registries is
//! `registry/tests/api/jobs.rs` (two runners on one database, and a dead runner's jobs).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tests::{ADMIN_EMAIL, ADMIN_PASSWORD, CEE_TEST_KEY, Via, database_url, eventually, journey};

/// How long a propagating effect (health checks, usage records) gets.
const SETTLE: Duration = Duration::from_secs(15);

/// One replica: its binary, its settings (environment), its process while it runs.
struct Replica {
    name: String,
    binary: PathBuf,
    env: Vec<(String, String)>,
    dir: PathBuf,
    /// The URL whose `/health` says it is ready.
    health: String,
    child: Option<Child>,
}

impl Replica {
    fn start(&mut self) {
        assert!(self.child.is_none(), "{} already runs", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{}.log", self.name)))
            .unwrap();
        let child = Command::new(&self.binary)
            .current_dir(&self.dir)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", self.binary.display()));
        self.child = Some(child);
    }

    /// SIGKILL: no graceful stop, connections reset, requests in flight lost.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn wait_ready(&self, http: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let answer = http.get(&self.health).send().await;
            if answer.is_ok_and(|a| a.status() == 200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready: see {}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join(format!("{}.log", self.name)));
        let text = text.unwrap_or_default();
        text.lines().rev().take(20).collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The workspace's binary `name`, built beside this test: `scripts/test.sh` runs
/// `cargo build --workspace --bins` first, since a test binary brings only its own package's.
fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

fn port() -> SocketAddr {
    test_ports::free_port()
}

struct Cluster {
    registries: Vec<Replica>,
    auths: Vec<Replica>,
    gateways: Vec<Replica>,
    urls: Vec<String>,
    admins: Vec<String>,
    schemas: [String; 2],
    dir: PathBuf,
}

impl Cluster {
    fn new() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("rpc-replicas-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let schemas = [format!("t{id}_auth"), format!("t{id}_registry")];
        let prefix = format!("test:{id}:");
        let redis =
            std::env::var("RPC_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let (auth_secret, registry_secret) = (
            format!("auth-service's assertion secret {id}"),
            format!("the registry's assertion secret {id}"),
        );
        let kek = auth_service::kek::generate_entry("replicas");
        let replica =
            |name: String, binary: &Path, health: String, env: Vec<(&str, String)>| Replica {
                name,
                binary: binary.to_owned(),
                env: env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
                dir: dir.clone(),
                health,
                child: None,
            };
        let (registry_bin, auth_bin, gateway_bin) = (
            binary("registry"),
            binary("auth-service"),
            binary("gateway"),
        );
        // Two replicas of an upstream, each on its own port; and their addresses.
        let two =
            |name: &str, binary: &Path, env: &dyn Fn(SocketAddr) -> Vec<(&'static str, String)>| {
                (0..2)
                    .map(|n| {
                        let listen = port();
                        let health = format!("http://{listen}/health");
                        let replica = replica(format!("{name}{n}"), binary, health, env(listen));
                        (replica, listen.to_string())
                    })
                    .unzip::<_, _, Vec<_>, Vec<_>>()
            };
        let exports = dir.join("exports").display().to_string();
        let (registries, registry_addrs) = two("registry", &registry_bin, &|listen| {
            vec![
                ("REGISTRY__LISTEN", listen.to_string()),
                ("REGISTRY__DATABASE__URL", database_url()),
                ("REGISTRY__DATABASE__SCHEMA", schemas[1].clone()),
                ("REGISTRY__ASSERTION_SECRET", registry_secret.clone()),
                ("REGISTRY__CEE__PRIVATE_KEY_PEM", CEE_TEST_KEY.into()),
                ("REGISTRY__EXPORTS__DIRECTORY", exports.clone()),
                ("REGISTRY__WORKER_THREADS", "1".into()),
            ]
        });
        let (auths, auth_addrs) = two("auth", &auth_bin, &|listen| {
            vec![
                ("AUTH_SERVICE__LISTEN", listen.to_string()),
                ("AUTH_SERVICE__DATABASE__URL", database_url()),
                ("AUTH_SERVICE__DATABASE__SCHEMA", schemas[0].clone()),
                ("AUTH_SERVICE__KEY_ENCRYPTION_KEYS", kek.clone()),
                ("AUTH_SERVICE__REDIS__URL", redis.clone()),
                ("AUTH_SERVICE__REDIS__PREFIX", prefix.clone()),
                ("AUTH_SERVICE__ASSERTION_SECRET", auth_secret.clone()),
                ("RPC_BOOTSTRAP_ADMIN_EMAIL", ADMIN_EMAIL.into()),
                ("RPC_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD.into()),
            ]
        });
        let (mut urls, mut admins) = (Vec::new(), Vec::new());
        let gateways = (0..2)
            .map(|n| {
                let (listen, admin) = (port(), port());
                urls.push(format!("http://{listen}"));
                admins.push(format!("http://{admin}"));
                let path = |name: &str| dir.join(format!("{name}{n}")).display().to_string();
                let mut env = vec![
                    ("GATEWAY__LISTEN", listen.to_string()),
                    ("GATEWAY__ADMIN_LISTEN", admin.to_string()),
                    ("GATEWAY__AUTH_SERVICE", auth_addrs.join(",")),
                    ("GATEWAY__REGISTRY", registry_addrs.join(",")),
                    ("GATEWAY__BALANCING__HEALTH_CHECK_MS", "200".into()),
                    (
                        "GATEWAY__ASSERTION_SECRETS__AUTH_SERVICE",
                        auth_secret.clone(),
                    ),
                    (
                        "GATEWAY__ASSERTION_SECRETS__REGISTRY",
                        registry_secret.clone(),
                    ),
                    ("GATEWAY__REDIS__URL", redis.clone()),
                    ("GATEWAY__REDIS__PREFIX", prefix.clone()),
                    ("GATEWAY__JWKS_RELOAD_SECS", "1".into()),
                    ("GATEWAY__USAGE__FLUSH_SECS", "1".into()),
                    ("GATEWAY__SERVER__THREADS", "1".into()),
                    ("GATEWAY__SERVER__GRACE_PERIOD_SECONDS", "0".into()),
                    (
                        "GATEWAY__SERVER__GRACEFUL_SHUTDOWN_TIMEOUT_SECONDS",
                        "1".into(),
                    ),
                    ("GATEWAY__SERVER__PID_FILE", path("gateway.pid")),
                    ("GATEWAY__SERVER__UPGRADE_SOCK", path("upgrade.sock")),
                ];
                // The limits are not what this test is about (tests/tests/e2e/rate_limits.rs).
                for class in [
                    "journeys_write",
                    "journeys_read",
                    "cee",
                    "access_token",
                    "manage",
                    "default",
                ] {
                    let key: &'static str = Box::leak(
                        format!("GATEWAY__RATE_LIMITS__CLASSES__{}", class.to_uppercase())
                            .into_boxed_str(),
                    );
                    env.push((key, "100000000".into()));
                }
                replica(
                    format!("gateway{n}"),
                    &gateway_bin,
                    format!("http://{admin}/health"),
                    env,
                )
            })
            .collect();
        Self {
            registries,
            auths,
            gateways,
            urls,
            admins,
            schemas,
            dir,
        }
    }

    async fn metrics(&self, http: &reqwest::Client, n: usize) -> String {
        let url = format!("{}/metrics", self.admins[n]);
        match http.get(url).send().await {
            Ok(answer) => answer.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Whether gateway `n` sees `healthy` replicas of `upstream` passing their checks.
    async fn sees(&self, http: &reqwest::Client, n: usize, upstream: &str, healthy: f64) -> bool {
        let text = self.metrics(http, n).await;
        let series =
            format!("gateway_upstream_replicas{{state=\"healthy\",upstream=\"{upstream}\"}}");
        tests::metric(&text, &series) == Some(healthy)
    }

    /// Each registry's journey submissions so far (`registry_journeys_received_total`, every
    /// outcome).
    async fn received(&self, http: &reqwest::Client) -> Vec<f64> {
        let mut counts = Vec::new();
        for registry in &self.registries {
            let url = registry.health.replace("/health", "/metrics");
            let text = http.get(url).send().await.unwrap().text().await.unwrap();
            let total = (text.lines())
                .filter(|l| l.starts_with("registry_journeys_received_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            counts.push(total);
        }
        counts
    }

    async fn drop_schemas(&self) {
        if let Ok(pool) = sqlx::PgPool::connect(&database_url()).await {
            for schema in &self.schemas {
                let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
                let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&pool).await;
            }
        }
    }
}

/// A journey of its own driver and passenger (so it meets no other in the terms), or of the
/// given identity keys.
fn journey_of(id: &str, driver: &str, passenger: &str, phone_suffix: u32) -> Value {
    let mut journey = journey(id);
    journey["operator_trip_id"] = json!(format!("trip-{id}"));
    journey["driver"]["identity"]["identity_key"] = json!(driver);
    journey["driver"]["identity"]["operator_user_id"] = json!(format!("d-{driver}"));
    journey["driver"]["identity"]["phone"] =
        json!(format!("+336{:08}", phone_suffix % 100_000_000));
    journey["passenger"]["identity"]["identity_key"] = json!(passenger);
    journey["passenger"]["identity"]["operator_user_id"] = json!(format!("p-{passenger}"));
    journey["passenger"]["identity"]["phone"] =
        json!(format!("+337{:08}", (phone_suffix / 7) % 100_000_000));
    journey
}

fn key() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

async fn post(
    via: Via<'_>,
    token: &str,
    body: &Value,
) -> Result<(StatusCode, Value), reqwest::Error> {
    let answer = via
        .request(Method::POST, "/v3/journeys")
        .bearer_auth(token)
        .json(body)
        .timeout(Duration::from_secs(20))
        .send()
        .await?;
    let status = answer.status();
    let body = answer.json().await.unwrap_or(Value::Null);
    Ok((status, body))
}

/// Sends `journeys` all at once, alternately through each gateway; the statuses and bodies.
async fn all_at_once(
    cluster: &Cluster,
    http: &reqwest::Client,
    token: &str,
    journeys: Vec<Value>,
) -> Vec<(StatusCode, Value)> {
    let sends = journeys.iter().enumerate().map(|(n, body)| {
        let via = Via {
            http,
            url: &cluster.urls[n % 2],
        };
        async move { post(via, token, body).await.expect("both gateways run") }
    });
    futures_util::future::join_all(sends).await
}

fn count(answers: &[(StatusCode, Value)], status: StatusCode) -> usize {
    answers.iter().filter(|(s, _)| *s == status).count()
}

/// What the ingestion workers saw.
#[derive(Default)]
struct Ingested {
    /// Answered 201: must be stored.
    created: Vec<String>,
    /// Anything else, by kind, with the journey ids.
    failed: BTreeMap<String, Vec<String>>,
}

/// Posts journeys of new people through gateway `worker % 2` until `stop`.
async fn ingest(
    http: reqwest::Client,
    url: String,
    token: String,
    worker: usize,
    stop: tokio::sync::watch::Receiver<bool>,
    seen: Arc<Mutex<Ingested>>,
) {
    let mut n = 0u32;
    while !*stop.borrow() {
        n += 1;
        let id = format!("w{worker}-{n}");
        let body = journey_of(&id, &key(), &key(), worker as u32 * 1_000_000 + n);
        let outcome = post(
            Via {
                http: &http,
                url: &url,
            },
            &token,
            &body,
        )
        .await;
        let mut seen = seen.lock().unwrap();
        match outcome {
            Ok((StatusCode::CREATED, _)) => seen.created.push(id),
            Ok((status, body)) => {
                let code = body["error"]["data"].to_string();
                seen.failed
                    .entry(format!("{status} {code}"))
                    .or_default()
                    .push(id);
            }
            Err(e) if e.is_connect() => {
                // This worker's gateway is down: a client's balancer would send elsewhere.
                drop(seen);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => seen
                .failed
                .entry(format!("transport: {e}"))
                .or_default()
                .push(id),
        }
    }
}

/// Polls until `token` is refused (401) by both gateways; the time it took.
async fn refused_everywhere(cluster: &Cluster, http: &reqwest::Client, token: &str) -> Duration {
    let start = Instant::now();
    for url in &cluster.urls {
        loop {
            let via = Via { http, url };
            let status = via
                .request(Method::GET, "/v3/journeys?status=pending")
                .bearer_auth(token)
                .send()
                .await
                .map(|a| a.status());
            if status.is_ok_and(|s| s == StatusCode::UNAUTHORIZED) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{url} still accepts a revoked token"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    start.elapsed()
}

/// Revokes a new application token of `op_admin`'s operator through gateway 0 (so through
/// whichever auth-service replicas are up) and waits until both gateways refuse it.
async fn revoke_and_wait(
    cluster: &Cluster,
    http: &reqwest::Client,
    op_admin: &reqwest::header::HeaderMap,
) -> Duration {
    let via = Via {
        http,
        url: &cluster.urls[0],
    };
    let (token, uuid) = via.application(op_admin, "to revoke").await.unwrap();
    for url in &cluster.urls {
        let via = Via { http, url };
        let status = via
            .request(Method::GET, "/v3/journeys?status=pending")
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::OK, "{url}: a new token works");
    }
    let revoked = via
        .request(Method::DELETE, &format!("/applications/{uuid}"))
        .headers(op_admin.clone())
        .send()
        .await
        .unwrap();
    assert!(
        revoked.status().is_success(),
        "revocation: {}",
        revoked.status()
    );
    refused_everywhere(cluster, http, &token).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_as_two_replicas_under_ingestion_and_kills() {
    let http = reqwest::Client::new();
    let mut cluster = Cluster::new();
    // Both replicas of each upstream start at once: migrations and the first admin's
    // bootstrap race as they do in a rollout.
    for replica in cluster
        .registries
        .iter_mut()
        .chain(cluster.auths.iter_mut())
    {
        replica.start();
    }
    for replica in cluster.registries.iter().chain(cluster.auths.iter()) {
        replica.wait_ready(&http).await;
    }
    for gateway in cluster.gateways.iter_mut() {
        gateway.start();
    }
    for gateway in &cluster.gateways {
        gateway.wait_ready(&http).await;
    }
    for n in 0..2 {
        for upstream in ["registry", "auth-service"] {
            assert!(
                eventually(SETTLE, || cluster.sees(&http, n, upstream, 2.0)).await,
                "gateway {n} sees both {upstream} replicas healthy"
            );
        }
    }

    let via = Via {
        http: &http,
        url: &cluster.urls[0],
    };
    let admin = via.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let (_, op_admin) = via.operator_with_admin(&admin).await.unwrap();
    let token = via.application_token(&op_admin).await.unwrap();

    // Terms, with one person's journeys reaching both registries at once.
    let received_before = cluster.received(&http).await;
    let duplicates = all_at_once(
        &cluster,
        &http,
        &token,
        vec![journey_of("dup", &key(), &key(), 1); 10],
    )
    .await;
    assert_eq!(count(&duplicates, StatusCode::CREATED), 1, "{duplicates:?}");
    assert_eq!(
        count(&duplicates, StatusCode::CONFLICT),
        9,
        "{duplicates:?}"
    );

    let driver = key();
    let day: Vec<Value> = (0..8)
        .map(|n| journey_of(&format!("day-{n}"), &driver, &key(), 100 + n))
        .collect();
    let day = all_at_once(&cluster, &http, &token, day).await;
    assert_eq!(
        count(&day, StatusCode::CREATED),
        4,
        "four trips a day: {day:?}"
    );
    let refused: Vec<&Value> = day
        .iter()
        .filter(|(s, _)| *s == StatusCode::UNPROCESSABLE_ENTITY)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(refused.len(), 4, "{day:?}");
    for body in refused {
        let labels = &body["error"]["data"]["terms_violation_labels"];
        assert_eq!(labels, &json!(["too_many_trips_by_day"]), "{body}");
    }

    let (d, p) = (key(), key());
    let mut later = journey_of("couple-2", &d, &p, 300);
    let start = chrono::Utc::now() - chrono::Duration::minutes(50);
    later["start"]["datetime"] = json!(start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let couple = all_at_once(
        &cluster,
        &http,
        &token,
        vec![journey_of("couple-1", &d, &p, 300), later],
    )
    .await;
    assert_eq!(count(&couple, StatusCode::CREATED), 1, "{couple:?}");
    let refused = couple
        .iter()
        .find(|(s, _)| *s == StatusCode::UNPROCESSABLE_ENTITY)
        .expect("one refused");
    assert_eq!(
        refused.1["error"]["data"]["terms_violation_labels"],
        json!(["too_close_trips"])
    );
    // Both registries took part (each gateway balances over both).
    let received_after = cluster.received(&http).await;
    for n in 0..2 {
        assert!(
            received_after[n] > received_before[n],
            "registry {n} received none of them: {received_before:?} {received_after:?}"
        );
    }

    // Continuous ingestion, two workers per gateway, while replicas are killed in turn.
    let seen = Arc::new(Mutex::new(Ingested::default()));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let url = cluster.urls[worker % 2].clone();
            tokio::spawn(ingest(
                http.clone(),
                url,
                token.clone(),
                worker,
                stopped.clone(),
                seen.clone(),
            ))
        })
        .collect();
    let settle = || tokio::time::sleep(Duration::from_millis(1500));
    settle().await;
    let rounds = 2;
    let mut propagation = Vec::new();
    for n in 0..rounds {
        cluster.registries[n].kill();
        settle().await;
        cluster.registries[n].start();
        cluster.registries[n].wait_ready(&http).await;

        // A revocation served by the other auth-service alone (this one is down), then by
        // both once it is back.
        cluster.auths[n].kill();
        propagation.push(revoke_and_wait(&cluster, &http, &op_admin).await);
        cluster.auths[n].start();
        cluster.auths[n].wait_ready(&http).await;
        for g in 0..2 {
            assert!(eventually(SETTLE, || cluster.sees(&http, g, "auth-service", 2.0)).await);
        }
        propagation.push(revoke_and_wait(&cluster, &http, &op_admin).await);

        // A gateway: its own clients reconnect elsewhere (their balancer's job).
        cluster.gateways[n].kill();
        settle().await;
        cluster.gateways[n].start();
        cluster.gateways[n].wait_ready(&http).await;
    }
    settle().await;
    stop.send(true).unwrap();
    for worker in workers {
        worker.await.unwrap();
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    println!(
        "ingested {} journeys; failures {:?}; revocations refused everywhere after {:?}",
        seen.created.len(),
        seen.failed
            .iter()
            .map(|(k, v)| (k, v.len()))
            .collect::<BTreeMap<_, _>>(),
        propagation
    );
    assert!(
        seen.created.len() > 100,
        "ingestion went on: {}",
        seen.created.len()
    );
    // What fails is what was in flight on a killed replica, nothing else:
    // - an upstream replica: the requests it was serving, 502 `upstream_unavailable` (the
    //   gateway lost it mid-request), at most one per worker (2 upstream kills a round);
    // - a gateway: its clients' requests in flight and their idle kept-alive connections
    //   to it, reset (at most two per worker); once started again and until it has loaded
    //   the blacklist, 503 `blacklist_unavailable` (its `/health` is 503 meanwhile, so no
    //   balancer sends it traffic; these workers call it directly).
    let kinds = |prefix: &str| -> usize {
        (seen.failed.iter())
            .filter(|(kind, _)| kind.starts_with(prefix))
            .map(|(_, ids)| ids.len())
            .sum()
    };
    let (upstream_kills, gateway_kills) = (2 * rounds, rounds);
    assert!(kinds("502 ") <= 4 * upstream_kills, "{:?}", seen.failed);
    assert!(
        kinds("transport") <= 2 * 4 * gateway_kills,
        "{:?}",
        seen.failed
    );
    let accounted = kinds("502 Bad Gateway \"upstream_unavailable\"")
        + kinds("503 Service Unavailable \"blacklist_unavailable\"")
        + kinds("transport");
    let all: usize = seen.failed.values().map(Vec::len).sum();
    assert_eq!(accounted, all, "{:?}", seen.failed);

    // Every acknowledged journey is stored (read through either gateway, either registry).
    let stored = stored_ids(&cluster, &http, &token).await;
    let missing: Vec<&String> = seen
        .created
        .iter()
        .filter(|id| !stored.contains(*id))
        .collect();
    assert!(missing.is_empty(), "answered 201, not stored: {missing:?}");

    // Usage records: each gateway sends its batches to either auth-service (through the
    // kills: a batch refused by a dead replica is sent again), and the operator sees when
    // its token was last used.
    let last_used = || async {
        let listed: Value = via
            .request(Method::GET, "/applications")
            .headers(op_admin.clone())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (listed.as_array().into_iter().flatten())
            .any(|app| app["name"] == "backend" && app["last_used"]["at"].is_string())
    };
    assert!(
        eventually(SETTLE, last_used).await,
        "the ingestion token's last use is recorded"
    );

    // Keys: a rotation made through one auth-service; a token signed with the new key is
    // taken by both gateways at once, whichever replica each fetches the JWKS from.
    let rotated = via
        .request(Method::POST, "/admin/keys/rotate")
        .headers(admin.clone())
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert!(
        rotated.status().is_success(),
        "rotation: {}",
        rotated.status()
    );
    for attempt in 0..4 {
        let fresh = Via {
            http: &http,
            url: &cluster.urls[attempt % 2],
        }
        .sign_in(ADMIN_EMAIL, ADMIN_PASSWORD)
        .await
        .unwrap();
        for url in &cluster.urls {
            let status = Via { http: &http, url }
                .request(Method::GET, "/admin/operators")
                .headers(fresh.clone())
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(
                status,
                StatusCode::OK,
                "{url}: a token from after the rotation"
            );
        }
    }

    // The sign-in throttle counts per auth-service replica: 2 x MAX_FAILURES at most.
    let mut statuses = Vec::new();
    for attempt in 0..(4 * auth_service::throttle::MAX_FAILURES) {
        let answer = Via {
            http: &http,
            url: &cluster.urls[attempt % 2],
        }
        .request(Method::POST, "/api/v1/auth/sign_in")
        .json(&json!({"email": ADMIN_EMAIL, "password": "not the password"}))
        .send()
        .await
        .unwrap();
        statuses.push(answer.status().as_u16());
    }
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert!(
        (auth_service::throttle::MAX_FAILURES..=2 * auth_service::throttle::MAX_FAILURES)
            .contains(&checked),
        "{statuses:?}"
    );
    assert!(statuses.contains(&429), "{statuses:?}");

    for replica in cluster
        .gateways
        .iter_mut()
        .chain(&mut cluster.auths)
        .chain(&mut cluster.registries)
    {
        replica.kill();
    }
    cluster.drop_schemas().await;
    let _ = std::fs::remove_dir_all(&cluster.dir);
}

/// Every journey id of the operator whose token this is.
async fn stored_ids(cluster: &Cluster, http: &reqwest::Client, token: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for status in ["pending", "terms_violation_error"] {
        let mut page = 0;
        loop {
            let via = Via {
                http,
                url: &cluster.urls[page % 2],
            };
            let answer: Value = via
                .request(
                    Method::GET,
                    &format!(
                        "/v3/journeys?status={status}&limit=1000&offset={}",
                        page * 1000
                    ),
                )
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let rows = answer.as_array().cloned().unwrap_or_default();
            ids.extend(
                rows.iter()
                    .filter_map(|r| r["operator_journey_id"].as_str().map(str::to_owned)),
            );
            if rows.len() < 1000 {
                break;
            }
            page += 1;
        }
    }
    ids
}
