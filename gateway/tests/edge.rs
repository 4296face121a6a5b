//! The gateway's edge behaviour against upstreams this test controls: a dead upstream (502,
//! then recovery), a slow one (504), oversized headers (431) and bodies (413, with and
//! without `Content-Length`), and rate limits (429 with the `RateLimit-*` headers).
//!
//! The routes used are public ones forwarded to auth-service, so no token is needed; the
//! "auth-service" here is a small HTTP/1.1 server whose behaviour the test switches.

mod support;

use gateway::Settings;
use gateway::ratelimit::RouteClass;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use support::{Gateway, SIGN_IN, Upstream, free_port, reason};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A gateway whose auth-service is `auth` (which may not be listening), with a 1 s upstream
/// read timeout.
async fn gateway(auth: SocketAddr, tune: impl FnOnce(&mut Settings)) -> Gateway {
    support::gateway(auth, |settings| {
        settings.upstream_read_timeout_secs = 1;
        tune(settings);
    })
    .await
}

async fn sign_in(gw: &Gateway) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}{SIGN_IN}", gw.url))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_upstream_gives_502_and_the_gateway_recovers_when_it_is_back() {
    let auth = free_port();
    let gw = gateway(auth, |_| {}).await;
    let down = sign_in(&gw).await;
    assert_eq!(reason(down, 502, -32603).await, "upstream_unavailable");

    let _upstream = Upstream::start(auth).await;
    let back = sign_in(&gw).await;
    assert_eq!(back.status(), 200);
    assert!(back.headers().contains_key("x-request-id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_alive_connections_are_reused_and_a_killed_upstream_gives_502_then_recovers() {
    let auth = free_port();
    let upstream = Upstream::start(auth).await;
    let gw = gateway(auth, |_| {}).await;
    for _ in 0..20 {
        assert_eq!(sign_in(&gw).await.status(), 200);
    }
    assert_eq!(
        upstream.connections.load(Ordering::Relaxed),
        1,
        "twenty requests in a row share one upstream connection"
    );

    // Killed with the gateway's pooled connection open: refused, never a hang or a 500.
    upstream.kill().await;
    for _ in 0..3 {
        let down = sign_in(&gw).await;
        assert_eq!(reason(down, 502, -32603).await, "upstream_unavailable");
    }

    // Back on the same port: the next request is served on a new connection.
    let upstream = Upstream::start(auth).await;
    let back = sign_in(&gw).await;
    assert_eq!(back.status(), 200);
    assert_eq!(upstream.connections.load(Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_gives_504_after_the_read_timeout() {
    let auth = free_port();
    let upstream = Upstream::start(auth).await;
    let gw = gateway(auth, |_| {}).await;
    assert_eq!(sign_in(&gw).await.status(), 200);

    upstream.slow.store(true, Ordering::Relaxed);
    let started = std::time::Instant::now();
    let slow = sign_in(&gw).await;
    assert_eq!(reason(slow, 504, -32603).await, "upstream_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answered before the upstream did"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_over_16_kib_get_431_and_headers_under_it_pass() {
    let auth = free_port();
    let _upstream = Upstream::start(auth).await;
    let gw = gateway(auth, |_| {}).await;
    let client = reqwest::Client::new();
    let with_header = |bytes: usize| {
        client
            .post(format!("{}{SIGN_IN}", gw.url))
            .header("x-padding", "a".repeat(bytes))
            .json(&serde_json::json!({}))
            .send()
    };
    assert_eq!(with_header(15 * 1024).await.unwrap().status(), 200);
    let refused = with_header(17 * 1024).await.unwrap();
    assert_eq!(reason(refused, 431, -32600).await, "headers_too_large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_2_mib_get_413_with_or_without_content_length() {
    let auth = free_port();
    let _upstream = Upstream::start(auth).await;
    let gw = gateway(auth, |_| {}).await;
    let client = reqwest::Client::new();
    let post = |bytes: usize| {
        client
            .post(format!("{}{SIGN_IN}", gw.url))
            .header("content-type", "application/json")
            .body(vec![b' '; bytes])
            .send()
    };
    assert_eq!(post(1024 * 1024).await.unwrap().status(), 200);
    let refused = post(2 * 1024 * 1024 + 1).await.unwrap();
    assert_eq!(reason(refused, 413, -32600).await, "payload_too_large");

    // A declared size over the limit is refused before any of the body is sent.
    let addr = gw.url.trim_start_matches("http://").to_owned();
    let mut conn = TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST {SIGN_IN} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        3 * 1024 * 1024
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut first = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(1), conn.read(&mut first))
        .await
        .expect("the 413 comes without waiting for the body")
        .unwrap();
    let first = String::from_utf8_lossy(&first[..n]);
    assert!(first.starts_with("HTTP/1.1 413"), "{first}");
    drop(conn);

    // Chunked: the size is only known as the body streams through.
    let (mut from_gw, mut to_gw) = TcpStream::connect(&addr).await.unwrap().into_split();
    // Read while writing, as an HTTP client does: the answer may come before the body ends.
    let reader = tokio::spawn(async move {
        let mut answer = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(5), from_gw.read_to_end(&mut answer)).await;
        answer
    });
    let head = format!(
        "POST {SIGN_IN} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\n\r\n"
    );
    to_gw.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b' '; 64 * 1024];
    for _ in 0..40 {
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
        if to_gw.write_all(&framed).await.is_err() {
            break;
        }
    }
    let _ = to_gw.write_all(b"0\r\n\r\n").await;
    let answer = reader.await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_limit_requests_get_429_with_rate_limit_headers() {
    let auth = free_port();
    let _upstream = Upstream::start(auth).await;
    let gw = gateway(auth, |s| {
        s.rate_limits.classes.insert(RouteClass::Default, 3);
    })
    .await;
    for remaining in [2, 1, 0] {
        let allowed = sign_in(&gw).await;
        assert_eq!(allowed.status(), 200);
        let h = allowed.headers();
        assert_eq!(h["ratelimit-limit"], "3");
        assert_eq!(h["ratelimit-remaining"], remaining.to_string().as_str());
        assert_eq!(h["ratelimit-policy"], "3;w=300");
        let reset: u64 = h["ratelimit-reset"].to_str().unwrap().parse().unwrap();
        assert!((1..=300).contains(&reset), "{reset}");
        assert!(!h.contains_key("retry-after"));
    }
    let refused = sign_in(&gw).await;
    let h = refused.headers().clone();
    assert_eq!(reason(refused, 429, -32029).await, "rate_limited");
    assert_eq!(h["ratelimit-remaining"], "0");
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert_eq!(h["ratelimit-reset"].to_str().unwrap(), retry.to_string());

    // Key discovery is not limited.
    let jwks = reqwest::get(format!("{}/.well-known/jwks.json", gw.url))
        .await
        .unwrap();
    assert!(!jwks.headers().contains_key("ratelimit-limit"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_access_token_route_allows_5_per_minute_per_client_address() {
    let auth = free_port();
    let _upstream = Upstream::start(auth).await;
    let gw = gateway(auth, |_| {}).await;
    let client = reqwest::Client::new();
    let exchange = || {
        client
            .post(format!("{}/v3/auth/access_token", gw.url))
            .json(&serde_json::json!({"access_key": "a", "secret_key": "b"}))
            .send()
    };
    for _ in 0..5 {
        let allowed = exchange().await.unwrap();
        assert_eq!(allowed.status(), 200);
        assert_eq!(allowed.headers()["ratelimit-policy"], "5;w=60");
    }
    let refused = exchange().await.unwrap();
    assert_eq!(reason(refused, 429, -32029).await, "rate_limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_balancer_the_forwarded_address_is_the_client() {
    let auth = free_port();
    let _upstream = Upstream::start(auth).await;
    let exchange = |gw: &Gateway, client: &str| {
        reqwest::Client::new()
            .post(format!("{}/v3/auth/access_token", gw.url))
            .header("x-forwarded-for", client)
            .json(&serde_json::json!({"access_key": "a", "secret_key": "b"}))
            .send()
    };

    // Straight from clients: the header is theirs to forge, so it is ignored.
    let direct = gateway(auth, |_| {}).await;
    for n in 0..5 {
        let client = format!("198.51.100.{n}");
        assert_eq!(exchange(&direct, &client).await.unwrap().status(), 200);
    }
    let forged = exchange(&direct, "198.51.100.99").await.unwrap();
    assert_eq!(reason(forged, 429, -32029).await, "rate_limited");

    // Behind a balancer on a trusted address: each client has its own 5 a minute, and only
    // the entry the balancer wrote (the last one) counts.
    let behind = gateway(auth, |s| {
        s.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()]
    })
    .await;
    for _ in 0..5 {
        let sent = exchange(&behind, "10.9.9.9, 198.51.100.1").await.unwrap();
        assert_eq!(sent.status(), 200);
    }
    let refused = exchange(&behind, "10.9.9.8, 198.51.100.1").await.unwrap();
    assert_eq!(reason(refused, 429, -32029).await, "rate_limited");
    let other = exchange(&behind, "198.51.100.2").await.unwrap();
    assert_eq!(other.status(), 200);
}

/// The attack of the security review (issue 26, finding 6): a refused request whose chunked
/// body never ends used to be drained for as long as the client kept sending, holding the
/// connection and its buffers. Now the refusal comes at once and the connection closes after
/// a bounded linger, while the client is still streaming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_endless_chunked_body_is_answered_and_closed() {
    let auth = free_port();
    let _upstream = Upstream::start(auth).await;
    let gw = gateway(auth, |_| {}).await;
    let addr = gw.url.trim_start_matches("http://").to_owned();
    let (mut from_gw, mut to_gw) = TcpStream::connect(&addr).await.unwrap().into_split();
    let head = format!(
        "POST /v3/journeys HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer not-a-token\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    to_gw.write_all(head.as_bytes()).await.unwrap();
    // A client that sends a small chunk every 50 ms for a minute.
    let writer = tokio::spawn(async move {
        for _ in 0..1200 {
            if to_gw.write_all(b"1\r\n \r\n").await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    });
    let mut answer = Vec::new();
    let closed =
        tokio::time::timeout(Duration::from_secs(20), from_gw.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        closed.is_ok(),
        "the connection is still open while the body streams: {answer}"
    );
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("invalid_token"), "{answer}");
    writer.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_description_is_served_publicly_without_reaching_an_upstream() {
    // No upstream listens: the gateway answers these itself, to anyone.
    let gw = gateway(free_port(), |_| {}).await;
    let client = reqwest::Client::new();
    for (path, media, committed) in [
        (
            "/openapi.json",
            "application/json",
            include_str!("../../docs/openapi.json"),
        ),
        (
            "/openapi.yaml",
            "application/yaml",
            include_str!("../../docs/openapi.yaml"),
        ),
    ] {
        let answer = client
            .get(format!("{}{path}", gw.url))
            .header("authorization", "Bearer not-a-token")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{path}");
        assert_eq!(answer.headers()["content-type"], media);
        assert!(answer.headers().contains_key("x-request-id"));
        assert_eq!(answer.text().await.unwrap(), committed, "{path}");
    }
    let doc: serde_json::Value = client
        .get(format!("{}/openapi.json", gw.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/{version}/journeys"]["post"].is_object());
    // Only GET.
    let post = client
        .post(format!("{}/openapi.json", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(post.headers()["allow"], "GET");
    assert_eq!(reason(post, 405, -32601).await, "method_not_allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_asked_with_another_method_gets_405_naming_its_methods() {
    let gw = gateway(free_port(), |_| {}).await;
    let client = reqwest::Client::new();
    for (method, path, allow) in [
        ("DELETE", "/v3/journeys", "GET, POST"),
        ("PUT", "/v3.3/journeys/abc", "GET, POST, PATCH"),
        ("TRACE", "/journeys/push", "POST"),
        ("POST", "/health", "GET"),
        // The import's path is also a `{uuid}` for GET and DELETE; it is the import's.
        ("OPTIONS", "/v3/policies/cee/import", "POST"),
        ("DELETE", "/v3/policies/cee/public-key", "GET"),
    ] {
        let answer = client
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}{path}", gw.url),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(answer.headers()["allow"], allow, "{method} {path}");
        assert_eq!(reason(answer, 405, -32601).await, "method_not_allowed");
    }
    // A path that is no route with any method stays a 404, without `Allow`.
    let nowhere = client
        .get(format!("{}/nowhere", gw.url))
        .send()
        .await
        .unwrap();
    assert!(!nowhere.headers().contains_key("allow"));
    assert_eq!(reason(nowhere, 404, -32504).await, "route_not_found");
}

/// An auth-service that closes each connection on reading its second forwarded request
/// (one carrying the gateway's assertion), unanswered: as an upstream closing an idle
/// connection at the moment the gateway sends on it. Every other request is answered and
/// the connection kept. Counts the forwarded requests it read.
async fn closing_upstream(addr: SocketAddr) -> (std::sync::Arc<AtomicU64>, AbortOnDrop) {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let forwarded = std::sync::Arc::new(AtomicU64::new(0));
    let counted = forwarded.clone();
    let task = tokio::spawn(async move {
        let mut served = tokio::task::JoinSet::new();
        while let Ok((mut conn, _)) = listener.accept().await {
            let counted = counted.clone();
            served.spawn(async move {
                let mut on_this = 0;
                let mut buf = Vec::new();
                loop {
                    let Some(end) = support::read_until(&mut conn, &mut buf, b"\r\n\r\n").await
                    else {
                        return;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    buf.drain(..end + 4);
                    let length = (head.lines())
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |n| n.trim().parse::<usize>().unwrap());
                    if support::read_body(&mut conn, &mut buf, length)
                        .await
                        .is_none()
                    {
                        return;
                    }
                    if head.contains(&format!("\r\n{}:", auth_token::ASSERTION_HEADER)) {
                        counted.fetch_add(1, Ordering::SeqCst);
                        on_this += 1;
                        if on_this == 2 {
                            return;
                        }
                    }
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                                   content-length: 2\r\n\r\n{}";
                    if conn.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (forwarded, AbortOnDrop(task))
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// pingora's proxy sends an idempotent request again when the pooled connection it took
/// turns out closed by the upstream; the gateway, which forwards every request itself, does
/// the same. A POST is not sent again: the upstream may have applied it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_is_sent_again_when_its_pooled_connection_was_closed_and_a_post_is_not() {
    let auth = free_port();
    let (forwarded, _upstream) = closing_upstream(auth).await;
    // One proxy service, so one pool of upstream connections, whatever connection the
    // client uses.
    let gw = gateway(auth, |settings| settings.server.threads = 1).await;
    let client = reqwest::Client::new();
    let jwks = format!("{}/.well-known/jwks.json", gw.url);

    assert_eq!(client.get(&jwks).send().await.unwrap().status(), 200);
    assert_eq!(forwarded.load(Ordering::SeqCst), 1);
    // Sent on the pooled connection, which the upstream closes unanswered; then again on a
    // new one, where it is answered.
    assert_eq!(client.get(&jwks).send().await.unwrap().status(), 200);
    assert_eq!(forwarded.load(Ordering::SeqCst), 3);

    // The new connection is pooled in turn: a POST sent on it is lost with it, and told so.
    let post = sign_in(&gw).await;
    assert_eq!(reason(post, 502, -32603).await, "upstream_unavailable");
    assert_eq!(
        forwarded.load(Ordering::SeqCst),
        4,
        "the POST was sent once, not again"
    );
}

/// A client's `Connection` header may name any field as its connection's own, `Host` and
/// `X-Forwarded-For` included. pingora's proxy refused such a GET with a bare 500 and an
/// empty body; the gateway drops the named fields but `Host`, and writes its own
/// `X-Forwarded-For`, so the request is forwarded and answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_whose_connection_header_names_host_is_forwarded() {
    let auth = free_port();
    let _upstream = Upstream::start(auth).await;
    let gw = gateway(auth, |_| {}).await;
    let addr = gw.url.trim_start_matches("http://").to_owned();
    let mut conn = TcpStream::connect(&addr).await.unwrap();
    let request = format!(
        "GET /.well-known/jwks.json HTTP/1.1\r\nhost: {addr}\r\n\
         connection: keep-alive, Host, X-Forwarded-For\r\nx-forwarded-for: 203.0.113.9\r\n\r\n"
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    while !answer.ends_with(b"{}") {
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&chunk[..n]);
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
}
