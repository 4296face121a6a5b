//! Rate limits across gateway replicas (CONTRACT §6): a limit holds across two replicas
//! sharing Redis, each operator has its own, and with Redis down each replica allows its
//! share, never answering 401 or 5xx because of it, then counts in Redis again once it is back.

use gateway::ratelimit::RouteClass;
use reqwest::Method;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tests::{ADMIN_EMAIL, ADMIN_PASSWORD, Mode, Options, RedisServer, Stack};

/// Journey reads: 40 a minute per operator; the store is left alone 3 s after a failure.
fn forty_reads_a_minute(gw: &mut gateway::Settings) {
    gw.rate_limits.classes.insert(RouteClass::JourneysRead, 40);
    gw.rate_limits.replicas = 2;
    gw.rate_limits.store_retry_secs = 3;
}

/// Waits, if needed, so the next 30 s stay inside one minute window (60 requests take a
/// second or two; a loaded CI machine may take ten).
async fn clear_of_a_window_edge() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if now % 60 >= 30 {
        tokio::time::sleep(Duration::from_secs(61 - now % 60)).await;
    }
}

/// An operator's application token.
async fn operator_token(stack: &Stack) -> String {
    let admin = stack.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let (_, op_admin) = stack.operator_with_admin(&admin).await.unwrap();
    stack.application_token(&op_admin).await.unwrap()
}

/// `GET /v3/journeys?status=pending` through replica `n`: (status, RateLimit-Limit, Retry-After present).
async fn read(stack: &Stack, n: usize, token: &str) -> (u16, String, bool) {
    let response = stack
        .request_to(n, Method::GET, "/v3/journeys?status=pending")
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    (
        response.status().as_u16(),
        header("ratelimit-limit").unwrap_or_default(),
        header("retry-after").is_some(),
    )
}

/// A counter's value in a replica's `/metrics` (0 when absent).
async fn metric(stack: &Stack, n: usize, series: &str) -> f64 {
    let text = stack.gateway_metrics(n).await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_holds_across_two_replicas_and_per_operator() {
    let options = Options {
        gateways: 2,
        gateway_settings: Some(forty_reads_a_minute),
        ..Options::default()
    };
    let stack = Stack::start_with(Mode::Production, options).await.unwrap();
    let token = operator_token(&stack).await;
    let other = operator_token(&stack).await;
    clear_of_a_window_edge().await;

    let (mut allowed, mut refused) = (0, 0);
    for i in 0..60 {
        let (status, limit, retry_after) = read(&stack, i % 2, &token).await;
        assert_eq!(limit, "40", "request {i}");
        match status {
            200 => allowed += 1,
            429 => {
                assert!(retry_after, "a 429 says when to retry");
                refused += 1;
            }
            other => panic!("request {i}: {other}"),
        }
    }
    assert_eq!(
        (allowed, refused),
        (40, 20),
        "40 a minute across both replicas"
    );
    // Another operator has its own limit.
    assert_eq!(read(&stack, 1, &other).await.0, 200);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_each_replica_allows_its_share_and_counts_in_redis_once_back() {
    let mut redis = RedisServer::start().await.unwrap();
    let options = Options {
        redis_url: Some(redis.url()),
        gateways: 2,
        gateway_settings: Some(forty_reads_a_minute),
        ..Options::default()
    };
    let stack = Stack::start_with(Mode::Production, options).await.unwrap();
    let token = operator_token(&stack).await;
    let later = operator_token(&stack).await;
    clear_of_a_window_edge().await;

    redis.kill();
    for n in 0..2 {
        let mut statuses = Vec::new();
        for _ in 0..30 {
            statuses.push(read(&stack, n, &token).await.0);
        }
        let allowed = statuses.iter().filter(|s| **s == 200).count();
        assert!(
            statuses.iter().all(|s| [200, 429].contains(s)),
            "replica {n}: only 200 or 429 while Redis is down: {statuses:?}"
        );
        assert_eq!(
            allowed, 20,
            "replica {n} allows its share, 40 / 2: {statuses:?}"
        );
        let health = stack.gateway_health(n).await.unwrap();
        assert_eq!(health["rate_limits"]["degraded"], true, "{health}");
        assert_eq!(
            metric(&stack, n, "gateway_ratelimit_degraded").await,
            1.0,
            "the degradation is exported"
        );
    }
    redis.resume().await.unwrap();
    let leases = r#"gateway_redis_duration_seconds_count{op="ratelimit_lease"}"#;
    let errors = r#"gateway_redis_errors_total{op="ratelimit_lease"}"#;
    let (leases_before, errors_before) = (
        metric(&stack, 0, leases).await,
        metric(&stack, 0, errors).await,
    );
    // After `store_retry_secs`, a counter without a lease asks Redis again, and gets one.
    // One request every 300 ms: a counter that counted locally keeps its share (20) as a cap
    // for the window, which a faster poll would spend before Redis is reached.
    let mut back = false;
    for _ in 0..50 {
        assert_eq!(read(&stack, 0, &later).await.0, 200);
        let calls = metric(&stack, 0, leases).await - leases_before;
        let failed = metric(&stack, 0, errors).await - errors_before;
        if calls > failed {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(back, "replica 0 counts in Redis again");
    let health = stack.gateway_health(0).await.unwrap();
    assert_eq!(health["rate_limits"]["degraded"], false, "{health}");
    stack.stop().await;
}

/// Everything outside the operator API: 5 requests per 5 minutes.
fn five_default_requests(gw: &mut gateway::Settings) {
    gw.rate_limits.classes.insert(RouteClass::Default, 5);
}

/// The attack of the security review (issue 26, 1): an operator's low-privilege account, leaked
/// or looping, spends the operator's whole "everything else" budget on `GET /profile`. Its
/// admins must still see the console and revoke what leaked: people are counted on their
/// own outside the operator API, and revocations have a class of their own.
async fn a_looping_account_cannot_lock_its_admins_out(mode: Mode) {
    let options = Options {
        gateway_settings: Some(five_default_requests),
        ..Options::default()
    };
    let stack = Stack::start_with(mode, options).await.unwrap();
    let admin = stack.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let (operator_id, op_admin) = stack.operator_with_admin(&admin).await.unwrap();
    let looping = stack
        .user_with_role(&admin, operator_id, "operator.user")
        .await
        .unwrap();
    let created: serde_json::Value = stack
        .request(Method::POST, "/applications")
        .headers(op_admin.clone())
        .json(&serde_json::json!({"name": "leaked"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let app = created["application"]["uuid"].as_str().unwrap().to_owned();
    // Five minutes of windows: start clear of an edge so the loop and the checks share one.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if now % 300 >= 270 {
        tokio::time::sleep(Duration::from_secs(301 - now % 300)).await;
    }
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let r = stack
            .request(Method::GET, "/profile")
            .headers(looping.clone())
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses[..5], [200; 5], "{statuses:?}");
    assert_eq!(
        statuses[5..],
        [429; 3],
        "the looping account is limited: {statuses:?}"
    );

    // Its admin still reads the console's data and revokes.
    let profile = stack
        .request(Method::GET, "/profile")
        .headers(op_admin.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(profile.status(), 200, "the admin's own budget");
    let revoked = stack
        .request(Method::DELETE, &format!("/applications/{app}"))
        .headers(op_admin.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204, "revocation stays usable");
    stack.stop().await;
}

#[tokio::test]
async fn a_looping_account_cannot_lock_its_admins_out_embedded() {
    a_looping_account_cannot_lock_its_admins_out(Mode::Embedded).await;
}

#[tokio::test]
async fn a_looping_account_cannot_lock_its_admins_out_production() {
    a_looping_account_cannot_lock_its_admins_out(Mode::Production).await;
}

/// The balancer in front of the gateway is this machine: X-Forwarded-For names the client;
/// `auth/access_token` at the reference's 5 a minute.
fn behind_a_local_balancer(gw: &mut gateway::Settings) {
    gw.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    gw.rate_limits.classes.insert(RouteClass::AccessToken, 5);
}

/// The attack of the security review (issue 26, 2): one IPv6 subscriber holds a whole /64,
/// so rotating source addresses inside it escaped every per-address limit. The reference's
/// `auth/access_token` allows 5 a minute per client: the sixth from the same /64 is refused,
/// and another /64 is another client.
async fn one_ipv6_network_is_one_client(mode: Mode) {
    let options = Options {
        gateway_settings: Some(behind_a_local_balancer),
        ..Options::default()
    };
    let stack = Stack::start_with(mode, options).await.unwrap();
    clear_of_a_window_edge().await;
    let attempt = |client: String| {
        // A new key each time: auth-service's per-login throttle never sees a repeat.
        let keys = serde_json::json!({"access_key": uuid::Uuid::new_v4().to_string(),
                                      "secret_key": "guess"});
        let request = stack
            .request(Method::POST, "/v3/auth/access_token")
            .header("x-forwarded-for", client)
            .json(&keys);
        async move {
            let r = request.send().await.unwrap();
            let reason = r
                .headers()
                .get("x-gateway-error")
                .map(|v| v.to_str().unwrap().to_owned());
            (r.status().as_u16(), reason)
        }
    };
    for n in 1..=5 {
        let (status, _) = attempt(format!("2001:db8:1:2::{n:x}")).await;
        assert_eq!(status, 401, "attempt {n}: a wrong key");
    }
    let (status, reason) = attempt("2001:db8:1:2:ffff:ffff:ffff:1".to_owned()).await;
    assert_eq!(
        (status, reason.as_deref()),
        (429, Some("rate_limited")),
        "a sixth address of the same /64"
    );
    let (status, _) = attempt("2001:db8:1:3::1".to_owned()).await;
    assert_eq!(status, 401, "another /64 is another client");
    stack.stop().await;
}

#[tokio::test]
async fn one_ipv6_network_is_one_client_embedded() {
    one_ipv6_network_is_one_client(Mode::Embedded).await;
}

#[tokio::test]
async fn one_ipv6_network_is_one_client_production() {
    one_ipv6_network_is_one_client(Mode::Production).await;
}

/// To verify of the security review (issue 26, 11): a gateway listening on both stacks
/// (`[::]`) sees its IPv4 balancer as `::ffff:127.0.0.1`. It must still trust it, so that the
/// clients it names keep limits of their own instead of all sharing the balancer's.
async fn a_dual_stack_listener_still_trusts_its_ipv4_balancer(mode: Mode) {
    fn dual_stack(gw: &mut gateway::Settings) {
        behind_a_local_balancer(gw);
        gw.listen = std::net::SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, gw.listen.port()));
    }
    let options = Options {
        gateway_settings: Some(dual_stack),
        ..Options::default()
    };
    let stack = Stack::start_with(mode, options).await.unwrap();
    let port = stack.url.rsplit(':').next().unwrap().to_owned();
    clear_of_a_window_edge().await;
    let attempt = |client: &str| {
        let keys = serde_json::json!({"access_key": uuid::Uuid::new_v4().to_string(),
                                      "secret_key": "guess"});
        // Over IPv4, as the balancer in front would come.
        let request = stack
            .http
            .post(format!("http://127.0.0.1:{port}/v3/auth/access_token"))
            .header("x-forwarded-for", client)
            .json(&keys);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    for n in 1..=5 {
        assert_eq!(
            attempt("203.0.113.1").await,
            401,
            "attempt {n}: a wrong key"
        );
    }
    assert_eq!(attempt("203.0.113.1").await, 429, "the sixth of one client");
    assert_eq!(
        attempt("203.0.113.2").await,
        401,
        "another client has its own limit"
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_dual_stack_listener_still_trusts_its_ipv4_balancer_embedded() {
    a_dual_stack_listener_still_trusts_its_ipv4_balancer(Mode::Embedded).await;
}

#[tokio::test]
async fn a_dual_stack_listener_still_trusts_its_ipv4_balancer_production() {
    a_dual_stack_listener_still_trusts_its_ipv4_balancer(Mode::Production).await;
}
