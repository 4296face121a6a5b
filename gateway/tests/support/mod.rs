//! What the gateway's integration tests share: a gateway started in the test's process, an
//! upstream whose behaviour the test switches, free ports, and the gateway's JSON-RPC error
//! shape.
#![allow(dead_code, reason = "each test binary uses its own part")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A public route forwarded to auth-service: no token needed.
pub const SIGN_IN: &str = "/api/v1/auth/sign_in";

pub use test_ports::free_port;

/// An upstream answering `200 ok` to every request (after reading its body), or after
/// three seconds when `slow` is set. It counts the requests it read and the connections that
/// carried a POST; dropping it closes its listener and every connection.
pub struct Upstream {
    pub slow: Arc<AtomicBool>,
    /// Connections that carried a POST (the tests' requests; the gateway's own JWKS fetches
    /// are GETs).
    pub connections: Arc<AtomicU64>,
    /// POST requests read (the tests'; counted before the answer, slow or not). The
    /// gateway's own JWKS fetches are GETs and do not count.
    pub received: Arc<AtomicU64>,
    /// The `x-forwarded-for` of each POST read, in order (empty when absent).
    pub forwarded_for: Arc<std::sync::Mutex<Vec<String>>>,
    /// Connections accepted and not yet closed.
    open: Arc<AtomicU64>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Counts a connection open until dropped (served to its end, or aborted).
struct Open(Arc<AtomicU64>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Upstream {
    pub async fn start(addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let slow = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicU64::new(0));
        let received = Arc::new(AtomicU64::new(0));
        let forwarded_for = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (flag, posting, read) = (slow.clone(), connections.clone(), received.clone());
        let seen = forwarded_for.clone();
        let open = Arc::new(AtomicU64::new(0));
        let counted = open.clone();
        let task = tokio::spawn(async move {
            // Connection tasks live in this set, so aborting the task closes them all.
            let mut served = tokio::task::JoinSet::new();
            while let Ok((conn, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::Relaxed);
                let open = Open(counted.clone());
                let (flag, read, posting, seen) =
                    (flag.clone(), read.clone(), posting.clone(), seen.clone());
                served.spawn(async move {
                    let _open = open;
                    serve(conn, flag, read, posting, seen).await;
                });
            }
        });
        Self {
            slow,
            connections,
            received,
            forwarded_for,
            open,
            task: Some(task),
        }
    }

    /// Waits (up to 10 s) until it has read `n` requests.
    pub async fn wait_for_requests(&self, n: u64) {
        for _ in 0..1000 {
            if self.received.load(Ordering::Relaxed) >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the upstream never read {n} requests");
    }

    /// Stops listening and closes every connection, as a killed process would, and returns
    /// once they are all closed: the connections' tasks are aborted after the listener's, and
    /// a request sent meanwhile could still be read on one and then lost with it.
    pub async fn kill(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        for _ in 0..1000 {
            if self.open.load(Ordering::Relaxed) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            self.open.load(Ordering::Relaxed),
            0,
            "connections left open"
        );
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Serves requests on one connection until it closes.
async fn serve(
    mut conn: TcpStream,
    slow: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
    post_connections: Arc<AtomicU64>,
    forwarded_for: Arc<std::sync::Mutex<Vec<String>>>,
) {
    let mut buf = Vec::new();
    let mut posted = false;
    loop {
        let Some(end) = read_until(&mut conn, &mut buf, b"\r\n\r\n").await else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        buf.drain(..end + 4);
        if !posted && head.starts_with("post ") {
            posted = true;
            post_connections.fetch_add(1, Ordering::Relaxed);
        }
        if head.contains("transfer-encoding: chunked") {
            let Some(end) = read_until(&mut conn, &mut buf, b"0\r\n\r\n").await else {
                return;
            };
            buf.drain(..end + 5);
        } else if let Some(length) = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|n| n.trim().parse::<usize>().ok())
            && read_body(&mut conn, &mut buf, length).await.is_none()
        {
            return;
        }
        if head.starts_with("post ") {
            let client = head
                .lines()
                .find_map(|l| l.strip_prefix("x-forwarded-for:"))
                .map_or(String::new(), |v| v.trim().to_owned());
            forwarded_for.lock().unwrap().push(client);
            received.fetch_add(1, Ordering::Relaxed);
        }
        if slow.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        let answer =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        if conn.write_all(answer).await.is_err() {
            return;
        }
    }
}

/// Reads a body of `length` bytes and takes it off `buf`; `None` when the peer closed first.
pub async fn read_body(conn: &mut TcpStream, buf: &mut Vec<u8>, length: usize) -> Option<()> {
    while buf.len() < length {
        let mut chunk = [0u8; 8192];
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    buf.drain(..length);
    Some(())
}

/// Reads until `pattern` is in `buf`; its position, or `None` when the peer closed.
pub async fn read_until(conn: &mut TcpStream, buf: &mut Vec<u8>, pattern: &[u8]) -> Option<usize> {
    loop {
        if let Some(at) = buf.windows(pattern.len()).position(|w| w == pattern) {
            return Some(at);
        }
        let mut chunk = [0u8; 8192];
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The gateway's reason code, after checking the error body's shape.
pub async fn reason(response: reqwest::Response, status: u16, rpc_code: i64) -> String {
    assert_eq!(response.status().as_u16(), status);
    let header = response.headers()["x-gateway-error"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["jsonrpc"], "2.0");
    assert_eq!(body["error"]["code"], rpc_code, "{body}");
    assert_eq!(body["error"]["data"], header.as_str(), "{body}");
    header
}

/// A gateway running in the test's process; its temporary directory goes when it is dropped.
pub struct Gateway {
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    /// `http://<listen>`.
    pub url: String,
    _running: gateway::Running,
    dir: std::path::PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// A gateway whose auth-service is `auth` (which may not be listening), one thread, settings
/// then changed by `tune`; returns once it accepts connections.
pub async fn gateway(auth: SocketAddr, tune: impl FnOnce(&mut gateway::Settings)) -> Gateway {
    use layered_settings::Secret;
    let dir = std::env::temp_dir().join(format!("gw-test-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut settings = gateway::Settings {
        listen: free_port(),
        admin_listen: free_port(),
        auth_service: auth.into(),
        registry: free_port().into(),
        assertion_secrets: gateway::settings::AssertionSecrets {
            auth_service: Secret::new("auth-service's assertion secret, 32 bytes or more".into()),
            registry: Secret::new("the registry's assertion secret, 32 bytes or more".into()),
        },
        ..Default::default()
    };
    settings.server.threads = 1;
    settings.server.grace_period_seconds = 0;
    settings.server.graceful_shutdown_timeout_seconds = 1;
    settings.server.pid_file = dir.join("gateway.pid").display().to_string();
    settings.server.upgrade_sock = dir.join("upgrade.sock").display().to_string();
    tune(&mut settings);
    let feed = Arc::new(blacklist::LocalFeed::new());
    let running = gateway::spawn(&settings, feed).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(settings.listen).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway never started"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Gateway {
        listen: settings.listen,
        admin: settings.admin_listen,
        url: format!("http://{}", settings.listen),
        _running: running,
        dir,
    }
}

/// A local certificate authority for the TLS tests, and the certificates it signs.
pub struct Authority {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pub pem: String,
}

impl Authority {
    pub fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self {
            pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A certificate for localhost valid over `[from, until]` (years), and its key: PEM.
    pub fn leaf(&self, from: i32, until: i32) -> (String, String) {
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap();
        params.not_before = rcgen::date_time_ymd(from, 1, 1);
        params.not_after = rcgen::date_time_ymd(until, 1, 1);
        self.sign(params)
    }

    /// A certificate for `name`, for a server or a client, and its key (PEM).
    pub fn issue(&self, name: &str, client: bool) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![if client {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        }];
        self.sign(params)
    }

    fn sign(&self, params: rcgen::CertificateParams) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// rustls's ring provider, the one pingora's listener runs on (rustls deprecates it for
/// lacking post-quantum key exchange; docs/gateway.md, "TLS").
#[allow(deprecated, reason = "the provider pingora 0.9.1 serves with")]
pub fn ring_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// One line of a gateway's metrics, by name and labels.
pub async fn metric(gw: &Gateway, series: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://{}/metrics", gw.admin))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Polls `check` every 50 ms for up to 10 s; whether it held.
pub async fn eventually<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
