//! Client connections (issue 26, finding 10): a kept-alive connection that sends nothing
//! more is closed after `connections.keepalive_idle_secs` while busy connections keep
//! working, and connections past the per-network or per-replica cap get 503
//! `too_many_connections` and are closed, until one of the held ones closes.
//!
//! The requests are `POST` sign-ins, a public route forwarded to the test's upstream.

mod support;

use gateway::Settings;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::{Gateway, SIGN_IN, Upstream, free_port, reason};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn gateway(auth: SocketAddr, tune: impl FnOnce(&mut Settings)) -> Gateway {
    let gw = support::gateway(auth, tune).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    // The probes took connections the caps count: wait until the gateway saw them close.
    while open_connections(&gw).await != Some(0) {
        assert!(
            Instant::now() < deadline,
            "the probe connections are still counted"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    gw
}

/// A line of the gateway's metrics, by its name and labels.
async fn metric(gw: &Gateway, series: &str) -> Option<u64> {
    support::metric(gw, series).await.map(|v| v as u64)
}

async fn open_connections(gw: &Gateway) -> Option<u64> {
    metric(gw, "gateway_connections_open").await
}

/// Sends one sign-in on `conn` and reads its answer whole: status line and body.
async fn exchange(conn: &mut TcpStream) -> std::io::Result<(String, String)> {
    let request = format!(
        "POST {SIGN_IN} HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\n\
         content-length: 2\r\n\r\n{{}}"
    );
    conn.write_all(request.as_bytes()).await?;
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut chunk = [0u8; 4096];
        match conn.read(&mut chunk).await? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        match conn.read(&mut chunk).await? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let status = head.lines().next().unwrap_or_default().to_owned();
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
    Ok((status, body))
}

/// A new connection that has been answered once (so the gateway holds it, kept alive).
async fn held(gw: &Gateway) -> TcpStream {
    let mut conn = TcpStream::connect(gw.listen).await.unwrap();
    let (status, _) = exchange(&mut conn).await.unwrap();
    assert!(status.starts_with("http/1.1 200"), "{status}");
    conn
}

/// Waits (up to `within`) for the gateway to close `conn`; how long that took.
async fn closed_within(conn: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut scratch = [0u8; 64];
    match tokio::time::timeout(within, conn.read(&mut scratch)).await {
        Ok(Ok(0) | Err(_)) => Some(started.elapsed()),
        Ok(Ok(n)) => panic!("unexpected bytes on an idle connection: {n}"),
        Err(_) => None,
    }
}

/// The attack of finding 10: one request, then silence. The connection used to be held
/// forever (with its buffers); now it is closed after the idle timeout, while a connection
/// that keeps sending requests is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed_after_the_timeout_while_a_busy_one_works() {
    const IDLE_SECS: u64 = 3;
    let auth = free_port();
    let _upstream = Upstream::start(auth).await;
    let gw = gateway(auth, |s| s.connections.keepalive_idle_secs = IDLE_SECS).await;

    let mut idle = held(&gw).await;
    // Kept alive: a second request on it is served.
    let (status, _) = exchange(&mut idle).await.unwrap();
    assert!(status.starts_with("http/1.1 200"), "{status}");

    // A busy connection, one request every 100 ms, all the while.
    let mut busy = held(&gw).await;
    let listen = gw.listen;
    let busy = tokio::spawn(async move {
        let mut served = 0;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(IDLE_SECS * 2 + 2) {
            let (status, _) = exchange(&mut busy)
                .await
                .unwrap_or_else(|e| panic!("the busy connection failed after {served}: {e}"));
            assert!(status.starts_with("http/1.1 200"), "{status}");
            served += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // And a new connection is served too.
        let mut fresh = TcpStream::connect(listen).await.unwrap();
        let (status, _) = exchange(&mut fresh).await.unwrap();
        assert!(status.starts_with("http/1.1 200"), "{status}");
        served
    });

    let waited = closed_within(&mut idle, Duration::from_secs(30))
        .await
        .expect("the idle kept-alive connection is still open after 30 s");
    // Never before the timeout (pingora's timers do not fire early; 1 s of slack for
    // rounding), and not long after it.
    assert!(
        waited >= Duration::from_secs(IDLE_SECS - 1),
        "closed after {waited:?}, before the {IDLE_SECS} s idle timeout"
    );
    let served = busy.await.unwrap();
    assert!(served > 10, "{served}");
}

/// The caps: past `max_per_network` connections from one address, a new one is answered 503
/// `too_many_connections` (a whole HTTP answer a client reads, not a reset) and closed; once
/// one held connection closes, the network may connect again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_past_its_connection_cap_is_refused_until_one_of_its_connections_closes() {
    let auth = free_port();
    let _upstream = Upstream::start(auth).await;
    let gw = gateway(auth, |s| s.connections.max_per_network = 3).await;
    let mut conns = Vec::new();
    for _ in 0..3 {
        conns.push(held(&gw).await);
    }

    let refused = reqwest::Client::new()
        .post(format!("http://{}{SIGN_IN}", gw.listen))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.headers()["connection"], "close");
    assert_eq!(reason(refused, 503, -32603).await, "too_many_connections");
    // Raw: the refusal, then the close.
    let mut raw = TcpStream::connect(gw.listen).await.unwrap();
    let (status, body) = exchange(&mut raw).await.unwrap();
    assert!(status.starts_with("http/1.1 503"), "{status}");
    assert!(body.contains("too_many_connections"), "{body}");
    assert!(
        closed_within(&mut raw, Duration::from_secs(10))
            .await
            .is_some(),
        "a refused connection is closed"
    );

    // The held connections still work.
    for conn in &mut conns {
        let (status, _) = exchange(conn).await.unwrap();
        assert!(status.starts_with("http/1.1 200"), "{status}");
    }

    // One closes: the gateway notices and counts it out, then a new one is served.
    drop(conns.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut conn = TcpStream::connect(gw.listen).await.unwrap();
        let (status, _) = exchange(&mut conn).await.unwrap();
        if status.starts_with("http/1.1 200") {
            break;
        }
        assert!(status.starts_with("http/1.1 503"), "{status}");
        assert!(
            Instant::now() < deadline,
            "never served again after a close"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let refusals = metric(&gw, r#"gateway_connections_refused_total{cap="network"}"#).await;
    assert!(refusals >= Some(2), "{refusals:?}");
}

/// Behind a trusted balancer every client has the balancer's address, so the per-network
/// cap does not apply to it; the replica's cap still does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_balancer_is_bounded_by_the_replica_cap_only() {
    let auth = free_port();
    let _upstream = Upstream::start(auth).await;
    let gw = gateway(auth, |s| {
        s.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
        s.connections.max_per_network = 1;
        s.connections.max_per_replica = 2;
    })
    .await;
    let _held = [held(&gw).await, held(&gw).await];
    let mut third = TcpStream::connect(gw.listen).await.unwrap();
    let (status, body) = exchange(&mut third).await.unwrap();
    assert!(status.starts_with("http/1.1 503"), "{status}");
    assert!(body.contains("too_many_connections"), "{body}");
}

/// A kept-alive connection waits for its next request on the bare socket and reads its first
/// bytes itself before pingora's session takes over: whatever way the next request arrives
/// (one byte, then the rest later; all at once and larger than that first read), it is
/// served whole, on the same connection. (Pipelined requests, several in one write, are
/// not served in full: pingora's HTTP/1 server closes such a connection, with or without
/// this wait.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_request_on_a_kept_alive_connection_is_read_whole_however_it_arrives() {
    let auth = free_port();
    let _upstream = Upstream::start(auth).await;
    let gw = gateway(auth, |_| {}).await;
    let mut conn = held(&gw).await;
    let request = |extra: &str| {
        format!(
            "POST {SIGN_IN} HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\n\
             {extra}content-length: 2\r\n\r\n{{}}"
        )
        .into_bytes()
    };

    // One byte, a pause, then the rest.
    let slow = request("");
    conn.write_all(&slow[..1]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    conn.write_all(&slow[1..]).await.unwrap();
    let (status, _) = read_answer(&mut conn).await;
    assert!(status.starts_with("http/1.1 200"), "{status}");

    // A request of 6 KiB of headers: more than the first read.
    let large = request(&format!("x-padding: {}\r\n", "p".repeat(6 * 1024)));
    conn.write_all(&large).await.unwrap();
    let (status, _) = read_answer(&mut conn).await;
    assert!(status.starts_with("http/1.1 200"), "{status}");

    let (status, _) = exchange(&mut conn).await.unwrap();
    assert!(status.starts_with("http/1.1 200"), "{status}");
}

/// Reads one answer (status line and body) from `conn`.
async fn read_answer(conn: &mut TcpStream) -> (String, String) {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut byte = [0u8; 1];
        assert_eq!(conn.read(&mut byte).await.unwrap(), 1, "closed");
        buf.push(byte[0]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length = (head.lines())
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    conn.read_exact(&mut body).await.unwrap();
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, String::from_utf8_lossy(&body).into_owned())
}
