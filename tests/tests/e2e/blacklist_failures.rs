//! The blacklist under failure (CONTRACT §5, §9): several gateway replicas, Redis stopped,
//! restarted empty or flushed, a gateway restarted with no copy to load.
//!
//! Tests that stop Redis run their own `redis-server` ([`RedisServer`]); the machine's shared
//! Redis is only ever touched under the test's own key prefix.

use reqwest::header::HeaderMap;
use reqwest::{Method, Response};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tests::{ADMIN_EMAIL, ADMIN_PASSWORD, Mode, Options, RedisServer, Stack, metric};

/// The journeys listing with `token`, through replica `n`.
async fn list_with(stack: &Stack, n: usize, token: &str) -> Response {
    stack
        .request_to(n, Method::GET, "/v3/journeys?status=pending")
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// Status and gateway reason code of a listing with `token` through replica `n`.
async fn outcome(stack: &Stack, n: usize, token: &str) -> (u16, Option<String>) {
    let response = list_with(stack, n, token).await;
    let reason = response
        .headers()
        .get("x-gateway-error")
        .map(|v| v.to_str().unwrap().to_owned());
    (response.status().as_u16(), reason)
}

fn revoked() -> (u16, Option<String>) {
    (401, Some("revoked_token".into()))
}

/// Blacklists a raw token through replica `n`; returns the answer's status.
async fn blacklist_token(stack: &Stack, n: usize, admin: &HeaderMap, token: &str) -> u16 {
    stack
        .request_to(n, Method::POST, "/admin/blacklist")
        .headers(admin.clone())
        .json(&json!({"kind": "token", "value": token, "reason": "failure test"}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// An operator with two application tokens, and the registry admin's triple.
async fn setup(stack: &Stack) -> (HeaderMap, String, String) {
    let admin = stack.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let (_, op_admin) = stack.operator_with_admin(&admin).await.unwrap();
    let a = stack.application_token(&op_admin).await.unwrap();
    let b = stack.application_token(&op_admin).await.unwrap();
    (admin, a, b)
}

/// Waits (up to `within`) until `token` is refused as revoked by every replica.
async fn refused_everywhere(stack: &Stack, token: &str, within: Duration) -> bool {
    stack
        .eventually(within, || async {
            for n in 0..stack.gateways.len() {
                if outcome(stack, n, token).await != revoked() {
                    return false;
                }
            }
            true
        })
        .await
}

async fn blacklisting_reaches_the_other_replica_within_a_second(mode: Mode) {
    let options = Options {
        gateways: 2,
        ..Options::default()
    };
    let stack = Stack::start_with(mode, options).await.unwrap();
    let (admin, token, _) = setup(&stack).await;
    assert_eq!(outcome(&stack, 1, &token).await.0, 200);

    assert_eq!(blacklist_token(&stack, 0, &admin, &token).await, 201);
    let blacklisted = Instant::now();
    let refused = stack
        .eventually(Duration::from_secs(1), || async {
            outcome(&stack, 1, &token).await == revoked()
        })
        .await;
    assert!(
        refused,
        "replica B still accepts the token {:?} after the blacklisting on replica A",
        blacklisted.elapsed()
    );
    // Replica A learns of it from the same feed, not from the request it forwarded: it may
    // hear of it a moment after B does, and is held to the same second.
    assert!(
        refused_everywhere(&stack, &token, Duration::from_secs(1)).await,
        "replica A still accepts the token {:?} after its blacklisting",
        blacklisted.elapsed()
    );

    let metrics = stack.gateway_metrics(1).await.unwrap();
    let observed = metric(&metrics, "gateway_blacklist_propagation_seconds_count").unwrap();
    assert!(observed >= 1.0, "propagation observed: {metrics}");
    let total = metric(&metrics, "gateway_blacklist_propagation_seconds_sum").unwrap();
    assert!(total < observed, "each change took well under a second");
    assert_eq!(metric(&metrics, "gateway_blacklist_feed_up"), Some(1.0));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blacklisting_reaches_the_other_replica_within_a_second_production() {
    blacklisting_reaches_the_other_replica_within_a_second(Mode::Production).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blacklisting_reaches_the_other_replica_within_a_second_embedded() {
    blacklisting_reaches_the_other_replica_within_a_second(Mode::Embedded).await;
}

/// What the traffic loop saw that it must not.
#[derive(Default)]
struct Violations(std::sync::Mutex<Vec<String>>);

/// Sends the good and the revoked token to every replica every 100 ms (well under any rate
/// limit) until `done`; records a good token not answered 200 and a revoked one not refused.
fn traffic(
    stack: Arc<Stack>,
    good: String,
    bad: String,
    done: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(usize, Violations)> {
    tokio::spawn(async move {
        let seen = Violations::default();
        let mut rounds = 0;
        while !done.load(Ordering::Relaxed) {
            for n in 0..stack.gateways.len() {
                let got = outcome(&stack, n, &good).await;
                if got.0 != 200 {
                    seen.0
                        .lock()
                        .unwrap()
                        .push(format!("good token on {n}: {got:?}"));
                }
                let got = outcome(&stack, n, &bad).await;
                if got != revoked() {
                    seen.0
                        .lock()
                        .unwrap()
                        .push(format!("revoked token on {n}: {got:?}"));
                }
            }
            rounds += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (rounds, seen)
    })
}

async fn health_status(stack: &Stack, n: usize) -> String {
    let health = stack.gateway_health(n).await.unwrap();
    health["status"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_and_restarted_empty_under_traffic_causes_no_401_and_loses_no_revocation() {
    let mut redis = RedisServer::start().await.unwrap();
    let options = Options {
        redis_url: Some(redis.url()),
        gateways: 2,
        ..Options::default()
    };
    let stack = Arc::new(Stack::start_with(Mode::Production, options).await.unwrap());
    let (admin, good, before) = setup(&stack).await;
    let op_admin = {
        let (_, op_admin) = stack.operator_with_admin(&admin).await.unwrap();
        op_admin
    };
    let during = stack.application_token(&op_admin).await.unwrap();
    assert_eq!(blacklist_token(&stack, 0, &admin, &before).await, 201);
    assert!(refused_everywhere(&stack, &before, Duration::from_secs(1)).await);

    let done = Arc::new(AtomicBool::new(false));
    let load = traffic(stack.clone(), good.clone(), before.clone(), done.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;

    redis.kill();
    for n in 0..2 {
        let degraded = stack
            .eventually(Duration::from_secs(5), || async {
                health_status(&stack, n).await == "degraded"
            })
            .await;
        assert!(
            degraded,
            "replica {n} says it is degraded while Redis is down"
        );
        let health = stack.gateway_health(n).await.unwrap();
        assert_eq!(health["blacklist"]["feed_up"], false, "{health}");
        assert_eq!(health["blacklist"]["loaded"], true, "{health}");
        let metrics = stack.gateway_metrics(n).await.unwrap();
        assert_eq!(metric(&metrics, "gateway_blacklist_feed_up"), Some(0.0));
        let errors = metrics
            .lines()
            .filter(|l| l.starts_with("gateway_blacklist_feed_errors_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
        assert!(errors >= 1.0, "feed failures counted: {metrics}");
    }
    // A revocation while Redis is down: recorded in the database, not published; the answer
    // says something went wrong, and the record stands.
    let status = blacklist_token(&stack, 0, &admin, &during).await;
    assert!(status >= 500, "publishing failed: {status}");
    let listed: Value = stack
        .request(Method::GET, "/admin/blacklist")
        .headers(admin.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    tokio::time::sleep(Duration::from_millis(1500)).await;

    redis.resume().await.unwrap();
    // auth-service rewrites the empty Redis from its database; gateways reload.
    assert!(
        refused_everywhere(&stack, &during, Duration::from_secs(8)).await,
        "the revocation made during the outage reached every replica"
    );
    for n in 0..2 {
        // Recovery, not its speed, is what this checks: a loaded machine may take a few
        // seconds to reconnect the feed.
        let ok = stack
            .eventually(Duration::from_secs(15), || async {
                health_status(&stack, n).await == "ok"
            })
            .await;
        let health = stack.gateway_health(n).await.unwrap();
        assert!(ok, "replica {n} is healthy again: {health}");
        let health = stack.gateway_health(n).await.unwrap();
        let age = health["blacklist"]["last_sync_age_seconds"].as_i64();
        assert!(age.is_some_and(|a| (0..=30).contains(&a)), "{health}");
        assert_eq!(health["blacklist"]["stale"], false, "{health}");
        let metrics = stack.gateway_metrics(n).await.unwrap();
        let age = metric(&metrics, "gateway_blacklist_last_sync_age_seconds");
        assert!(age.is_some_and(|a| (0.0..=30.0).contains(&a)), "{metrics}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    done.store(true, Ordering::Relaxed);
    let (rounds, seen) = load.await.unwrap();
    let seen = seen.0.into_inner().unwrap();
    assert!(rounds > 10, "traffic ran throughout ({rounds} rounds)");
    assert!(seen.is_empty(), "{seen:#?}");

    let (url, prefix) = stack.redis.clone().unwrap();
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let hash = format!("{prefix}blacklist");
    let marked: bool = redis::cmd("HEXISTS")
        .arg(&hash)
        .arg(blacklist::LOADED_FIELD)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(marked, "the fast copy is whole again");
    Arc::into_inner(stack).unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_fast_copy_is_rebuilt_and_revoked_tokens_stay_refused() {
    // The machine's Redis: only this test's keys are deleted. Reconciles every second, so
    // the replicas do look at the flushed copy.
    let options = Options {
        gateways: 2,
        gateway_settings: Some(|s| s.blacklist_reconcile_secs = 1),
        ..Options::default()
    };
    let stack = Stack::start_with(Mode::Production, options).await.unwrap();
    let (admin, good, bad) = setup(&stack).await;
    assert_eq!(blacklist_token(&stack, 0, &admin, &bad).await, 201);
    assert!(refused_everywhere(&stack, &bad, Duration::from_secs(1)).await);

    let (url, prefix) = stack.redis.clone().unwrap();
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let hash = format!("{prefix}blacklist");
    let deleted: i64 = redis::cmd("DEL")
        .arg(&hash)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(deleted, 1);

    // Over a few reconciles: the revoked token stays refused, the good one served, and the
    // copy comes back whole, rebuilt from the database.
    let until = Instant::now() + Duration::from_millis(2500);
    let mut rebuilt = false;
    while Instant::now() < until {
        for n in 0..2 {
            assert_eq!(outcome(&stack, n, &bad).await, revoked(), "replica {n}");
            assert_eq!(outcome(&stack, n, &good).await.0, 200, "replica {n}");
        }
        let fields: Vec<String> = redis::cmd("HKEYS")
            .arg(&hash)
            .query_async(&mut conn)
            .await
            .unwrap();
        rebuilt |= fields.iter().any(|f| f == blacklist::LOADED_FIELD)
            && fields.iter().any(|f| f.starts_with("jti:"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rebuilt, "auth-service rebuilt the fast copy within seconds");
    for n in 0..2 {
        let ok = stack
            .eventually(Duration::from_secs(3), || async {
                health_status(&stack, n).await == "ok"
            })
            .await;
        assert!(ok, "replica {n} follows the rebuilt copy");
    }
    stack.stop().await;
}

/// The attack of the security review (issue 26, finding 9): someone who can write to Redis
/// deletes a blacklist entry from the fast copy, marker left in place, and tells the gateways
/// it was removed. auth-service compares the copy with the database and puts it back.
#[tokio::test]
async fn an_entry_deleted_from_redis_comes_back_from_the_database() {
    let options = Options {
        auth_settings: Some(|s| s.blacklist.compare_secs = 1),
        gateway_settings: Some(|s| s.blacklist_reconcile_secs = 1),
        ..Options::default()
    };
    let stack = Stack::start_with(Mode::Production, options).await.unwrap();
    let (admin, good, bad) = setup(&stack).await;
    assert_eq!(blacklist_token(&stack, 0, &admin, &bad).await, 201);
    assert!(refused_everywhere(&stack, &bad, Duration::from_secs(1)).await);

    let (url, prefix) = stack.redis.clone().unwrap();
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let hash = format!("{prefix}blacklist");
    let fields: Vec<String> = redis::cmd("HKEYS")
        .arg(&hash)
        .query_async(&mut conn)
        .await
        .unwrap();
    let entry = fields
        .iter()
        .find(|f| f.starts_with("jti:"))
        .expect("the token's entry")
        .clone();
    let deleted: i64 = redis::cmd("HDEL")
        .arg(&hash)
        .arg(&entry)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(deleted, 1);

    // Within seconds the entry is back in Redis and the token refused, the other served.
    let back = stack
        .eventually(Duration::from_secs(10), || async {
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let present: bool = redis::cmd("HEXISTS")
                .arg(&hash)
                .arg(&entry)
                .query_async(&mut conn)
                .await
                .unwrap();
            present
        })
        .await;
    assert!(back, "auth-service put the deleted entry back");
    assert!(refused_everywhere(&stack, &bad, Duration::from_secs(3)).await);
    assert_eq!(outcome(&stack, 0, &good).await.0, 200);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_restarted_without_a_copy_to_load_refuses_with_503_until_it_has_one() {
    let mut redis = RedisServer::start().await.unwrap();
    let options = Options {
        redis_url: Some(redis.url()),
        gateways: 2,
        // auth-service checks the copy only hourly here, so Redis stays empty after its
        // restart until a publish finds the copy missing.
        auth_settings: Some(|s| {
            s.blacklist.republish_check_secs = 3600;
            s.blacklist.compare_secs = 3600;
        }),
        ..Options::default()
    };
    let mut stack = Stack::start_with(Mode::Production, options).await.unwrap();
    let (admin, good, bad) = setup(&stack).await;
    let other = {
        let (_, op_admin) = stack.operator_with_admin(&admin).await.unwrap();
        stack.application_token(&op_admin).await.unwrap()
    };
    assert_eq!(blacklist_token(&stack, 1, &admin, &bad).await, 201);
    assert!(refused_everywhere(&stack, &bad, Duration::from_secs(1)).await);

    // Replica 0 restarts while Redis is down: it has nothing to load.
    redis.kill();
    stack.stop_gateway(0).await;
    stack.start_gateway(0).await.unwrap();
    let unavailable = || async {
        let health = stack
            .http
            .get(format!("{}/health", stack.gateway_admins[0]))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 503, "not ready while it has no copy");
        let health: Value = health.json().await.unwrap();
        assert_eq!(health["status"], "unavailable", "{health}");
        assert_eq!(health["blacklist"]["loaded"], false, "{health}");
        // Not ready, yet alive: a liveness probe must not restart it for Redis's outage.
        let live = (stack.http)
            .get(format!("{}/health/live", stack.gateway_admins[0]))
            .send()
            .await
            .unwrap();
        assert_eq!(live.status(), 200);
        // The public /health says so too, for a balancer in front.
        let public = stack
            .request_to(0, Method::GET, "/health")
            .send()
            .await
            .unwrap();
        assert_eq!(public.status(), 503);
        let public: Value = public.json().await.unwrap();
        assert_eq!(public, json!({"status": "unavailable"}));
        for token in [&good, &bad] {
            let response = list_with(&stack, 0, token).await;
            assert_eq!(response.status(), 503);
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["data"], "blacklist_unavailable", "{body}");
            assert_eq!(body["error"]["code"], -32603, "{body}");
        }
    };
    unavailable().await;
    // Signing in does not depend on the blacklist.
    stack.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    // Replica 1 kept its copy and keeps serving from it.
    assert_eq!(outcome(&stack, 1, &bad).await, revoked());
    assert_eq!(outcome(&stack, 1, &good).await.0, 200);

    // Redis back, but empty: replica 0 reaches it, finds no copy, and still refuses.
    redis.resume().await.unwrap();
    let found_empty = stack
        .eventually(Duration::from_secs(5), || async {
            let metrics = stack.gateway_metrics(0).await.unwrap();
            metric(
                &metrics,
                "gateway_blacklist_feed_errors_total{kind=\"not_loaded\"}",
            )
            .is_some_and(|n| n >= 1.0)
        })
        .await;
    assert!(found_empty, "replica 0 found the copy missing");
    unavailable().await;

    // The next change finds the copy missing too: auth-service rebuilds it from the
    // database at once, and replica 0 loads it.
    assert_eq!(blacklist_token(&stack, 1, &admin, &other).await, 201);
    let loaded = stack
        .eventually(Duration::from_secs(5), || async {
            outcome(&stack, 0, &bad).await == revoked()
        })
        .await;
    assert!(loaded, "replica 0 loaded the rebuilt copy");
    assert!(refused_everywhere(&stack, &other, Duration::from_secs(1)).await);
    assert_eq!(outcome(&stack, 0, &good).await.0, 200);
    stack.wait_gateway_ready(0).await.unwrap();
    stack.stop().await;
}
