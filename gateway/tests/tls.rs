//! HTTPS at the gateway (issue 27), with real clients: curl over HTTP/2 and HTTP/1.1, Python
//! requests trusting the certificate's authority, and a rustls client that holds a kept-alive
//! connection while the certificate files are replaced (it keeps working; a new connection
//! gets the new certificate). TLS 1.0 and 1.1 hellos, and plain HTTP sent to the TLS port,
//! are refused cleanly; a certificate that is missing, expired or not the key's stops the
//! start with a message naming the file; a plain listener that is not loopback sends
//! clients to HTTPS.

mod support;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{Authority, SIGN_IN, Upstream, free_port, metric, ring_provider};

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

/// A temporary directory holding the certificate files, removed when dropped.
struct Files {
    dir: PathBuf,
}

impl Files {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("gw-tls-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir }
    }

    fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Replaces the pair as an ACME client or cert-manager does: new files renamed over the
    /// old ones.
    fn install(&self, (cert, key): &(String, String)) {
        for (path, text) in [(self.key(), key), (self.cert(), cert)] {
            let next = path.with_extension("new");
            std::fs::write(&next, text).unwrap();
            std::fs::rename(&next, &path).unwrap();
        }
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// What most tests start from: an upstream, and certificate files for localhost (with the
/// authority's `ca.pem`) from a test authority.
struct Setup {
    upstream_addr: SocketAddr,
    upstream: Upstream,
    files: Files,
    ca: Authority,
}

impl Setup {
    async fn new() -> Self {
        let upstream_addr = free_port();
        let upstream = Upstream::start(upstream_addr).await;
        let files = Files::new();
        let ca = Authority::new("test CA");
        files.install(&ca.leaf(2020, 2090));
        std::fs::write(files.ca(), &ca.pem).unwrap();
        Self {
            upstream_addr,
            upstream,
            files,
            ca,
        }
    }
}

/// What the renewal tests start from: an upstream, and an old pair installed with a new one
/// from another authority ready to replace it.
struct Renewal {
    upstream_addr: SocketAddr,
    _upstream: Upstream,
    files: Files,
    old_ca: Authority,
    new_ca: Authority,
    old: (String, String),
    new: (String, String),
}

impl Renewal {
    async fn new() -> Self {
        let upstream_addr = free_port();
        let _upstream = Upstream::start(upstream_addr).await;
        let files = Files::new();
        let (old_ca, new_ca) = (Authority::new("old CA"), Authority::new("new CA"));
        let (old, new) = (old_ca.leaf(2020, 2080), new_ca.leaf(2020, 2090));
        files.install(&old);
        Self {
            upstream_addr,
            _upstream,
            files,
            old_ca,
            new_ca,
            old,
            new,
        }
    }
}

/// A gateway with HTTPS on a free port, its files in `files`.
async fn gateway(
    upstream: SocketAddr,
    files: &Files,
    tune: impl FnOnce(&mut gateway::Settings),
) -> (support::Gateway, SocketAddr) {
    let tls = free_port();
    let gw = support::gateway(upstream, |s| {
        s.tls.listen = Some(tls);
        s.tls.cert_file = files.cert();
        s.tls.key_file = files.key();
        tune(s);
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(tls).is_err() {
        assert!(Instant::now() < deadline, "the TLS port never opened");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    (gw, tls)
}

/// curl's answer to a sign-in posted over HTTPS: HTTP version, status and headers.
fn curl(version_flag: &str, ca: &Path, url: &str) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", version_flag, "--cacert"])
        .arg(ca)
        .args(["-D", "-", "-o", "/dev/null", "-w", "%{http_version}"])
        .args(["-H", "content-type: application/json", "--data", "{}"])
        .arg(url)
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "curl {version_flag}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (head, version) = text.rsplit_once("\r\n\r\n").unwrap();
    (version.trim().to_owned(), head.to_ascii_lowercase())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_gets_http2_and_http1_over_tls_with_hsts_and_secure_session_cookies() {
    let Setup {
        upstream_addr,
        upstream,
        files,
        ca: _,
    } = Setup::new().await;
    let (gw, tls) = gateway(upstream_addr, &files, |_| {}).await;
    let url = format!("https://localhost:{}{SIGN_IN}", tls.port());

    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let ca_file = files.ca();
        let url = url.clone();
        let (got, head) = tokio::task::spawn_blocking(move || curl(flag, &ca_file, &url))
            .await
            .unwrap();
        assert_eq!(got, version, "{flag}: ALPN chose HTTP/{got}");
        assert!(head.contains(" 200"), "{flag}: {head}");
        assert!(
            head.contains("strict-transport-security: max-age=31536000"),
            "{flag}: no HSTS over TLS: {head}"
        );
        assert!(
            head.contains("set-cookie: __host-sessid=") && head.contains("; secure"),
            "{flag}: the session cookie over TLS is not the __Host- one, Secure: {head}"
        );
    }
    assert_eq!(
        upstream.received.load(std::sync::atomic::Ordering::Relaxed),
        2
    );

    // The gateway's own answers over HTTP/2: a refusal in the contract's shape, with HSTS.
    let ca_file = files.ca();
    let refused = format!("https://localhost:{}/nowhere", tls.port());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-sS", "--max-time", "10", "--http2", "--cacert"])
            .arg(&ca_file)
            .args(["-D", "-", &refused])
            .output()
            .expect("curl runs")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(text.starts_with("http/2 404"), "{text}");
    assert!(text.contains("x-gateway-error: route_not_found"), "{text}");
    assert!(
        text.contains("strict-transport-security: max-age=31536000"),
        "{text}"
    );
    assert!(text.contains(r#""data":"route_not_found""#), "{text}");

    // The plain listener (loopback) still serves, without HSTS, with the plain cookie names.
    let plain = reqwest::Client::new()
        .post(format!("{}{SIGN_IN}", gw.url))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 200);
    assert!(plain.headers().get("strict-transport-security").is_none());
    let cookie = plain.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cookie.starts_with("sessid=") && !cookie.contains("Secure"),
        "{cookie}"
    );

    let not_after = metric(&gw, "gateway_tls_certificate_not_after_seconds").await;
    let year_2090 = 3_786_912_000.0; // 2090-01-01T00:00:00Z
    assert_eq!(not_after, Some(year_2090));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_requests_trusting_the_authority_gets_through() {
    let Setup {
        upstream_addr,
        upstream,
        files,
        ca: _,
    } = Setup::new().await;
    let (_gw, tls) = gateway(upstream_addr, &files, |_| {}).await;
    let script = r#"
import sys, requests
url, ca = sys.argv[1], sys.argv[2]
r = requests.post(url, json={}, verify=ca, timeout=10)
print(r.status_code, r.headers.get("strict-transport-security"))
try:
    requests.post(url, json={}, timeout=10)
    print("untrusted accepted")
except requests.exceptions.SSLError:
    print("untrusted refused")
"#;
    let url = format!("https://localhost:{}{SIGN_IN}", tls.port());
    let ca_file = files.ca();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-c", script, &url])
            .arg(&ca_file)
            .output()
            .expect("python3 runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["200 max-age=31536000", "untrusted refused"]
    );
    assert_eq!(
        upstream.received.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A rustls client connection trusting `roots`, handshake done.
fn connect(addr: SocketAddr, roots: &[&str]) -> Tls {
    connect_after(addr, b"", roots).expect("the handshake completes")
}

/// The leaf certificate the server showed on this connection.
fn served(tls: &Tls) -> CertificateDer<'static> {
    tls.conn.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

/// A kept-alive sign-in, `extra` among its headers.
fn sign_in_request(extra: &str) -> Vec<u8> {
    format!(
        "POST {SIGN_IN} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         {extra}content-length: 2\r\n\r\n{{}}"
    )
    .into_bytes()
}

/// Sends a kept-alive sign-in and reads the answer whole; returns its status.
fn sign_in(tls: &mut Tls) -> u16 {
    tls.write_all(&sign_in_request("")).unwrap();
    answer(tls)
}

/// Reads one answer whole; returns its status.
fn answer(tls: &mut Tls) -> u16 {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = tls.read(&mut chunk).unwrap();
        assert!(n > 0, "closed before the answer");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while buf.len() < head_end + length {
        let n = tls.read(&mut chunk).unwrap();
        assert!(n > 0, "closed in the body");
        buf.extend_from_slice(&chunk[..n]);
    }
    head[9..12].parse().unwrap()
}

/// A kept-alive HTTP/1.1 connection over TLS waits for its next request outside pingora's
/// session, as a plain one does (`connections::Capped::next_request` reads its first bytes
/// and hands them back in a wrapper): however the next request arrives (one byte in a record
/// of its own, then the rest later; all at once and larger than that first read), it is
/// served whole on the same connection, and once idle it is closed after the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_tls_connection_reads_each_next_request_whole_and_closes_when_idle() {
    let upstream = free_port();
    let _upstream = Upstream::start(upstream).await;
    let files = Files::new();
    let ca = Authority::new("test CA");
    files.install(&ca.leaf(2020, 2080));
    let (_gw, addr) = gateway(upstream, &files, |s| s.connections.keepalive_idle_secs = 2).await;
    let roots = ca.pem.clone();
    tokio::task::spawn_blocking(move || {
        let mut tls = connect(addr, &[&roots]);
        assert_eq!(sign_in(&mut tls), 200);

        // One byte in a record of its own, a pause, then the rest.
        let slow = sign_in_request("");
        tls.write_all(&slow[..1]).unwrap();
        tls.flush().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        tls.write_all(&slow[1..]).unwrap();
        assert_eq!(answer(&mut tls), 200);

        // 6 KiB of headers: more than the first read.
        let padding = format!("x-padding: {}\r\n", "p".repeat(6 * 1024));
        tls.write_all(&sign_in_request(&padding)).unwrap();
        assert_eq!(answer(&mut tls), 200);
        assert_eq!(sign_in(&mut tls), 200);

        // Idle: closed by the gateway after its timeout.
        let started = Instant::now();
        tls.sock
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let read = tls.read(&mut [0u8; 64]);
        let waited = started.elapsed();
        assert!(
            matches!(&read, Ok(0))
                || read
                    .as_ref()
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::UnexpectedEof),
            "{read:?} after {waited:?}"
        );
        assert!(waited >= Duration::from_secs(1), "closed after {waited:?}");
        assert!(waited < Duration::from_secs(8), "closed after {waited:?}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_reaches_new_connections_and_kept_alive_ones_keep_working() {
    let Renewal {
        upstream_addr,
        _upstream,
        files,
        old_ca,
        new_ca,
        old,
        new,
    } = Renewal::new().await;
    let (gw, tls) = gateway(upstream_addr, &files, |s| s.tls.reload_secs = 1).await;
    let roots = [old_ca.pem.clone(), new_ca.pem.clone()];

    let mut kept = tokio::task::spawn_blocking({
        let roots = roots.clone();
        move || {
            let mut kept = connect(tls, &[&roots[0], &roots[1]]);
            assert_eq!(sign_in(&mut kept), 200);
            kept
        }
    })
    .await
    .unwrap();
    assert_eq!(served(&kept), der(&old.0));

    // A pair that does not match is refused: the old certificate is still served.
    files.install(&(new.0.clone(), old.1.clone()));
    let failed = "gateway_tls_reloads_total{outcome=\"failed\"}";
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&gw, failed).await.unwrap_or(0.0) < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the mismatched pair was not looked at"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fresh = tokio::task::spawn_blocking({
        let roots = roots.clone();
        move || served(&connect(tls, &[&roots[0], &roots[1]]))
    })
    .await
    .unwrap();
    assert_eq!(fresh, der(&old.0), "a mismatched pair was served");

    files.install(&new);
    let loaded = "gateway_tls_reloads_total{outcome=\"loaded\"}";
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&gw, loaded).await.unwrap_or(0.0) < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the renewed pair was never loaded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        metric(&gw, "gateway_tls_certificate_not_after_seconds").await,
        Some(3_786_912_000.0),
        "the expiry metric follows the new certificate (2090-01-01)"
    );

    let (kept, fresh) = tokio::task::spawn_blocking(move || {
        // The connection opened before the renewal still works.
        let status = sign_in(&mut kept);
        let mut fresh = connect(tls, &[&roots[0], &roots[1]]);
        assert_eq!(sign_in(&mut fresh), 200);
        ((status, served(&kept)), served(&fresh))
    })
    .await
    .unwrap();
    assert_eq!(kept, (200, der(&old.0)));
    assert_eq!(
        fresh,
        der(&new.0),
        "a new connection did not get the new certificate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_client_resumes_its_session_whichever_service_takes_it() {
    let Setup {
        upstream_addr,
        upstream: _upstream,
        files,
        ca,
    } = Setup::new().await;
    // Two services, each with its own socket: the kernel spreads reconnections over both.
    let (_gw, tls) = gateway(upstream_addr, &files, |s| s.server.threads = 2).await;
    let root = ca.pem.clone();
    let kinds = tokio::task::spawn_blocking(move || {
        let mut kinds = Vec::new();
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let mut store = rustls::RootCertStore::empty();
            store.add(der(&root)).unwrap();
            // One client configuration: its session store carries what the server gave.
            let config = Arc::new(
                rustls::ClientConfig::builder_with_provider(Arc::new(ring_provider()))
                    .with_protocol_versions(&[version])
                    .unwrap()
                    .with_root_certificates(store)
                    .with_no_client_auth(),
            );
            for _ in 0..12 {
                let name = ServerName::try_from("localhost").unwrap();
                let conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
                let tcp = TcpStream::connect(tls).unwrap();
                tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut stream = rustls::StreamOwned::new(conn, tcp);
                // A request read whole: TLS 1.3 tickets arrive after the handshake.
                assert_eq!(sign_in(&mut stream), 200);
                kinds.push((version.version, stream.conn.handshake_kind()));
            }
        }
        kinds
    })
    .await
    .unwrap();
    for (version, runs) in [kinds[..12].to_vec(), kinds[12..].to_vec()]
        .iter()
        .map(|r| (r[0].0, r))
    {
        assert_eq!(
            runs[0].1,
            Some(rustls::HandshakeKind::Full),
            "{version:?}: first connection"
        );
        let resumed = runs[1..]
            .iter()
            .filter(|(_, kind)| *kind == Some(rustls::HandshakeKind::Resumed))
            .count();
        assert_eq!(resumed, 11, "{version:?}: {runs:?}");
    }
}

/// A rustls client connection trusting `roots` whose TCP stream first carries `preamble` (a
/// balancer's PROXY header); `None` when the server refuses it.
fn connect_after(addr: SocketAddr, preamble: &[u8], roots: &[&str]) -> Option<Tls> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(der(root)).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(ring_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(preamble).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).ok()?;
    }
    Some(tls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_tcp_balancer_names_the_client_in_a_proxy_header_and_no_one_else_can() {
    let Setup {
        upstream_addr,
        upstream,
        files,
        ca,
    } = Setup::new().await;
    let header_v1 = b"PROXY TCP4 203.0.113.9 127.0.0.1 51234 443\r\n".to_vec();
    let mut header_v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header_v2.extend([
        0x21, 0x11, 0, 12, 198, 51, 100, 4, 127, 0, 0, 1, 0x04, 0xd2, 0x01, 0xbb,
    ]);

    // The balancer (127.0.0.1 here) is trusted: its header names the client.
    let (gw, tls) = gateway(upstream_addr, &files, |s| {
        s.tls.proxy_protocol = true;
        s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let root = ca.pem.clone();
    let statuses = tokio::task::spawn_blocking(move || {
        [header_v1, header_v2].map(|header| {
            let mut conn =
                connect_after(tls, &header, &[&root]).expect("handshake after the header");
            sign_in(&mut conn)
        })
    })
    .await
    .unwrap();
    assert_eq!(statuses, [200, 200]);
    assert_eq!(
        *upstream.forwarded_for.lock().unwrap(),
        ["203.0.113.9", "198.51.100.4"],
        "the upstream is told the client the balancer named"
    );
    // The connection caps count the client the header names, not the balancer: with one
    // connection per network, a second one for 203.0.113.9 is closed before its handshake
    // while another client's goes through.
    drop(gw);
    let (gw, tls) = gateway(upstream_addr, &files, |s| {
        s.tls.proxy_protocol = true;
        s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        s.connections.max_per_network = 1;
    })
    .await;
    let root = ca.pem.clone();
    let (first, second, other) = tokio::task::spawn_blocking(move || {
        let header = |ip: &str| format!("PROXY TCP4 {ip} 127.0.0.1 5000 443\r\n").into_bytes();
        let mut first = connect_after(tls, &header("203.0.113.9"), &[&root]).expect("first");
        let first_status = sign_in(&mut first);
        let second = connect_after(tls, &header("203.0.113.9"), &[&root]).is_some();
        let mut other = connect_after(tls, &header("198.51.100.7"), &[&root]).expect("another");
        (first_status, second, sign_in(&mut other))
    })
    .await
    .unwrap();
    assert_eq!((first, second, other), (200, false, 200));
    // Without its header, a trusted balancer's connection is refused.
    let root = ca.pem.clone();
    let refused = tokio::task::spawn_blocking(move || connect_after(tls, b"", &[&root]).is_none())
        .await
        .unwrap();
    assert!(
        refused,
        "a balancer's connection without its header was served"
    );
    drop(gw);

    // A peer not trusted (the balancers are elsewhere) cannot choose its address: its
    // header is taken for TLS, and fails.
    let (_gw, tls) = gateway(upstream_addr, &files, |s| {
        s.tls.proxy_protocol = true;
        s.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
    })
    .await;
    let root = ca.pem.clone();
    let (forged, plain) = tokio::task::spawn_blocking(move || {
        let forged = connect_after(
            tls,
            b"PROXY TCP4 203.0.113.66 127.0.0.1 1 443\r\n",
            &[&root],
        );
        let mut plain = connect_after(tls, b"", &[&root]).expect("a direct client");
        (forged.is_none(), sign_in(&mut plain))
    })
    .await
    .unwrap();
    assert!(
        forged,
        "a PROXY header from a peer not trusted was honoured"
    );
    assert_eq!(plain, 200);
    assert_eq!(
        upstream
            .forwarded_for
            .lock()
            .unwrap()
            .last()
            .map(String::as_str),
        Some("127.0.0.1")
    );
}

/// A TLS record holding a ClientHello that offers at most `version` (0x0301: TLS 1.0,
/// 0x0302: TLS 1.1), with no `supported_versions` extension, as such a client sends.
fn old_client_hello(version: [u8; 2]) -> Vec<u8> {
    let mut hello = version.to_vec();
    hello.extend([7u8; 32]); // random
    hello.push(0); // no session id
    // Suites TLS 1.2 could use (ECDHE with AES-GCM) and the old AES-CBC-SHA: only the
    // version stands in the way.
    hello.extend([0, 8, 0xc0, 0x2b, 0xc0, 0x2f, 0x00, 0x2f, 0x00, 0x35]);
    hello.extend([1, 0]); // null compression
    let mut handshake = vec![1, 0, (hello.len() >> 8) as u8, hello.len() as u8];
    handshake.extend(hello);
    let mut record = vec![
        0x16,
        3,
        1,
        (handshake.len() >> 8) as u8,
        handshake.len() as u8,
    ];
    record.extend(handshake);
    record
}

/// What the server sends back to `bytes` until it closes (at most 10 s).
fn reply(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(bytes).unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        match tcp.read(&mut chunk) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("the server neither answered nor closed: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_0_and_1_1_and_plain_http_on_the_tls_port_are_refused_cleanly() {
    let Setup {
        upstream_addr,
        upstream,
        files,
        ca,
    } = Setup::new().await;
    let (_gw, tls) = gateway(upstream_addr, &files, |_| {}).await;

    let got = tokio::task::spawn_blocking(move || {
        [
            reply(tls, &old_client_hello([3, 1])),
            reply(tls, &old_client_hello([3, 2])),
            reply(tls, b"GET /health HTTP/1.1\r\nhost: localhost\r\n\r\n"),
        ]
    })
    .await
    .unwrap();
    for (version, answer) in ["1.0", "1.1"].iter().zip(&got[..2]) {
        // One alert record, fatal (2): handshake_failure (40, what rustls sends; OpenSSL's
        // `s_client -tls1` reports "alert handshake failure") or protocol_version (70). No
        // ServerHello, then the close.
        assert_eq!(answer.len(), 7, "TLS {version}: {answer:?}");
        assert_eq!(answer[0], 0x15, "TLS {version}: not an alert: {answer:?}");
        assert_eq!(answer[5], 2, "TLS {version}: not fatal: {answer:?}");
        assert!([40, 70].contains(&answer[6]), "TLS {version}: {answer:?}");
    }
    assert!(
        !got[2].starts_with(b"HTTP/"),
        "plain HTTP was answered on the TLS port"
    );
    let failures = metric(&_gw, "gateway_tls_handshake_failures_total").await;
    assert!(failures.is_some_and(|n| n >= 3.0), "{failures:?}");
    assert_eq!(
        upstream.received.load(std::sync::atomic::Ordering::Relaxed),
        0
    );

    // The listener is still fine.
    let roots = [ca.pem.clone()];
    let status = tokio::task::spawn_blocking(move || sign_in(&mut connect(tls, &[&roots[0]])))
        .await
        .unwrap();
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_cannot_be_served_stops_the_start_naming_its_file() {
    let ca = Authority::new("test CA");
    let (good, other) = (ca.leaf(2020, 2090), ca.leaf(2020, 2090));
    type Pair = Option<(String, String)>;
    let cases: [(&str, Pair, &str); 3] = [
        ("missing", None, "cert.pem"),
        ("expired", Some(ca.leaf(2001, 2002)), "cert.pem"),
        (
            "mismatched",
            Some((good.0.clone(), other.1.clone())),
            "key.pem",
        ),
    ];
    for (case, pair, named) in cases {
        let files = Files::new();
        if let Some(pair) = &pair {
            files.install(pair);
        }
        let settings = gateway::Settings {
            listen: free_port(),
            admin_listen: free_port(),
            tls: gateway::settings::TlsSettings {
                listen: Some(free_port()),
                cert_file: files.cert(),
                key_file: files.key(),
                ..Default::default()
            },
            assertion_secrets: gateway::settings::AssertionSecrets {
                auth_service: layered_settings::Secret::new("a".repeat(32)),
                registry: layered_settings::Secret::new("b".repeat(32)),
            },
            ..Default::default()
        };
        let feed = Arc::new(blacklist::LocalFeed::new());
        let error = match gateway::spawn(&settings, feed) {
            Ok(_) => panic!("{case}: the gateway started"),
            Err(e) => format!("{e:#}"),
        };
        let file = files.dir.join(named).display().to_string();
        assert!(error.contains(&file), "{case}: {error}");
        assert!(
            TcpStream::connect(settings.listen).is_err(),
            "{case}: the plain port opened"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exposed_plain_listener_sends_clients_to_https() {
    let Setup {
        upstream_addr,
        upstream,
        files,
        ca: _,
    } = Setup::new().await;
    // Not loopback: every address of this machine (the test speaks to it on 127.0.0.1).
    let port = free_port().port();
    let (gw, tls) = gateway(upstream_addr, &files, |s| {
        s.listen = SocketAddr::from(([0, 0, 0, 0], port));
    })
    .await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let plain = format!("http://127.0.0.1:{port}");
    let moved = client
        .post(format!("{plain}{SIGN_IN}?next=%2Fconsole"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), 308);
    assert_eq!(
        moved.headers()["location"],
        format!("https://127.0.0.1:{}{SIGN_IN}?next=%2Fconsole", tls.port()).as_str()
    );
    assert!(moved.headers().get("set-cookie").is_none());
    // Health checks still answer in plain (503 here: this upstream serves no keys);
    // nothing reached the upstream.
    let health = client.get(format!("{plain}/health")).send().await.unwrap();
    assert_eq!(health.status(), 503);
    assert!(health.headers().get("location").is_none());
    assert!(health.text().await.unwrap().contains("status"));
    assert_eq!(
        upstream.received.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    drop(gw);
}

/// Kills the process if the test ends before it does.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_loads_a_renewed_certificate_on_sighup() {
    let Renewal {
        upstream_addr,
        _upstream,
        files,
        old_ca,
        new_ca,
        old,
        new,
    } = Renewal::new().await;
    let (listen, admin, tls) = (free_port(), free_port(), free_port());
    let redis = std::env::var("RPC_TEST_REDIS_URL").unwrap_or("redis://127.0.0.1:6379".into());
    let id = uuid::Uuid::new_v4().simple().to_string();
    let child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .current_dir(&files.dir)
        .env("GATEWAY__LISTEN", listen.to_string())
        .env("GATEWAY__ADMIN_LISTEN", admin.to_string())
        .env("GATEWAY__AUTH_SERVICE", upstream_addr.to_string())
        .env("GATEWAY__REGISTRY", upstream_addr.to_string())
        .env("GATEWAY__ASSERTION_SECRETS__AUTH_SERVICE", "a".repeat(32))
        .env("GATEWAY__ASSERTION_SECRETS__REGISTRY", "b".repeat(32))
        .env("GATEWAY__REDIS__URL", redis)
        .env("GATEWAY__REDIS__PREFIX", format!("test:{id}:"))
        .env("GATEWAY__TLS__LISTEN", tls.to_string())
        .env("GATEWAY__TLS__CERT_FILE", files.cert())
        .env("GATEWAY__TLS__KEY_FILE", files.key())
        // No periodic look: only the signal can bring the new pair in.
        .env("GATEWAY__TLS__RELOAD_SECS", "0")
        .env("GATEWAY__SERVER__THREADS", "2")
        .env("GATEWAY__SERVER__GRACE_PERIOD_SECONDS", "0")
        .env("GATEWAY__SERVER__PID_FILE", files.dir.join("gw.pid"))
        .env("GATEWAY__SERVER__UPGRADE_SOCK", files.dir.join("gw.sock"))
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Reaped(child);
    let roots = [old_ca.pem.clone(), new_ca.pem.clone()];
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(tls).is_err() {
        assert!(Instant::now() < deadline, "the TLS port never opened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first = tokio::task::spawn_blocking({
        let roots = roots.clone();
        move || served(&connect(tls, &[&roots[0], &roots[1]]))
    })
    .await
    .unwrap();
    assert_eq!(first, der(&old.0));

    // The reload service has looked once: SIGHUP is handled from then on.
    let looked = "gateway_tls_reloads_total{outcome=\"unchanged\"}";
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = match reqwest::get(format!("http://{admin}/metrics")).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let count = text
            .lines()
            .find_map(|l| l.strip_prefix(looked)?.trim().parse::<f64>().ok());
        if count.is_some_and(|n| n >= 1.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reload service never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    files.install(&new);
    let status = Command::new("kill")
        .args(["-HUP", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "SIGHUP ended the gateway"
        );
        let seen = tokio::task::spawn_blocking({
            let roots = roots.clone();
            move || served(&connect(tls, &[&roots[0], &roots[1]]))
        })
        .await
        .unwrap();
        if seen == der(&new.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not load the new pair"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
