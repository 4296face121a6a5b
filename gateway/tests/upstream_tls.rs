//! TLS from the gateway to its upstreams (`upstream_tls`, issue 27): a sign-in forwarded to
//! an auth-service that speaks only TLS and requires a client certificate from its own
//! authority reaches it, and so does the JWKS fetch; an upstream whose certificate another
//! authority signed, or a gateway without its client certificate, gets no request through
//! (502 `upstream_unavailable`); a client certificate without its key stops the start.

mod support;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::{Authority, SIGN_IN, free_port, ring_provider};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An upstream that speaks TLS only, as `name`, requiring a client certificate signed by
/// `clients`; answers 200 to everything and counts sign-ins and JWKS fetches.
struct TlsUpstream {
    posts: Arc<AtomicU64>,
    jwks: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsUpstream {
    async fn start(addr: SocketAddr, ca: &Authority, name: &str, clients: &Authority) -> Self {
        let (cert, key) = ca.issue(name, false);
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(clients.pem.as_bytes()).unwrap())
            .unwrap();
        let provider = Arc::new(ring_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.into(),
            provider.clone(),
        )
        .build()
        .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let (posts, jwks) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (p, j) = (posts.clone(), jwks.clone());
        let task = tokio::spawn(async move {
            let mut served = tokio::task::JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, p, j) = (acceptor.clone(), p.clone(), j.clone());
                served.spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = Vec::new();
                    loop {
                        let head_end = loop {
                            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break at + 4;
                            }
                            let mut chunk = [0u8; 4096];
                            match tls.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap_or(0));
                        while buf.len() < head_end + length {
                            let mut chunk = [0u8; 4096];
                            match tls.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        buf.drain(..head_end + length);
                        let body: &[u8] = if head.starts_with("get /.well-known/jwks.json") {
                            j.fetch_add(1, Ordering::Relaxed);
                            br#"{"keys":[]}"#
                        } else {
                            if head.starts_with("post ") {
                                p.fetch_add(1, Ordering::Relaxed);
                            }
                            b"{}"
                        };
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                            body.len()
                        );
                        if tls.write_all(&[answer.as_bytes(), body].concat()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { posts, jwks, task }
    }
}

/// Writes `files` (name, text) into a new temporary directory.
fn write_files(files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gw-up-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    dir
}

/// The servers' authority and a client certificate from `clients`, as the gateway reads them.
fn gateway_files(servers: &Authority, clients: &Authority) -> PathBuf {
    let (client_cert, client_key) = clients.issue("gateway", true);
    write_files(&[
        ("ca.pem", &servers.pem),
        ("client.pem", &client_cert),
        ("client-key.pem", &client_key),
    ])
}

fn upstream_tls(dir: &std::path::Path, client: bool) -> gateway::settings::UpstreamTlsSettings {
    gateway::settings::UpstreamTlsSettings {
        enabled: true,
        ca_file: dir.join("ca.pem"),
        cert_file: client.then(|| dir.join("client.pem")),
        key_file: client.then(|| dir.join("client-key.pem")),
        auth_service_name: "auth-service".into(),
        registry_name: "registry".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_reaches_a_tls_only_upstream_with_its_client_certificate() {
    let (servers, clients) = (Authority::new("servers"), Authority::new("gateways"));
    let dir = gateway_files(&servers, &clients);
    let auth = free_port();
    let upstream = TlsUpstream::start(auth, &servers, "auth-service", &clients).await;
    let gw = support::gateway(auth, |s| s.upstream_tls = upstream_tls(&dir, true)).await;

    let answer = reqwest::Client::new()
        .post(format!("{}{SIGN_IN}", gw.url))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(upstream.posts.load(Ordering::Relaxed), 1);
    // The keys come over TLS too (fetched at start, and retried until they come).
    let deadline = Instant::now() + Duration::from_secs(10);
    while upstream.jwks.load(Ordering::Relaxed) == 0 {
        assert!(
            Instant::now() < deadline,
            "no JWKS fetch reached the TLS upstream"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Its health is checked over TLS too, under its name, with the client certificate.
    let healthy = r#"gateway_upstream_replicas{state="healthy",upstream="auth-service"}"#;
    assert!(
        support::eventually(|| async { support::metric(&gw, healthy).await == Some(1.0) }).await,
        "the health check did not pass over TLS"
    );
    drop(gw);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_reaches_an_upstream_it_cannot_verify_or_that_cannot_verify_it() {
    let (servers, clients, stranger) = (
        Authority::new("servers"),
        Authority::new("gateways"),
        Authority::new("someone else"),
    );
    let dir = gateway_files(&servers, &clients);
    // An impostor: a certificate for the right name from another authority.
    let impostor_addr = free_port();
    let impostor = TlsUpstream::start(impostor_addr, &stranger, "auth-service", &clients).await;
    // The right authority, but the registry's certificate where auth-service should be.
    let misnamed_addr = free_port();
    let misnamed = TlsUpstream::start(misnamed_addr, &servers, "registry", &clients).await;
    // The real one, reached without the client certificate.
    let real_addr = free_port();
    let real = TlsUpstream::start(real_addr, &servers, "auth-service", &clients).await;
    for (addr, client, what) in [
        (
            impostor_addr,
            true,
            "an upstream signed by another authority",
        ),
        (misnamed_addr, true, "a certificate for another name"),
        (real_addr, false, "a gateway without its client certificate"),
    ] {
        let gw = support::gateway(addr, |s| s.upstream_tls = upstream_tls(&dir, client)).await;
        let answer = reqwest::Client::new()
            .post(format!("{}{SIGN_IN}", gw.url))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(
            support::reason(answer, 502, -32603).await,
            "upstream_unavailable",
            "{what}"
        );
        // Nor does its health check pass.
        let unhealthy = r#"gateway_upstream_replicas{state="unhealthy",upstream="auth-service"}"#;
        assert!(
            support::eventually(|| async { support::metric(&gw, unhealthy).await == Some(1.0) })
                .await,
            "{what}: passes its health check"
        );
    }
    assert_eq!(impostor.posts.load(Ordering::Relaxed), 0);
    assert_eq!(misnamed.posts.load(Ordering::Relaxed), 0);
    assert_eq!(real.posts.load(Ordering::Relaxed), 0);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_client_certificate_without_its_key_stops_the_start() {
    let servers = Authority::new("servers");
    let dir = write_files(&[("ca.pem", &servers.pem)]);
    let mut tls = upstream_tls(&dir, true);
    tls.key_file = None;
    let settings = gateway::Settings {
        listen: free_port(),
        admin_listen: free_port(),
        upstream_tls: tls,
        assertion_secrets: gateway::settings::AssertionSecrets {
            auth_service: layered_settings::Secret::new("a".repeat(32)),
            registry: layered_settings::Secret::new("b".repeat(32)),
        },
        ..Default::default()
    };
    let error = match gateway::spawn(&settings, Arc::new(blacklist::LocalFeed::new())) {
        Ok(_) => panic!("the gateway started"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("client.pem"), "{error}");
    std::fs::remove_dir_all(dir).ok();
}
